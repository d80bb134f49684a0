"""The public bounty list, served from a serialised body cached per query.

`GET /bounties` is the page everyone polls. Its answer is rebuilt only when it can have changed: when the store's
generation token (market/db.py: replaced by every write transaction that touches bounties, claims or payouts, in
any worker process or the relay) differs from the one read before the body was built, or when a listed bounty's
deadline has passed (its free slots drop to 0). Otherwise a request costs one one-row query and the bytes.
The body is encoded once (pydantic-core, in the answer model's schema), and carries a strong ETag:
`If-None-Match` with it answers 304 and no body.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from pydantic import TypeAdapter

from loopylab.market.models import BountyOut

_ENCODER = TypeAdapter(list[BountyOut])
MAX_ENTRIES = 512  # distinct (state, limit, offset, before) queries kept; the cache is dropped past that


@dataclass(frozen=True)
class Entry:
    body: bytes
    etag: str
    generation: str | None
    valid_until: float  # the first listed deadline still ahead when it was built
    next_before: int | None  # keyset cursor of the next page, None on the last one


class ListingCache:
    def __init__(self, market):
        self.market = market
        self._entries: dict[tuple, Entry] = {}
        self._lock = threading.Lock()

    def get(self, state: str | None, limit: int, offset: int, before: int | None) -> Entry:
        key = (state, limit, offset, before)
        generation = self.market.store.generation()
        entry = self._entries.get(key)
        if entry is not None and entry.generation == generation and generation is not None:
            if time.time() < entry.valid_until:
                return entry
        # read the token before the rows: a write that lands in between changes the token again, so the body
        # built here is at worst rebuilt once more, never served stale
        views = self.market.list_bounties(state, limit, offset, before)
        body = _ENCODER.dump_json(_ENCODER.validate_python(views))
        now = time.time()
        entry = Entry(
            body=body,
            etag='"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"',
            generation=generation,
            valid_until=min((v["deadline"] for v in views if v["deadline"] > now), default=float("inf")),
            next_before=views[-1]["id"] if len(views) == limit else None,
        )
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = entry
        return entry


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags
