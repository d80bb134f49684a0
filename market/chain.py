"""The chain the escrow lives on: an in-process EVM (eth-tester + py-evm) by default, any EVM JSON-RPC
endpoint in production. Also the escrow contract: compiled from market/contracts/Escrow.vy with the
pinned Vyper (artifact cached on disk by source hash), deployed, and wrapped.

The relay's key comes from an environment variable (hex) or an encrypted keystore file; on the
embedded chain a fresh one is generated and funded from eth-tester's unlocked accounts. The relay account
only pays gas: the escrow gives it no power (a payout needs the requester's EIP-712 `Release` signature,
built and checked by `release_typed_data` / `recover_release` here and by the contract on chain).
On the embedded chain every RPC request holds one lock for its own duration (eth-tester is not thread-safe
and the relay and the API share it); nothing holds it across a sequence of chain calls except the few
read-then-send steps that need it (`operator_call`, `send_signed`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

log = logging.getLogger(__name__)

CONTRACTS = Path(__file__).parent / "contracts"
VYPER_VERSION = "0.4.3"


def _cache_dir() -> Path:
    d = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loopylab" / "vyper"
    d.mkdir(parents=True, exist_ok=True)
    return d


def compile_contract(path: Path | str) -> dict:
    """{"abi", "bytecode"} of a Vyper source, compiled once per (source, compiler) and cached."""
    import vyper

    src = Path(path).read_text()
    if vyper.__version__.split("+")[0] != VYPER_VERSION:
        raise RuntimeError(f"escrow is pinned to vyper {VYPER_VERSION}, found {vyper.__version__}")
    key = hashlib.sha256((VYPER_VERSION + src).encode()).hexdigest()[:24]
    cached = _cache_dir() / f"{Path(path).stem}-{key}.json"
    if cached.exists():
        try:
            return json.loads(cached.read_text())
        except ValueError:
            pass  # half-written by a killed process: compile again
    out = vyper.compile_code(src, output_formats=["abi", "bytecode"])
    art = {"abi": out["abi"], "bytecode": out["bytecode"]}
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(art))
    tmp.replace(cached)
    return art


def escrow_artifact() -> dict:
    return compile_contract(CONTRACTS / "Escrow.vy")


def payout_id(requester: str, bounty_id: int, submission_id: int) -> str:
    """The escrow's key for one payout: keccak256(abi.encode(requester, bounty_id, submission_id))."""
    from eth_abi import encode

    return "0x" + Web3.keccak(
        encode(["address", "uint256", "uint256"], [Web3.to_checksum_address(requester), bounty_id, submission_id])
    ).hex().removeprefix("0x")


def release_typed_data(chain_id: int, escrow: str, bounty_id: int, submission_id: int, payee: str, amount: int) -> dict:
    """The EIP-712 message a requester signs to approve one payout (eth_signTypedData_v4's argument)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Release": [
                {"name": "bountyId", "type": "uint256"},
                {"name": "submissionId", "type": "uint256"},
                {"name": "payee", "type": "address"},
                {"name": "amount", "type": "uint256"},
            ],
        },
        "primaryType": "Release",
        "domain": {
            "name": "loopylab escrow",
            "version": "2",
            "chainId": chain_id,
            "verifyingContract": Web3.to_checksum_address(escrow),
        },
        "message": {
            "bountyId": bounty_id,
            "submissionId": submission_id,
            "payee": Web3.to_checksum_address(payee),
            "amount": int(amount),
        },
    }


def sign_release(account, typed: dict) -> str:
    """0x-hex signature of a Release approval (what a wallet's eth_signTypedData_v4 returns)."""
    from eth_account.messages import encode_typed_data

    return "0x" + account.sign_message(encode_typed_data(full_message=typed)).signature.hex().removeprefix("0x")


def recover_release(typed: dict, signature: str) -> str:
    """The address that signed a Release approval (raises ValueError on a malformed signature)."""
    from eth_account.messages import encode_typed_data

    try:
        return Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
    except Exception as e:
        raise ValueError(f"signature does not decode: {e}") from None


def load_key(
    key_env: str = "LOOPYLAB_CHAIN_KEY", keystore: str = "", password_env: str = "LOOPYLAB_KEYSTORE_PASSWORD"
) -> LocalAccount:
    if keystore:
        password = os.environ.get(password_env)
        if password is None:
            raise RuntimeError(f"keystore {keystore} needs its password in ${password_env}")
        return Account.from_key(Account.decrypt(json.loads(Path(keystore).read_text()), password))
    key = os.environ.get(key_env)
    if not key:
        raise RuntimeError(f"a JSON-RPC chain needs the relay key in ${key_env} or a keystore file")
    return Account.from_key(key)


def locked_tester_provider(lock):
    """eth-tester's provider with each request under `lock` (one request at a time, never a whole relay pass)."""
    from web3 import EthereumTesterProvider

    class LockedTesterProvider(EthereumTesterProvider):
        def make_request(self, method, params):
            with lock:
                return super().make_request(method, params)

    return LockedTesterProvider()


@dataclass
class TxParams:
    chain_id: int
    nonce: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class Chain:
    """A Web3 connection, the relay account (`operator`: it pays gas, the escrow gives it no power) and the
    escrow contract."""

    def __init__(self, w3: Web3, operator: LocalAccount, escrow_address: str = "", embedded: bool = False):
        self.w3 = w3
        self.operator = operator
        self.embedded = embedded
        self.lock = threading.RLock()
        self.artifact = escrow_artifact()
        self.chain_id = w3.eth.chain_id
        self.escrow = None
        # the escrow's deployment block: none of its events is older, so log searches start there instead of
        # at genesis (0 when the escrow was deployed elsewhere: then the whole chain is searched)
        self.deploy_block = 0
        if escrow_address:
            self.escrow = w3.eth.contract(address=Web3.to_checksum_address(escrow_address), abi=self.artifact["abi"])

    # ------------------------------------------------------------ construction
    @classmethod
    def embedded_chain(cls, deploy: bool = True) -> Chain:
        lock = threading.RLock()
        w3 = Web3(locked_tester_provider(lock))
        operator = Account.create()
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": operator.address, "value": 10**23})
        chain = cls(w3, operator, embedded=True)
        chain.lock = lock
        if deploy:
            chain.deploy_escrow()
        return chain

    @classmethod
    def from_config(cls, cfg) -> Chain:
        if not cfg.chain_url:
            chain = cls.embedded_chain(deploy=not cfg.escrow_address)
            return chain
        w3 = Web3(Web3.HTTPProvider(cfg.chain_url))
        operator = load_key(cfg.chain_key_env, cfg.keystore, cfg.keystore_password_env)
        chain = cls(w3, operator, cfg.escrow_address)
        if chain.escrow is None:
            raise RuntimeError(
                "on a JSON-RPC chain give the escrow address (deploy it once with `loopylab market deploy`)"
            )
        return chain

    def deploy_escrow(self) -> str:
        with self.lock:
            c = self.w3.eth.contract(abi=self.artifact["abi"], bytecode=self.artifact["bytecode"])
            tx = c.constructor().build_transaction(self._base_tx(self.operator.address))
            rcpt = self.send_signed(self.operator.sign_transaction(tx).raw_transaction)
            if rcpt.status != 1:
                raise RuntimeError("escrow deployment reverted")
            self.escrow = self.w3.eth.contract(address=rcpt.contractAddress, abi=self.artifact["abi"])
            self.deploy_block = rcpt.blockNumber
            log.info("escrow deployed at %s (chain %d)", rcpt.contractAddress, self.chain_id)
            return rcpt.contractAddress

    # ------------------------------------------------------------ transactions
    def tx_params(self, address: str, nonce: int | None = None) -> TxParams:
        block = self.w3.eth.get_block("latest")
        base = block.get("baseFeePerGas", 0) or 0
        tip = 10**9
        return TxParams(
            self.chain_id,
            self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending") if nonce is None else nonce,
            2 * base + tip,
            tip,
        )

    def _base_tx(self, sender: str, nonce: int | None = None, gas: int | None = None) -> dict:
        p = self.tx_params(sender, nonce)
        tx = {
            "from": sender,
            "chainId": p.chain_id,
            "nonce": p.nonce,
            "maxFeePerGas": p.max_fee_per_gas,
            "maxPriorityFeePerGas": p.max_priority_fee_per_gas,
        }
        if gas:
            tx["gas"] = gas
        return tx

    def send_signed(self, raw: bytes, timeout: float = 120):
        with self.lock:
            h = self.w3.eth.send_raw_transaction(raw)
            return self.w3.eth.wait_for_transaction_receipt(h, timeout=timeout)

    def operator_call(self, fn, gas: int = 300_000):
        """Sign and send a contract call from the operator; returns the receipt."""
        with self.lock:
            tx = fn.build_transaction(self._base_tx(self.operator.address, gas=gas))
            return self.send_signed(self.operator.sign_transaction(tx).raw_transaction)

    def faucet(self, to: str, value: int) -> None:
        """Embedded chain only: give an address test money from eth-tester's unlocked account."""
        if not self.embedded:
            raise RuntimeError("the faucet exists only on the embedded chain")
        with self.lock:
            self.w3.eth.send_transaction(
                {"from": self.w3.eth.accounts[0], "to": Web3.to_checksum_address(to), "value": value}
            )

    def time_travel(self, ts: int) -> None:
        """Embedded chain only: move block time forward (tests of refunds after the deadline)."""
        with self.lock:
            self.w3.provider.ethereum_tester.time_travel(int(ts))

    # ------------------------------------------------------------ escrow views
    @staticmethod
    def payout_id(requester: str, bounty_id: int, submission_id: int) -> str:
        return payout_id(requester, bounty_id, submission_id)

    def bounty_onchain(self, requester: str, bounty_id: int) -> dict:
        """The escrow slot of (requester, bounty id): refund_after, funded, released, refunded, refund_at (0
        until the requester announces the refund; then when refund() may run)."""
        r = self.escrow.functions.bounties(Web3.to_checksum_address(requester), bounty_id).call()
        return dict(zip(("refund_after", "funded", "released", "refunded", "refund_at"), r))

    def release_typed_data(self, bounty_id: int, submission_id: int, payee: str, amount: int) -> dict:
        return release_typed_data(self.chain_id, self.escrow.address, bounty_id, submission_id, payee, amount)

    def decode_escrow_tx(self, raw: bytes) -> dict:
        """What a signed transaction does: {sender, to, value, function, args}; function is "" when it is
        not a call of this escrow. Raises ValueError when the bytes are not a signed transaction."""
        from eth_account.typed_transactions import TypedTransaction
        from hexbytes import HexBytes

        try:
            raw = HexBytes(raw)
            sender = Account.recover_transaction(raw)
            if raw[:1] < b"\x7f":
                tx = TypedTransaction.from_bytes(raw).as_dict()
            else:
                from eth_account._utils.legacy_transactions import Transaction

                tx = Transaction.from_bytes(raw).as_dict()
        except Exception as e:
            raise ValueError(f"not a signed transaction: {e}") from None
        to = Web3.to_checksum_address(tx["to"]) if tx.get("to") else ""
        out = {
            "sender": sender,
            "to": to,
            "value": int(tx.get("value", 0)),
            "function": "",
            "args": {},
            "chain_id": tx.get("chainId"),
        }
        if to == self.escrow.address:
            try:
                fn, args = self.escrow.decode_function_input(bytes(tx.get("data", b"")))
                out["function"], out["args"] = fn.fn_name, dict(args)
            except Exception:
                pass
        return out

    def is_released(self, payout_id: str) -> bool:
        return self.escrow.functions.released(bytes.fromhex(payout_id.removeprefix("0x"))).call()

    def pending_of(self, address: str) -> int:
        return self.escrow.functions.pending(Web3.to_checksum_address(address)).call()

    def balance(self, address: str | None = None) -> int:
        return self.w3.eth.get_balance(address or self.escrow.address)

    def events(self, name: str, from_block: int = 0, argument_filters: dict | None = None) -> list:
        """The escrow's `name` events from `from_block` on (never before its deployment block)."""
        event = getattr(self.escrow.events, name)()
        return list(event.get_logs(from_block=max(from_block, self.deploy_block), argument_filters=argument_filters))

    def fund_tx(
        self, sender: LocalAccount, bounty_id: int, refund_after: int, value: int, nonce: int | None = None
    ) -> bytes:
        """A signed escrow.fund transaction (what a requester's client sends; the sender is the requester)."""
        tx = self.escrow.functions.fund(bounty_id, int(refund_after)).build_transaction(
            {**self._base_tx(sender.address, nonce, gas=200_000), "value": value}
        )
        return sender.sign_transaction(tx).raw_transaction

    def announce_refund_tx(self, sender: LocalAccount, bounty_id: int, nonce: int | None = None) -> bytes:
        """A signed escrow.announce_refund transaction: the refund may follow REFUND_NOTICE later."""
        tx = self.escrow.functions.announce_refund(bounty_id).build_transaction(
            self._base_tx(sender.address, nonce, gas=150_000)
        )
        return sender.sign_transaction(tx).raw_transaction

    def refund_tx(self, sender: LocalAccount, bounty_id: int, nonce: int | None = None) -> bytes:
        """A signed escrow.refund transaction (only the requester's own refunds it)."""
        tx = self.escrow.functions.refund(bounty_id).build_transaction(
            self._base_tx(sender.address, nonce, gas=150_000)
        )
        return sender.sign_transaction(tx).raw_transaction
