"""The ceiling `GET /bounties` is measured against (benchmarks/market_load.py, `list_ratio_vs_ceiling`): the
smallest FastAPI app that serves the same JSON from the same database. Per request it runs the listing's queries
with SQLAlchemy Core (bounties, their claim counts, their payouts) and returns plain dicts through FastAPI's
default JSON response: no auth, no middleware, no models, no cache.

    LOOPYLAB_MARKET_DB_URL=sqlite:///... uvicorn benchmarks.market_ceiling:app_from_env --factory --workers 2
"""

from __future__ import annotations

import os
import time

from fastapi import FastAPI
from sqlalchemy import create_engine, func, select

from loopylab.market.db import Bounty, Claim, Payout

SLOT_TAKEN = ("active", "submitted", "approved")
TERMS = ("title", "description", "task_spec", "acceptance", "slots")
TIMES = ("deadline", "auto_approve_s", "claim_ttl_s")


def app_from_env() -> FastAPI:
    engine = create_engine(os.environ["LOOPYLAB_MARKET_DB_URL"])
    b, c, p = Bounty.__table__, Claim.__table__, Payout.__table__
    app = FastAPI()

    @app.get("/bounties")
    def bounties(limit: int = 50):
        with engine.connect() as conn:
            rows = conn.execute(select(b).order_by(b.c.id.desc()).limit(limit)).mappings().all()
            ids = [r["id"] for r in rows]
            counts: dict = {}
            for bid, state, n in conn.execute(
                select(c.c.bounty_id, c.c.state, func.count())
                .where(c.c.bounty_id.in_(ids))
                .group_by(c.c.bounty_id, c.c.state)
            ):
                counts.setdefault(bid, {})[state] = n
            money: dict = {}
            for bid, state, amount in conn.execute(
                select(p.c.bounty_id, p.c.state, p.c.amount_wei).where(p.c.bounty_id.in_(ids))
            ):
                m = money.setdefault(bid, [0, 0])
                m[0 if state in ("mined", "final") else 1] += int(amount)
        now = time.time()
        out = []
        for r in rows:
            n = counts.get(r["id"], {})
            taken = sum(v for k, v in n.items() if k in SLOT_TAKEN)
            paid, owed = money.get(r["id"], (0, 0))
            out.append(
                {
                    "id": r["id"],
                    "requester": r["requester"],
                    **{k: r[k] for k in TERMS},
                    "reward_wei": str(r["reward_wei"]),
                    **{k: r[k] for k in TIMES},
                    "state": r["state"],
                    "created_at": r["created_at"],
                    "slots_taken": taken,
                    "slots_free": max(0, r["slots"] - taken) if r["deadline"] > now else 0,
                    "approved": n.get("approved", 0),
                    "funded_wei": str(r["funded_wei"]),
                    "paid_wei": str(paid),
                    "owed_wei": str(owed),
                    "escrow_wei": str(0 if r["state"] == "refunded" else max(0, r["funded_wei"] - paid)),
                    "escrow_address": r["escrow_address"],
                    "refund_after": r["refund_after"],
                }
            )
        return out

    return app
