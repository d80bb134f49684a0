"""Every error is a 4xx JSON `{"detail": "..."}` (models.ErrorOut) that says what went wrong: the service's errors
carry their status, a refused state transition is a 409, a refused sign-in a 401, a malformed request a 422 naming
the field (and listing every refused field in `errors`). `RESPONSES` documents them in the OpenAPI document."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from loopylab.market.auth import AuthError
from loopylab.market.models import ErrorOut
from loopylab.market.service import MarketError
from loopylab.market.states import TransitionError


async def _market_error(request: Request, exc: MarketError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if getattr(exc, "retry_after", None) else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


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


RESPONSES: dict = {
    code: {"model": ErrorOut, "description": what}
    for code, what in (
        (400, "the request cannot be carried out (e.g. the chain refused a transaction)"),
        (401, "not signed in, or the sign-in was refused"),
        (403, "signed in, but not allowed to do this"),
        (404, "no such resource"),
        (409, "the resource's state does not allow it now"),
        (413, "body or upload too large"),
        (422, "malformed request: `detail` names the first refused field, `errors` lists them"),
        (429, "too many calls: retry after the Retry-After header's seconds"),
        (503, "the server has no chain, or the chain is busy"),
    )
}


def install(app: FastAPI) -> None:
    for exc, handler in (
        (MarketError, _market_error),
        (TransitionError, _transition_error),
        (AuthError, _auth_error),
        (RequestValidationError, _validation_error),
    ):
        app.exception_handler(exc)(handler)
