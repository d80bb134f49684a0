"""The lab's side of the market (lab > market): post the bounty it drafted, review what comes back, fetch the
notebooks it paid for. Plain calls through `loopylab.market.client.MarketClient`; the science is elsewhere
(lab/buying.py drafts, lab/collect.py takes the observations into the belief).

A review is the lab's own rule, the same for every submission: approve (sign the escrow's release) when every
automatic check passed, the twin replay included; leave it for a person when a check could not run; never
approve one that failed (the market marks those invalid anyway).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopylab.lab.buying import WEI_PER_ETH
from loopylab.market.client import MarketClient, load_key_file

DEADLINE_S = 7 * 86400
AUTO_APPROVE_S = 3 * 86400


@contextlib.contextmanager
def reaching(market: str | None) -> Iterator[None]:
    """A market that does not answer is one line (ConnectionError: exit 1), as `loopylab bounty` says it."""
    import httpx

    try:
        yield
    except httpx.TransportError as e:
        raise ConnectionError(f"cannot reach the market at {market}: {e or type(e).__name__}") from None


def client(market: str | Any, key: Path | str) -> MarketClient:
    """A signed-in client of the market at `market` (a URL, or an httpx.Client such as FastAPI's TestClient)."""
    c = MarketClient(market, load_key_file(key))
    c.login()
    return c


def post_draft(draft: dict, c: MarketClient) -> dict:
    """Post the drafted bounty and fund it through the escrow; the bounty as the market answers."""
    terms = dict(draft["terms"])
    terms.setdefault("deadline", time.time() + DEADLINE_S)
    terms.setdefault("auto_approve_s", AUTO_APPROVE_S)
    b = c.post_bounty(**terms)
    return c.fund(b["id"])


def after_run(draft: dict, out: Path, market: str | None, key: Path | None, console: Any = None) -> dict:
    """What `loopylab run` does with a drafted bounty: write it (bounty.json in the report), and post it when a
    market is named. Returns what result.json records: {drafted, posted[, market, id, state]}."""
    say = console.print if console is not None else print
    if not draft:
        say(
            "no bounty: the lab is sure enough, its own experiments are worth more, or nothing it lacks is worth the price"
        )
        return {"drafted": False}
    record: dict[str, Any] = {"drafted": True, "posted": False, **draft}
    reward = int(draft["terms"]["reward_wei"]) / WEI_PER_ETH
    why = draft["why"]
    say(
        f"bounty drafted: {why['experiment']} x{draft['terms']['task_spec']['repetitions']} on "
        f"{draft['terms']['slots']} rigs at {reward:.4g} ETH each (expected gain {why['eig']:.2f} nats; own best "
        f"{why['own_best']} {why['own_eig']:.2f} nats for {why['own_cost']:.3f})"
    )
    (out / "bounty.json").write_text(json.dumps(record, indent=2) + "\n")  # the draft, whatever the market says
    if market is not None:
        if key is None:
            raise ValueError("--market needs --key FILE (the requester's key: `loopylab bounty keygen`)")
        with reaching(market):
            c = client(market, key)
            try:
                b = post_draft(draft, c)
            finally:
                c.close()
        record.update(posted=True, market=str(market), id=b["id"], state=b["state"])
        (out / "bounty.json").write_text(json.dumps(record, indent=2) + "\n")
        say(f"posted bounty {b['id']} on {market} ({b['state']}); collect with: loopylab lab collect {out}")
    return {k: v for k, v in record.items() if k not in ("terms", "why")}


@dataclass
class Reviewed:
    """A bounty's submissions after the lab's review: approved ones with their notebooks' text."""

    approved: list[dict] = field(default_factory=list)  # submission rows (as the market answers)
    waiting: list[dict] = field(default_factory=list)  # a check could not run: a person decides
    refused: list[dict] = field(default_factory=list)  # invalid or rejected
    notebooks: dict[int, list[str]] = field(default_factory=dict)  # submission id -> its .nb files' text


def all_passed(sub: dict) -> bool:
    checks = sub.get("checks") or []
    return bool(checks) and all(c.get("status", "pass" if c.get("ok") else "fail") == "pass" for c in checks)


def review_and_fetch(c: MarketClient, bounty_id: int) -> Reviewed:
    """Approve each pending submission whose every check passed, then fetch the notebooks of the approved."""
    out = Reviewed()
    for sub in c.request("GET", f"/bounties/{bounty_id}/submissions"):
        if sub["state"] == "pending_review" and all_passed(sub):
            sub = c.review(sub["id"], True)
        if sub["state"] == "approved":
            out.approved.append(sub)
            files = [f for f in sub["manifest"].get("files", []) if str(f.get("path", "")).endswith(".nb")]
            out.notebooks[sub["id"]] = [c.request("GET", f"/blobs/{f['sha256']}").decode() for f in files]
        elif sub["state"] == "pending_review":
            out.waiting.append(sub)
        else:
            out.refused.append(sub)
    return out
