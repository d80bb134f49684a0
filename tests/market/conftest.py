"""Fixtures: a real embedded EVM (one per session, a fresh escrow per test), real SQLite files and a
fresh schema in the real PostgreSQL at 127.0.0.1:5432 (skipped, with the reason, where it is absent)."""

from __future__ import annotations

import uuid

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from loopylab.market import migrate
from loopylab.market.api import create_app
from loopylab.market.chain import Chain
from loopylab.market.client import MarketClient
from loopylab.market.config import MarketConfig
from loopylab.market.db import Store
from loopylab.market.relay import Relay
from loopylab.market.service import Market
from tests.waiting import wait_until

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", connect_timeout=2):
            return None
    except Exception as e:  # not installed, not running, auth refused ...
        return f"PostgreSQL at 127.0.0.1:5432 (db test, user postgres) not reachable: {e}"


PG_SKIP = postgres_reason()


@pytest.fixture(scope="session")
def base_chain():
    return Chain.embedded_chain(deploy=False)


@pytest.fixture
def chain(base_chain):
    """A fresh escrow on the session's chain (bounty ids restart at 1 in every test's DB)."""
    c = Chain(base_chain.w3, base_chain.operator, embedded=True)
    c.lock = base_chain.lock
    c.deploy_escrow()
    return c


def make_store(kind: str, tmp_path):
    if kind == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'market.db'}"), lambda: None
    if PG_SKIP:
        pytest.skip(PG_SKIP)
    import psycopg

    schema = f"market_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    store = Store(PG_URL, connect_args={"options": f"-csearch_path={schema}"})

    def drop():
        store.dispose()
        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")

    return store, drop


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request, tmp_path):
    store, drop = make_store(request.param, tmp_path)
    migrate.upgrade(store)
    yield store
    drop()


@pytest.fixture
def sqlite_store(tmp_path):
    store, _ = make_store("sqlite", tmp_path)
    migrate.upgrade(store)
    yield store
    store.dispose()


def make_market(store, chain, tmp_path, **cfg) -> Market:
    config = MarketConfig(home=tmp_path, domain="testserver", base_url="http://testserver", run_background=False, **cfg)
    return Market(config, store, chain)


class World:
    """A running market (TestClient over the real app) plus its service, relay and chain."""

    def __init__(self, market: Market, chain: Chain):
        self.market, self.chain = market, chain
        self.relay = Relay(market.store, chain)
        self.app = create_app(market.config, market, self.relay)
        self.http = TestClient(self.app)

    def user(self, rig=True, eth: int = 0) -> MarketClient:
        c = MarketClient(self.http, Account.create(), Account.create() if rig else None)
        c.login()
        if eth:
            self.chain.faucet(c.address, eth * 10**18)
        return c

    def funded_bounty(self, requester: MarketClient, **terms) -> dict:
        from loopylab.market.sample import standard_bounty

        b = requester.post_bounty(**standard_bounty(**terms))
        return requester.fund(b["id"])


@pytest.fixture
def world(sqlite_store, chain, tmp_path):
    return World(make_market(sqlite_store, chain, tmp_path), chain)


@pytest.fixture
def served(world):
    """The world's app on a real uvicorn server (thread), reachable as 127.0.0.1:PORT."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    world.app.state.auth.domain = f"testserver,127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(world.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20)  # a server that died ends the wait early
    assert server.started, "uvicorn did not start"
    yield world, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def any_world(any_store, chain, tmp_path):
    return World(make_market(any_store, chain, tmp_path), chain)
