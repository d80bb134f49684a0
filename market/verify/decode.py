"""Reading what a submission recorded: MCAP messages (typed bus messages or JSON/msgpack dicts), one field
of a message by path, a message's own stamp, and every numeric leaf of a message by its path (what the
bounds, the duplicate fingerprints and the twin replay work on)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

SKIP_KEYS = ("stamp_ns", "seq", "log_time", "time")  # bookkeeping, not measurements
MAX_LEAVES = 64  # longer arrays (pixels, point clouds) are not measurement channels


def read_mcap(path) -> Iterator[tuple[str, int, Any]]:
    """(topic, log_time_ns, message) of a recording, through the bus's own reader (bus.record), which
    decodes its msgpack messages into typed bus messages and JSON channels into dicts. Without the
    bus (a market-only install) JSON and plain msgpack channels are read here."""
    try:
        from loopylab.bus.record import read_messages
    except ImportError:
        read_messages = None
    if read_messages is not None:
        yield from read_messages(path)
        return
    import msgpack
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        for _schema, channel, message in make_reader(f).iter_messages(log_time_order=True):
            if channel.message_encoding == "json":
                yield channel.topic, message.log_time, json.loads(message.data)
            elif channel.message_encoding == "msgpack":
                yield channel.topic, message.log_time, msgpack.unpackb(message.data, raw=False)
            else:
                raise ValueError(f"{channel.topic}: unsupported message encoding {channel.message_encoding!r}")


def field_value(msg: Any, path: str) -> float:
    """`force.2` -> msg.force[2] (objects, dicts, lists and numpy arrays alike)."""
    cur = msg
    if isinstance(cur, dict) and "fields" in cur and path.split(".", maxsplit=1)[0] not in cur:
        cur = cur["fields"]
    for part in path.split("."):
        if part.lstrip("-").isdigit():
            cur = cur[int(part)]
        elif isinstance(cur, dict):
            cur = cur[part]
        else:
            cur = getattr(cur, part)
    return float(cur)


class BadStamp(ValueError):
    pass


def raw_stamp(msg: Any) -> Any:
    return msg.get("stamp_ns") if isinstance(msg, dict) else getattr(msg, "stamp_ns", None)


def stamp(msg: Any, log_time: int) -> int:
    """A message's own stamp_ns, else its log time. A stamp that is not an integer (a string, NaN, a float)
    is the data's fault: the check fails, the server does not."""
    s = raw_stamp(msg)
    if s is None or s == 0:
        return int(log_time)
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
        raise BadStamp(f"stamp_ns {str(s)[:40]!r} is not an integer")
    return int(s)


def plain(obj: Any) -> Any:
    """A message as plain data (dicts, lists, floats, strings): what the verifier plug-ins take."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 4096 else []
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__dataclass_fields__"):
        return {k: plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return obj


def leaves(obj: Any, prefix: str = "", out: dict | None = None) -> dict[str, float]:
    """Numeric leaves of a message by path (`force.2`), timestamps and sequence numbers left out, and arrays
    longer than MAX_LEAVES (an image's pixels are not measurement channels)."""
    out = {} if out is None else out
    if isinstance(obj, dict):
        for k in obj:
            if k not in SKIP_KEYS:
                leaves(obj[k], f"{prefix}{k}.", out)
    elif isinstance(obj, (list, tuple)):
        if len(obj) <= MAX_LEAVES:
            for i, v in enumerate(obj):
                leaves(v, f"{prefix}{i}.", out)
    elif isinstance(obj, np.ndarray):
        if obj.size <= MAX_LEAVES and obj.dtype.kind in "fiu":
            for i, v in enumerate(obj.ravel()):
                out[f"{prefix}{i}"] = float(v)
    elif isinstance(obj, (bool, np.bool_)):
        return out
    elif isinstance(obj, (int, float, np.integer, np.floating)):
        out[prefix[:-1]] = float(obj)
    elif hasattr(obj, "__dataclass_fields__"):
        leaves({k: getattr(obj, k) for k in obj.__dataclass_fields__}, prefix, out)
    return out
