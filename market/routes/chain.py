"""The chain the market pays on: which chain and escrow, test money on the embedded chain, and the books
(DB payouts) compared with the escrow's events and balance. The faucet and the reconciler are for signed-in
callers only and rate-limited; the reconciler waits briefly for the chain lock and answers 503 rather than
queueing behind (or holding up) the relay."""

from __future__ import annotations

from fastapi import APIRouter, Request

from loopylab.market.chain import Chain
from loopylab.market.models import ChainOut, FaucetOut, ReconcileOut
from loopylab.market.relay import reconcile
from loopylab.market.routes.deps import ConfigDep, MarketDep, User
from loopylab.market.routes.strict import RateLimit
from loopylab.market.service import Market, MarketError, TooMany

router = APIRouter(prefix="/chain", tags=["chain"])
FAUCET_WEI = 100 * 10**18
LIMITS = {
    "reconcile": (1 / 10, 2),  # per caller: calls a second, burst
    "reconcile:all": (1 / 2, 3),  # all callers together
    "faucet": (1 / 5, 3),
}
LOCK_WAIT_S = 2.0


def _limit(request: Request, name: str, key: str) -> None:
    """One app's token buckets (kept on app.state, so two apps in one process do not share them)."""
    buckets = request.app.state.rate_limits
    if name not in buckets:
        per_s, burst = LIMITS[name]
        buckets[name] = RateLimit(per_s, burst)
    wait = buckets[name].wait_s(key)
    if wait:
        raise TooMany(f"{name.split(':', maxsplit=1)[0]}: too many calls, retry in {wait:.0f} s", wait)


def _escrow_chain(market: Market) -> Chain:
    chain = market.chain
    if chain is None or chain.escrow is None:
        raise MarketError("this server has no chain configured", 404)
    return chain


@router.get("", summary="Which chain and escrow this market pays on", response_model=ChainOut)
def chain_info(market: MarketDep, config: ConfigDep):
    chain = _escrow_chain(market)
    return {
        "chain_id": chain.chain_id,
        "escrow_address": chain.escrow.address,
        "embedded": chain.embedded,
        "operator": chain.operator.address,
        "confirmations": config.confirmations,
    }


@router.post("/faucet", summary="Embedded chain only: 100 test ETH to the caller", response_model=FaucetOut)
def faucet(request: Request, address: User, market: MarketDep):
    chain = market.chain
    if chain is None or not chain.embedded:
        raise MarketError("the faucet exists only on the embedded development chain", 404)
    _limit(request, "faucet", address)
    chain.faucet(address, FAUCET_WEI)
    return {"address": address, "value_wei": str(FAUCET_WEI)}


@router.get(
    "/reconcile", summary="Compare DB payouts with the escrow's events and balance", response_model=ReconcileOut
)
def chain_reconcile(request: Request, address: User, market: MarketDep):
    chain = _escrow_chain(market)
    _limit(request, "reconcile", address)
    _limit(request, "reconcile:all", "*")
    if not chain.lock.acquire(timeout=LOCK_WAIT_S):
        raise MarketError("the chain is busy paying out; try again shortly", 503)
    try:
        problems = reconcile(market.store, chain)
    finally:
        chain.lock.release()
    return {"ok": not problems, "mismatches": problems}
