"""Money and standings: withdraw what the escrow credited you, your payouts, the leaderboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from loopylab.market.models import LeaderOut, PayoutsOut, WithdrawOut
from loopylab.market.routes.deps import MarketDep, User

router = APIRouter(tags=["payouts"])


@router.post("/withdraw", summary="Send your credited escrow balance to your address", response_model=WithdrawOut)
def withdraw(address: User, market: MarketDep):
    return {"address": address, "amount_wei": str(market.withdraw(address))}


@router.get("/me/payouts", response_model=PayoutsOut)
def my_payouts(address: User, market: MarketDep):
    return market.my_payouts(address)


@router.get("/leaderboard", response_model=list[LeaderOut])
def leaderboard(market: MarketDep, limit: Annotated[int, Query(ge=1, le=500)] = 20):
    return market.leaderboard(limit)
