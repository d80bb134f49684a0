"""The market's life cycles, written down once and enforced here.

Every state change of a bounty, claim, submission or payout goes through `advance()`, which refuses
any transition not listed below. The service layer never assigns `.state` itself.

    bounty      draft ──fund──▶ open ──deadline / all approved──▶ closed ──refund──▶ refunded
                  └──cancel──▶ cancelled
    claim       active ──submit──▶ submitted ──approve──▶ approved
                  │                   ├──reject──▶ rejected        (the slot opens again)
                  ├──release──▶ released                           (contributor gives the slot back)
                  └──expire──▶ expired                             (claim TTL passed; slot opens again)
    submission  pending_review ──approve / auto-approve──▶ approved
                  └──reject (reason required)──▶ rejected
                invalid                     (failed verification; terminal; the claim stays active)
    payout      pending ──sign──▶ signed ──mined──▶ mined ──confirmations──▶ final
                  signed ──reverted──▶ failed ──retry──▶ pending    (the relay re-signs it, a few times)

A slot counts as taken while its claim is active, submitted or approved, so a bounty never has more
approved submissions than it asked for.
"""

from __future__ import annotations

import enum


class BountyState(str, enum.Enum):
    draft = "draft"  # posted, escrow not funded yet; terms may still be edited
    open = "open"  # funded; accepting claims; terms frozen
    closed = "closed"  # deadline passed or all slots approved
    refunded = "refunded"  # unspent escrow returned to the requester
    cancelled = "cancelled"  # withdrawn before funding


class ClaimState(str, enum.Enum):
    active = "active"
    submitted = "submitted"
    approved = "approved"
    rejected = "rejected"
    released = "released"
    expired = "expired"


class SubmissionState(str, enum.Enum):
    invalid = "invalid"  # verification failed; never reaches a reviewer
    pending_review = "pending_review"  # verification passed; waiting for the requester
    approved = "approved"
    rejected = "rejected"


class PayoutState(str, enum.Enum):
    pending = "pending"  # written in the approving transaction (the outbox row)
    signed = "signed"  # signed transaction stored; may or may not have reached the chain
    mined = "mined"  # receipt seen with status 1
    final = "final"  # `confirmations` blocks deep
    failed = "failed"  # reverted for a reason other than "already released"


TRANSITIONS: dict[type[enum.Enum], dict[str, set[str]]] = {
    BountyState: {
        "draft": {"open", "cancelled"},
        "open": {"closed"},
        "closed": {"refunded"},
        "refunded": set(),
        "cancelled": set(),
    },
    ClaimState: {
        "active": {"submitted", "released", "expired"},
        "submitted": {"approved", "rejected"},
        "approved": set(),
        "rejected": set(),
        "released": set(),
        "expired": set(),
    },
    SubmissionState: {
        "pending_review": {"approved", "rejected"},
        "invalid": set(),
        "approved": set(),
        "rejected": set(),
    },
    PayoutState: {
        "pending": {"signed"},
        "signed": {"mined", "failed"},
        "mined": {"final", "signed"},  # back to signed when a reorg drops the block
        "final": set(),
        "failed": {"pending"},
    },
}

SLOT_TAKEN = frozenset({ClaimState.active.value, ClaimState.submitted.value, ClaimState.approved.value})


class TransitionError(ValueError):
    """A state change the life cycle does not allow; the API turns it into 409 Conflict."""


def can(kind: type[enum.Enum], current: str, target: str) -> bool:
    return target in TRANSITIONS[kind].get(str(getattr(current, "value", current)), set())


def advance(obj, kind: type[enum.Enum], target) -> None:
    """Move `obj.state` to `target`, or raise TransitionError naming both states."""
    target = kind(target).value
    current = str(getattr(obj.state, "value", obj.state))
    if not can(kind, current, target):
        what = kind.__name__.removesuffix("State").lower()
        raise TransitionError(f"{what} is {current}; it cannot become {target}")
    obj.state = target


def reputation_score(approved: int, rejected: int, invalid: int) -> float:
    """Share of accepted work with a uniform prior (Laplace), so one early rejection is not fatal
    and a newcomer starts at 0.5 instead of having to grind like on MTurk."""
    return (approved + 1) / (approved + rejected + invalid + 2)
