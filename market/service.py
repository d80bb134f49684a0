"""The market's operations, independent of HTTP: post and fund bounties, claim slots, register rigs,
record uploads, submit (running the verification pipeline), review, sweep timers (claim expiry,
auto-approve, deadlines), refunds, withdrawals, and the read views with their access rules.

Every state change goes through `states.advance`; every write is one DB transaction. An approval
writes the payout's outbox row in the same transaction (the relay pays it later, exactly once).
Errors are `MarketError`s carrying the HTTP status the API answers with.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from web3 import Web3

from loopylab.market import manifest as mf
from loopylab.market import verify
from loopylab.market.chain import Chain, payout_id, recover_release
from loopylab.market.config import MarketConfig
from loopylab.market.db import (
    Blob,
    BlobOwner,
    Bounty,
    Claim,
    FingerprintBand,
    Payout,
    Reputation,
    Rig,
    Store,
    Submission,
    SubmissionFile,
    lock,
)
from loopylab.market.errors import Conflict, Forbidden, MarketError, NotFound, TooMany
from loopylab.market.preview import preview_files
from loopylab.market.states import (
    SLOT_TAKEN,
    BountyState,
    ClaimState,
    PayoutState,
    SubmissionState,
    TransitionError,
    advance,
    can,
)
from loopylab.market.storage import BlobStore
from loopylab.market.terms import BountyTerms, first_error
from loopylab.market.verify import dupes
from loopylab.market.views import Views

log = logging.getLogger(__name__)

MAX_AUTO_APPROVE_S = 30 * 24 * 3600.0  # MTurk's upper bound; shorter is better for contributors
REFUND_GRACE_S = 3600.0
MAX_DEADLINE_S = 365 * 86400.0  # with claim time, review time and grace: inside the escrow's
# refund horizon (MAX_REFUND_HORIZON, 400 days)
UNPAID = ("pending", "signed", "failed")  # approved payouts not yet released on chain
# submissions whose files and fingerprints count against later ones: invalid ones were never data, and a
# rejected one's files were withheld from the requester, so the contributor may offer them elsewhere
MAX_CANDIDATES = 1000  # earlier submissions compared in full per submission (those sharing a band, newest)
COUNTED = (SubmissionState.pending_review.value, SubmissionState.approved.value)
MAX_TOPICS = 100


def checksum(address: str, what: str = "address") -> str:
    if not isinstance(address, str) or not Web3.is_address(address):
        raise MarketError(f"{what} must be a 0x-prefixed 20-byte hex address", 422)
    return Web3.to_checksum_address(address)


def checked_terms(data: dict) -> BountyTerms:
    """Terms from plain values, or a 422 MarketError naming the first field they break."""
    try:
        return BountyTerms.model_validate(data)
    except ValidationError as e:
        raise MarketError(first_error(e), 422) from None


class Market(Views):
    def __init__(self, config: MarketConfig, store: Store, chain: Chain | None = None):
        self.config = config
        self.store = store
        self.chain = chain
        self.blobs = BlobStore(config.blob_dir)
        store.seed_generation()

    # ------------------------------------------------------------------ bounties
    def validate_terms(self, t: BountyTerms, now: float) -> None:
        if not t.title.strip():
            raise MarketError("title must not be empty", 422)
        if not 1 <= t.slots <= self.config.max_slots:
            raise MarketError(f"slots must be between 1 and {self.config.max_slots}", 422)
        if t.reward <= 0 or t.reward * t.slots >= 2**255:
            raise MarketError("reward_wei must be positive (and the total below 2**255)", 422)
        if not math.isfinite(t.deadline) or t.deadline <= now or t.deadline > now + MAX_DEADLINE_S:
            raise MarketError("deadline must be a unix time in the future (within 365 days)", 422)
        if not 0 <= t.auto_approve_s <= MAX_AUTO_APPROVE_S:
            raise MarketError("auto_approve_s must be between 0 and 30 days", 422)
        if not 1 <= t.claim_ttl_s <= 30 * 86400:
            raise MarketError("claim_ttl_s must be between 1 s and 30 days", 422)
        topics = t.task_spec.get("topics", [])
        if (
            not isinstance(topics, list)
            or len(topics) > MAX_TOPICS
            or not all(isinstance(x, str) and 0 < len(x) <= 200 for x in topics)
        ):
            raise MarketError(f"task_spec.topics must be a list of at most {MAX_TOPICS} topic names", 422)
        for i, c in enumerate(t.acceptance):
            kind = c.get("check") if isinstance(c, dict) else None
            if kind not in verify.CHECK_KINDS:
                raise MarketError(f"acceptance[{i}].check must be one of {', '.join(verify.CHECK_KINDS)}", 422)
            need = {
                "range": ("field",),
                "rate": ("hz", "topic"),
                "notebook_range": ("quantity",),
                "min_messages": ("count",),
                "monotonic": (),
            }[kind]
            missing = [k for k in need if k not in c]
            if missing:
                raise MarketError(f"acceptance[{i}] ({kind}) needs {', '.join(missing)}", 422)
            for k in ("topic", "field", "quantity"):  # names: a list or a number here used to be a 500
                if k in c and not (isinstance(c[k], str) and 0 < len(c[k]) <= 200):
                    raise MarketError(f"acceptance[{i}].{k} must be a name (a string of 1 to 200 characters)", 422)
            for k in ("min", "max", "hz", "tolerance", "count"):
                if k in c and not (
                    isinstance(c[k], (int, float)) and not isinstance(c[k], bool) and math.isfinite(c[k])
                ):
                    raise MarketError(f"acceptance[{i}].{k} must be a finite number", 422)

    def post_bounty(self, requester: str, terms: BountyTerms) -> Bounty:
        now = time.time()
        self.validate_terms(terms, now)
        with self.store.write() as s:
            b = Bounty(
                requester=requester,
                state=BountyState.draft.value,
                created_at=now,
                refund_after=terms.deadline + terms.claim_ttl_s + terms.auto_approve_s + REFUND_GRACE_S,
                **terms.columns(),
            )
            s.add(b)
            s.flush()
            log.info("bounty %d posted by %s: %d x %d wei", b.id, requester, b.slots, b.reward_wei)
            return b

    def update_bounty(self, requester: str, bounty_id: int, changes: dict) -> Bounty:
        """Change some terms of a draft (`changes`: term name -> new value; None keeps the old one)."""
        with self.store.write() as s:
            b = self._own_bounty(s, requester, bounty_id)
            if b.state != BountyState.draft.value:
                raise Conflict(f"bounty is {b.state}: terms are frozen once funded")
            given = {k: v for k, v in changes.items() if v is not None}
            terms = checked_terms({**BountyTerms.of(b).model_dump(), **given})
            self.validate_terms(terms, time.time())
            for k, v in terms.columns().items():
                setattr(b, k, v)
            b.refund_after = b.deadline + b.claim_ttl_s + b.auto_approve_s + REFUND_GRACE_S
            return b

    def cancel_bounty(self, requester: str, bounty_id: int) -> Bounty:
        with self.store.write() as s:
            b = self._own_bounty(s, requester, bounty_id)
            advance(b, BountyState, BountyState.cancelled)
            return b

    def funding_request(self, requester: str, bounty_id: int) -> dict:
        """What the requester's wallet must send: escrow.fund(bounty_id, refund_after) from the requester's
        own address (the escrow keys the slot by its sender)."""
        chain = self._chain()
        with self.store.read() as s:
            b = self._own_bounty(s, requester, bounty_id)
        data = chain.escrow.encode_abi("fund", args=[b.id, math.ceil(b.refund_after)])
        return {
            **self._tx_request(chain, requester, data, b.slots * b.reward_wei, 200_000),
            "refund_after": math.ceil(b.refund_after),
        }

    def refunding_request(self, requester: str, bounty_id: int) -> dict:
        """What the requester's wallet sends next to take back a settled bounty's rest: escrow.announce_refund
        (which starts the escrow's notice, during which signed approvals can still be released), then, once
        the notice is over, escrow.refund(bounty_id)."""
        chain = self._chain()
        with self.store.read() as s:
            b = self._own_bounty(s, requester, bounty_id)
        refund_at = chain.bounty_onchain(requester, b.id)["refund_at"]
        fn = "refund" if refund_at else "announce_refund"
        return {
            **self._tx_request(chain, requester, chain.escrow.encode_abi(fn, args=[b.id]), 0, 150_000),
            "function": fn,
            "refund_at": refund_at,
        }

    @staticmethod
    def _tx_request(chain: Chain, sender: str, data: str, value: int, gas: int) -> dict:
        p = chain.tx_params(sender)
        return {
            "to": chain.escrow.address,
            "value": str(value),
            "data": data,
            "chain_id": p.chain_id,
            "nonce": p.nonce,
            "max_fee_per_gas": p.max_fee_per_gas,
            "max_priority_fee_per_gas": p.max_priority_fee_per_gas,
            "gas": gas,
        }

    def _broadcast_own(
        self, chain: Chain, raw_tx: str, requester: str, function: str | tuple[str, ...], bounty_id: int
    ) -> str:
        """Broadcast a signed transaction only if it is the requester's own `function` call of this escrow
        for this bounty: the server relays nothing else (no arbitrary transactions through /fund)."""
        try:
            raw = bytes.fromhex(raw_tx.removeprefix("0x"))
            tx = chain.decode_escrow_tx(raw)
        except ValueError as e:
            raise MarketError(str(e), 422) from None
        if tx["chain_id"] not in (None, chain.chain_id):
            raise MarketError(f"the transaction is for chain {tx['chain_id']}, the escrow is on {chain.chain_id}", 422)
        if tx["sender"] != requester:
            raise MarketError("the transaction must be signed by the bounty's requester", 422)
        allowed = (function,) if isinstance(function, str) else function
        if tx["function"] not in allowed or tx["args"].get("bounty_id") != bounty_id:
            raise MarketError(
                f"the transaction must call {' or '.join(allowed)}({bounty_id}, ...) on the escrow "
                f"{chain.escrow.address}",
                422,
            )
        try:
            rcpt = chain.send_signed(raw)
        except Exception as e:
            raise MarketError(f"the chain refused the transaction: {e}") from None
        if rcpt.status != 1:
            raise MarketError(f"the {tx['function']} transaction reverted")
        return tx["function"]

    def fund(self, requester: str, bounty_id: int, raw_tx: str | None = None) -> Bounty:
        """Broadcast the requester's signed fund transaction (if given), then open the bounty once the
        escrow holds its full reward budget for this requester. The chain is the record."""
        chain = self._chain()
        with self.store.read() as s:
            b = self._own_bounty(s, requester, bounty_id)
            if b.state != BountyState.draft.value:
                raise Conflict(f"bounty is {b.state}, not draft")
        if raw_tx:
            self._broadcast_own(chain, raw_tx, requester, "fund", bounty_id)
        onchain = chain.bounty_onchain(requester, bounty_id)
        need = b.slots * b.reward_wei
        if onchain["funded"] == 0:
            raise Conflict("the escrow holds no funding for this bounty from its requester")
        if onchain["funded"] - onchain["released"] < need or onchain["refunded"]:
            raise Conflict(f"escrow holds {onchain['funded'] - onchain['released']} wei, the bounty needs {need}")
        if onchain["refund_after"] < math.ceil(b.refund_after):
            raise Conflict("escrow refund time is earlier than the bounty's settlement time")
        with self.store.write() as s:
            b = lock(s, Bounty, bounty_id)
            advance(b, BountyState, BountyState.open)
            b.funded_wei = onchain["funded"]
            b.escrow_address = chain.escrow.address
            log.info("bounty %d funded with %d wei", bounty_id, b.funded_wei)
            return b

    def refund(self, requester: str, bounty_id: int, raw_tx: str | None = None) -> Bounty:
        """Broadcast the requester's signed escrow.announce_refund or escrow.refund (if given) once every approved
        payout of the bounty is released on chain, then record the refund the escrow made (after an announcement
        the bounty stays closed: the escrow refunds REFUND_NOTICE later). An approved payout never loses to a
        refund: while one is unpaid (pending, in flight, or failed and being retried) this answers 409."""
        chain = self._chain()
        self.sweep()
        with self.store.read() as s:
            b = self._own_bounty(s, requester, bounty_id)
            if b.state != BountyState.closed.value:
                raise Conflict(f"bounty is {b.state}; only a closed bounty is refunded")
            unpaid = s.scalar(
                select(func.count()).select_from(Payout).where(Payout.bounty_id == bounty_id, Payout.state.in_(UNPAID))
            )
            waiting = s.scalar(
                select(func.count())
                .select_from(Submission)
                .where(Submission.bounty_id == bounty_id, Submission.state == SubmissionState.pending_review.value)
            )
        if unpaid or waiting:
            raise Conflict(
                f"{waiting} submissions await review and {unpaid} approved payouts are not yet "
                f"released on chain; they are paid before any refund"
            )
        onchain = chain.bounty_onchain(requester, bounty_id)
        if not onchain["refunded"] and chain.w3.eth.get_block("latest").timestamp <= onchain["refund_after"]:
            raise Conflict(f"the escrow's refund time is not reached (unix time {onchain['refund_after']})")
        if raw_tx:
            fn = self._broadcast_own(chain, raw_tx, requester, ("announce_refund", "refund"), bounty_id)
            if fn == "announce_refund":  # step one done: the bounty stays closed until the notice is over
                with self.store.read() as s:
                    return s.get(Bounty, bounty_id)
        onchain = chain.bounty_onchain(requester, bounty_id)
        if not onchain["refunded"] and onchain["refund_at"]:
            raise Conflict(
                f"the refund is announced on chain: the escrow refunds from unix time {onchain['refund_at']} "
                "(its notice lets every signed approval be released first); then send the refund transaction "
                "from GET /bounties/{id}/refunding"
            )
        if not onchain["refunded"]:
            raise Conflict(
                "the escrow has not refunded this bounty (send the signed transactions from "
                "GET /bounties/{id}/refunding after its refund time: announce_refund, then refund)"
            )
        with self.store.write() as s:
            b = lock(s, Bounty, bounty_id)
            advance(b, BountyState, BountyState.refunded)
            return b

    # ------------------------------------------------------------------ claims
    def claim(self, contributor: str, bounty_id: int, rig: str | None = None) -> Claim:
        """Reserve a slot. Where the market verifies rigs (config.rig_attesters) the slot is for one of the
        contributor's verified rigs, and a device holds one slot per bounty: one person with three keys (or
        three accounts) and one rig gets one slot."""
        now = time.time()
        device = None
        if rig is not None or self.verified_rigs_only:
            rig, device = self._slot_rig(contributor, rig)
        with self.store.write() as s:
            b = lock(s, Bounty, bounty_id)
            if b is None:
                raise NotFound(f"no bounty {bounty_id}")
            if b.requester == contributor:
                raise Forbidden("you cannot claim your own bounty")
            if b.state != BountyState.open.value:
                raise Conflict(f"bounty is {b.state}; only open bounties take claims")
            if now >= b.deadline:
                raise Conflict("bounty deadline has passed")
            self._expire_claims(s, now, bounty_id)
            mine = s.scalar(
                select(Claim.id).where(
                    Claim.bounty_id == bounty_id, Claim.contributor == contributor, Claim.state.in_(SLOT_TAKEN)
                )
            )
            if mine is not None:
                raise Conflict(f"you already hold claim {mine} on this bounty")
            if device is not None:
                held = s.scalar(
                    select(Claim.id).where(
                        Claim.bounty_id == bounty_id, Claim.device == device, Claim.state.in_(SLOT_TAKEN)
                    )
                )
                if held is not None:
                    raise Conflict("this rig's device already holds a slot on this bounty (one slot per rig)")
            taken = s.scalar(
                select(func.count()).select_from(Claim).where(Claim.bounty_id == bounty_id, Claim.state.in_(SLOT_TAKEN))
            )
            if taken >= b.slots:
                raise Conflict(f"all {b.slots} slots are taken")
            c = Claim(
                bounty_id=bounty_id,
                contributor=contributor,
                state=ClaimState.active.value,
                created_at=now,
                expires_at=min(now + b.claim_ttl_s, b.deadline),
                rig=rig or "",
                device=device,
            )
            s.add(c)
            s.flush()
            return c

    def _slot_rig(self, contributor: str, rig: str | None) -> tuple[str, str | None]:
        """(rig, device) a claim is for: the contributor's own rig, verified where the market verifies rigs."""
        if rig is None:
            raise MarketError(
                "this market gives one slot per verified rig: claim with `rig`, one of your rigs verified by an "
                "attester (POST /rigs with an attestation)",
                422,
            )
        rig = checksum(rig, "rig")
        with self.store.read() as s:
            r = s.get(Rig, rig)
        if r is None or r.owner != contributor:
            raise Forbidden(f"rig {rig} is not registered to you")
        if self.verified_rigs_only and r.device is None:
            raise Forbidden(f"rig {rig} is not verified: register it with an attestation from a trusted attester")
        return rig, r.device

    def release_claim(self, contributor: str, claim_id: int) -> Claim:
        with self.store.write() as s:
            c = lock(s, Claim, claim_id)
            if c is None or c.contributor != contributor:
                raise NotFound(f"you hold no claim {claim_id}")
            advance(c, ClaimState, ClaimState.released)
            return c

    def _expire_claims(self, s, now: float, bounty_id: int | None = None) -> int:
        q = update(Claim).where(Claim.state == ClaimState.active.value, Claim.expires_at <= now)
        if bounty_id is not None:
            q = q.where(Claim.bounty_id == bounty_id)
        # a bulk UPDATE instead of advance() per row; it makes exactly the allowed active -> expired move
        assert can(ClaimState, ClaimState.active, ClaimState.expired)
        return s.execute(q.values(state=ClaimState.expired.value)).rowcount

    # ------------------------------------------------------------------ rigs and uploads
    def register_rig(
        self, owner: str, rig: str, signature: str, label: str = "", attestation: dict | None = None
    ) -> Rig:
        """Register a rig key to its owner (the key's own signature proves it), optionally verified: an
        attestation {device, signature} signed by one of the market's trusted attesters binds the key to one
        physical device, and a device has one key."""
        rig = checksum(rig, "rig")
        try:
            from eth_account import Account
            from eth_account.messages import encode_defunct

            signer = Account.recover_message(
                encode_defunct(text=mf.rig_registration_text(rig, owner)), signature=signature
            )
        except Exception:
            raise MarketError("signature does not decode") from None
        if signer != rig:
            raise MarketError(f"the registration must be signed by the rig key itself; it was signed by {signer}")
        device, attester = self._checked_attestation(rig, attestation) if attestation else (None, "")
        with self.store.write() as s:
            existing = s.get(Rig, rig)
            if existing is not None and existing.owner != owner:
                raise Conflict("this rig key is registered to another account")
            if device is not None:
                other = s.scalar(select(Rig).where(Rig.device == device))
                if other is not None and other.address != rig:
                    raise Conflict(f"device {device[:18]} is already registered as rig {other.address}")
            if existing is not None:
                if device is not None and existing.device is None:
                    existing.device, existing.attested_by = device, attester
                return existing
            r = Rig(address=rig, owner=owner, label=label[:200], device=device, attested_by=attester)
            s.add(r)
            return r

    def _checked_attestation(self, rig: str, attestation: dict) -> tuple[str, str]:
        from eth_account import Account
        from eth_account.messages import encode_defunct

        device, sig = attestation.get("device"), attestation.get("signature")
        if not (isinstance(device, str) and 0 < len(device) <= 66 and isinstance(sig, str)):
            raise MarketError("attestation needs a device (1 to 66 characters) and an attester's signature", 422)
        try:
            attester = Account.recover_message(encode_defunct(text=mf.rig_attestation_text(rig, device)), signature=sig)
        except Exception:
            raise MarketError("attestation signature does not decode", 422) from None
        if attester not in self.config.attesters:
            raise Forbidden(f"{attester} is not one of this market's rig attesters")
        return device, attester

    @property
    def verified_rigs_only(self) -> bool:
        return bool(self.config.attesters)

    def record_upload(self, owner: str, sha256: str, size: int) -> None:
        for attempt in range(3):  # two uploads of the same bytes may race to insert the blob row
            try:
                with self.store.write() as s:
                    if s.get(Blob, sha256) is None:
                        s.add(Blob(sha256=sha256, size=size))
                        s.flush()
                    if s.get(BlobOwner, (sha256, owner)) is None:
                        s.add(BlobOwner(sha256=sha256, owner=owner))
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def blob_for(self, viewer: str, sha256: str) -> Path:
        """The stored file, if the viewer uploaded it or reviews (or bought) a submission holding it."""
        try:
            path = self.blobs.path(sha256)
        except ValueError as e:
            raise MarketError(str(e), 422) from None
        with self.store.read() as s:
            if s.get(BlobOwner, (sha256, viewer)) is None:
                ok = s.scalar(
                    select(Submission.id)
                    .join(SubmissionFile, SubmissionFile.submission_id == Submission.id)
                    .join(Bounty, Bounty.id == Submission.bounty_id)
                    .where(
                        SubmissionFile.sha256 == sha256,
                        Bounty.requester == viewer,
                        # withheld until approval: before it the requester sees the preview only
                        Submission.state == SubmissionState.approved.value,
                    )
                    .limit(1)
                )
                if ok is None:
                    if s.get(Blob, sha256) is None:
                        raise NotFound("no such blob")
                    raise Forbidden(
                        "this data belongs to another contributor: a requester downloads it once the submission is "
                        "approved (before that, GET /submissions/{id}/preview)"
                    )
        if not path.exists():
            raise NotFound("blob content missing from storage")
        return path

    def preview(self, viewer: str, submission_id: int) -> dict:
        """A submission's preview (market/preview.py): what the requester judges it by before deciding."""
        with self.store.read() as s:
            sub, _ = self._visible_submission(s, viewer, submission_id)
            files = [
                (f.path, f.sha256)
                for f in s.scalars(select(SubmissionFile).where(SubmissionFile.submission_id == sub.id))
            ]
        return {
            "submission_id": sub.id,
            "state": sub.state,
            "withheld": sub.state != SubmissionState.approved.value,
            **preview_files([(name, self.blobs.path(sha)) for name, sha in sorted(files)]),
        }

    # ------------------------------------------------------------------ submissions
    def submit(self, contributor: str, claim_id: int, manifest: dict, signature: str) -> Submission:
        now = time.time()
        with self.store.read() as s:
            c = s.get(Claim, claim_id)
            if c is None or c.contributor != contributor:
                raise NotFound(f"you hold no claim {claim_id}")
            self._check_claim_usable(c, now)
            b = s.get(Bounty, c.bounty_id)
            owned = set(s.scalars(select(BlobOwner.sha256).where(BlobOwner.owner == contributor)))

        def rig_owner(address: str) -> str | None:
            with self.store.read() as s:
                r = s.get(Rig, address)
                return r.owner if r else None

        def rig_verified(address: str) -> str | None:
            if c.rig and address != c.rig:
                return f"claim {c.id} is for rig {c.rig}; the data is signed by rig {address}"
            if self.verified_rigs_only:
                with self.store.read() as s:
                    r = s.get(Rig, address)
                if r is None or r.device is None:
                    return f"rig {address} is not verified (this market pays verified rigs only)"
            return None

        ctx = verify.Context(
            bounty_id=b.id,
            contributor=contributor,
            task_spec=b.task_spec or {},
            acceptance=b.acceptance or [],
            manifest=manifest,
            signature=signature,
            blob_path=self.blobs.path,
            owned_blobs=owned,
            rig_owner=rig_owner,
            rig_verified=rig_verified,
            duplicate_files=self._duplicate_files,
            prior_for=self._near_candidates,
        )
        result = verify.run(ctx)
        files = [f for f in (manifest.get("files") or []) if isinstance(f, dict)] if isinstance(manifest, dict) else []
        with self.store.write() as s:
            c = lock(s, Claim, claim_id)
            self._check_claim_usable(c, time.time())
            shas = [f.get("sha256") for f in files if isinstance(f.get("sha256"), str)]
            if result.ok and self._duplicate_files(shas, s):  # a concurrent twin got in first
                result.checks.append(
                    {"name": "duplicate", "ok": False, "detail": "identical file submitted concurrently"}
                )
            state = SubmissionState.pending_review if result.ok else SubmissionState.invalid
            sub = Submission(
                claim_id=c.id,
                bounty_id=c.bounty_id,
                contributor=contributor,
                rig=str(manifest.get("rig", ""))[:42] if isinstance(manifest, dict) else "",
                manifest=manifest,
                manifest_sha256=mf.manifest_sha256(manifest),
                signature=signature[:140],
                state=state.value,
                checks=result.checks,
                fingerprint=result.fingerprint if result.ok else {},
                reason="" if result.ok else f"verification failed: {result.failures()}"[:2000],
                created_at=time.time(),
            )
            s.add(sub)
            s.flush()
            if result.ok:
                advance(c, ClaimState, ClaimState.submitted)
                for f in files:
                    s.add(SubmissionFile(submission_id=sub.id, path=str(f["path"])[:500], sha256=f["sha256"]))
                for band in dupes.bands(result.fingerprint):
                    s.add(FingerprintBand(band=band, submission_id=sub.id))
            else:
                self._reputation(s, contributor).invalid += 1
            log.info("submission %d on bounty %d: %s", sub.id, sub.bounty_id, sub.state)
            return sub

    def _near_candidates(self, fp: dict) -> list[tuple[int, dict]]:
        """Earlier pending or approved submissions sharing a band (verify/dupes.bands) with `fp`: the only ones
        a near-copy can be of. The index keeps the cost per submission independent of how many there are."""
        keys = dupes.bands(fp)
        ids: set[int] = set()
        with self.store.read() as s:
            for i in range(0, len(keys), 500):
                q = select(FingerprintBand.submission_id).where(FingerprintBand.band.in_(keys[i : i + 500]))
                ids.update(s.scalars(q))
            if not ids:
                return []
            rows = s.execute(
                select(Submission.id, Submission.fingerprint)
                .where(Submission.id.in_(sorted(ids)[-MAX_CANDIDATES:]), Submission.state.in_(COUNTED))
                .order_by(Submission.id)
            )
            return [(sid, f) for sid, f in rows if f]

    def _check_claim_usable(self, c: Claim, now: float) -> None:
        if c.state != ClaimState.active.value:
            raise Conflict(f"claim is {c.state}; only an active claim takes a submission")
        if c.expires_at <= now:
            raise Conflict("claim has expired; claim the bounty again")

    def _duplicate_files(self, shas: list[str], s=None) -> list[int]:
        if not shas:
            return []
        q = (
            select(SubmissionFile.submission_id)
            .join(Submission, Submission.id == SubmissionFile.submission_id)
            .where(SubmissionFile.sha256.in_(shas), Submission.state.in_(COUNTED))
        )
        if s is not None:
            return list(s.scalars(q))
        with self.store.read() as s2:
            return list(s2.scalars(q))

    # ------------------------------------------------------------------ reviews
    def approval_request(self, requester: str, submission_id: int) -> dict:
        """The EIP-712 Release approval the requester signs to pay a submission (eth_signTypedData_v4)."""
        chain = self._chain()
        with self.store.read() as s:
            sub = s.get(Submission, submission_id)
            if sub is None:
                raise NotFound(f"no submission {submission_id}")
            b = s.get(Bounty, sub.bounty_id)
            if sub.contributor == requester:
                raise Forbidden("you cannot review your own submission")
            if b.requester != requester:
                raise Forbidden("only the bounty's requester reviews its submissions")
        return chain.release_typed_data(b.id, sub.id, sub.contributor, b.reward_wei)

    def _checked_approval(self, b: Bounty, sub: Submission, signature: str | None) -> str:
        """The requester's Release signature for this payout, verified here as the escrow will on chain."""
        if self.chain is None or self.chain.escrow is None:
            return signature or ""
        if not signature:
            raise MarketError(
                "approving pays: sign the Release approval from GET /submissions/"
                f"{sub.id}/approval with your key and send it as `signature`",
                422,
            )
        typed = self.chain.release_typed_data(b.id, sub.id, sub.contributor, b.reward_wei)
        try:
            signer = recover_release(typed, signature)
        except ValueError as e:
            raise MarketError(str(e), 422) from None
        if signer != b.requester:
            raise MarketError(f"the Release approval must be signed by the requester; it was signed by {signer}", 422)
        return signature

    def add_approval(self, requester: str, submission_id: int, signature: str) -> Payout:
        """Sign an auto-approved submission's payout: the escrow pays nothing without the requester's approval."""
        with self.store.write() as s:
            p = s.scalar(select(Payout).where(Payout.submission_id == submission_id).with_for_update())
            sub = s.get(Submission, submission_id)
            if sub is None:
                raise NotFound(f"no submission {submission_id}")
            b = self._own_bounty(s, requester, sub.bounty_id)
            if p is None:
                raise Conflict(f"submission {submission_id} is {sub.state}: no payout to approve")
            if p.approval:
                raise Conflict("this payout already carries your approval")
            p.approval, p.error = self._checked_approval(b, sub, signature), ""
            return p

    def review(
        self, reviewer: str, submission_id: int, approve: bool, reason: str = "", signature: str | None = None
    ) -> Submission:
        if not approve and not (reason or "").strip():
            raise MarketError("a rejection needs a reason the contributor can act on", 422)
        with self.store.write() as s:
            sub = lock(s, Submission, submission_id)
            if sub is None:
                raise NotFound(f"no submission {submission_id}")
            b = s.get(Bounty, sub.bounty_id)
            if sub.contributor == reviewer:
                raise Forbidden("you cannot review your own submission")
            if b.requester != reviewer:
                raise Forbidden("only the bounty's requester reviews its submissions")
            if approve:
                approval = self._checked_approval(b, sub, signature) if sub.state == "pending_review" else ""
                self._approve(s, sub, b, reviewer, approval)
            else:
                advance(sub, SubmissionState, SubmissionState.rejected)
                sub.reason, sub.reviewed_by, sub.reviewed_at = reason.strip()[:2000], reviewer, time.time()
                advance(s.get(Claim, sub.claim_id), ClaimState, ClaimState.rejected)
                self._reputation(s, sub.contributor).rejected += 1
            return sub

    def _approve(self, s, sub: Submission, b: Bounty, reviewer: str, approval: str = "") -> None:
        advance(sub, SubmissionState, SubmissionState.approved)
        sub.reviewed_by, sub.reviewed_at = reviewer, time.time()
        advance(s.get(Claim, sub.claim_id), ClaimState, ClaimState.approved)
        # the outbox row: committed with the approval, paid by the relay once it carries the requester's
        # signed Release approval (an auto-approval waits for it: no server key can pay on its own)
        s.add(
            Payout(
                payout_id=payout_id(b.requester, b.id, sub.id),
                bounty_id=b.id,
                submission_id=sub.id,
                payee=sub.contributor,
                amount_wei=b.reward_wei,
                state=PayoutState.pending.value,
                approval=approval,
                error="" if approval else "awaiting the requester's signed approval",
            )
        )
        rep = self._reputation(s, sub.contributor)
        rep.approved += 1
        rep.earned_wei = (rep.earned_wei or 0) + b.reward_wei
        approved = s.scalar(
            select(func.count())
            .select_from(Submission)
            .where(Submission.bounty_id == b.id, Submission.state == SubmissionState.approved.value)
        )
        if approved >= b.slots and b.state == BountyState.open.value:
            advance(b, BountyState, BountyState.closed)

    def _reputation(self, s, address: str) -> Reputation:
        rep = s.get(Reputation, address)
        if rep is None:
            rep = Reputation(address=address, approved=0, rejected=0, invalid=0, earned_wei=0)
            s.add(rep)
        return rep

    def sweep(self, now: float | None = None) -> dict:
        """Timers: expire claims, auto-approve submissions past their delay, close bounties past their
        deadline. Run by the server's background loop; safe to call from anywhere."""
        now = time.time() if now is None else now
        counts = {"expired": 0, "auto_approved": 0, "closed": 0}
        with self.store.write() as s:
            counts["expired"] = self._expire_claims(s, now)
            due = s.execute(
                select(Submission, Bounty)
                .join(Bounty, Bounty.id == Submission.bounty_id)
                .where(Submission.state == SubmissionState.pending_review.value)
            ).all()
            for sub, b in due:
                # only what passed every automatic check (the twin replay included) is approved unreviewed;
                # the rest waits for its reviewer (and blocks the refund until reviewed)
                if sub.created_at + b.auto_approve_s <= now and verify.complete(sub.checks):
                    self._approve(s, sub, b, "auto")
                    counts["auto_approved"] += 1
            for b in s.scalars(select(Bounty).where(Bounty.state == BountyState.open.value, Bounty.deadline <= now)):
                advance(b, BountyState, BountyState.closed)
                counts["closed"] += 1
        return counts

    # ------------------------------------------------------------------ money out
    def withdraw(self, address: str) -> int:
        """Push the caller's credited escrow balance to them (the operator pays the gas)."""
        chain = self._chain()
        amount = chain.pending_of(address)
        if amount == 0:
            raise Conflict("nothing to withdraw: no released payouts are credited to you")
        rcpt = chain.operator_call(chain.escrow.functions.withdraw_for(address))
        if rcpt.status != 1:
            raise Conflict("the escrow refused the withdrawal")
        return amount

    def bounties_on_other_escrows(self) -> list[int]:
        """Funded, unsettled bounties whose escrow is not this server's (e.g. after restarting an
        embedded chain): the reconciler and the operator need to know."""
        if self.chain is None or self.chain.escrow is None:
            return []
        with self.store.read() as s:
            return list(
                s.scalars(
                    select(Bounty.id).where(
                        Bounty.state.in_(("open", "closed")), Bounty.escrow_address != self.chain.escrow.address
                    )
                )
            )

    # ------------------------------------------------------------------ helpers
    def _own_bounty(self, s, requester: str, bounty_id: int) -> Bounty:
        b = s.get(Bounty, bounty_id)
        if b is None:
            raise NotFound(f"no bounty {bounty_id}")
        if b.requester != requester:
            raise Forbidden("only the bounty's requester may do this")
        return b

    def _chain(self) -> Chain:
        if self.chain is None or self.chain.escrow is None:
            raise MarketError("this server has no chain configured", 503)
        return self.chain


__all__ = ["BountyTerms", "Conflict", "Forbidden", "Market", "MarketError", "NotFound", "TooMany", "TransitionError"]
