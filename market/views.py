"""The market's read views and their access rules: bounties (with what their escrow still holds), submissions,
claims, payouts and the leaderboard, as plain dicts shaped like the API's answer models (market/models.py).

A list is a fixed number of queries whatever its length (bounties, then their claim counts, then their payouts:
no query per row), and pages by keyset (`before` an id) as well as by offset.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select

from loopylab.market.db import Bounty, Claim, Payout, Reputation, Rig, Submission
from loopylab.market.errors import Forbidden, NotFound
from loopylab.market.states import SLOT_TAKEN, ClaimState, reputation_score
from loopylab.market.terms import BountyTerms

RELEASED = ("mined", "final")  # payouts whose release is on chain: the escrow no longer holds them for the bounty
OWED = ("pending", "signed", "failed")  # approved, not yet released


class Views:
    """Mixed into `service.Market`, which supplies `store` and `chain`."""

    # ------------------------------------------------------------------ bounties
    def get_bounty(self, bounty_id: int) -> dict:
        with self.store.read() as s:
            b = s.get(Bounty, bounty_id)
            if b is None:
                raise NotFound(f"no bounty {bounty_id}")
            return self._bounty_views(s, [b])[0]

    def list_bounties(
        self, state: str | None = None, limit: int = 50, offset: int = 0, before: int | None = None
    ) -> list[dict]:
        """Newest first. `before` (keyset paging: the last id of the previous page) costs the same on every page;
        `offset` scans the rows it skips."""
        with self.store.read() as s:
            q = select(Bounty).order_by(Bounty.id.desc()).limit(limit).offset(offset)
            if state:
                q = q.where(Bounty.state == state)
            if before is not None:
                q = q.where(Bounty.id < before)
            return self._bounty_views(s, list(s.scalars(q)))

    def _bounty_views(self, s, bounties: list[Bounty]) -> list[dict]:
        ids = [b.id for b in bounties]
        counts: dict[int, dict] = {}
        money: dict[int, dict] = {}
        if ids:
            for bid, state, n in s.execute(
                select(Claim.bounty_id, Claim.state, func.count())
                .where(Claim.bounty_id.in_(ids))
                .group_by(Claim.bounty_id, Claim.state)
            ):
                counts.setdefault(bid, {})[state] = n
            # wei are decimal strings (no portable SQL sum): one row per payout, at most slots per bounty
            for bid, state, amount in s.execute(
                select(Payout.bounty_id, Payout.state, Payout.amount_wei).where(Payout.bounty_id.in_(ids))
            ):
                m = money.setdefault(bid, {"paid": 0, "owed": 0})
                if state in RELEASED:
                    m["paid"] += int(amount)
                elif state in OWED:
                    m["owed"] += int(amount)
        now = time.time()
        return [self._bounty_view(b, counts.get(b.id, {}), money.get(b.id, {}), now) for b in bounties]

    @staticmethod
    def _bounty_view(b: Bounty, counts: dict, money: dict, now: float) -> dict:
        taken = sum(n for st, n in counts.items() if st in SLOT_TAKEN)
        funded, paid = int(b.funded_wei or 0), money.get("paid", 0)
        # what the escrow still holds for this bounty: funded less released payouts; nothing once refunded
        held = 0 if b.state == "refunded" else max(0, funded - paid)
        return {
            "id": b.id,
            "requester": b.requester,
            **BountyTerms.of(b).model_dump(),
            "state": b.state,
            "created_at": b.created_at,
            "slots_taken": taken,
            "slots_free": max(0, b.slots - taken) if b.deadline > now else 0,
            "approved": counts.get(ClaimState.approved.value, 0),
            "funded_wei": str(funded),
            "paid_wei": str(paid),
            "owed_wei": str(money.get("owed", 0)),
            "escrow_wei": str(held),
            "escrow_address": b.escrow_address,
            "refund_after": b.refund_after,
        }

    # ------------------------------------------------------------------ submissions
    @staticmethod
    def _visible_submission(s, viewer: str, submission_id: int) -> tuple[Submission, Bounty]:
        """The submission and its bounty, for its contributor and the bounty's requester only."""
        sub = s.get(Submission, submission_id)
        if sub is None:
            raise NotFound(f"no submission {submission_id}")
        b = s.get(Bounty, sub.bounty_id)
        if viewer not in (sub.contributor, b.requester):
            raise Forbidden("only the contributor and the bounty's requester see a submission")
        return sub, b

    def get_submission(self, viewer: str, submission_id: int) -> dict:
        with self.store.read() as s:
            sub, b = self._visible_submission(s, viewer, submission_id)
            payout = s.scalar(select(Payout).where(Payout.submission_id == sub.id))
            return self._submission_view(sub, b, payout)

    def _submission_view(self, sub: Submission, b: Bounty, payout: Payout | None) -> dict:
        return {
            "id": sub.id,
            "bounty_id": sub.bounty_id,
            "bounty_title": b.title,
            "claim_id": sub.claim_id,
            "contributor": sub.contributor,
            "rig": sub.rig,
            "state": sub.state,
            "checks": sub.checks,
            "reason": sub.reason,
            "reviewed_by": sub.reviewed_by,
            "created_at": sub.created_at,
            "reviewed_at": sub.reviewed_at,
            "manifest": sub.manifest,
            "auto_approve_at": sub.created_at + b.auto_approve_s if sub.state == "pending_review" else None,
            "payout": self._payout_view(payout) if payout else None,
        }

    def list_submissions(self, viewer: str, bounty_id: int) -> list[dict]:
        with self.store.read() as s:
            b = s.get(Bounty, bounty_id)
            if b is None:
                raise NotFound(f"no bounty {bounty_id}")
            q = select(Submission).where(Submission.bounty_id == bounty_id).order_by(Submission.id)
            if viewer != b.requester:
                q = q.where(Submission.contributor == viewer)
            subs = list(s.scalars(q))
            payouts = {p.submission_id: p for p in s.scalars(select(Payout).where(Payout.bounty_id == bounty_id))}
            return [self._submission_view(x, b, payouts.get(x.id)) for x in subs]

    # ------------------------------------------------------------------ claims
    @staticmethod
    def _claim_view(c: Claim) -> dict:
        return {
            "id": c.id,
            "bounty_id": c.bounty_id,
            "state": c.state,
            "created_at": c.created_at,
            "expires_at": c.expires_at,
            "rig": c.rig or "",
        }

    def my_claims(self, address: str) -> list[dict]:
        with self.store.read() as s:
            q = select(Claim).where(Claim.contributor == address).order_by(Claim.id.desc())
            return [self._claim_view(c) for c in s.scalars(q)]

    def get_claim(self, address: str, claim_id: int) -> dict:
        with self.store.read() as s:
            c = s.get(Claim, claim_id)
            if c is None or c.contributor != address:
                raise NotFound(f"you hold no claim {claim_id}")
            return self._claim_view(c)

    def has_rig(self, owner: str | None, rig: str | None) -> bool:
        if not owner or not rig:
            return False
        with self.store.read() as s:
            r = s.get(Rig, rig)
            return r is not None and r.owner == owner

    # ------------------------------------------------------------------ money
    @staticmethod
    def _payout_view(p: Payout) -> dict:
        return {
            "payout_id": p.payout_id,
            "bounty_id": p.bounty_id,
            "submission_id": p.submission_id,
            "payee": p.payee,
            "amount_wei": str(p.amount_wei),
            "state": p.state,
            "tx_hash": p.tx_hash,
            "block_number": p.block_number,
            "error": p.error,
            "approval": p.approval,
            "created_at": p.created_at,
        }

    def my_payouts(self, address: str) -> dict:
        with self.store.read() as s:
            rows = [
                self._payout_view(p)
                for p in s.scalars(select(Payout).where(Payout.payee == address).order_by(Payout.id.desc()))
            ]
        withdrawable = self.chain.pending_of(address) if self.chain and self.chain.escrow else 0
        return {
            "payouts": rows,
            "withdrawable_wei": str(withdrawable),
            "paid_wei": str(sum(int(r["amount_wei"]) for r in rows if r["state"] in RELEASED)),
        }

    def leaderboard(self, limit: int = 20) -> list[dict]:
        with self.store.read() as s:
            reps = list(s.scalars(select(Reputation)))
        rows = [
            {
                "address": r.address,
                "approved": r.approved,
                "rejected": r.rejected,
                "invalid": r.invalid,
                "earned_wei": str(r.earned_wei or 0),
                "reputation": round(reputation_score(r.approved, r.rejected, r.invalid), 4),
            }
            for r in reps
        ]
        rows.sort(key=lambda r: (-r["approved"], -int(r["earned_wei"]), -r["reputation"], r["address"]))
        return [{"rank": i + 1, **r} for i, r in enumerate(rows[:limit])]
