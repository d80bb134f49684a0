"""The Vyper escrow on the embedded EVM: exactly-once release, pull withdrawals, refunds after the
refund time, events, and a hostile re-entrant payee."""

from __future__ import annotations

from pathlib import Path

import pytest
import vyper
from eth_account import Account
from web3 import Web3

from loopylab.market.chain import Chain, compile_contract

ETH = 10**18
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def chain():
    return Chain.embedded_chain()


def call_from(chain: Chain, acct, fn, value: int = 0):
    tx = fn.build_transaction({**chain._base_tx(acct.address, gas=400_000), "value": value})
    return chain.send_signed(acct.sign_transaction(tx).raw_transaction)


def new_account(chain: Chain, eth: int = 100):
    a = Account.create()
    chain.faucet(a.address, eth * ETH)
    return a


def chain_now(chain: Chain) -> int:
    return chain.w3.eth.get_block("latest").timestamp


def funded_bounty(chain: Chain, bounty_id: int, amount: int, refund_in_s: float = 3600):
    requester = new_account(chain)
    rcpt = chain.send_signed(
        chain.fund_tx(requester, bounty_id, requester.address, chain_now(chain) + int(refund_in_s), amount)
    )
    assert rcpt.status == 1
    return requester


def test_artifact_matches_source():
    src = (Path(__import__("market").__file__).parent / "contracts" / "Escrow.vy").read_text()
    fresh = vyper.compile_code(src, output_formats=["abi", "bytecode"])
    art = compile_contract(Path(__import__("market").__file__).parent / "contracts" / "Escrow.vy")
    assert art["bytecode"] == fresh["bytecode"] and art["abi"] == fresh["abi"]
    assert "#pragma evm-version prague" in src  # the fork eth-tester/py-evm runs (PragueVM)


def test_fund_release_withdraw_exactly_once(chain):
    requester = funded_bounty(chain, 1, 3 * ETH)
    payee = new_account(chain, 1)
    before = chain.balance()
    rcpt = chain.operator_call(chain.escrow.functions.release(1, 7, payee.address, ETH))
    assert rcpt.status == 1
    ev = chain.escrow.events.Released().process_receipt(rcpt)[0].args
    assert (ev.bounty_id, ev.submission_id, ev.payee, ev.amount) == (1, 7, payee.address, ETH)
    assert "0x" + ev.payout_id.hex().removeprefix("0x") == chain.payout_id(1, 7)
    # the same (bounty, submission) again: refused, nothing credited twice
    again = chain.operator_call(chain.escrow.functions.release(1, 7, payee.address, ETH))
    assert again.status == 0
    assert chain.pending_of(payee.address) == ETH
    assert chain.bounty_onchain(1)["released"] == ETH
    # pull: the payee withdraws, gas paid by the payee
    bal0 = chain.balance(payee.address)
    w = call_from(chain, payee, chain.escrow.functions.withdraw())
    assert w.status == 1
    gas_cost = w.gasUsed * w.effectiveGasPrice
    assert chain.balance(payee.address) == bal0 + ETH - gas_cost
    assert chain.balance() == before - ETH
    assert chain.pending_of(payee.address) == 0
    assert call_from(chain, payee, chain.escrow.functions.withdraw()).status == 0  # nothing left
    assert requester.address == chain.bounty_onchain(1)["requester"]


def test_only_operator_releases_and_never_beyond_the_balance(chain):
    funded_bounty(chain, 2, ETH)
    stranger = new_account(chain, 1)
    assert call_from(chain, stranger, chain.escrow.functions.release(2, 1, stranger.address, ETH)).status == 0
    assert chain.operator_call(chain.escrow.functions.release(2, 1, stranger.address, 2 * ETH)).status == 0
    assert chain.operator_call(chain.escrow.functions.release(99, 1, stranger.address, 1)).status == 0  # unfunded
    assert chain.operator_call(chain.escrow.functions.release(2, 1, stranger.address, ETH)).status == 1
    assert chain.operator_call(chain.escrow.functions.release(2, 2, stranger.address, 1)).status == 0  # empty now


def test_refund_only_after_refund_time_and_only_the_unspent_part(chain):
    requester = funded_bounty(chain, 3, 5 * ETH, refund_in_s=600)
    payee = new_account(chain, 1)
    assert chain.operator_call(chain.escrow.functions.release(3, 1, payee.address, 2 * ETH)).status == 1
    assert call_from(chain, requester, chain.escrow.functions.refund(3)).status == 0  # too early
    chain.time_travel(chain_now(chain) + 3600)
    stranger = new_account(chain, 1)
    assert call_from(chain, stranger, chain.escrow.functions.refund(3)).status == 0  # not theirs
    rcpt = call_from(chain, requester, chain.escrow.functions.refund(3))
    assert rcpt.status == 1
    ev = chain.escrow.events.Refunded().process_receipt(rcpt)[0].args
    assert (ev.bounty_id, ev.requester, ev.amount) == (3, requester.address, 3 * ETH)
    assert chain.pending_of(requester.address) == 3 * ETH
    assert call_from(chain, requester, chain.escrow.functions.refund(3)).status == 0  # once
    assert chain.operator_call(chain.escrow.functions.release(3, 2, payee.address, 1)).status == 0
    # the payee's earlier credit survives the refund
    assert chain.pending_of(payee.address) == 2 * ETH


def test_reentrant_payee_gets_paid_once(chain):
    art = compile_contract(HERE / "contracts" / "Reentrant.vy")
    attacker_owner = new_account(chain, 10)
    C = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    rcpt = call_from(chain, attacker_owner, C.constructor(chain.escrow.address))
    attacker = chain.w3.eth.contract(address=rcpt.contractAddress, abi=art["abi"])
    funded_bounty(chain, 4, 4 * ETH)
    # two payouts credited to the attacker; a third party has money in the escrow too
    honest = new_account(chain, 1)
    for sid, who in ((1, attacker.address), (2, attacker.address), (3, honest.address)):
        assert chain.operator_call(chain.escrow.functions.release(4, sid, who, ETH)).status == 1
    escrow_before = chain.balance()
    assert call_from(chain, attacker_owner, attacker.functions.attack()).status == 1
    assert attacker.functions.calls().call() == 1
    assert attacker.functions.reentered().call() is False
    assert attacker.functions.received().call() == 2 * ETH
    assert chain.balance(attacker.address) == 2 * ETH
    assert chain.balance() == escrow_before - 2 * ETH
    assert chain.pending_of(honest.address) == ETH
    assert chain.pending_of(attacker.address) == 0


def test_events_cover_every_state_change(chain):
    names = {e["name"] for e in chain.artifact["abi"] if e["type"] == "event"}
    assert names == {"Funded", "Released", "Withdrawn", "Refunded", "OperatorChanged"}
    funded = chain.events("Funded")
    assert {e.args.bounty_id for e in funded} >= {1, 2, 3, 4}
    assert all(Web3.is_checksum_address(e.args.requester) for e in funded)
