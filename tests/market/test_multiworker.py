"""A multi-worker deployment, for real: two uvicorn API workers and one `loopylab market relay` process on one
database (SQLite file; PostgreSQL where reachable) and one shared chain and escrow (market/devchain.py: the
embedded EVM over JSON-RPC). A bounty funded through one worker is paid by the relay process, exactly once, and
every worker's cached listing shows the payout the relay wrote."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from loopylab.market import migrate
from loopylab.market.client import MarketClient
from loopylab.market.db import Store
from loopylab.market.devchain import DevChain
from loopylab.market.relay import double_pays, reconcile
from loopylab.market.sample import standard_bounty, write_recording
from tests.market.conftest import PG_SKIP, PG_URL
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'market.db'}"
        return
    if PG_SKIP:
        pytest.skip(PG_SKIP)
    import psycopg

    schema = f"market_mw_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as c:
        c.execute(f"DROP SCHEMA {schema} CASCADE")


def test_two_workers_and_a_relay_process_share_one_db_and_one_escrow(db_url, tmp_path):
    devchain = DevChain().start()
    store = Store(db_url)
    migrate.upgrade(store)
    port = _port()
    env = {
        **os.environ,
        **devchain.env(),
        "LOOPYLAB_MARKET_DB_URL": db_url,
        "LOOPYLAB_MARKET_HOME": str(tmp_path),
        "LOOPYLAB_MARKET_DOMAIN": f"127.0.0.1:{port}",
        "LOOPYLAB_MARKET_BASE_URL": f"http://127.0.0.1:{port}",
        "LOOPYLAB_MARKET_RUN_BACKGROUND": "0",
        "LOOPYLAB_MARKET_BACKGROUND_INTERVAL_S": "0.2",
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "loopylab.market.api:app_from_env", "--factory", "--workers", "2"]
        + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=ROOT,
    )
    relay = subprocess.Popen([sys.executable, "-m", "loopylab.market.cli", "relay"], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    clients = []
    try:
        wait_until(lambda: _up(f"{url}/health") or api.poll() is not None, 120)
        assert api.poll() is None, "the API workers died"
        chain = devchain.chain
        requester = MarketClient(url, Account.create())
        alice = MarketClient(url, Account.create(), Account.create())
        clients += [requester, alice]
        chain.faucet(requester.address, 10**18)
        for c in clients:
            c.login()
        b = requester.fund(requester.post_bounty(**standard_bounty(reward_wei=10**16, slots=2))["id"])
        assert b["state"] == "open" and b["escrow_address"] == devchain.escrow_address
        alice.register_rig()
        sub = alice.submit_folder(alice.claim(b["id"])["id"], write_recording(tmp_path / "rec", seed=61))
        assert sub["state"] == "pending_review", sub["checks"]
        requester.review(sub["id"], True)

        def paid() -> bool:
            assert relay.poll() is None, "the relay process died"
            return [p["state"] for p in alice.payouts()["payouts"]] == ["final"]

        wait_until(paid, 120)
        assert int(alice.payouts()["withdrawable_wei"]) == 10**16
        for _ in range(6):  # whichever worker answers, its cached listing has the relay's payout
            listed = httpx.get(f"{url}/bounties", timeout=120).json()[0]
            assert (listed["paid_wei"], listed["escrow_wei"]) == (str(10**16), str(10**16))
        assert double_pays(chain) == 0 and reconcile(store, chain) == []
    finally:
        for c in clients:
            c.close()
        for proc in (relay, api):
            proc.terminate()
        for proc in (relay, api):  # both stop at once; at load 50+ uvicorn's two workers took over 30 s
            proc.wait(timeout=180)
        store.dispose()
        devchain.stop()
    assert relay.returncode == 0  # SIGTERM ends the relay's loop cleanly
