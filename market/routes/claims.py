"""Claims: reserve a slot on an open bounty, list and read your claims, give a slot back."""

from __future__ import annotations

from fastapi import APIRouter

from loopylab.market.models import ClaimIn, ClaimOut
from loopylab.market.routes.deps import Id, MarketDep, User

router = APIRouter(tags=["claims"])


@router.post(
    "/bounties/{bounty_id}/claims",
    status_code=201,
    summary="Reserve a slot (where the market verifies rigs: for one of your verified rigs, one slot per rig)",
    response_model=ClaimOut,
)
def claim(bounty_id: Id, address: User, market: MarketDep, body: ClaimIn | None = None):
    return market.get_claim(address, market.claim(address, bounty_id, body.rig if body else None).id)


@router.get("/claims", response_model=list[ClaimOut])
def my_claims(address: User, market: MarketDep):
    return market.my_claims(address)


@router.get("/claims/{claim_id}", response_model=ClaimOut)
def get_claim(claim_id: Id, address: User, market: MarketDep):
    return market.get_claim(address, claim_id)


@router.delete("/claims/{claim_id}", summary="Give the slot back", response_model=ClaimOut)
def release_claim(claim_id: Id, address: User, market: MarketDep):
    market.release_claim(address, claim_id)
    return market.get_claim(address, claim_id)
