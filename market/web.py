"""Server-rendered pages (Jinja2, no build step): bounty list and detail, submission status,
leaderboard, my payouts. They read the same service views as the API and obey the same access
rules; the session comes from the `loopylab_session` cookie set by POST /auth/login."""

import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from loopylab.market.service import Market, MarketError

HERE = Path(__file__).parent


def eth(wei) -> str:
    v = Decimal(int(wei)) / Decimal(10**18)
    return f"{v.normalize():f} ETH" if v else "0 ETH"


def when(ts) -> str:
    if not ts:
        return "—"
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def short(address: str) -> str:
    return address if len(address or "") < 12 else f"{address[:6]}…{address[-4:]}"


def register(app: FastAPI, market: Market) -> None:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters.update(eth=eth, when=when, short=short)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def viewer(request: Request) -> str | None:
        return app.state.auth.address_of(request.cookies.get("loopylab_session"))

    def page(request: Request, name: str, status: int = 200, **ctx):
        return templates.TemplateResponse(request, name, {"me": viewer(request), "now": time.time(), **ctx},
                                          status_code=status)

    def error(request: Request, exc: MarketError):
        return page(request, "error.html", status=exc.status, message=exc.message)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def bounty_list(request: Request, state: str | None = None):
        states = ("draft", "open", "closed", "refunded", "cancelled")
        return page(request, "bounties.html", bounties=market.list_bounties(state if state in states else None, 200),
                    state=state)

    @app.get("/bounty/{bounty_id}", response_class=HTMLResponse, include_in_schema=False)
    def bounty_detail(request: Request, bounty_id: int):
        try:
            b = market.get_bounty(bounty_id)
        except MarketError as e:
            return error(request, e)
        me = viewer(request)
        subs = market.list_submissions(me, bounty_id) if me else []
        return page(request, "bounty.html", b=b, submissions=subs)

    @app.get("/submission/{submission_id}", response_class=HTMLResponse, include_in_schema=False)
    def submission_status(request: Request, submission_id: int):
        me = viewer(request)
        if me is None:
            return error(request, MarketError("sign in to see submissions", 401))
        try:
            sub = market.get_submission(me, submission_id)
        except MarketError as e:
            return error(request, e)
        return page(request, "submission.html", s=sub)

    @app.get("/board", response_class=HTMLResponse, include_in_schema=False)
    def board(request: Request):
        return page(request, "leaderboard.html", rows=market.leaderboard(100))

    @app.get("/payouts", response_class=HTMLResponse, include_in_schema=False)
    def payouts(request: Request):
        me = viewer(request)
        if me is None:
            return error(request, MarketError("sign in to see your payouts", 401))
        return page(request, "payouts.html", p=market.my_payouts(me))
