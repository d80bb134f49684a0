"""The chain the market pays on: which chain and escrow, test money on the embedded chain, and the books
(DB payouts) compared with the escrow's events and balance."""

from __future__ import annotations

from fastapi import APIRouter

from loopylab.market.chain import Chain
from loopylab.market.models import ChainOut, FaucetOut, ReconcileOut
from loopylab.market.relay import reconcile
from loopylab.market.routes.deps import ConfigDep, MarketDep, User
from loopylab.market.service import Market, MarketError

router = APIRouter(prefix="/chain", tags=["chain"])
FAUCET_WEI = 100 * 10**18


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
def faucet(address: User, market: MarketDep):
    chain = market.chain
    if chain is None or not chain.embedded:
        raise MarketError("the faucet exists only on the embedded development chain", 404)
    chain.faucet(address, FAUCET_WEI)
    return {"address": address, "value_wei": str(FAUCET_WEI)}


@router.get(
    "/reconcile", summary="Compare DB payouts with the escrow's events and balance", response_model=ReconcileOut
)
def chain_reconcile(market: MarketDep):
    chain = _escrow_chain(market)
    with chain.lock:
        problems = reconcile(market.store, chain)
    return {"ok": not problems, "mismatches": problems}
