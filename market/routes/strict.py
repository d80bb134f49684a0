"""Strict request bodies and a small rate limiter.

`StrictJSON` (ASGI middleware) reads every JSON request body up to a size limit and refuses, with the API's
422 error model, what Python's `json` would otherwise let through: NaN, Infinity and numbers that overflow to
them (`1e999`), and nesting deep enough to crash the process. Nothing non-finite reaches the models or the database, so no stored row can
make a later answer fail to serialise (one NaN in a bounty's JSON used to turn `GET /bounties` into a 500
for everyone). The body is then replayed to the app unchanged.

`RateLimit` is a per-key token bucket for maintenance and test-money routes.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass, field

MAX_JSON_BYTES = 1 << 20
MAX_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


class StrictJSONError(ValueError):
    pass


def _constant(name: str):
    raise StrictJSONError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise StrictJSONError(f"{text[:40]} is outside the range of a double")
    return v


def nesting_depth(body: bytes) -> int:
    """How deeply arrays and objects nest (strings skipped). Checked before parsing: py-evm raises Python's
    recursion limit to 100,000, so json.loads of a deeply nested body overflows the C stack and kills the
    server process instead of raising RecursionError."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return 0
    import numpy as np

    b = np.frombuffer(_STRING.sub(b'""', body), dtype=np.uint8)
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int32) - np.isin(b, (ord("]"), ord("}"))).astype(np.int32)
    return int(np.cumsum(step).max(initial=0))


def strict_loads(body: bytes):
    """json.loads that accepts only RFC 8259 JSON with finite numbers, nested at most MAX_DEPTH deep."""
    if nesting_depth(body) > MAX_DEPTH:
        raise StrictJSONError(f"nested more than {MAX_DEPTH} deep")
    try:
        return json.loads(body, parse_constant=_constant, parse_float=_finite)
    except StrictJSONError:
        raise
    except RecursionError:
        raise StrictJSONError("nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an int past Python's digit limit
        raise StrictJSONError(str(e)) from None


def _is_json(scope) -> bool:
    for k, v in scope.get("headers", ()):
        if k == b"content-type":
            ct = v.split(b";")[0].strip().lower()
            return ct == b"application/json" or ct.endswith(b"+json")
    return False


async def _error(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail, "errors": [{"loc": ["body"], "msg": detail}]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class StrictJSON:
    def __init__(self, app, max_bytes: int = MAX_JSON_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _error(send, 413, f"body: a JSON body is limited to {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        if body:
            try:
                strict_loads(body)
            except StrictJSONError as e:
                await _error(send, 422, f"body: {e}")
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@dataclass
class RateLimit:
    """At most `burst` calls at once per key, refilled at `per_s` calls a second."""

    per_s: float
    burst: int = 1
    _buckets: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, key: str) -> float:
        """0 and one token taken when the call may go ahead; else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.per_s)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.per_s
