#pragma version 0.4.3
#pragma evm-version prague
"""
@title loopylab bounty escrow
@notice Holds each bounty's reward money until the market's operator (the payout relay) releases
        one payout per (bounty, submission). Payees pull their money (withdraw); the unspent balance
        of a bounty goes back to its requester after the bounty's refund time. The EVM version is
        pinned to the one the embedded chain (py-evm via eth-tester) runs.
"""

struct Bounty:
    requester: address
    refund_after: uint256    # unix time after which the unspent balance may be refunded
    funded: uint256
    released: uint256
    refunded: bool

event Funded:
    bounty_id: indexed(uint256)
    requester: indexed(address)
    funder: address
    amount: uint256
    refund_after: uint256

event Released:
    payout_id: indexed(bytes32)
    bounty_id: indexed(uint256)
    payee: indexed(address)
    submission_id: uint256
    amount: uint256

event Withdrawn:
    payee: indexed(address)
    amount: uint256

event Refunded:
    bounty_id: indexed(uint256)
    requester: indexed(address)
    amount: uint256

event OperatorChanged:
    old: indexed(address)
    new: indexed(address)

operator: public(address)
bounties: public(HashMap[uint256, Bounty])
released: public(HashMap[bytes32, bool])
pending: public(HashMap[address, uint256])
total_pending: public(uint256)


@deploy
def __init__(operator: address):
    assert operator != empty(address), "operator is the zero address"
    self.operator = operator


@external
@pure
def payout_id(bounty_id: uint256, submission_id: uint256) -> bytes32:
    return keccak256(abi_encode(bounty_id, submission_id))


@external
@payable
@nonreentrant
def fund(bounty_id: uint256, requester: address, refund_after: uint256):
    """Lock money for a bounty. The first call fixes requester and refund time; later calls top up."""
    assert msg.value > 0, "no value sent"
    assert requester != empty(address), "requester is the zero address"
    b: Bounty = self.bounties[bounty_id]
    if b.requester == empty(address):
        assert refund_after > block.timestamp, "refund time already passed"
        b.requester = requester
        b.refund_after = refund_after
    else:
        assert b.requester == requester, "bounty belongs to another requester"
        assert not b.refunded, "bounty already refunded"
    b.funded += msg.value
    self.bounties[bounty_id] = b
    log Funded(bounty_id=bounty_id, requester=requester, funder=msg.sender, amount=msg.value,
               refund_after=b.refund_after)


@external
@nonreentrant
def release(bounty_id: uint256, submission_id: uint256, payee: address, amount: uint256):
    """Credit `amount` of a bounty's escrow to `payee`, at most once per (bounty, submission)."""
    assert msg.sender == self.operator, "only the operator releases"
    assert payee != empty(address), "payee is the zero address"
    pid: bytes32 = keccak256(abi_encode(bounty_id, submission_id))
    assert not self.released[pid], "payout already released"
    b: Bounty = self.bounties[bounty_id]
    assert b.requester != empty(address), "bounty not funded"
    assert not b.refunded, "bounty already refunded"
    assert b.funded - b.released >= amount, "escrow balance too low"
    self.released[pid] = True
    b.released += amount
    self.bounties[bounty_id] = b
    self.pending[payee] += amount
    self.total_pending += amount
    log Released(payout_id=pid, bounty_id=bounty_id, payee=payee, submission_id=submission_id,
                 amount=amount)


@external
@nonreentrant
def refund(bounty_id: uint256):
    """After the refund time, credit the bounty's unspent balance to its requester (pull)."""
    b: Bounty = self.bounties[bounty_id]
    assert b.requester != empty(address), "bounty not funded"
    assert not b.refunded, "bounty already refunded"
    assert block.timestamp > b.refund_after, "refund time not reached"
    assert msg.sender == b.requester or msg.sender == self.operator, "only requester or operator"
    amount: uint256 = b.funded - b.released
    b.refunded = True
    self.bounties[bounty_id] = b
    self.pending[b.requester] += amount
    self.total_pending += amount
    log Refunded(bounty_id=bounty_id, requester=b.requester, amount=amount)


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


@external
@nonreentrant
def set_operator(new: address):
    assert msg.sender == self.operator, "only the operator"
    assert new != empty(address), "operator is the zero address"
    log OperatorChanged(old=self.operator, new=new)
    self.operator = new
