"""What the routes depend on (FastAPI `Depends`): the market, sign-in and settings from the app's state, and the
signed-in address from the session token (a bearer header from clients, the session cookie from browsers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from loopylab.market.auth import Auth
from loopylab.market.config import MarketConfig
from loopylab.market.service import Market, MarketError

SESSION_COOKIE = "loopylab_session"
MAX_ID = 2**31 - 1  # the id columns are 32-bit INTEGER on PostgreSQL: a larger id is a 422, never a 500
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="row id")]


def get_market(request: Request) -> Market:
    return request.app.state.market


def get_auth(request: Request) -> Auth:
    return request.app.state.auth


def get_config(request: Request) -> MarketConfig:
    return request.app.state.config


MarketDep = Annotated[Market, Depends(get_market)]
AuthDep = Annotated[Auth, Depends(get_auth)]
ConfigDep = Annotated[MarketConfig, Depends(get_config)]
AuthorizationHeader = Annotated[str | None, Header()]


def session_token(request: Request, authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.cookies.get(SESSION_COOKIE)


def current_user(request: Request, auth: AuthDep, authorization: AuthorizationHeader = None) -> str:
    address = auth.address_of(session_token(request, authorization))
    if address is None:
        raise MarketError("sign in first: POST /auth/nonce, sign the EIP-4361 message, POST /auth/login", 401)
    return address


User = Annotated[str, Depends(current_user)]
