"""Reliability: 100 contributors racing for 10 slots (SQLite and PostgreSQL), and a payout relay
killed between signing and receipt, restarted: every approved submission paid exactly once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account
from sqlalchemy import update

from loopylab.market.chain import Chain
from loopylab.market.db import Payout, Store
from loopylab.market.relay import Relay, RelayCrash, double_pays, reconcile
from loopylab.market.sample import write_recording
from loopylab.market.service import Conflict
from tests.market.conftest import make_market
from tests.market.helpers import approve, approved_bounty, open_bounty, submit_direct

REWARD = 10**15


def test_100_contributors_race_for_10_slots(any_store, chain, tmp_path):
    market = make_market(any_store, chain, tmp_path)
    requester, b = open_bounty(market, chain, slots=10, reward=REWARD)
    people = [Account.create() for _ in range(100)]
    start = threading.Barrier(50)

    def race(acct):
        start.wait()
        try:
            return acct, market.claim(acct.address, b.id)
        except Conflict as e:
            assert "slots are taken" in e.message
            return acct, None

    with ThreadPoolExecutor(50) as ex:
        results = list(ex.map(race, people))
    winners = [(a, c) for a, c in results if c is not None]
    assert len(winners) == 10
    assert market.get_bounty(b.id)["slots_free"] == 0
    for i, (acct, c) in enumerate(winners):
        sub = submit_direct(
            market, acct, c.id, b.id, write_recording(tmp_path / f"r{i}", seed=100 + i, seconds=0.3, notebook=False)
        )
        assert sub.state == "pending_review", sub.checks
        approve(market, requester, sub.id)
    relay = Relay(any_store, chain)
    relay.run_once()
    assert relay.stats["final"] == 10
    assert market.get_bounty(b.id)["state"] == "closed"
    onchain = chain.bounty_onchain(b.requester, b.id)
    assert onchain["released"] == onchain["funded"] == 10 * REWARD
    assert chain.balance() == 10 * REWARD  # credited, not yet withdrawn
    assert all(chain.pending_of(a.address) == REWARD for a, _ in winners)
    assert double_pays(chain) == 0 and reconcile(any_store, chain) == []


def _approved(market, chain, tmp_path, n, tag):
    return approved_bounty(
        market,
        chain,
        n,
        REWARD,
        lambda i: write_recording(tmp_path / f"{tag}{i}", seed=ord(tag) * 10 + i, seconds=0.3, notebook=False),
    )


def test_relay_killed_between_signing_and_receipt_pays_exactly_once(sqlite_store, chain, tmp_path):
    market = make_market(sqlite_store, chain, tmp_path)
    b, payees = _approved(market, chain, tmp_path, 4, "a")
    # 1. dies right after storing the signed transactions: nothing reached the chain
    with pytest.raises(RelayCrash):
        Relay(sqlite_store, chain, crash_at="signed").run_once()
    with sqlite_store.read() as s:
        rows = s.query(Payout).all()
    assert {p.state for p in rows} == {"signed"} and all(p.raw_tx and p.tx_hash for p in rows)
    assert chain.bounty_onchain(b.requester, b.id)["released"] == 0
    # restart (a new process would open the DB afresh): re-sends the stored transactions
    restarted = Relay(Store(sqlite_store.url), chain)
    restarted.run_once()
    assert restarted.stats["broadcast"] == 4 and restarted.stats["final"] == 4
    assert [chain.pending_of(p.address) for p in payees] == [REWARD] * 4

    # 2. dies after the first broadcast, before reading its receipt
    b2, payees2 = _approved(market, chain, tmp_path, 3, "b")
    with pytest.raises(RelayCrash):
        Relay(sqlite_store, chain, crash_at="broadcast").run_once()
    assert chain.bounty_onchain(b2.requester, b2.id)["released"] == REWARD  # one tx made it
    again = Relay(Store(sqlite_store.url), chain)
    again.run_once()
    assert again.stats["final"] == 3 and again.stats["broadcast"] == 2  # the mined one was only read back
    assert [chain.pending_of(p.address) for p in payees2] == [REWARD] * 3

    # 3. a lost DB update: a paid payout is pending again; the escrow refuses to pay it twice
    with sqlite_store.write() as s:
        s.execute(update(Payout).where(Payout.submission_id == 1).values(state="pending", tx_hash="", raw_tx=""))
    healer = Relay(sqlite_store, chain)
    healer.run_once()
    assert healer.stats["settled_from_event"] == 1 and healer.stats["final"] == 1
    assert chain.pending_of(payees[0].address) == REWARD
    assert double_pays(chain) == 0
    assert reconcile(sqlite_store, chain) == []


def test_reconciler_reports_mismatches(sqlite_store, chain, tmp_path):
    market = make_market(sqlite_store, chain, tmp_path)
    b, payees = _approved(market, chain, tmp_path, 2, "c")
    Relay(sqlite_store, chain).run_once()
    assert reconcile(sqlite_store, chain) == []
    with sqlite_store.write() as s:
        s.execute(update(Payout).where(Payout.submission_id == 1).values(amount_wei=str(REWARD + 1)))
        s.execute(update(Payout).where(Payout.submission_id == 2).values(state="signed"))
    problems = reconcile(sqlite_store, chain)
    assert any("differs from chain" in p for p in problems)
    assert any("paid on chain but signed in the DB" in p for p in problems)


def test_confirmations_hold_payouts_until_deep_enough(sqlite_store, chain, tmp_path):
    market = make_market(sqlite_store, chain, tmp_path)
    b, payees = _approved(market, chain, tmp_path, 1, "d")
    relay = Relay(sqlite_store, chain, confirmations=3)
    relay.run_once()
    with sqlite_store.read() as s:
        p = s.query(Payout).one()
    assert p.state == "mined" and p.block_number >= 0
    chain.w3.provider.ethereum_tester.mine_blocks(2)
    relay.run_once()
    with sqlite_store.read() as s:
        assert s.query(Payout).one().state == "mined"  # 2 blocks on top: not yet
    chain.w3.provider.ethereum_tester.mine_blocks(1)
    relay.run_once()
    with sqlite_store.read() as s:
        assert s.query(Payout).one().state == "final"


def test_relay_key_from_env_or_keystore(tmp_path, monkeypatch):
    import json

    from loopylab.market.chain import Chain, load_key
    from loopylab.market.config import MarketConfig

    acct = Account.create()
    monkeypatch.setenv("MY_RELAY_KEY", acct.key.hex())
    assert load_key("MY_RELAY_KEY").address == acct.address
    ks = tmp_path / "relay.json"
    ks.write_text(json.dumps(Account.encrypt(acct.key, "hunter2", iterations=2)))
    with pytest.raises(RuntimeError, match="needs its password in \\$RELAY_PW"):
        load_key(keystore=str(ks), password_env="RELAY_PW")
    monkeypatch.setenv("RELAY_PW", "hunter2")
    assert load_key(keystore=str(ks), password_env="RELAY_PW").address == acct.address
    monkeypatch.delenv("LOOPYLAB_CHAIN_KEY", raising=False)
    with pytest.raises(RuntimeError, match="relay key in \\$LOOPYLAB_CHAIN_KEY"):
        Chain.from_config(MarketConfig(home=tmp_path, chain_url="http://127.0.0.1:9"))


def test_reorg_sends_a_mined_payout_again(sqlite_store, tmp_path):
    from loopylab.market.chain import Chain

    chain = Chain.embedded_chain()  # its own chain: this test rewinds it
    market = make_market(sqlite_store, chain, tmp_path)
    b, payees = _approved(market, chain, tmp_path, 1, "e")
    tester = chain.w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    relay = Relay(sqlite_store, chain, confirmations=5)
    relay.run_once()
    with sqlite_store.read() as s:
        first = s.query(Payout).one()
    assert first.state == "mined" and chain.pending_of(payees[0].address) == REWARD
    tester.revert_to_snapshot(snapshot)  # the block holding the release is gone ...
    tester.mine_blocks(3)  # ... and another chain grew past its height
    assert chain.pending_of(payees[0].address) == 0
    relay.run_once()  # sees the changed block hash, re-sends the stored tx
    assert relay.stats["reorged"] == 1
    tester.mine_blocks(5)
    relay.run_once()
    with sqlite_store.read() as s:
        again = s.query(Payout).one()
    assert again.state == "final" and again.block_hash != first.block_hash
    assert chain.pending_of(payees[0].address) == REWARD and double_pays(chain) == 0
    assert reconcile(sqlite_store, chain) == []


def test_relay_work_per_payout_does_not_grow_with_the_chain(sqlite_store, tmp_path):
    """Issue 26: the relay slowed as the chain grew (73 payouts/s at block 64, 5.6/s at block 312): each unsent
    payout asked for a receipt that could not exist yet, and the node scanned every block to say so; the whole
    pass held the chain lock. Now no request of a pass misses, none asks for logs, and the chain lock is held
    only for the request in flight (count 1), never across the pass."""
    import re as _re

    chain = Chain.embedded_chain()
    market = make_market(sqlite_store, chain, tmp_path)
    _approved(market, chain, tmp_path, 4, "s")
    chain.w3.provider.ethereum_tester.mine_blocks(300)
    provider, calls = chain.w3.provider, []
    inner = provider.make_request

    def recorded(method, params):
        depth = int(_re.search(r"count=(\d+)", repr(chain.lock)).group(1))
        try:
            r = inner(method, params)
        except Exception:
            calls.append((method, True, depth))
            raise
        calls.append((method, "error" in r or r.get("result") is None, depth))
        return r

    provider.make_request = recorded
    provider._request_func_cache = (None, None)  # web3 caches the bound method: take the recording one
    relay = Relay(sqlite_store, chain)
    relay.run_once()
    assert relay.stats["final"] == 4
    assert [m for m, missed, _ in calls if missed] == []
    assert "eth_getLogs" not in {m for m, _, _ in calls}
    assert [(m, d) for m, _, d in calls if d] == []  # no lock held when a request starts: each takes its own
    with sqlite_store.read() as s:
        assert all(p.signed_block >= 300 for p in s.query(Payout).all())


def test_event_searches_start_at_the_escrows_deployment_block(sqlite_store, chain, tmp_path):
    """The suite's escrows share one chain: reconcile and double_pays asked for logs from block 0, so each search
    read every earlier test's blocks (163 s for one test late in a loaded run). They now start at the block that
    deployed the escrow, which no event of it can predate; an escrow deployed elsewhere is searched from 0."""
    market = make_market(sqlite_store, chain, tmp_path)
    _approved(market, chain, tmp_path, 1, "g")
    Relay(sqlite_store, chain).run_once()
    deployed = chain.w3.eth.get_transaction_receipt(chain.w3.eth.get_block(chain.deploy_block).transactions[0])
    assert chain.deploy_block > 0 and deployed.contractAddress == chain.escrow.address
    provider, starts = chain.w3.provider, []
    inner = provider.make_request

    def recorded(method, params):
        if method == "eth_getLogs":
            starts.append(params[0]["from_block"])  # the tester provider takes it as a number
        return inner(method, params)

    provider.make_request = recorded
    provider._request_func_cache = (None, None)  # web3 caches the bound method: take the recording one
    try:
        assert reconcile(sqlite_store, chain) == [] and double_pays(chain) == 0
        assert len(chain.events("Released")) == 1
        assert starts and set(starts) == {chain.deploy_block}, starts
        # an escrow deployed by someone else is searched from 0 (not run here: that scan is the slow one)
        assert Chain(chain.w3, chain.operator, chain.escrow.address).deploy_block == 0
    finally:
        provider.make_request = inner
        provider._request_func_cache = (None, None)
