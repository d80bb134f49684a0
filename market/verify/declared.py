"""The physical checks a bounty declares in its `acceptance` list (ranges, monotonic timestamps, sensor
rates, notebook values in range, message counts). The market's own hard bounds (bounds.py) apply on top,
whatever a bounty declares."""

from __future__ import annotations

import math
from collections.abc import Iterator

from loopylab.market.verify.decode import field_value
from loopylab.market.verify.decode import stamp as _stamp


def plausibility(check: dict, messages: dict, notebooks: list) -> tuple[str, bool, str]:
    kind = check.get("check")
    topic = check.get("topic", "*")
    topics = list(messages) if topic == "*" else [topic]
    if kind == "range":
        lo, hi, fld = float(check.get("min", -math.inf)), float(check.get("max", math.inf)), check["field"]
        name = f"range {topic}.{fld}"
        seen = 0
        for t in topics:
            for _, msg in messages.get(t, []):
                try:
                    v = field_value(msg, fld)
                except (KeyError, IndexError, AttributeError, TypeError, ValueError):
                    return name, False, f"{t}: message has no field {fld!r}"
                seen += 1
                if not (lo <= v <= hi):
                    return name, False, f"{t}: {fld} = {v:g} outside [{lo:g}, {hi:g}]"
        if not seen:
            return name, False, f"no {topic} messages to check"
        return name, True, f"{seen} values within [{lo:g}, {hi:g}]"
    if kind == "monotonic":
        name = f"monotonic {topic}"
        for t in topics:
            stamps = [_stamp(m, lt) for lt, m in messages.get(t, [])]
            bad = next((i for i in range(1, len(stamps)) if stamps[i] <= stamps[i - 1]), None)
            if bad is not None:
                return name, False, f"{t}: timestamp {stamps[bad]} at message {bad} does not increase"
        return name, True, "timestamps strictly increasing"
    if kind == "rate":
        hz, tol = float(check["hz"]), float(check.get("tolerance", 0.1))
        name = f"rate {topic}"
        for t in topics:
            stamps = sorted(_stamp(m, lt) for lt, m in messages.get(t, []))
            if len(stamps) < 3:
                return name, False, f"{t}: too few messages to measure a rate"
            rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9 or 1e-9)
            if abs(rate - hz) > tol * hz:
                return name, False, f"{t}: {rate:.1f} Hz, declared {hz:g} Hz ± {tol:.0%}"
        return name, True, f"rate {hz:g} Hz ± {tol:.0%}"
    if kind == "notebook_range":
        q, lo, hi = check["quantity"], float(check.get("min", -math.inf)), float(check.get("max", math.inf))
        name = f"notebook {q}"
        values = list(_notebook_values(notebooks, q))
        if not values:
            return name, False, f"no {q} value in any notebook"
        bad = [v for v in values if not (lo <= v <= hi)]
        if bad:
            return name, False, f"{q} = {bad[0]:g} outside [{lo:g}, {hi:g}]"
        return name, True, f"{len(values)} {q} values within [{lo:g}, {hi:g}]"
    if kind == "min_messages":
        n = int(check["count"])
        got = sum(len(messages.get(t, [])) for t in topics)
        return f"count {topic}", got >= n, f"{got} messages, at least {n} required"
    return f"check {kind}", False, f"unknown check kind {kind!r}"


def _notebook_values(notebooks: list, quantity: str) -> Iterator[float]:
    """Observed values (`force`, `moved`, `slide`...) and estimated quantities (`friction`...)."""
    for sections in notebooks:
        for s in sections:
            body = s.body
            if s.kind == "observation" and getattr(body, "error", None) is None:
                for k, v in body.values:
                    if k == quantity:
                        yield v
            elif s.kind in ("belief", "conclusion"):
                for e in getattr(body, "estimates", ()) or getattr(body, "answers", ()):
                    if getattr(e, "quantity", None) == quantity and hasattr(e, "value"):
                        yield e.value


CHECK_KINDS = ("range", "monotonic", "rate", "notebook_range", "min_messages")
