"""HTTP client of the market, used by the CLI, the tests and the load benchmark.

It signs in with SIWE using a local key, signs funding transactions and rig manifests itself, uploads
files and submits recording folders. Any httpx.Client works as transport (FastAPI's TestClient too).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from loopylab.market import manifest as mf
from loopylab.market import siwe


class MarketHTTPError(RuntimeError):
    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


def load_key_file(path: str | Path, password_env: str = "LOOPYLAB_KEYSTORE_PASSWORD"):
    """A key file is either a hex private key (one line) or an encrypted keystore JSON."""
    text = Path(path).expanduser().read_text().strip()
    if text.startswith("{"):
        pw = os.environ.get(password_env)
        if pw is None:
            raise RuntimeError(f"{path} is a keystore: put its password in ${password_env}")
        return Account.from_key(Account.decrypt(json.loads(text), pw))
    return Account.from_key(text)


def new_key_file(path: str | Path) -> str:
    path = Path(path).expanduser()
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite a key")
    path.parent.mkdir(parents=True, exist_ok=True)
    acct = Account.create()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("0x" + acct.key.hex().removeprefix("0x") + "\n")
    return acct.address


class MarketClient:
    def __init__(self, http: httpx.Client | str, account, rig_account=None):
        self._owns_http = not isinstance(http, httpx.Client)
        self.http = http if not self._owns_http else httpx.Client(base_url=http, timeout=60)
        self.account = account
        self.rig = rig_account or account
        self.token: str | None = None

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    @property
    def address(self) -> str:
        return self.account.address

    # ------------------------------------------------------------------ plumbing
    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, **kw):
        r = self.http.request(method, path, headers={**self._headers(), **kw.pop("headers", {})}, **kw)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise MarketHTTPError(r.status_code, str(detail))
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.content

    # ------------------------------------------------------------------ auth
    def siwe_message(self, nonce_info: dict, **overrides) -> siwe.SiweMessage:
        # the domain is the one we connect to (never what the server claims): a phishing server
        # relaying another market's nonce gets a message that market refuses
        base = urlparse(str(self.http.base_url))
        domain = base.netloc or nonce_info["domain"]
        fields = dict(
            domain=domain,
            address=self.address,
            uri=f"{base.scheme}://{domain}/" if base.netloc else nonce_info["uri"],
            chain_id=nonce_info["chain_id"],
            nonce=nonce_info["nonce"],
            issued_at=siwe.iso(time.time()),
            statement="Sign in to the loopylab data market.",
            expiration_time=siwe.iso(time.time() + 600),
        )
        fields.update(overrides)
        return siwe.SiweMessage(**fields)

    def login(self) -> str:
        info = self.request("POST", "/auth/nonce")
        msg = self.siwe_message(info)
        out = self.request(
            "POST", "/auth/login", json={"message": msg.to_text(), "signature": siwe.sign(msg, self.account)}
        )
        self.token = out["token"]
        self.http.cookies.clear()  # the bearer token authenticates this client; the cookie is for browsers
        return self.token

    # ------------------------------------------------------------------ requester
    def post_bounty(self, **terms) -> dict:
        """POST /bounties with the fields of `market.terms.BountyTerms` (reward_wei may be an int here)."""
        terms.setdefault("deadline", time.time() + 7 * 86400)
        terms["reward_wei"] = str(terms["reward_wei"])
        return self.request("POST", "/bounties", json=terms)

    def fund(self, bounty_id: int) -> dict:
        """Sign the escrow.fund transaction the server describes and let the server broadcast it."""
        req = self.request("GET", f"/bounties/{bounty_id}/funding")
        return self.request("POST", f"/bounties/{bounty_id}/fund", json={"raw_tx": self._sign_tx(req)})

    def refund(self, bounty_id: int) -> dict:
        """Sign the escrow transaction the refund needs next and let the server broadcast it (after every payout):
        announce_refund first (the bounty stays closed), then, once the escrow's notice is over, refund."""
        req = self.request("GET", f"/bounties/{bounty_id}/refunding")
        return self.request("POST", f"/bounties/{bounty_id}/refund", json={"raw_tx": self._sign_tx(req)})

    def _sign_tx(self, req: dict) -> str:
        tx = {
            "to": req["to"],
            "value": int(req["value"]),
            "data": req["data"],
            "chainId": req["chain_id"],
            "nonce": req["nonce"],
            "gas": req["gas"],
            "maxFeePerGas": req["max_fee_per_gas"],
            "maxPriorityFeePerGas": req["max_priority_fee_per_gas"],
        }
        return "0x" + self.account.sign_transaction(tx).raw_transaction.hex().removeprefix("0x")

    def sign_approval(self, submission_id: int) -> str:
        """Sign the EIP-712 Release approval of a submission's payout with this client's key."""
        from loopylab.market.chain import sign_release

        return sign_release(self.account, self.request("GET", f"/submissions/{submission_id}/approval"))

    def review(self, submission_id: int, approve: bool, reason: str = "") -> dict:
        body: dict = {"approve": approve, "reason": reason}
        if approve:
            body["signature"] = self.sign_approval(submission_id)
        return self.request("POST", f"/submissions/{submission_id}/review", json=body)

    # ------------------------------------------------------------------ contributor
    def claim(self, bounty_id: int, rig: str | None = None) -> dict:
        """Reserve a slot; `rig`: the verified rig it is for (markets that verify rigs ask for one)."""
        return self.request("POST", f"/bounties/{bounty_id}/claims", **({"json": {"rig": rig}} if rig else {}))

    def register_rig(self, label: str = "", attestation: dict | None = None) -> dict:
        """Register this client's rig key; `attestation` {device, signature}: a trusted attester's signature of
        manifest.rig_attestation_text(rig, device), which makes it a verified rig."""
        text = mf.rig_registration_text(self.rig.address, self.address)
        sig = self.rig.sign_message(encode_defunct(text=text)).signature.hex()
        body = {"address": self.rig.address, "signature": "0x" + sig.removeprefix("0x"), "label": label}
        if attestation:
            body["attestation"] = attestation
        return self.request("POST", "/rigs", json=body)

    def upload(self, path: Path) -> dict:
        def chunks():
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

        return self.request(
            "PUT",
            "/blobs",
            content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(Path(path).stat().st_size)},
        )

    def submit_folder(self, claim_id: int, folder: Path, bounty_id: int | None = None) -> dict:
        if bounty_id is None:
            bounty_id = self.request("GET", f"/claims/{claim_id}")["bounty_id"]
        manifest = mf.build(folder, bounty_id, self.rig.address)
        base = Path(folder).parent if Path(folder).is_file() else Path(folder)
        for f in manifest["files"]:
            self.upload(base / f["path"])
        return self.submit(claim_id, manifest)

    def submit(self, claim_id: int, manifest: dict, signature: str | None = None) -> dict:
        return self.request(
            "POST",
            f"/claims/{claim_id}/submission",
            json={"manifest": manifest, "signature": signature or mf.sign(manifest, self.rig)},
        )

    def withdraw(self) -> dict:
        return self.request("POST", "/withdraw")

    def payouts(self) -> dict:
        return self.request("GET", "/me/payouts")
