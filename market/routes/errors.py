"""Every error is a 4xx JSON `{"detail": "..."}` that says what went wrong: the service's errors carry their
status, a refused state transition is a 409, a refused sign-in a 401, a malformed request a 422 naming the field."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from loopylab.market.auth import AuthError
from loopylab.market.service import MarketError
from loopylab.market.states import TransitionError


async def _market_error(request: Request, exc: MarketError) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


async def _transition_error(request: Request, exc: TransitionError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
    return JSONResponse({"detail": f"sign-in refused: {exc}"}, status_code=401)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()))
    return JSONResponse(
        {
            "detail": f"{where}: {first.get('msg', 'invalid request')}",
            "errors": [{"loc": list(map(str, e.get("loc", ()))), "msg": e.get("msg", "")} for e in exc.errors()[:10]],
        },
        status_code=422,
    )


def install(app: FastAPI) -> None:
    for exc, handler in (
        (MarketError, _market_error),
        (TransitionError, _transition_error),
        (AuthError, _auth_error),
        (RequestValidationError, _validation_error),
    ):
        app.exception_handler(exc)(handler)
