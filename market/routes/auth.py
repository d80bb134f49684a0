"""Sign in with Ethereum: a single-use nonce, the signed EIP-4361 message exchanged for a session (a bearer
token, and the HttpOnly cookie the web pages use), sign-out, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from web3 import Web3

from loopylab.market.models import AddressOut, LoginIn, LoginOut, NonceIn, NonceOut, OkOut
from loopylab.market.routes.deps import (
    SESSION_COOKIE,
    AuthDep,
    AuthorizationHeader,
    ConfigDep,
    MarketDep,
    User,
    session_token,
)

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/nonce", summary="A fresh single-use sign-in nonce", response_model=NonceOut)
def nonce(auth: AuthDep, config: ConfigDep, market: MarketDep, body: NonceIn | None = None):
    n, expires = auth.new_nonce()
    chain = market.chain
    return {
        "nonce": n,
        "expires_at": expires,
        "domain": config.domain,
        "uri": config.base_url,
        "chain_id": chain.chain_id if chain else 1,
        "address": Web3.to_checksum_address(body.address) if body and body.address else "",
    }


@router.post("/login", summary="Exchange a signed EIP-4361 message for a session", response_model=LoginOut)
def login(body: LoginIn, response: Response, auth: AuthDep, config: ConfigDep):
    token, address, expires = auth.login(body.message, body.signature)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", max_age=int(config.session_ttl_s))
    return {"token": token, "address": address, "expires_at": expires}


@router.post("/logout", response_model=OkOut)
def logout(request: Request, response: Response, auth: AuthDep, authorization: AuthorizationHeader = None):
    token = session_token(request, authorization)
    if token:
        auth.logout(token)
    response.delete_cookie(SESSION_COOKIE)
    return {"ok": True}


@router.get("/me", response_model=AddressOut)
def me(address: User):
    return {"address": address}
