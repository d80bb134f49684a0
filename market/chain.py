"""The chain the escrow lives on: an in-process EVM (eth-tester + py-evm) by default, any EVM JSON-RPC
endpoint in production. Also the escrow contract: compiled from market/contracts/Escrow.vy with the
pinned Vyper (artifact cached on disk by source hash), deployed, and wrapped.

The relay's key comes from an environment variable (hex) or an encrypted keystore file; on the
embedded chain a fresh operator key is generated and funded from eth-tester's unlocked accounts.
Calls go through one lock: eth-tester is not thread-safe and the relay and API share the chain.
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


def payout_id(bounty_id: int, submission_id: int) -> str:
    """The escrow's key for one payout: keccak256(abi.encode(bounty_id, submission_id))."""
    from eth_abi import encode

    return "0x" + Web3.keccak(encode(["uint256", "uint256"], [bounty_id, submission_id])).hex().removeprefix("0x")


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


@dataclass
class TxParams:
    chain_id: int
    nonce: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class Chain:
    """A Web3 connection, the operator account and the escrow contract."""

    def __init__(self, w3: Web3, operator: LocalAccount, escrow_address: str = "", embedded: bool = False):
        self.w3 = w3
        self.operator = operator
        self.embedded = embedded
        self.lock = threading.RLock()
        self.artifact = escrow_artifact()
        self.chain_id = w3.eth.chain_id
        self.escrow = None
        if escrow_address:
            self.escrow = w3.eth.contract(address=Web3.to_checksum_address(escrow_address), abi=self.artifact["abi"])

    # ------------------------------------------------------------ construction
    @classmethod
    def embedded_chain(cls, deploy: bool = True) -> Chain:
        from web3 import EthereumTesterProvider

        w3 = Web3(EthereumTesterProvider())
        operator = Account.create()
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": operator.address, "value": 10**23})
        chain = cls(w3, operator, embedded=True)
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
            tx = c.constructor(self.operator.address).build_transaction(self._base_tx(self.operator.address))
            rcpt = self.send_signed(self.operator.sign_transaction(tx).raw_transaction)
            if rcpt.status != 1:
                raise RuntimeError("escrow deployment reverted")
            self.escrow = self.w3.eth.contract(address=rcpt.contractAddress, abi=self.artifact["abi"])
            log.info("escrow deployed at %s (chain %d)", rcpt.contractAddress, self.chain_id)
            return rcpt.contractAddress

    # ------------------------------------------------------------ transactions
    def tx_params(self, address: str, nonce: int | None = None) -> TxParams:
        with self.lock:
            block = self.w3.eth.get_block("latest")
            base = block.get("baseFeePerGas", 0) or 0
            tip = 10**9
            return TxParams(
                self.chain_id,
                self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending")
                if nonce is None
                else nonce,
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
    def payout_id(bounty_id: int, submission_id: int) -> str:
        return payout_id(bounty_id, submission_id)

    def bounty_onchain(self, bounty_id: int) -> dict:
        with self.lock:
            r = self.escrow.functions.bounties(bounty_id).call()
        return dict(zip(("requester", "refund_after", "funded", "released", "refunded"), r))

    def is_released(self, payout_id: str) -> bool:
        with self.lock:
            return self.escrow.functions.released(bytes.fromhex(payout_id.removeprefix("0x"))).call()

    def pending_of(self, address: str) -> int:
        with self.lock:
            return self.escrow.functions.pending(Web3.to_checksum_address(address)).call()

    def balance(self, address: str | None = None) -> int:
        with self.lock:
            return self.w3.eth.get_balance(address or self.escrow.address)

    def events(self, name: str, from_block: int = 0) -> list:
        with self.lock:
            return list(getattr(self.escrow.events, name)().get_logs(from_block=from_block))

    def fund_tx(
        self,
        sender: LocalAccount,
        bounty_id: int,
        requester: str,
        refund_after: int,
        value: int,
        nonce: int | None = None,
    ) -> bytes:
        """A signed escrow.fund transaction (what a requester's client sends)."""
        tx = self.escrow.functions.fund(
            bounty_id, Web3.to_checksum_address(requester), int(refund_after)
        ).build_transaction({**self._base_tx(sender.address, nonce, gas=200_000), "value": value})
        return sender.sign_transaction(tx).raw_transaction
