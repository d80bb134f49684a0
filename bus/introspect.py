"""Looking at a running graph: topic rates and bandwidth (like `ros2 topic hz/bw`), readable messages."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import numpy as np

from loopylab.bus.node import Node

ARRAY_INLINE_MAX = 16  # arrays up to this many elements are printed in full


@dataclasses.dataclass
class TopicRate:
    topic: str
    type: str
    publishers: int
    messages: int = 0
    hz: float = 0.0  # mean rate over the inter-arrival times seen in the window
    bytes_per_s: float = 0.0
    mean_size: float = 0.0  # bytes per message (header + array frames)


def measure_topics(
    node: Node, window: float = 1.0, heartbeats: bool = False, topics: list[str] | None = None
) -> list[TopicRate]:
    """Subscribe raw to every live topic (or `topics`) for `window` seconds and measure it."""
    table = node.graph()["topics"]
    names = sorted(
        t for t in table if (topics is None or t in topics) and (heartbeats or not t.startswith("heartbeat/"))
    )
    arrivals: dict[str, list[float]] = {t: [] for t in names}
    sizes: dict[str, int] = dict.fromkeys(names, 0)
    lock = threading.Lock()

    def counter(topic: str, frames: list, _recv_ns: int) -> None:
        n = sum(len(f.buffer) if hasattr(f, "buffer") else len(f) for f in frames)
        with lock:
            arrivals[topic].append(time.monotonic())
            sizes[topic] += n

    subs = [node.subscribe(t, raw=True, callback=counter, queue_size=1) for t in names]
    start = time.monotonic()
    node._stop.wait(window)
    elapsed = time.monotonic() - start
    for s in subs:
        node.unsubscribe(s)
    out = []
    with lock:
        for t in names:
            times = arrivals[t]
            r = TopicRate(t, (table[t][0].get("type") or "?") if table[t] else "?", len(table[t]), len(times))
            if len(times) >= 2:
                r.hz = (len(times) - 1) / (times[-1] - times[0])
            if times:
                r.bytes_per_s = sizes[t] / elapsed
                r.mean_size = sizes[t] / len(times)
            out.append(r)
    return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def summarize_array(a: np.ndarray) -> str:
    if a.size <= ARRAY_INLINE_MAX:
        return np.array2string(a, precision=4, separator=", ", suppress_small=True).replace("\n", "")
    stats = ""
    if a.dtype.kind in "biuf" and a.size:
        stats = f" min={a.min():.4g} max={a.max():.4g} mean={a.mean():.4g}"
    return f"<array shape={a.shape} dtype={a.dtype}{stats}>"


def format_message(msg: Any, indent: int = 0) -> str:
    """A message as indented `field: value` lines; big arrays summarised."""
    pad = "  " * indent
    if dataclasses.is_dataclass(msg) and not isinstance(msg, type):
        items = [(f.name, getattr(msg, f.name)) for f in dataclasses.fields(msg)]
    elif isinstance(msg, dict):
        items = list(msg.items())
    else:
        return pad + _scalar(msg)
    lines = []
    for k, v in items:
        if (dataclasses.is_dataclass(v) and not isinstance(v, type)) or (isinstance(v, dict) and v):
            lines.append(f"{pad}{k}:")
            lines.append(format_message(v, indent + 1))
        elif isinstance(v, list) and v and (dataclasses.is_dataclass(v[0]) or isinstance(v[0], dict)):
            lines.append(f"{pad}{k}:")
            for item in v:
                lines.append(f"{pad}  -")
                lines.append(format_message(item, indent + 2))
        else:
            lines.append(f"{pad}{k}: {_scalar(v)}")
    return "\n".join(lines)


def _scalar(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return summarize_array(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    return repr(v) if isinstance(v, str) else str(v)
