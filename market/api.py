"""The market's HTTP API (FastAPI; the OpenAPI document is at /openapi.json, docs at /docs).

Sign in with Ethereum first (`POST /auth/nonce`, sign the EIP-4361 message, `POST /auth/login`), then
send the session token as `Authorization: Bearer <token>` (or the `loopylab_session` cookie the login
sets for the web pages). Every error is a 4xx JSON `{"detail": "..."}` that says what went wrong. JSON bodies
are strict (no NaN/Infinity, at most 1 MiB: routes/strict.py).

This module builds the app's state (market, sign-in, relay, background thread) and includes one router per
resource from market/routes/; the routes reach the state through FastAPI dependencies (routes/deps.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from fastapi import FastAPI

from loopylab.market import migrate
from loopylab.market.auth import Auth
from loopylab.market.chain import Chain
from loopylab.market.config import MarketConfig
from loopylab.market.db import Store
from loopylab.market.devchain import TEST_CHAIN_ENV
from loopylab.market.relay import Relay
from loopylab.market.routes import auth, bounties, chain, claims, errors, health, pages, payouts, submissions, uploads
from loopylab.market.routes.csrf import CSRFGuard, origins_of
from loopylab.market.routes.listing import ListingCache
from loopylab.market.routes.strict import StrictJSON
from loopylab.market.service import Market

log = logging.getLogger(__name__)
ROUTERS = (
    auth.router,
    chain.router,
    bounties.router,
    claims.router,
    uploads.router,
    submissions.router,
    payouts.router,
    health.router,
    pages.router,
)


class Background:
    """The server's timer thread: sweep (claim expiry, auto-approve, deadlines) and the payout relay."""

    def __init__(self, market: Market, relay: Relay | None, interval: float):
        self.market, self.relay, self.interval = market, relay, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="market-background", daemon=True)

    def run(self):
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
        if config.chain_url and os.environ.get(TEST_CHAIN_ENV) == "1":
            chain.embedded = True  # the shared test chain of `serve --workers` (devchain.py): its faucet works
    market = Market(config, store, chain)
    relay = Relay(store, chain, confirmations=config.confirmations) if chain is not None else None
    return market, relay


def create_app(config: MarketConfig | None = None, market: Market | None = None, relay: Relay | None = None) -> FastAPI:
    config = config or (market.config if market else MarketConfig.load())
    if market is None:
        market, relay = build(config)
    chain_id = market.chain.chain_id if market.chain else None
    background = Background(market, relay, config.background_interval_s)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if config.run_background:
            background.thread.start()
        yield
        background.stop.set()

    app = FastAPI(
        title="loopylab data market",
        description="Data-collection bounties: post with escrowed rewards, claim a slot, upload a "
        "recording, pass verification and review, get paid exactly once on chain.",
        version="1",
        lifespan=lifespan,
    )
    app.state.config, app.state.market, app.state.relay, app.state.background = config, market, relay, background
    app.state.listing = ListingCache(market)
    app.state.rate_limits = {}  # routes/chain.py's token buckets, per app
    app.state.auth = Auth(
        market.store, config.domain, chain_id, config.nonce_ttl_s, config.session_ttl_s, config.clock_skew_s
    )
    errors.install(app)
    app.add_middleware(StrictJSON)
    app.add_middleware(CSRFGuard, allowed_origins=lambda: origins_of(app.state.auth.domain, config.base_url))
    for router in ROUTERS:
        app.include_router(router, responses=errors.RESPONSES)
    pages.mount_static(app)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for multi-worker serving: settings from LOOPYLAB_MARKET_* variables."""
    return create_app(MarketConfig.load())
