"""The health probe load balancers and the load benchmark ask."""

from __future__ import annotations

import time

from fastapi import APIRouter

from loopylab.market.models import HealthOut

router = APIRouter(tags=["meta"])


@router.get("/health", response_model=HealthOut)
def health():
    return {"ok": True, "time": time.time()}
