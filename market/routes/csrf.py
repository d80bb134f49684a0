"""Cross-site request forgery defence for the browser session (ASGI middleware).

A browser attaches the `loopylab_session` cookie to any request to this host, including one a hostile page
starts. SameSite=Lax stops most, not all (sibling subdomains, top-level navigations, old browsers). So every
state-changing request (POST, PUT, PATCH, DELETE) that a browser could have sent:

- must come from one of this market's own origins when it names one (`Origin`, else `Referer`): a page on
  another origin is refused, sign-in included (login CSRF would sign the victim in as the attacker);
- when it carries the session cookie (and no bearer token), must also carry `X-CSRF-Token`, a value derived
  from the session token (sha256, so it reveals nothing of it) that the pages put in a `<meta>` tag. A cross-site
  page can neither read it nor set a custom header without a CORS preflight this server never grants.

Requests with `Authorization: Bearer` (the CLI, scripts) carry no ambient credential and pass unchanged, as do
GET, HEAD and OPTIONS, with no work beyond reading the method.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from loopylab.market.routes.deps import SESSION_COOKIE

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
SIGN_IN = ("/auth/nonce", "/auth/login")  # no session yet: the origin check alone applies


def csrf_token(session_token: str) -> str:
    return hashlib.sha256(b"loopylab csrf\0" + session_token.encode()).hexdigest()[:40]


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


class CSRFGuard:
    def __init__(self, app, allowed_origins):
        """`allowed_origins()` gives the origins (scheme://host[:port]) this market's pages are served from."""
        self.app, self.allowed_origins = app, allowed_origins

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE:
            await self.app(scope, receive, send)
            return
        why = self._refusal(scope)
        if why is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": why}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope) -> str | None:
        headers = {k: v for k, v in scope["headers"] if k in (b"authorization", b"origin", b"referer", b"cookie")}
        headers.update((k, v) for k, v in scope["headers"] if k == b"x-csrf-token")
        if headers.get(b"authorization", b"")[:7].lower() == b"bearer ":
            return None
        claimed = headers.get(b"origin") or headers.get(b"referer")
        if claimed is not None:
            origin = _origin_of(claimed.decode("latin-1"))
            if origin not in self.allowed_origins():
                return f"cross-site request refused: origin {origin or 'null'} is not this market's"
        if scope["path"] in SIGN_IN:
            return None
        session = _cookie(headers.get(b"cookie"), SESSION_COOKIE)
        if session is None:
            return None  # no ambient credential: the route's own sign-in check answers
        sent = headers.get(b"x-csrf-token", b"").decode("latin-1")
        if not hmac.compare_digest(sent, csrf_token(session)):
            return f"a signed-in browser request needs the {CSRF_HEADER} header of its page"
        return None


def _cookie(raw: bytes | None, name: str) -> str | None:
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:  # a malformed Cookie header: treat as no cookie (the route answers 401)
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def origins_of(domains: str, base_url: str) -> frozenset[str]:
    """The origins of the SIWE domains (http and https) and of the configured base URL."""
    out = {o for d in domains.split(",") if d.strip() for o in (f"http://{d.strip()}", f"https://{d.strip()}")}
    if base := _origin_of(base_url or ""):
        out.add(base)
    return frozenset(out)
