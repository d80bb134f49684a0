"""The Vyper escrow on the embedded EVM: slots keyed by their requester, payouts released only with the
requester's EIP-712 approval and exactly once, pull withdrawals, refunds after a bounded refund time, events,
and hostile parties: a hijacker pre-funding a victim's bounty id, a thief holding the relay key, a
re-entrant payee."""

from __future__ import annotations

from pathlib import Path

import pytest
import vyper
from eth_account import Account
from web3 import Web3

from loopylab.market.chain import Chain, compile_contract, sign_release

ETH = 10**18
HERE = Path(__file__).parent
HORIZON = 400 * 86400
NOTICE = 7 * 86400


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
    rcpt = chain.send_signed(chain.fund_tx(requester, bounty_id, chain_now(chain) + int(refund_in_s), amount))
    assert rcpt.status == 1
    return requester


def approval(chain: Chain, signer, bounty_id: int, submission_id: int, payee: str, amount: int) -> bytes:
    sig = sign_release(signer, chain.release_typed_data(bounty_id, submission_id, payee, amount))
    return bytes.fromhex(sig[2:])


def release(chain: Chain, requester, bounty_id, submission_id, payee, amount, signer=None, sender=None):
    """Submit a release from `sender` (default: the relay account) approved by `signer` (default: requester)."""
    sig = approval(chain, signer or requester, bounty_id, submission_id, payee, amount)
    fn = chain.escrow.functions.release(requester.address, bounty_id, submission_id, payee, amount, sig)
    return call_from(chain, sender or chain.operator, fn)


def test_artifact_matches_source():
    src = (Path(__import__("market").__file__).parent / "contracts" / "Escrow.vy").read_text()
    fresh = vyper.compile_code(src, output_formats=["abi", "bytecode"])
    art = compile_contract(Path(__import__("market").__file__).parent / "contracts" / "Escrow.vy")
    assert art["bytecode"] == fresh["bytecode"] and art["abi"] == fresh["abi"]
    assert "#pragma evm-version prague" in src  # the fork eth-tester/py-evm runs (PragueVM)


def test_python_and_contract_agree_on_the_approval_hash(chain):
    from eth_account.messages import encode_typed_data

    typed = chain.release_typed_data(5, 6, chain.operator.address, 7)
    signable = encode_typed_data(full_message=typed)
    ours = Web3.keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert chain.escrow.functions.release_digest(5, 6, chain.operator.address, 7).call() == ours
    assert chain.escrow.functions.MAX_REFUND_HORIZON().call() == HORIZON
    assert chain.escrow.functions.REFUND_NOTICE().call() == NOTICE


def test_fund_release_withdraw_exactly_once(chain):
    requester = funded_bounty(chain, 1, 3 * ETH)
    payee = new_account(chain, 1)
    before = chain.balance()
    rcpt = release(chain, requester, 1, 7, payee.address, ETH)
    assert rcpt.status == 1
    ev = chain.escrow.events.Released().process_receipt(rcpt)[0].args
    assert (ev.bounty_id, ev.submission_id, ev.payee, ev.amount, ev.requester) == (
        1,
        7,
        payee.address,
        ETH,
        requester.address,
    )
    assert "0x" + ev.payout_id.hex().removeprefix("0x") == chain.payout_id(requester.address, 1, 7)
    # the same (bounty, submission) again, even with a fresh approval: refused, nothing credited twice
    assert release(chain, requester, 1, 7, payee.address, ETH).status == 0
    assert chain.pending_of(payee.address) == ETH
    assert chain.bounty_onchain(requester.address, 1)["released"] == ETH
    # pull: the payee withdraws, gas paid by the payee
    bal0 = chain.balance(payee.address)
    w = call_from(chain, payee, chain.escrow.functions.withdraw())
    assert w.status == 1
    gas_cost = w.gasUsed * w.effectiveGasPrice
    assert chain.balance(payee.address) == bal0 + ETH - gas_cost
    assert chain.balance() == before - ETH
    assert chain.pending_of(payee.address) == 0
    assert call_from(chain, payee, chain.escrow.functions.withdraw()).status == 0  # nothing left


def test_fund_hijack_is_impossible(chain):
    """Attack (issue 26): pre-fund the victim's next bounty id with 1 wei and an endless refund time, or name
    the attacker as its requester. The slot is keyed by msg.sender, so the attacker only ever funds their
    own slot; an endless refund time is refused outright."""
    victim, attacker = new_account(chain), new_account(chain)
    endless = 2**256 - 1
    assert call_from(chain, attacker, chain.escrow.functions.fund(11, endless), value=1).status == 0
    assert (
        call_from(chain, attacker, chain.escrow.functions.fund(11, chain_now(chain) + HORIZON + 60), value=1).status
        == 0
    )
    assert call_from(chain, attacker, chain.escrow.functions.fund(11, chain_now(chain) + 60), value=1).status == 1
    assert chain.bounty_onchain(victim.address, 11)["funded"] == 0  # the victim's slot is untouched
    rcpt = chain.send_signed(chain.fund_tx(victim, 11, chain_now(chain) + 3600, 3 * ETH // 100))
    assert rcpt.status == 1
    slot = chain.bounty_onchain(victim.address, 11)
    assert slot["funded"] == 3 * ETH // 100 and slot["refund_after"] <= chain_now(chain) + 3600
    # the attacker's 1 wei sits in the attacker's own slot, refundable to the attacker only
    chain.time_travel(chain_now(chain) + 120)
    assert call_from(chain, attacker, chain.escrow.functions.announce_refund(11)).status == 1
    chain.time_travel(chain_now(chain) + NOTICE + 1)
    assert call_from(chain, attacker, chain.escrow.functions.refund(11)).status == 1
    assert chain.pending_of(attacker.address) == 1
    assert chain.bounty_onchain(victim.address, 11)["refunded"] is False


def test_operator_key_cannot_pay_anyone(chain):
    """Attack (issue 26): a thief with the relay (server) key releases a bounty's balance to themselves. The
    escrow has no operator: every release needs the requester's own EIP-712 signature over the exact payee
    and amount."""
    requester = funded_bounty(chain, 2, ETH)
    thief = chain.operator
    # signed by the relay key itself
    assert release(chain, requester, 2, 1, thief.address, ETH, signer=thief).status == 0
    # a genuine approval for a contributor, redirected to the thief or inflated
    contributor = new_account(chain, 1)
    sig = approval(chain, requester, 2, 1, contributor.address, ETH // 2)
    for payee, amount in ((thief.address, ETH // 2), (contributor.address, ETH)):
        fn = chain.escrow.functions.release(requester.address, 2, 1, payee, amount, sig)
        assert call_from(chain, thief, fn).status == 0
    # the malleable twin of the genuine signature (s -> n - s, v flipped) is refused too
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (n - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    fn = chain.escrow.functions.release(requester.address, 2, 1, contributor.address, ETH // 2, twin)
    assert call_from(chain, thief, fn).status == 0
    assert chain.balance(thief.address) > 0 and chain.pending_of(thief.address) == 0
    assert chain.bounty_onchain(requester.address, 2)["released"] == 0
    # the genuine approval goes through, submitted by anyone (here: the contributor)
    fn = chain.escrow.functions.release(requester.address, 2, 1, contributor.address, ETH // 2, sig)
    assert call_from(chain, contributor, fn).status == 1
    assert chain.pending_of(contributor.address) == ETH // 2
    # never beyond the balance, never for an unfunded bounty
    assert release(chain, requester, 2, 2, contributor.address, ETH).status == 0
    assert release(chain, requester, 99, 1, contributor.address, 1).status == 0


def test_refund_only_after_refund_time_only_by_the_requester_only_the_unspent_part(chain):
    requester = funded_bounty(chain, 3, 5 * ETH, refund_in_s=600)
    payee = new_account(chain, 1)
    assert release(chain, requester, 3, 1, payee.address, 2 * ETH).status == 1
    assert call_from(chain, requester, chain.escrow.functions.refund(3)).status == 0  # too early
    chain.time_travel(chain_now(chain) + 3600)
    stranger = new_account(chain, 1)
    assert call_from(chain, stranger, chain.escrow.functions.refund(3)).status == 0  # not theirs
    assert call_from(chain, chain.operator, chain.escrow.functions.refund(3)).status == 0
    # an approval signed earlier is still good after the refund time, until the refund is made
    assert release(chain, requester, 3, 2, payee.address, ETH).status == 1
    assert call_from(chain, requester, chain.escrow.functions.refund(3)).status == 0  # not announced
    assert call_from(chain, stranger, chain.escrow.functions.announce_refund(3)).status == 0  # not theirs
    assert call_from(chain, requester, chain.escrow.functions.announce_refund(3)).status == 1
    assert call_from(chain, requester, chain.escrow.functions.announce_refund(3)).status == 0  # once
    assert call_from(chain, requester, chain.escrow.functions.refund(3)).status == 0  # notice not over
    chain.time_travel(chain.bounty_onchain(requester.address, 3)["refund_at"] + 1)
    rcpt = call_from(chain, requester, chain.escrow.functions.refund(3))
    assert rcpt.status == 1
    ev = chain.escrow.events.Refunded().process_receipt(rcpt)[0].args
    assert (ev.bounty_id, ev.requester, ev.amount) == (3, requester.address, 2 * ETH)
    assert chain.pending_of(requester.address) == 2 * ETH
    assert call_from(chain, requester, chain.escrow.functions.refund(3)).status == 0  # once
    assert release(chain, requester, 3, 3, payee.address, 1).status == 0
    assert chain.pending_of(payee.address) == 3 * ETH  # the earlier credits survive the refund


def _escrow_without_notice(tmp_path) -> Chain:
    """A chain whose escrow is ours with the refund notice taken out (refund() right after the refund time,
    as before): to show the race test attacks for real."""
    src = (Path(__import__("market").__file__).parent / "contracts" / "Escrow.vy").read_text()
    for line in (
        'assert b.refund_at != 0, "announce the refund first (announce_refund)"',
        'assert block.timestamp >= b.refund_at, "refund notice not over"',
    ):
        assert line in src
        src = src.replace(line, "pass")
    (tmp_path / "EscrowNoNotice.vy").write_text(src)
    c = Chain.embedded_chain(deploy=False)
    c.artifact = compile_contract(tmp_path / "EscrowNoNotice.vy")
    c.deploy_escrow()
    return c


def _race(chain: Chain) -> tuple[int, int]:
    """The refund race on chain: the requester approved a payout (signed the Release, which the payee and the
    relay hold) but nobody released it yet (the relay is down); past the refund time the requester calls the
    escrow's refund directly. Returns (what the payee can withdraw, what the requester got back)."""
    requester = funded_bounty(chain, 21, ETH, refund_in_s=600)
    payee = new_account(chain, 1)
    sig = approval(chain, requester, 21, 1, payee.address, ETH // 4)
    chain.time_travel(chain_now(chain) + 3600)  # past the refund time, the relay still down
    refund = chain.escrow.functions.refund(21)
    if call_from(chain, requester, refund).status != 1:  # the notice: announce, and the approval is released
        assert call_from(chain, requester, chain.escrow.functions.announce_refund(21)).status == 1
        assert call_from(chain, requester, refund).status == 0  # still within the notice
        chain.time_travel(chain_now(chain) + 3 * 86400)  # the payee notices within days ...
    fn = chain.escrow.functions.release(requester.address, 21, 1, payee.address, ETH // 4, sig)
    call_from(chain, payee, fn)  # ... and releases with the approval they hold
    chain.time_travel(chain_now(chain) + NOTICE)
    call_from(chain, requester, refund)
    return chain.pending_of(payee.address), chain.pending_of(requester.address)


def test_a_direct_refund_cannot_beat_an_approved_payout(tmp_path):
    """Attack (issue 26, the refund race): with the relay down past the refund time, the requester calls the
    escrow's refund() directly and takes money owed to a payout it approved. Now refund() runs only
    REFUND_NOTICE after announce_refund(), and the signed approval is released within the notice. Against the
    same escrow without the notice the attack wins (the test attacks for real)."""
    assert _race(_escrow_without_notice(tmp_path)) == (0, ETH)  # before: the payee's quarter refunded
    assert _race(Chain.embedded_chain()) == (ETH // 4, ETH - ETH // 4)


def test_reentrant_payee_gets_paid_once(chain):
    art = compile_contract(HERE / "contracts" / "Reentrant.vy")
    attacker_owner = new_account(chain, 10)
    C = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    rcpt = call_from(chain, attacker_owner, C.constructor(chain.escrow.address))
    attacker = chain.w3.eth.contract(address=rcpt.contractAddress, abi=art["abi"])
    requester = funded_bounty(chain, 4, 4 * ETH)
    # two payouts credited to the attacker; a third party has money in the escrow too
    honest = new_account(chain, 1)
    for sid, who in ((1, attacker.address), (2, attacker.address), (3, honest.address)):
        assert release(chain, requester, 4, sid, who, ETH).status == 1
    escrow_before = chain.balance()
    assert call_from(chain, attacker_owner, attacker.functions.attack()).status == 1
    assert attacker.functions.calls().call() == 1
    assert attacker.functions.reentered().call() is False
    assert attacker.functions.received().call() == 2 * ETH
    assert chain.balance(attacker.address) == 2 * ETH
    assert chain.balance() == escrow_before - 2 * ETH
    assert chain.pending_of(honest.address) == ETH
    assert chain.pending_of(attacker.address) == 0


def test_forced_ether_is_surplus_not_debt(chain):
    """A self-destructing sender forces ether in; the escrow's books (what it owes) do not move."""
    owed = chain.escrow.functions.total_unspent().call() + chain.escrow.functions.total_pending().call()
    assert chain.balance() == owed
    art = compile_contract(HERE / "contracts" / "ForceSend.vy")
    sender = new_account(chain, 2)
    C = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    assert call_from(chain, sender, C.constructor(chain.escrow.address), value=ETH).status == 1
    assert chain.balance() == owed + ETH
    assert chain.escrow.functions.total_unspent().call() + chain.escrow.functions.total_pending().call() == owed


def test_events_cover_every_state_change(chain):
    names = {e["name"] for e in chain.artifact["abi"] if e["type"] == "event"}
    assert names == {"Funded", "Released", "Withdrawn", "RefundAnnounced", "Refunded"}
    funded = chain.events("Funded")
    assert {e.args.bounty_id for e in funded} >= {1, 2, 3, 4}
    assert all(Web3.is_checksum_address(e.args.requester) for e in funded)
