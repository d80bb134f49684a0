"""Wire format: a msgpack header plus raw ndarray buffers as separate frames.

    [topic, header, buf0, buf1, ...]

The header is the message as a msgpack map (`{"__m__": type, seq, stamp_ns, frame_id, fields...}`).
Arrays of at least `INLINE_MAX` bytes are replaced by `{"__nd__": [dtype, shape, index]}` and their
memory travels as frame `index` (zero-copy on send from pyzmq's 64 KiB threshold, zero-copy read-only
views on receipt). Smaller arrays are inlined as msgpack bytes: an extra ZeroMQ frame costs more than
copying a few hundred bytes, and a 7-joint JointState stays a two-frame message.
"""

from __future__ import annotations

import dataclasses
import struct
import sys
import threading
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from loopylab.bus.messages import MESSAGE_TYPES, Message, _f64

INLINE_MAX = 4096
_ND, _MSG = "__nd__", "__m__"
_FIELDS: dict[type, tuple[str, ...]] = {}


class DecodeError(ValueError):
    """A frame set that is not a valid loopylab message."""


class UnknownType(DecodeError):
    """A well-formed message whose type this process does not know."""


def _names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


_NAME_SETS: dict[type, frozenset[str]] = {}
_DTYPES: dict[str, np.dtype[Any]] = {}  # dtype strings seen on the wire (np.dtype() parses each one anew)
_DTYPE_STRS: dict[np.dtype[Any], str] = {}  # and the other way, for sending


def _names_set(cls: type) -> frozenset[str]:
    names = _NAME_SETS.get(cls)
    if names is None:
        names = _NAME_SETS[cls] = frozenset(_names(cls))
    return names


def _dataclass_names(cls: type) -> tuple[str, ...] | None:
    """Field names of a dataclass type (cached), None for any other type."""
    names = _FIELDS.get(cls)
    if names is None and cls not in _NOT_DATACLASS:
        if dataclasses.is_dataclass(cls):
            names = _names(cls)
        else:
            _NOT_DATACLASS.add(cls)
    return names


_NOT_DATACLASS: set[type] = set()


class _Encoder(threading.local):
    """One msgpack packer per thread, reused: msgpack's C packer walks dicts, lists and scalars itself and
    hands `convert` only what it does not know (arrays, messages, numpy scalars). A Python walk of every
    field, and a new packer per message, cost several times more on every publish."""

    def __init__(self) -> None:
        self.buffers: list[np.ndarray] = []
        self.packer = msgpack.Packer(default=self.convert, use_bin_type=True)

    def convert(self, v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return self.array(v)
        t = type(v)
        names = _dataclass_names(t)
        if names is not None:
            d: dict[str, Any] = {_MSG: t.__name__}
            for n in names:
                x = getattr(v, n)
                d[n] = self.array(x) if type(x) is np.ndarray else x  # saves the packer a call back per array
            return d
        if isinstance(v, np.generic):
            return v.item()
        raise TypeError(f"{t.__name__} cannot travel on the bus")

    def array(self, v: np.ndarray) -> dict[str, list[Any]]:
        dt = _DTYPE_STRS.get(v.dtype)  # dtype.str builds a new string each time
        if dt is None:
            if v.dtype.hasobject:
                raise TypeError("object arrays cannot travel on the bus")
            dt = v.dtype.str
            if len(_DTYPE_STRS) < 64:
                _DTYPE_STRS[v.dtype] = dt
        if v.nbytes < INLINE_MAX:
            return {_ND: [dt, list(v.shape), v.tobytes()]}  # tobytes copies C-ordered for any layout
        self.buffers.append(np.ascontiguousarray(v))
        return {_ND: [dt, list(v.shape), len(self.buffers) - 1]}


_encoder = _Encoder()


def encode(obj: Any) -> tuple[bytes, list[np.ndarray]]:
    """Encode a message (or any msgpack-able tree of dicts, lists, arrays, messages) -> (header, buffers)."""
    enc = _encoder
    buffers: list[np.ndarray] = []
    enc.buffers = buffers
    return enc.packer.pack(obj), buffers  # a failed pack leaves nothing behind in the packer (msgpack resets it)


_F64_STR = np.dtype(np.float64).str  # "<f8" on every platform numpy ships for
_VECTOR_PACKERS: dict[int, struct.Struct] = {}
_PLANS: dict[
    type, tuple[tuple[str, Any, bool], ...]
] = {}  # message type -> ((field, default, is a vector), ...) for encode_fields


def _plan(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """How `encode_fields` writes a message type: its fields in order, with their defaults (built once; only
    ever read and packed, never handed out) and whether each is a vector."""
    plan = _PLANS.get(cls)
    if plan is None:
        if not (isinstance(cls, type) and issubclass(cls, Message)) or cls.__post_init__ is not Message.__post_init__:
            raise TypeError(f"encode_fields takes a message type whose only conversions are its VECTORS, not {cls!r}")
        blank = cls()
        plan = _PLANS[cls] = tuple((n, getattr(blank, n), n in cls.VECTORS) for n in _names(cls))
    return plan


def _vector(values: Any) -> dict[str, list[Any]] | None:
    """The inline wire form of a 1-D float64 array, packed from a sequence of numbers without numpy (what
    `encode` writes for the array the message would have made of it), or None if it is not one."""
    try:
        n = len(values)
        packer = _VECTOR_PACKERS.get(n)
        if packer is None:
            if n * 8 >= INLINE_MAX:
                return None
            packer = _VECTOR_PACKERS[n] = struct.Struct(f"{_F64_STR[0]}{n}d")
        return {_ND: [_F64_STR, [n], packer.pack(*values)]}
    except (struct.error, TypeError):  # not all numbers (nested lists, strings): the message's conversion decides
        return None


def encode_fields(cls: type, fields: dict[str, Any]) -> tuple[bytes, list[np.ndarray]]:
    """`encode(cls(**fields))` without building the message: the same bytes, for a driver's hot path.
    Vector fields (`cls.VECTORS`) given as plain sequences of numbers are packed straight to the wire; on a
    few values, numpy's array building and `tobytes` cost more than the rest of the encode."""
    plan = _plan(cls)
    if not _names_set(cls).issuperset(fields):
        raise TypeError(f"{cls.__name__} has no field {sorted(fields.keys() - _names_set(cls))[0]!r}")
    enc = _encoder
    buffers: list[np.ndarray] = []
    enc.buffers = buffers
    d: dict[str, Any] = {_MSG: cls.__name__}
    for n, default, vector in plan:
        v = fields.get(n, default)
        if vector:
            w = _vector(v) if v is not None and type(v) is not np.ndarray else None
            v = w if w is not None else enc.array(_f64(v))
        d[n] = v
    return enc.packer.pack(d), buffers


def _hook(d: dict[str, Any], buffers: Sequence[Any]) -> Any:
    """msgpack's object hook: an encoded array or message back to what was encoded; other dicts as they are."""
    nd = d.get(_ND)
    if nd is not None:
        try:
            dtype, shape, ref = nd
            dt = _DTYPES.get(dtype) if type(dtype) is str else None
            if dt is None:
                dt = np.dtype(dtype)
                if dt.hasobject:
                    raise DecodeError("object dtype refused")
                if type(dtype) is str and len(_DTYPES) < 64:
                    _DTYPES[dtype] = dt
            buf = ref if isinstance(ref, (bytes, bytearray)) else _buffer(buffers, ref)
            arr = np.frombuffer(buf, dtype=dt).reshape(shape)
        except DecodeError:
            raise
        except Exception as e:  # bad dtype, wrong size, bad index
            raise DecodeError(f"bad array field: {e}") from None
        arr.flags.writeable = False
        return arr
    name = d.get(_MSG)
    if name is not None:
        cls = MESSAGE_TYPES.get(name)
        if cls is None:
            raise UnknownType(f"unknown message type {name!r}")
        del d[_MSG]
        if not d.keys() <= _names_set(cls):  # a newer sender's fields: keep the ones this version knows
            d = {k: v for k, v in d.items() if k in _names_set(cls)}
        try:
            return cls(**d)
        except Exception as e:
            raise DecodeError(f"bad {name} fields: {e}") from None
    return d


def decode(header: bytes, buffers: Sequence[Any] = ()) -> Any:
    """Inverse of `encode`. Raises DecodeError (or UnknownType) on anything malformed."""
    try:
        return msgpack.unpackb(header, object_hook=lambda d: _hook(d, buffers), raw=False, strict_map_key=False)
    except DecodeError:
        raise
    except Exception as e:  # truncated / garbage msgpack
        raise DecodeError(f"bad header: {e}") from None


class WrongType(DecodeError):
    """A well-formed message of another type than the one asked for."""


_LITTLE = sys.byteorder == "little"  # the wire's float64 is "<f8": a memoryview reads it as is on such hosts
_CONTAINERS = (list, dict)
# message type -> ((field, default as decode_fields gives it, is a vector), ...)
_FIELD_PLANS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def decode_fields_plan(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """How `decode_fields` fills a `cls`: its fields in order, each with the value a left-out one takes and whether
    it is a vector. A TypeError for a type with conversions of its own (those `encode_fields` refuses too)."""
    plan = _FIELD_PLANS.get(cls)
    if plan is None:
        plan = _FIELD_PLANS[cls] = tuple((n, d.tolist() if v else d, v) for n, d, v in _plan(cls))
    return plan


def _walk(v: Any, buffers: Sequence[Any]) -> Any:
    """What `decode`'s hook makes of a nested value (its arrays and messages), in place, inner values first."""
    if type(v) is list:
        for i, x in enumerate(v):
            if type(x) in _CONTAINERS:
                v[i] = _walk(x, buffers)
        return v
    if type(v) is dict:
        for k, x in v.items():
            if type(x) in _CONTAINERS:
                v[k] = _walk(x, buffers)
        return _hook(v, buffers)
    return v


def _float_list(v: Any, buffers: Sequence[Any], name: str) -> Any:
    """A vector field as the message's `.tolist()` gives it: a 1-D float64 array read without numpy; anything else
    (another dtype or shape, a plain list, a fault) the way `decode` and the message's conversion take it."""
    nd = v.get(_ND) if type(v) is dict else None
    if type(nd) is list and len(nd) == 3 and nd[0] == _F64_STR and _LITTLE:
        shape, ref = nd[1], nd[2]
        if type(shape) is list and len(shape) == 1 and type(shape[0]) is int:
            try:
                buf = ref if type(ref) is bytes else _buffer(buffers, ref)
                floats = memoryview(buf).cast("d").tolist()
                if len(floats) == shape[0]:
                    return floats
            except Exception:  # not a whole number of float64s, a bad reference: decode's own words below
                pass
    v = _walk(v, buffers) if type(v) in _CONTAINERS else v
    try:
        return _f64(v).tolist()
    except Exception as e:
        raise DecodeError(f"bad {name} fields: {e}") from None


def decode_fields(cls: type, header: bytes, buffers: Sequence[Any] = ()) -> dict[str, Any]:
    """The fields of the `cls` message `decode(header, buffers)` would give, without building it or any array:
    a dict of every field, vectors (`cls.VECTORS`) as lists of floats (the array's `tolist()`). The mirror of
    `encode_fields`, for a driver's hot path. Raises DecodeError on anything malformed, UnknownType on a type
    this process does not know, WrongType on a message that is not a `cls`."""
    try:
        d = msgpack.unpackb(header, raw=False, strict_map_key=False)
    except Exception as e:  # truncated / garbage msgpack
        raise DecodeError(f"bad header: {e}") from None
    name = d.get(_MSG) if type(d) is dict else None
    got = MESSAGE_TYPES.get(name) if type(name) is str else None
    if got is None or not issubclass(got, cls):
        if got is None and name is not None:
            raise UnknownType(f"unknown message type {name!r}")
        what = got.__name__ if got is not None else type(_walk(d, buffers) if type(d) in _CONTAINERS else d).__name__
        raise WrongType(f"got {what}, expected {cls.__name__}")
    plan = decode_fields_plan(got)
    if len(d) != len(plan) + 1:  # a field left out or a newer sender's: decode would still unpack the extras
        for k in d.keys() - _names_set(got) - {_MSG}:
            if type(d[k]) in _CONTAINERS:
                _walk(d[k], buffers)
    out: dict[str, Any] = {}
    for n, default, vector in plan:
        v = d.get(n, d)  # (d itself: the field was left out)
        if v is d:
            v = default.copy() if type(default) in _CONTAINERS else default
        elif vector:
            v = _float_list(v, buffers, got.__name__)
        elif type(v) in _CONTAINERS:
            v = _walk(v, buffers)
        out[n] = v
    return out


def inline(header: bytes, buffers: Sequence[Any] = ()) -> bytes:
    """One self-contained msgpack document of a message: every array frame folded back into the header
    (what recordings store; `decode(inline(h, b))` equals `decode(h, b)`)."""

    def fold(v: Any) -> Any:
        if isinstance(v, dict):
            nd = v.get(_ND)
            if nd is not None and isinstance(nd, list) and len(nd) == 3 and isinstance(nd[2], int):
                return {_ND: [nd[0], nd[1], bytes(_buffer(buffers, nd[2]))]}
            return {k: fold(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fold(x) for x in v]
        return v

    try:
        tree = msgpack.unpackb(header, raw=False, strict_map_key=False)
    except Exception as e:
        raise DecodeError(f"bad header: {e}") from None
    return msgpack.packb(fold(tree), use_bin_type=True)


def _buffer(buffers: Sequence[Any], i: Any) -> Any:
    if not isinstance(i, int) or not 0 <= i < len(buffers):
        raise DecodeError(f"array refers to missing frame {i}")
    b = buffers[i]
    return b.buffer if hasattr(b, "buffer") else b


def to_frames(topic: str, obj: Any) -> list[Any]:
    header, buffers = encode(obj)
    return [topic.encode(), header, *buffers]


def from_frames(frames: Sequence[Any]) -> tuple[str, Any]:
    """frames as received (bytes or zmq.Frame) -> (topic, message)."""
    if len(frames) < 2:
        raise DecodeError(f"expected at least 2 frames, got {len(frames)}")
    raw = [f.bytes if hasattr(f, "bytes") and i < 2 else f for i, f in enumerate(frames)]
    try:
        topic = raw[0].decode()
    except UnicodeDecodeError:
        raise DecodeError("topic is not utf-8") from None
    return topic, decode(raw[1], raw[2:])


def nbytes(frames: Sequence[Any]) -> int:
    return sum(
        len(f) if isinstance(f, (bytes, bytearray)) else (f.nbytes if isinstance(f, np.ndarray) else len(f.buffer))
        for f in frames
    )
