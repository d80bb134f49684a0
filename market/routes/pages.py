"""Server-rendered pages (Jinja2, no build step): bounty list and detail, submission status,
leaderboard, my payouts. They read the same service views as the API and obey the same access
rules; the session comes from the `loopylab_session` cookie set by POST /auth/login.

What a person does (sign in with a browser wallet, claim, upload and submit, review with a reason, withdraw)
static/market.js does through the JSON API, signing with the wallet (EIP-1193 `personal_sign`,
`eth_signTypedData_v4`) and sending the page's CSRF token."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from loopylab.market.routes.csrf import csrf_token
from loopylab.market.routes.deps import SESSION_COOKIE, AuthDep, MarketDep
from loopylab.market.service import MarketError

HERE = Path(__file__).parent.parent
STATES = ("draft", "open", "closed", "refunded", "cancelled")


def eth(wei) -> str:
    v = Decimal(int(wei)) / Decimal(10**18)
    return f"{v.normalize():f} ETH" if v else "0 ETH"


def when(ts) -> str:
    if not ts:
        return "—"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


def short(address: str) -> str:
    return address if len(address or "") < 12 else f"{address[:6]}…{address[-4:]}"


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(eth=eth, when=when, short=short)
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def viewer(request: Request, auth: AuthDep) -> str | None:
    """The signed-in address from the session cookie (pages never read a bearer header), or None."""
    return auth.address_of(request.cookies.get(SESSION_COOKIE))


Viewer = Annotated[str | None, Depends(viewer)]


def page(request: Request, me: str | None, name: str, status: int = 200, **ctx):
    # the page's CSRF token (routes/csrf.py) goes in a <meta> tag that market.js sends back as a header
    token = csrf_token(request.cookies[SESSION_COOKIE]) if me else ""
    return templates.TemplateResponse(
        request, name, {"me": me, "now": time.time(), "csrf": token, **ctx}, status_code=status
    )


def error(request: Request, me: str | None, exc: MarketError):
    return page(request, me, "error.html", status=exc.status, message=exc.message)


@router.get("/")
def bounty_list(request: Request, market: MarketDep, me: Viewer, state: str | None = None):
    return page(
        request,
        me,
        "bounties.html",
        bounties=market.list_bounties(state if state in STATES else None, 200),
        state=state,
    )


@router.get("/bounty/{bounty_id}")
def bounty_detail(request: Request, bounty_id: int, market: MarketDep, me: Viewer):
    try:
        b = market.get_bounty(bounty_id)
    except MarketError as e:
        return error(request, me, e)
    subs = market.list_submissions(me, bounty_id) if me else []
    mine = [c for c in market.my_claims(me) if c["bounty_id"] == bounty_id] if me else []
    claim = next((c for c in mine if c["state"] == "active"), None)
    return page(
        request, me, "bounty.html", b=b, submissions=subs, claim=claim, held=bool(mine), rig=market.has_rig(me, me)
    )


@router.get("/submission/{submission_id}")
def submission_status(request: Request, submission_id: int, market: MarketDep, me: Viewer):
    if me is None:
        return error(request, me, MarketError("sign in to see submissions", 401))
    try:
        sub = market.get_submission(me, submission_id)
    except MarketError as e:
        return error(request, me, e)
    return page(request, me, "submission.html", s=sub, requester=market.get_bounty(sub["bounty_id"])["requester"])


@router.get("/board")
def board(request: Request, market: MarketDep, me: Viewer):
    return page(request, me, "leaderboard.html", rows=market.leaderboard(100))


@router.get("/payouts")
def payouts(request: Request, market: MarketDep, me: Viewer):
    if me is None:
        return error(request, me, MarketError("sign in to see your payouts", 401))
    return page(request, me, "payouts.html", p=market.my_payouts(me))
