"""Submissions: submit a claim's uploaded files (the verification pipeline runs), read one or a bounty's
(the requester sees all, a contributor their own), and the requester's review: approve (with the signed EIP-712
Release approval the escrow checks), or reject with a reason."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from loopylab.market.models import ApprovalIn, ApprovalOut, PayoutOut, ReviewIn, SubmissionIn, SubmissionOut
from loopylab.market.routes.deps import Id, MarketDep, User

router = APIRouter(tags=["submissions"])


@router.get(
    "/bounties/{bounty_id}/submissions",
    summary="The requester sees all submissions, a contributor only their own",
    response_model=list[SubmissionOut],
)
def bounty_submissions(bounty_id: Id, address: User, market: MarketDep):
    return market.list_submissions(address, bounty_id)


@router.post(
    "/claims/{claim_id}/submission",
    status_code=201,
    summary="Submit the uploaded files of a claim; runs verification",
    response_model=SubmissionOut,
)
def submit(claim_id: Id, body: SubmissionIn, address: User, market: MarketDep):
    sub = market.submit(address, claim_id, body.manifest, body.signature)
    return market.get_submission(address, sub.id)


@router.get("/submissions/{submission_id}", response_model=SubmissionOut)
def get_submission(submission_id: Id, address: User, market: MarketDep):
    return market.get_submission(address, submission_id)


@router.get(
    "/submissions/{submission_id}/preview",
    summary="What the requester judges a submission by: per topic counts, rates, field ranges and a few sample "
    "messages, a notebook's protocol; the files themselves are withheld until approval",
    response_model=dict[str, Any],
)
def preview(submission_id: Id, address: User, market: MarketDep):
    return market.preview(address, submission_id)


@router.post(
    "/submissions/{submission_id}/review",
    summary="Approve, or reject with a reason (bounty requester only)",
    response_model=SubmissionOut,
)
def review(submission_id: Id, body: ReviewIn, address: User, market: MarketDep):
    market.review(address, submission_id, body.approve, body.reason, body.signature)
    return market.get_submission(address, submission_id)


@router.get(
    "/submissions/{submission_id}/approval",
    summary="The EIP-712 Release approval to sign (requester only)",
    response_model=ApprovalOut,
)
def approval(submission_id: Id, address: User, market: MarketDep):
    return market.approval_request(address, submission_id)


@router.post(
    "/submissions/{submission_id}/approval",
    summary="Sign an auto-approved submission's payout",
    response_model=PayoutOut,
)
def add_approval(submission_id: Id, body: ApprovalIn, address: User, market: MarketDep):
    return market._payout_view(market.add_approval(address, submission_id, body.signature))
