"""Bounties: post (a draft), list, read, edit and cancel while a draft, the escrow transaction that funds one,
funding (which opens it), and the refund of what is left after settlement. Bodies and answers are built from
the one definition of a bounty's terms (market/terms.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from loopylab.market.models import BountyOut, BountyPatch, FundIn, FundingOut, RefundIn, RefundingOut
from loopylab.market.routes.deps import MAX_ID, Id, MarketDep, User
from loopylab.market.routes.listing import etag_matches
from loopylab.market.terms import BountyTerms

router = APIRouter(prefix="/bounties", tags=["bounties"])
State = Annotated[str | None, Query(pattern="^(draft|open|closed|refunded|cancelled)$")]


@router.post("", status_code=201, summary="Post a bounty (draft until funded)", response_model=BountyOut)
def post_bounty(body: BountyTerms, address: User, market: MarketDep):
    return market.get_bounty(market.post_bounty(address, body).id)


@router.get(
    "",
    response_model=list[BountyOut],
    summary="Bounties, newest first (ETag; keyset pages: the Link header's next page)",
    responses={304: {"description": "not modified since the ETag sent in If-None-Match"}},
)
def list_bounties(
    request: Request,
    state: State = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only bounties with a smaller id")] = None,
):
    # served from a cached body (routes/listing.py): the answer model's schema, encoded once per change
    entry = request.app.state.listing.get(state, limit, offset, before)
    headers = {"ETag": entry.etag, "Cache-Control": "no-cache"}
    if entry.next_before is not None:
        query = f"limit={limit}&before={entry.next_before}" + (f"&state={state}" if state else "")
        headers["Link"] = f'</bounties?{query}>; rel="next"'
    if etag_matches(request.headers.get("if-none-match"), entry.etag):
        return Response(status_code=304, headers=headers)
    return Response(entry.body, media_type="application/json", headers=headers)


@router.get("/{bounty_id}", response_model=BountyOut)
def get_bounty(bounty_id: Id, market: MarketDep):
    return market.get_bounty(bounty_id)


@router.patch("/{bounty_id}", summary="Edit a draft bounty (terms freeze at funding)", response_model=BountyOut)
def patch_bounty(bounty_id: Id, body: BountyPatch, address: User, market: MarketDep):
    market.update_bounty(address, bounty_id, body.model_dump(exclude_none=True))
    return market.get_bounty(bounty_id)


@router.delete("/{bounty_id}", summary="Cancel a draft bounty", response_model=BountyOut)
def cancel_bounty(bounty_id: Id, address: User, market: MarketDep):
    market.cancel_bounty(address, bounty_id)
    return market.get_bounty(bounty_id)


@router.get("/{bounty_id}/funding", summary="The escrow transaction to sign", response_model=FundingOut)
def funding(bounty_id: Id, address: User, market: MarketDep):
    return market.funding_request(address, bounty_id)


@router.post("/{bounty_id}/fund", summary="Broadcast the funding tx; open the bounty", response_model=BountyOut)
def fund(bounty_id: Id, body: FundIn, address: User, market: MarketDep):
    market.fund(address, bounty_id, body.raw_tx)
    return market.get_bounty(bounty_id)


@router.get(
    "/{bounty_id}/refunding",
    summary="The escrow transaction to sign next: announce_refund, then (after the escrow's notice) refund",
    response_model=RefundingOut,
)
def refunding(bounty_id: Id, address: User, market: MarketDep):
    return market.refunding_request(address, bounty_id)


@router.post(
    "/{bounty_id}/refund",
    summary="Broadcast the refund tx once every approved payout is paid",
    response_model=BountyOut,
)
def refund(bounty_id: Id, address: User, market: MarketDep, body: RefundIn | None = None):
    market.refund(address, bounty_id, body.raw_tx if body else None)
    return market.get_bounty(bounty_id)
