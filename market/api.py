"""The market's HTTP API (FastAPI; the OpenAPI document is at /openapi.json, docs at /docs).

Sign in with Ethereum first (`POST /auth/nonce`, sign the EIP-4361 message, `POST /auth/login`), then
send the session token as `Authorization: Bearer <token>` (or the `loopylab_session` cookie the login
sets for the web pages). Every error is a 4xx JSON `{"detail": "..."}` that says what went wrong.
"""

import contextlib
import logging
import math
import threading
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from loopylab.market import migrate
from loopylab.market.auth import Auth, AuthError
from loopylab.market.chain import Chain
from loopylab.market.config import MarketConfig
from loopylab.market.db import Store
from loopylab.market.relay import Relay, reconcile
from loopylab.market.service import BountyTerms, Market, MarketError, checksum
from loopylab.market.states import TransitionError
from loopylab.market.storage import TooLarge

log = logging.getLogger(__name__)
SESSION_COOKIE = "loopylab_session"
Id = Annotated[int, Path(ge=1, le=2**53, description="row id")]


# ---------------------------------------------------------------------- request bodies

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    message: str = Field(max_length=8192, description="the EIP-4361 message text that was signed")
    signature: str = Field(max_length=200, description="0x-prefixed 65-byte EIP-191 signature")


class BountyIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=20_000)
    task_spec: dict[str, Any] = Field(default_factory=dict, description=
                                      "what to record: {topics: [...], notebook: bool, protocol: str, schema: {...}}")
    acceptance: list[dict[str, Any]] = Field(default_factory=list, max_length=50, description=
                                             "plausibility checks: {check: range|monotonic|rate|notebook_range|min_messages, ...}")
    slots: int = Field(ge=1, le=10_000, description="number of submissions wanted")
    reward_wei: str = Field(pattern=r"^[1-9][0-9]{0,40}$", description="reward per accepted submission, in wei")
    deadline: float = Field(allow_inf_nan=False, description="unix time after which no claims are taken")
    auto_approve_s: float = Field(3 * 86400, ge=0, le=30 * 86400, allow_inf_nan=False)
    claim_ttl_s: float = Field(3600, ge=1, le=30 * 86400, allow_inf_nan=False)


class BountyPatch(Strict):
    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    task_spec: dict[str, Any] | None = None
    acceptance: list[dict[str, Any]] | None = Field(None, max_length=50)
    slots: int | None = Field(None, ge=1, le=10_000)
    reward_wei: str | None = Field(None, pattern=r"^[1-9][0-9]{0,40}$")
    deadline: float | None = Field(None, allow_inf_nan=False)
    auto_approve_s: float | None = Field(None, ge=0, le=30 * 86400, allow_inf_nan=False)
    claim_ttl_s: float | None = Field(None, ge=1, le=30 * 86400, allow_inf_nan=False)


class FundIn(Strict):
    raw_tx: str | None = Field(None, max_length=20_000, pattern=r"^(0x)?[0-9a-fA-F]*$",
                               description="the requester's signed escrow.fund transaction; omit if already sent")


class RigIn(Strict):
    address: str = Field(max_length=42)
    signature: str = Field(max_length=200, description="rig key's EIP-191 signature of "
                                                       "'loopylab rig <rig> belongs to <your address>'")
    label: str = Field("", max_length=200)


class SubmissionIn(Strict):
    manifest: dict[str, Any] = Field(description="{version, bounty_id, rig, created_at, files: [{path, sha256, size}]}")
    signature: str = Field(max_length=200, description="rig key's EIP-191 signature of the canonical manifest JSON")


class ReviewIn(Strict):
    approve: bool
    reason: str = Field("", max_length=2000, description="required when rejecting")


# ---------------------------------------------------------------------- the app

class Background:
    """The server's timer thread: sweep (claim expiry, auto-approve, deadlines) and the payout relay."""

    def __init__(self, market: Market, relay: Relay | None, interval: float):
        self.market, self.relay, self.interval = market, relay, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="market-background", daemon=True)

    def _loop(self):
        while not self.stop.is_set():
            try:
                self.market.sweep()
                if self.relay is not None:
                    self.relay.run_once()
            except Exception:
                log.exception("background pass failed; retrying")
            self.stop.wait(self.interval)


def build(config: MarketConfig, chain: Chain | None = None, store: Store | None = None) -> tuple[Market, Relay | None]:
    store = store or Store(config.database_url)
    migrate.upgrade(store)
    if chain is None:
        chain = Chain.from_config(config)
    market = Market(config, store, chain)
    relay = Relay(store, chain, confirmations=config.confirmations) if chain is not None else None
    return market, relay


def create_app(config: MarketConfig | None = None, market: Market | None = None,
               relay: Relay | None = None) -> FastAPI:
    config = config or (market.config if market else MarketConfig.load())
    if market is None:
        market, relay = build(config)
    chain = market.chain
    auth = Auth(market.store, config.domain, chain.chain_id if chain else None, config.nonce_ttl_s,
                config.session_ttl_s, config.clock_skew_s)
    background = Background(market, relay, config.background_interval_s)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if config.run_background:
            background.thread.start()
        yield
        background.stop.set()

    app = FastAPI(title="loopylab data market",
                  description="Data-collection bounties: post with escrowed rewards, claim a slot, upload a "
                              "recording, pass verification and review, get paid exactly once on chain.",
                  version="1", lifespan=lifespan)
    app.state.market, app.state.auth, app.state.relay, app.state.background = market, auth, relay, background

    @app.exception_handler(MarketError)
    async def _market_error(request: Request, exc: MarketError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(TransitionError)
    async def _transition_error(request: Request, exc: TransitionError):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError):
        return JSONResponse({"detail": f"sign-in refused: {exc}"}, status_code=401)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}",
                             "errors": [{"loc": list(map(str, e.get("loc", ()))), "msg": e.get("msg", "")}
                                        for e in exc.errors()[:10]]}, status_code=422)

    def session_token(request: Request, authorization: str | None) -> str | None:
        if authorization and authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        return request.cookies.get(SESSION_COOKIE)

    def user(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
        address = auth.address_of(session_token(request, authorization))
        if address is None:
            raise MarketError("sign in first: POST /auth/nonce, sign the EIP-4361 message, POST /auth/login", 401)
        return address

    def maybe_user(request: Request, authorization: Annotated[str | None, Header()] = None) -> str | None:
        return auth.address_of(session_token(request, authorization))

    app.state.maybe_user = maybe_user
    User = Annotated[str, Depends(user)]

    # ------------------------------------------------------------------ auth
    @app.post("/auth/nonce", tags=["auth"], summary="A fresh single-use sign-in nonce")
    def nonce():
        n, expires = auth.new_nonce()
        return {"nonce": n, "expires_at": expires, "domain": config.domain, "uri": config.base_url,
                "chain_id": chain.chain_id if chain else 1}

    @app.post("/auth/login", tags=["auth"], summary="Exchange a signed EIP-4361 message for a session")
    def login(body: LoginIn):
        token, address, expires = auth.login(body.message, body.signature)
        resp = JSONResponse({"token": token, "address": address, "expires_at": expires})
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", max_age=int(config.session_ttl_s))
        return resp

    @app.post("/auth/logout", tags=["auth"])
    def logout(request: Request, authorization: Annotated[str | None, Header()] = None):
        token = session_token(request, authorization)
        if token:
            auth.logout(token)
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    @app.get("/auth/me", tags=["auth"])
    def me(address: User):
        return {"address": address}

    # ------------------------------------------------------------------ chain
    @app.get("/chain", tags=["chain"], summary="Which chain and escrow this market pays on")
    def chain_info():
        if chain is None or chain.escrow is None:
            raise MarketError("this server has no chain configured", 404)
        return {"chain_id": chain.chain_id, "escrow_address": chain.escrow.address, "embedded": chain.embedded,
                "operator": chain.operator.address, "confirmations": config.confirmations}

    @app.post("/chain/faucet", tags=["chain"], summary="Embedded chain only: 100 test ETH to the caller")
    def faucet(address: User):
        if chain is None or not chain.embedded:
            raise MarketError("the faucet exists only on the embedded development chain", 404)
        chain.faucet(address, 100 * 10**18)
        return {"address": address, "value_wei": str(100 * 10**18)}

    @app.get("/chain/reconcile", tags=["chain"], summary="Compare DB payouts with the escrow's events and balance")
    def chain_reconcile():
        if chain is None or chain.escrow is None:
            raise MarketError("this server has no chain configured", 404)
        with chain.lock:
            problems = reconcile(market.store, chain)
        return {"ok": not problems, "mismatches": problems}

    # ------------------------------------------------------------------ bounties
    @app.post("/bounties", status_code=201, tags=["bounties"], summary="Post a bounty (draft until funded)")
    def post_bounty(body: BountyIn, address: User):
        b = market.post_bounty(address, BountyTerms(**{**body.model_dump(), "reward_wei": int(body.reward_wei)}))
        return market.get_bounty(b.id)

    @app.get("/bounties", tags=["bounties"])
    def list_bounties(state: Annotated[str | None, Query(pattern="^(draft|open|closed|refunded|cancelled)$")] = None,
                      limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Annotated[int, Query(ge=0, le=10**6)] = 0):
        return market.list_bounties(state, limit, offset)

    @app.get("/bounties/{bounty_id}", tags=["bounties"])
    def get_bounty(bounty_id: Id):
        return market.get_bounty(bounty_id)

    @app.patch("/bounties/{bounty_id}", tags=["bounties"], summary="Edit a draft bounty (terms freeze at funding)")
    def patch_bounty(bounty_id: Id, body: BountyPatch, address: User):
        changes = body.model_dump(exclude_none=True)
        if "reward_wei" in changes:
            changes["reward_wei"] = int(changes["reward_wei"])
        market.update_bounty(address, bounty_id, changes)
        return market.get_bounty(bounty_id)

    @app.delete("/bounties/{bounty_id}", tags=["bounties"], summary="Cancel a draft bounty")
    def cancel_bounty(bounty_id: Id, address: User):
        market.cancel_bounty(address, bounty_id)
        return market.get_bounty(bounty_id)

    @app.get("/bounties/{bounty_id}/funding", tags=["bounties"], summary="The escrow transaction to sign")
    def funding(bounty_id: Id, address: User):
        return market.funding_request(address, bounty_id)

    @app.post("/bounties/{bounty_id}/fund", tags=["bounties"], summary="Broadcast the funding tx; open the bounty")
    def fund(bounty_id: Id, body: FundIn, address: User):
        market.fund(address, bounty_id, body.raw_tx)
        return market.get_bounty(bounty_id)

    @app.post("/bounties/{bounty_id}/refund", tags=["bounties"], summary="Return the unspent escrow after settlement")
    def refund(bounty_id: Id, address: User):
        market.refund(address, bounty_id)
        return market.get_bounty(bounty_id)

    @app.post("/bounties/{bounty_id}/claims", status_code=201, tags=["claims"], summary="Reserve a slot")
    def claim(bounty_id: Id, address: User):
        return market.get_claim(address, market.claim(address, bounty_id).id)

    @app.get("/bounties/{bounty_id}/submissions", tags=["submissions"],
             summary="The requester sees all submissions, a contributor only their own")
    def bounty_submissions(bounty_id: Id, address: User):
        return market.list_submissions(address, bounty_id)

    # ------------------------------------------------------------------ claims, rigs, uploads, submissions
    @app.get("/claims", tags=["claims"])
    def my_claims(address: User):
        return market.my_claims(address)

    @app.get("/claims/{claim_id}", tags=["claims"])
    def get_claim(claim_id: Id, address: User):
        return market.get_claim(address, claim_id)

    @app.delete("/claims/{claim_id}", tags=["claims"], summary="Give the slot back")
    def release_claim(claim_id: Id, address: User):
        market.release_claim(address, claim_id)
        return market.get_claim(address, claim_id)

    @app.post("/rigs", status_code=201, tags=["rigs"], summary="Register a rig's signing key to your account")
    def register_rig(body: RigIn, address: User):
        r = market.register_rig(address, body.address, body.signature, body.label)
        return {"address": r.address, "owner": r.owner, "label": r.label}

    @app.put("/blobs", status_code=201, tags=["uploads"],
             summary="Upload one file (raw body, streamed); stored under its sha256",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def upload(request: Request, address: User):
        limit = config.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise MarketError(f"upload larger than the limit of {limit} bytes", 413)
        try:
            sha, size = await market.blobs.put_stream(request.stream(), limit)
        except TooLarge as e:
            raise MarketError(str(e), 413) from None
        await run_in_threadpool(market.record_upload, address, sha, size)
        return {"sha256": sha, "size": size}

    @app.get("/blobs/{sha256}", tags=["uploads"], summary="Download a file you uploaded or were submitted",
             response_class=FileResponse)
    def download(sha256: Annotated[str, Path(pattern="^[0-9a-f]{64}$")], address: User):
        return FileResponse(market.blob_for(address, sha256), media_type="application/octet-stream")

    @app.post("/claims/{claim_id}/submission", status_code=201, tags=["submissions"],
              summary="Submit the uploaded files of a claim; runs verification")
    def submit(claim_id: Id, body: SubmissionIn, address: User):
        sub = market.submit(address, claim_id, body.manifest, body.signature)
        return market.get_submission(address, sub.id)

    @app.get("/submissions/{submission_id}", tags=["submissions"])
    def get_submission(submission_id: Id, address: User):
        return market.get_submission(address, submission_id)

    @app.post("/submissions/{submission_id}/review", tags=["submissions"],
              summary="Approve, or reject with a reason (bounty requester only)")
    def review(submission_id: Id, body: ReviewIn, address: User):
        market.review(address, submission_id, body.approve, body.reason)
        return market.get_submission(address, submission_id)

    # ------------------------------------------------------------------ money and standings
    @app.post("/withdraw", tags=["payouts"], summary="Send your credited escrow balance to your address")
    def withdraw(address: User):
        return {"address": address, "amount_wei": str(market.withdraw(address))}

    @app.get("/me/payouts", tags=["payouts"])
    def my_payouts(address: User):
        return market.my_payouts(address)

    @app.get("/leaderboard", tags=["payouts"])
    def leaderboard(limit: Annotated[int, Query(ge=1, le=500)] = 20):
        return market.leaderboard(limit)

    @app.get("/health", tags=["meta"])
    def health():
        return {"ok": True, "time": time.time()}

    from loopylab.market import web
    web.register(app, market)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for multi-worker serving: settings from LOOPYLAB_MARKET_* variables."""
    return create_app(MarketConfig.load())
