#pragma version 0.4.3
#pragma evm-version prague
"""Forces ether into a contract that refuses plain transfers: SELFDESTRUCT in the constructor still moves
the balance to the beneficiary after Cancun (EIP-6780 only stops the account's deletion otherwise)."""


@deploy
@payable
def __init__(beneficiary: address):
    selfdestruct(beneficiary)
