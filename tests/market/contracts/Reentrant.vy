#pragma version 0.4.3
#pragma evm-version prague
"""A hostile payee: when the escrow sends it money it tries to withdraw again (and to release and
refund) from inside the payment, the DAO attack. It records whether any re-entry got through."""

interface Escrow:
    def withdraw(): nonpayable

escrow: public(address)
received: public(uint256)
calls: public(uint256)
reentered: public(bool)


@deploy
def __init__(escrow: address):
    self.escrow = escrow


@external
def attack():
    extcall Escrow(self.escrow).withdraw()


@external
@payable
def __default__():
    self.received += msg.value
    self.calls += 1
    if self.calls < 4:
        ok: bool = raw_call(self.escrow, method_id("withdraw()"), revert_on_failure=False)
        if ok:
            self.reentered = True
        ok2: bool = raw_call(self.escrow, concat(method_id("withdraw_for(address)"), convert(self, bytes32)),
                             revert_on_failure=False)
        if ok2:
            self.reentered = True
