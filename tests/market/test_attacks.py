"""Attacks on the market's money (issue 26), through the real HTTP API, the real escrow on the embedded EVM and
real SQLite: a `/fund` that relays someone else's transaction, a refund racing an approved payout, a server
whose relay key or database is in a thief's hands, and ether forced into the escrow."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from sqlalchemy import update

from loopylab.market.chain import Chain, compile_contract
from loopylab.market.client import MarketHTTPError
from loopylab.market.db import Payout
from loopylab.market.relay import double_pays, reconcile
from loopylab.market.sample import standard_bounty, write_recording
from tests.market.conftest import World, make_market
from tests.market.helpers import write_replayable_recording
from tests.market.test_escrow import HERE, call_from

REWARD = 10**16


def _status(fn, *a, **k):
    with pytest.raises(MarketHTTPError) as e:
        fn(*a, **k)
    return e.value.status, e.value.detail


def _submitted(w: World, requester, tmp_path, seed: int, replayable: bool = False, **terms):
    b = w.funded_bounty(requester, reward_wei=REWARD, **terms)
    alice = w.user()
    alice.register_rig()
    write = write_replayable_recording if replayable else write_recording
    sub = alice.submit_folder(alice.claim(b["id"])["id"], write(tmp_path / f"r{seed}", seed=seed))
    assert sub["state"] == "pending_review", sub["checks"]
    return b, alice, sub


def test_fund_broadcasts_only_the_requesters_funding_of_that_bounty(world):
    """Attack: POST any signed transaction to /fund and the server broadcasts it (a transfer, someone else's
    call, another bounty's funding). Each is refused with 422 before it reaches the chain."""
    w = world
    requester, mallory = w.user(eth=10), w.user(eth=10)
    mine = requester.post_bounty(**standard_bounty(slots=1))
    other = requester.post_bounty(**standard_bounty(slots=1))
    chain = w.chain
    nonce0 = chain.w3.eth.get_transaction_count(requester.address)
    base = {"chainId": chain.chain_id, "gas": 200_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}

    def signed(acct, **tx):
        full = {**base, "nonce": chain.w3.eth.get_transaction_count(acct.address), "value": 0, **tx}
        return "0x" + acct.sign_transaction(full).raw_transaction.hex().removeprefix("0x")

    transfer = signed(requester.account, to=mallory.address, value=10**18)
    other_fund = signed(
        requester.account,
        to=chain.escrow.address,
        value=REWARD,
        data=chain.escrow.encode_abi("fund", args=[other["id"], int(time.time()) + 86400]),
    )
    foreign = signed(
        mallory.account,
        to=chain.escrow.address,
        value=REWARD,
        data=chain.escrow.encode_abi("fund", args=[mine["id"], int(time.time()) + 86400]),
    )
    for raw, why in (
        (transfer, "must call fund"),
        (other_fund, "must call fund"),
        (foreign, "signed by the bounty"),
        ("0x" + "ab" * 40, "not a signed transaction"),
    ):
        status, detail = _status(requester.request, "POST", f"/bounties/{mine['id']}/fund", json={"raw_tx": raw})
        assert status == 422 and why in detail, detail
    assert chain.w3.eth.get_transaction_count(requester.address) == nonce0  # nothing was broadcast
    assert requester.fund(mine["id"])["state"] == "open"


def test_pre_funding_a_victims_bounty_id_does_not_touch_it(world):
    """Attack: the hijacker funds the victim's next (public, sequential) bounty id first, with 1 wei and a
    refund time as late as the escrow allows, naming themselves. The victim's bounty still funds and opens."""
    w = world
    victim, hijacker = w.user(eth=10), w.user(eth=10)
    chain = w.chain
    next_id = 1
    fn = chain.escrow.functions.fund(next_id, chain.w3.eth.get_block("latest").timestamp + 399 * 86400)
    assert call_from(chain, hijacker.account, fn, value=1).status == 1
    b = w.funded_bounty(victim, reward_wei=REWARD, slots=3)
    assert b["id"] == next_id and b["state"] == "open" and int(b["funded_wei"]) == 3 * REWARD
    assert chain.bounty_onchain(victim.address, next_id)["funded"] == 3 * REWARD
    assert reconcile(w.market.store, chain) == []


def test_refund_never_takes_an_approved_payout(sqlite_store, tmp_path):
    """Attack (the refund race): the relay is down past the refund time and the requester asks for the refund
    of money owed to an approved submission. The market refuses until the payout is on chain, retries a
    reverted payout, and the payee holds the signed approval to release it without the market."""
    chain = Chain.embedded_chain()  # its own chain: this test moves block time forward
    w = World(make_market(sqlite_store, chain, tmp_path), chain)
    requester = w.user(eth=10)
    b, alice, sub = _submitted(w, requester, tmp_path, 61, slots=2, deadline=time.time() + 60)
    reviewed = requester.review(sub["id"], True)  # approved; the relay is down
    approval = reviewed["payout"]["approval"]
    assert approval and reviewed["payout"]["state"] == "pending"
    w.market.sweep(now=time.time() + 61)
    chain.time_travel(int(b["refund_after"]) + 10)  # past the escrow's refund time
    status, detail = _status(requester.refund, b["id"])
    assert status == 409 and "1 approved payouts are not yet released on chain" in detail
    # a release that reverted (e.g. sent while a node was failing) is not forgotten: it blocks the refund
    # and the relay retries it
    with sqlite_store.write() as s:
        s.execute(update(Payout).values(state="failed", attempts=1, error="release reverted"))
    assert _status(requester.refund, b["id"])[0] == 409  # failed payouts block the refund too
    w.relay.run_once()  # the relay comes back: retried, paid
    assert w.relay.stats["retried"] == 1 and alice.payouts()["payouts"][0]["state"] == "final"
    assert requester.refund(b["id"])["state"] == "closed"  # announced; the escrow refunds after its notice
    chain.time_travel(chain.bounty_onchain(requester.address, b["id"])["refund_at"] + 1)
    assert requester.refund(b["id"])["state"] == "refunded"
    assert chain.pending_of(alice.address) == REWARD and chain.pending_of(requester.address) == REWARD
    assert reconcile(sqlite_store, chain) == [] and double_pays(chain) == 0


def test_payee_releases_with_the_signed_approval_when_the_relay_is_down(world, tmp_path):
    w = world
    requester = w.user(eth=10)
    b, alice, sub = _submitted(w, requester, tmp_path, 62, slots=1)
    p = requester.review(sub["id"], True)["payout"]
    alice_eth = Account.from_key(alice.account.key)
    w.chain.faucet(alice.address, 10**18)
    fn = w.chain.escrow.functions.release(
        requester.address, b["id"], sub["id"], alice.address, REWARD, bytes.fromhex(p["approval"][2:])
    )
    assert call_from(w.chain, alice_eth, fn).status == 1
    assert w.chain.pending_of(alice.address) == REWARD
    w.relay.run_once()  # the relay's own tx reverts as already released: settled
    assert alice.payouts()["payouts"][0]["state"] == "final" and double_pays(w.chain) == 0


def test_a_stolen_server_cannot_redirect_or_invent_payouts(world, tmp_path):
    """Attack: a thief holding the server (its DB and relay key) rewrites an approved payout's payee and amount
    to their own (signing with the relay key itself is refused too: test_escrow). The escrow checks the
    requester's signature over the exact payee and amount: the release reverts and the money stays."""
    w = world
    requester = w.user(eth=10)
    b, alice, sub = _submitted(w, requester, tmp_path, 63, slots=2)
    requester.review(sub["id"], True)
    thief = w.chain.operator.address
    with w.market.store.write() as s:
        s.execute(update(Payout).values(payee=thief, amount_wei=str(2 * REWARD)))
    w.relay.run_once()
    with w.market.store.read() as s:
        p = s.query(Payout).one()
    assert p.state == "failed" and p.attempts == 1
    assert w.chain.pending_of(thief) == 0
    assert w.chain.bounty_onchain(requester.address, b["id"])["released"] == 0
    assert w.chain.balance() == 2 * REWARD


def test_auto_approved_payout_waits_for_the_requesters_signature(world, tmp_path):
    w = world
    requester = w.user(eth=10)
    b, alice, sub = _submitted(w, requester, tmp_path, 64, replayable=True, slots=1, auto_approve_s=60)
    assert w.market.sweep(now=time.time() + 61)["auto_approved"] == 1
    w.relay.run_once()
    p = alice.request("GET", f"/submissions/{sub['id']}")["payout"]
    assert p["state"] == "pending" and "awaiting the requester's signed approval" in p["error"]
    assert (
        _status(alice.request, "POST", f"/submissions/{sub['id']}/approval", json={"signature": "0x" + "11" * 65})[0]
        == 403
    )
    bad = "0x" + "22" * 65
    assert _status(requester.request, "POST", f"/submissions/{sub['id']}/approval", json={"signature": bad})[0] == 422
    requester.request(
        "POST", f"/submissions/{sub['id']}/approval", json={"signature": requester.sign_approval(sub["id"])}
    )
    w.relay.run_once()
    assert alice.payouts()["payouts"][0]["state"] == "final"
    assert w.chain.pending_of(alice.address) == REWARD


def test_reconcile_tolerates_forced_ether(world, tmp_path):
    """Attack: a self-destructing contract forces ether into the escrow so its balance never matches its books
    (reconcile reported a mismatch forever). Surplus is not debt: reconcile stays clean."""
    w = world
    requester = w.user(eth=10)
    _submitted(w, requester, tmp_path, 65, slots=1)
    assert reconcile(w.market.store, w.chain) == []
    art = compile_contract(HERE / "contracts" / "ForceSend.vy")
    sender = Account.create()
    w.chain.faucet(sender.address, 2 * 10**18)
    C = w.chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    before = w.chain.balance()
    assert call_from(w.chain, sender, C.constructor(w.chain.escrow.address), value=10**18).status == 1
    assert w.chain.balance() == before + 10**18
    assert reconcile(w.market.store, w.chain) == []
