"""What a requester sees of a submission before deciding on it: a preview, not the data. The files stay
withheld until approval (otherwise a requester could download, reject, and keep the data for free).

Per recording topic: the message count, the span and rate of its stamps, the numeric fields and their
ranges, and PREVIEW_MESSAGES messages spread over the recording (enough to judge format and scale, a few
out of thousands). Per notebook: the protocol sections (question, scene, experiment) in full and which
result sections exist, without their numbers."""

from __future__ import annotations

import math
from pathlib import Path

from loopylab.market.verify.decode import leaves, plain, read_mcap, stamp

PREVIEW_MESSAGES = 5
PROTOCOL = ("question", "scene", "hypothesis", "experiment")


def preview_files(files: list[tuple[str, Path]]) -> dict:
    out: dict = {"recordings": {}, "notebooks": {}, "other": {}}
    for name, path in files:
        if name.endswith(".mcap"):
            out["recordings"][name] = _recording(path)
        elif name.endswith((".nb", ".notebook")):
            out["notebooks"][name] = _notebook(path)
        else:
            out["other"][name] = {"bytes": path.stat().st_size if path.exists() else None}
    return out


def _recording(path: Path) -> dict:
    topics: dict[str, list] = {}
    try:
        for topic, lt, msg in read_mcap(path):
            topics.setdefault(topic, []).append((lt, msg))
    except Exception as e:
        return {"error": f"not a readable MCAP file ({type(e).__name__})"}
    out = {}
    for topic, rows in topics.items():
        try:
            stamps = [stamp(m, lt) for lt, m in rows]
        except ValueError:
            stamps = [int(lt) for lt, _ in rows]
        span = (max(stamps) - min(stamps)) / 1e9 if stamps else 0.0
        ranges: dict[str, list[float]] = {}
        for _lt, m in rows:
            for k, v in leaves(m).items():
                if math.isfinite(v):
                    lo_hi = ranges.setdefault(k, [v, v])
                    lo_hi[0], lo_hi[1] = min(lo_hi[0], v), max(lo_hi[1], v)
        picks = sorted({round(i * (len(rows) - 1) / max(1, PREVIEW_MESSAGES - 1)) for i in range(PREVIEW_MESSAGES)})
        out[topic] = {
            "messages": len(rows),
            "seconds": span,
            "rate_hz": (len(rows) - 1) / span if span > 0 else None,
            "fields": {k: {"min": lo, "max": hi} for k, (lo, hi) in list(ranges.items())[:64]},
            "sample": [plain(rows[i][1]) for i in picks] if rows else [],
        }
    return out


def _notebook(path: Path) -> dict:
    from loopylab.world import notebook as grammar

    try:
        sections = grammar.parse(path.read_text())
    except (UnicodeDecodeError, grammar.GrammarError):
        return {"error": "not a notebook under the lab grammar"}
    return {
        "protocol": [grammar.section_text(s.body) for s in sections if s.kind in PROTOCOL],
        "results": [s.kind for s in sections if s.kind not in PROTOCOL],
    }
