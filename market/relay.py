"""Payout relay and reconciler.

An approval leaves a `pending` payout row (the outbox) carrying the requester's EIP-712 Release signature (the
escrow pays nothing without it; the relay account only pays gas). The relay pays it in crash-safe phases:

    1. sign      allocate a nonce, sign escrow.release(..., approval), store the raw tx and its hash -> `signed`
                 (committed BEFORE anything reaches the chain)
    2. send      look for a receipt of the stored hash; none: (re)broadcast the stored raw tx
    3. settle    receipt ok -> `mined`; reverted because the payout was already released (a twin tx
                 landed first) -> `mined` with the twin's tx; otherwise -> `failed`, retried (back to
                 `pending`) up to MAX_ATTEMPTS times; a failed payout also blocks the bounty's refund
    4. confirm   `confirmations` blocks deep -> `final`; a block hash that changed (reorg) -> `signed`
                 again, so step 2 re-broadcasts

A crash anywhere leaves either `pending` (nothing signed) or `signed` (stored tx, re-sent or its
receipt read on restart). Per-payout work does not grow with the chain: a receipt is looked up by hash
only once the payout's nonce is used (a node, eth-tester included, may scan every block to say "not
found"), and event queries start at the block the payout was signed at. No lock is held across a pass:
the embedded chain locks each request (chain.py), the database locks rows. The escrow refuses a second release of the same payout id, so even a lost
DB update cannot pay twice. The chain is the record of who was paid: `reconcile()` compares it with
the DB and reports every mismatch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select
from web3.exceptions import TimeExhausted, TransactionNotFound

from loopylab.market.chain import Chain
from loopylab.market.db import Bounty, ChainAccount, Payout, Store, lock
from loopylab.market.states import PayoutState, advance

log = logging.getLogger(__name__)
RELEASE_GAS = 200_000
MAX_ATTEMPTS = 5


class RelayCrash(RuntimeError):
    """Raised by the crash hook in tests and benchmarks: the process 'dies' at that point."""


@dataclass
class Relay:
    store: Store
    chain: Chain
    confirmations: int = 0
    crash_at: str | None = None  # "signed" | "broadcast": die right after that step
    batch: int = 100
    receipt_timeout_s: float = 120.0
    stats: Counter = field(default_factory=Counter)

    def run_once(self) -> Counter:
        before = self.stats.copy()
        self.confirm()  # first: a reorged payout goes back to signed and is re-sent below
        self.retry_failed()
        self.sign_pending()
        self.send_signed()
        self.confirm()
        return self.stats - before

    # ------------------------------------------------------------------ 1. sign
    def retry_failed(self) -> int:
        """A reverted release (a refund raced it, a node hiccup) goes back to pending, a few times."""
        with self.store.write() as s:
            rows = list(
                s.scalars(
                    select(Payout).where(Payout.state == PayoutState.failed.value, Payout.attempts < MAX_ATTEMPTS)
                )
            )
            for p in rows:
                advance(p, PayoutState, PayoutState.pending)
                p.updated_at = time.time()
        self.stats["retried"] += len(rows)
        return len(rows)

    def sign_pending(self) -> int:
        sender = self.chain.operator.address
        with self.store.write() as s:
            q = (
                select(Payout, Bounty.requester)
                .join(Bounty, Bounty.id == Payout.bounty_id)
                .where(Payout.state == PayoutState.pending.value, Payout.approval != "")
                .order_by(Payout.id)
                .limit(self.batch)
            )
            if not self.store.is_sqlite:
                q = q.with_for_update(skip_locked=True, of=Payout)
            payouts = list(s.execute(q).all())
            if not payouts:
                return 0
            acct = lock(s, ChainAccount, sender)
            chain_next = self.chain.w3.eth.get_transaction_count(sender, "pending")
            if acct is None:
                acct = ChainAccount(address=sender, next_nonce=chain_next)
                s.add(acct)
            acct.next_nonce = max(acct.next_nonce, chain_next)  # other operator txs (withdraw_for) moved it
            fees = self.chain.tx_params(sender, acct.next_nonce)  # one fee quote per batch
            head = self.chain.w3.eth.block_number
            for p, requester in payouts:
                self._sign(p, requester, acct.next_nonce, fees)
                p.signed_block = head if p.signed_block < 0 else p.signed_block
                acct.next_nonce += 1
                advance(p, PayoutState, PayoutState.signed)
        self.stats["signed"] += len(payouts)
        self._maybe_crash("signed")
        return len(payouts)

    def _sign(self, p: Payout, requester: str, nonce: int, params=None) -> None:
        params = params or self.chain.tx_params(self.chain.operator.address, nonce)
        approval = bytes.fromhex(p.approval.removeprefix("0x"))
        tx = self.chain.escrow.functions.release(
            requester, p.bounty_id, p.submission_id, p.payee, p.amount_wei, approval
        ).build_transaction(
            {
                "from": self.chain.operator.address,
                "nonce": nonce,
                "gas": RELEASE_GAS,
                "chainId": params.chain_id,
                "maxFeePerGas": params.max_fee_per_gas,
                "maxPriorityFeePerGas": params.max_priority_fee_per_gas,
            }
        )
        signed = self.chain.operator.sign_transaction(tx)
        p.sender, p.tx_nonce = self.chain.operator.address, nonce
        p.raw_tx = "0x" + signed.raw_transaction.hex().removeprefix("0x")
        p.tx_hash = "0x" + signed.hash.hex().removeprefix("0x")
        p.updated_at = time.time()

    # ------------------------------------------------------------------ 2 + 3. send and settle
    def send_signed(self) -> int:
        with self.store.read() as s:
            ids = list(
                s.scalars(select(Payout.id).where(Payout.state == PayoutState.signed.value).order_by(Payout.tx_nonce))
            )
        for pid in ids:
            self._send_one(pid)
        return len(ids)

    def _receipt(self, tx_hash: str):
        try:
            return self.chain.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _send_one(self, row_id: int) -> None:
        with self.store.read() as s:
            p = s.get(Payout, row_id)
        # a receipt can exist only once the nonce is used; asking before costs a scan of the whole chain
        used = self.chain.w3.eth.get_transaction_count(p.sender, "latest") > p.tx_nonce
        rcpt = self._receipt(p.tx_hash) if used else None
        if rcpt is None:
            try:
                self.chain.w3.eth.send_raw_transaction(p.raw_tx)
                self.stats["broadcast"] += 1
                refused = False
            except Exception as e:  # "already known", "nonce too low", node down ...
                log.info("payout %s: broadcast of %s refused: %s", p.payout_id, p.tx_hash, e)
                self.stats["broadcast_refused"] += 1
                refused = True
            self._maybe_crash("broadcast")
            if refused and self.chain.w3.eth.get_transaction_count(p.sender, "latest") > p.tx_nonce:
                rcpt = self._receipt(p.tx_hash)  # the nonce is spent: mined already, or by another tx
            else:  # sent, or "already known": it is on its way
                try:
                    rcpt = self.chain.w3.eth.wait_for_transaction_receipt(p.tx_hash, timeout=self.receipt_timeout_s)
                except (TimeExhausted, TransactionNotFound):
                    rcpt = None
        if rcpt is None:
            if self.chain.is_released(p.payout_id):
                self._settle_from_event(row_id)
            elif self.chain.w3.eth.get_transaction_count(p.sender, "latest") > p.tx_nonce:
                self._resign(row_id)  # our nonce was used by another tx: sign again with a new one
            return
        if rcpt.status == 1:
            self._mark_mined(row_id, rcpt)
        elif self.chain.is_released(p.payout_id):
            self._settle_from_event(row_id)  # a twin tx released it first: paid once, by the twin
        else:
            with self.store.write() as s:
                p = lock(s, Payout, row_id)
                advance(p, PayoutState, PayoutState.failed)
                p.attempts += 1
                p.error = f"release reverted in tx {p.tx_hash} (escrow balance, bounty refunded?)"
                p.updated_at = time.time()
            self.stats["failed"] += 1
            log.error("payout %s failed: release reverted", p.payout_id)

    def _mark_mined(self, row_id: int, rcpt, tx_hash: str | None = None) -> None:
        with self.store.write() as s:
            p = lock(s, Payout, row_id)
            if p.state != PayoutState.signed.value:
                return
            advance(p, PayoutState, PayoutState.mined)
            if tx_hash:
                p.tx_hash = tx_hash
            p.block_number = rcpt.blockNumber
            p.block_hash = "0x" + bytes(rcpt.blockHash).hex()
            p.updated_at = time.time()
        self.stats["mined"] += 1

    def _settle_from_event(self, row_id: int) -> None:
        with self.store.read() as s:
            p = s.get(Payout, row_id)
        pid = {"payout_id": bytes.fromhex(p.payout_id[2:])}
        # from where it was signed; a twin released before that (a lost DB update) needs the whole chain once
        ev = self.released_events(pid, from_block=max(0, p.signed_block)) or self.released_events(pid)
        if not ev:
            return
        tx_hash = "0x" + bytes(ev[0].transactionHash).hex()
        self._mark_mined(row_id, self.chain.w3.eth.get_transaction_receipt(tx_hash), tx_hash)
        self.stats["settled_from_event"] += 1

    def _resign(self, row_id: int) -> None:
        with self.store.write() as s:
            p = lock(s, Payout, row_id)
            acct = lock(s, ChainAccount, p.sender)
            acct.next_nonce = max(acct.next_nonce, self.chain.w3.eth.get_transaction_count(p.sender, "pending"))
            self._sign(p, s.get(Bounty, p.bounty_id).requester, acct.next_nonce)
            if p.signed_block < 0:
                p.signed_block = self.chain.w3.eth.block_number
            acct.next_nonce += 1
        self.stats["resigned"] += 1

    def released_events(self, argument_filters: dict | None = None, from_block: int = 0) -> list:
        """Released events from `from_block` on: a payout's own search starts where it was signed (its
        release cannot be older), so it does not grow with the chain."""
        return self.chain.events("Released", from_block, argument_filters)

    # ------------------------------------------------------------------ 4. confirm
    def confirm(self) -> int:
        head = self.chain.w3.eth.block_number
        n = 0
        hashes: dict[int, str | None] = {}

        def block_hash(number: int) -> str | None:
            if number not in hashes:
                hashes[number] = (
                    "0x" + bytes(self.chain.w3.eth.get_block(number).hash).hex() if number <= head else None
                )
            return hashes[number]

        with self.store.write() as s:
            for p in s.scalars(select(Payout).where(Payout.state == PayoutState.mined.value)):
                if block_hash(p.block_number) != p.block_hash:
                    advance(p, PayoutState, PayoutState.signed)  # reorged away: send again
                    p.block_number, p.block_hash = -1, ""
                    self.stats["reorged"] += 1
                elif head - p.block_number >= self.confirmations:
                    advance(p, PayoutState, PayoutState.final)
                    n += 1
        self.stats["final"] += n
        return n

    def _maybe_crash(self, point: str) -> None:
        if self.crash_at == point:
            raise RelayCrash(f"relay crashed after {point}")


# ---------------------------------------------------------------------- reconciliation


def double_pays(chain: Chain) -> int:
    """Released events beyond the first per payout id (the escrow should make this 0)."""
    counts = Counter(bytes(e.args.payout_id) for e in chain.events("Released"))
    return sum(n - 1 for n in counts.values() if n > 1)


def reconcile(store: Store, chain: Chain) -> list[str]:
    """Compare the DB's payouts and bounties with the escrow's events and balances. Returns the
    mismatches (empty when the books agree)."""
    problems: list[str] = []
    released = {}
    for e in chain.events("Released"):
        pid = "0x" + bytes(e.args.payout_id).hex()
        if pid in released:
            problems.append(f"payout {pid} released twice on chain")
        released[pid] = e.args
    with store.read() as s:
        payouts = {p.payout_id: p for p in s.scalars(select(Payout))}
        bounties = {b.id: b for b in s.scalars(select(Bounty).where(Bounty.escrow_address != ""))}
    for pid, ev in released.items():
        p = payouts.get(pid)
        if p is None:
            problems.append(
                f"chain released {pid} (bounty {ev.bounty_id}, submission {ev.submission_id}) with no payout in the DB"
            )
            continue
        if (p.bounty_id, p.submission_id, p.payee, p.amount_wei) != (
            ev.bounty_id,
            ev.submission_id,
            ev.payee,
            ev.amount,
        ):
            problems.append(
                f"payout {pid}: DB ({p.payee}, {p.amount_wei}) differs from chain ({ev.payee}, {ev.amount})"
            )
        if p.state not in ("mined", "final"):
            problems.append(f"payout {pid} is paid on chain but {p.state} in the DB")
    for pid, p in payouts.items():
        if p.state in ("mined", "final") and pid not in released:
            problems.append(f"payout {pid} is {p.state} in the DB but has no Released event")
    for bid, b in bounties.items():
        oc = chain.bounty_onchain(b.requester, bid)
        paid = sum(p.amount_wei for p in payouts.values() if p.bounty_id == bid and p.payout_id in released)
        if oc["released"] != paid:
            problems.append(f"bounty {bid}: escrow released {oc['released']} wei, DB payouts on chain sum to {paid}")
        if oc["funded"] != b.funded_wei:
            problems.append(f"bounty {bid}: escrow funded {oc['funded']} wei, DB says {b.funded_wei}")
        if oc["refunded"] != (b.state == "refunded"):
            problems.append(f"bounty {bid}: escrow refunded={oc['refunded']}, DB state {b.state}")
    # the escrow's ether must cover every unspent bounty balance plus every credited, unwithdrawn amount. It
    # may hold more: ether forced in by a self-destructing sender is nobody's and is not a mismatch.
    slots = {(e.args.requester, e.args.bounty_id) for e in chain.events("Funded")}
    unspent = 0
    for requester, bid in slots:
        oc = chain.bounty_onchain(requester, bid)
        if not oc["refunded"]:
            unspent += oc["funded"] - oc["released"]
    total_pending = chain.escrow.functions.total_pending().call()
    if unspent != chain.escrow.functions.total_unspent().call():
        problems.append(f"escrow's total_unspent differs from its bounties' unspent sum {unspent}")
    if chain.balance() < unspent + total_pending:
        problems.append(f"escrow holds {chain.balance()} wei, bounties + credits account for {unspent + total_pending}")
    elif chain.balance() > unspent + total_pending:
        log.info("escrow holds %d wei of forced ether beyond its books", chain.balance() - unspent - total_pending)
    return problems
