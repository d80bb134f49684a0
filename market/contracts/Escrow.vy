#pragma version 0.4.3
#pragma evm-version prague
"""
@title loopylab bounty escrow
@notice Holds each bounty's reward money until its requester authorises a payout. A bounty's slot is keyed
        by (requester, bounty id) and the requester is always msg.sender of `fund`, so nobody can pre-fund,
        fix the refund time of, or take over another requester's bounty. A payout moves money only with
        the requester's EIP-712 `Release` signature, checked here: anyone (the market's relay, the payee)
        may submit it, and no server key can pay anyone. Payees pull their money (withdraw). The unspent
        balance goes back to the requester after the bounty's refund time, which is at most
        MAX_REFUND_HORIZON ahead of the first funding, and only REFUND_NOTICE after the requester announced
        the refund on chain: an approval the requester signed and nobody has released yet (the relay was
        down, say) cannot be beaten by a refund sent straight to the contract, because during the notice
        the payee (who holds the signed approval) or the relay releases it. There is no operator. The EVM version is pinned to
        the one the embedded chain (py-evm via eth-tester) runs.
"""

struct Bounty:
    refund_after: uint256    # unix time after which the unspent balance may be refunded
    funded: uint256
    released: uint256
    refunded: bool
    refund_at: uint256       # 0: no refund announced; else the time from which refund() may run

event Funded:
    bounty_id: indexed(uint256)
    requester: indexed(address)
    amount: uint256
    refund_after: uint256

event Released:
    payout_id: indexed(bytes32)
    bounty_id: indexed(uint256)
    payee: indexed(address)
    requester: address
    submission_id: uint256
    amount: uint256

event Withdrawn:
    payee: indexed(address)
    amount: uint256

event RefundAnnounced:
    bounty_id: indexed(uint256)
    requester: indexed(address)
    refund_at: uint256

event Refunded:
    bounty_id: indexed(uint256)
    requester: indexed(address)
    amount: uint256

MAX_REFUND_HORIZON: public(constant(uint256)) = 400 * 86400
REFUND_NOTICE: public(constant(uint256)) = 7 * 86400  # a week for every signed approval to be released
DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
RELEASE_TYPEHASH: constant(bytes32) = keccak256(
    "Release(uint256 bountyId,uint256 submissionId,address payee,uint256 amount)")
# secp256k1 order / 2: a signature with a larger s is the malleable twin of a valid one
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452841039046818112013545152

bounties: public(HashMap[address, HashMap[uint256, Bounty]])
released: public(HashMap[bytes32, bool])
pending: public(HashMap[address, uint256])
total_pending: public(uint256)
total_unspent: public(uint256)     # funded - released over bounties not refunded: with total_pending, what
                                   # the contract owes (its balance may be higher: forced ether)
DOMAIN_SEPARATOR: public(bytes32)


@deploy
def __init__():
    self.DOMAIN_SEPARATOR = keccak256(abi_encode(DOMAIN_TYPEHASH, keccak256("loopylab escrow"), keccak256("2"),
                                                 chain.id, self))


@external
@pure
def payout_id(requester: address, bounty_id: uint256, submission_id: uint256) -> bytes32:
    return keccak256(abi_encode(requester, bounty_id, submission_id))


@internal
@view
def _digest(bounty_id: uint256, submission_id: uint256, payee: address, amount: uint256) -> bytes32:
    h: bytes32 = keccak256(abi_encode(RELEASE_TYPEHASH, bounty_id, submission_id, payee, amount))
    return keccak256(concat(b"\x19\x01", self.DOMAIN_SEPARATOR, h))


@external
@view
def release_digest(bounty_id: uint256, submission_id: uint256, payee: address, amount: uint256) -> bytes32:
    """The EIP-712 hash a requester signs to approve one payout."""
    return self._digest(bounty_id, submission_id, payee, amount)


@external
@payable
@nonreentrant
def fund(bounty_id: uint256, refund_after: uint256):
    """Lock money for the caller's bounty. The first call fixes the refund time; later calls top up."""
    assert msg.value > 0, "no value sent"
    b: Bounty = self.bounties[msg.sender][bounty_id]
    if b.funded == 0:
        assert refund_after > block.timestamp, "refund time already passed"
        assert refund_after <= block.timestamp + MAX_REFUND_HORIZON, "refund time beyond the horizon"
        b.refund_after = refund_after
    else:
        assert not b.refunded, "bounty already refunded"
    b.funded += msg.value
    self.bounties[msg.sender][bounty_id] = b
    self.total_unspent += msg.value
    log Funded(bounty_id=bounty_id, requester=msg.sender, amount=msg.value, refund_after=b.refund_after)


@external
@nonreentrant
def release(requester: address, bounty_id: uint256, submission_id: uint256, payee: address, amount: uint256,
            signature: Bytes[65]):
    """Credit `amount` of a requester's bounty to `payee`, at most once per (requester, bounty, submission),
    when `signature` is the requester's EIP-712 Release approval. Anyone may submit it."""
    assert payee != empty(address), "payee is the zero address"
    r: uint256 = convert(extract32(signature, 0), uint256)
    s: uint256 = convert(extract32(signature, 32), uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    assert s <= HALF_N, "malleable signature"
    signer: address = ecrecover(self._digest(bounty_id, submission_id, payee, amount), v, r, s)
    assert signer != empty(address) and signer == requester, "not approved by the requester"
    pid: bytes32 = keccak256(abi_encode(requester, bounty_id, submission_id))
    assert not self.released[pid], "payout already released"
    b: Bounty = self.bounties[requester][bounty_id]
    assert b.funded > 0, "bounty not funded"
    assert not b.refunded, "bounty already refunded"
    assert b.funded - b.released >= amount, "escrow balance too low"
    self.released[pid] = True
    b.released += amount
    self.bounties[requester][bounty_id] = b
    self.total_unspent -= amount
    self.pending[payee] += amount
    self.total_pending += amount
    log Released(payout_id=pid, bounty_id=bounty_id, payee=payee, requester=requester,
                 submission_id=submission_id, amount=amount)


@external
@nonreentrant
def announce_refund(bounty_id: uint256):
    """After the refund time, start the caller's refund notice: refund() may run REFUND_NOTICE later, and
    until then every approval the caller signed can still be released."""
    b: Bounty = self.bounties[msg.sender][bounty_id]
    assert b.funded > 0, "bounty not funded"
    assert not b.refunded, "bounty already refunded"
    assert block.timestamp > b.refund_after, "refund time not reached"
    assert b.refund_at == 0, "refund already announced"
    b.refund_at = block.timestamp + REFUND_NOTICE
    self.bounties[msg.sender][bounty_id] = b
    log RefundAnnounced(bounty_id=bounty_id, requester=msg.sender, refund_at=b.refund_at)


@external
@nonreentrant
def refund(bounty_id: uint256):
    """After the announced notice, credit the caller's unspent balance of a bounty to the caller (pull)."""
    b: Bounty = self.bounties[msg.sender][bounty_id]
    assert b.funded > 0, "bounty not funded"
    assert not b.refunded, "bounty already refunded"
    assert block.timestamp > b.refund_after, "refund time not reached"
    assert b.refund_at != 0, "announce the refund first (announce_refund)"
    assert block.timestamp >= b.refund_at, "refund notice not over"
    amount: uint256 = b.funded - b.released
    b.refunded = True
    self.bounties[msg.sender][bounty_id] = b
    self.total_unspent -= amount
    self.pending[msg.sender] += amount
    self.total_pending += amount
    log Refunded(bounty_id=bounty_id, requester=msg.sender, amount=amount)


@internal
def _withdraw(payee: address):
    amount: uint256 = self.pending[payee]
    assert amount > 0, "nothing to withdraw"
    # effects before the interaction (checks-effects-interactions), plus the global lock
    self.pending[payee] = 0
    self.total_pending -= amount
    raw_call(payee, b"", value=amount)
    log Withdrawn(payee=payee, amount=amount)


@external
@nonreentrant
def withdraw():
    """Send the caller everything credited to them."""
    self._withdraw(msg.sender)


@external
@nonreentrant
def withdraw_for(payee: address):
    """Anyone may push a payee's credited money to the payee (for payees without gas)."""
    self._withdraw(payee)
