"""A message's bytes for a stream whose messages differ only in their numbers (a driver's joint state).

`codec.encode_fields` walks the message's fields and has msgpack pack a fresh dict every time. A
`FieldsTemplate` packs everything that never changes once (the type, the field names, the joint names, the
frame, each vector's array header) and, per message, only the numbers: seq and stamp_ns, each float field
(msgpack's float64, big-endian) and each vector (its float64s, little-endian, as the array's bytes travel).
The result is byte for byte what `encode_fields` gives for the same fields; a value of another kind than
the template was made for (an int for a float, a vector of another length) goes through `encode_fields`.
`FieldsReader` is the other way round, for a subscriber: it learns a stream's template from one message and reads
the next ones' numbers from their places, checking every other byte (what `codec.decode_fields` would give).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from loopylab.bus import codec

_BE_DOUBLE = struct.Struct(">d")


class FieldsTemplate:
    """`encode(seq, stamp_ns, values)` = `codec.encode_fields(cls, {**static, seq, stamp_ns, **dynamic})[0]`,
    where `values` are the `dynamic` fields' values in order. `dynamic`: field -> the vector's length, or
    None for a float field. Fields neither static nor dynamic take their defaults."""

    def __init__(self, cls: type, dynamic: dict[str, int | None], **static: Any):
        plan = codec._plan(cls)
        names = {n for n, _, _ in plan}
        unknown = sorted((set(dynamic) | set(static) | {"seq", "stamp_ns"}) - names)
        if unknown or set(dynamic) & set(static) or {"seq", "stamp_ns"} & (set(dynamic) | set(static)):
            raise TypeError(f"{cls.__name__}: bad template fields {unknown or sorted(set(dynamic) & set(static))}")
        self.cls, self.static, self.dynamic = cls, dict(static), dict(dynamic)
        for n, size in dynamic.items():
            if (size is None) == (n in getattr(cls, "VECTORS", ())):
                raise TypeError(f"{cls.__name__}.{n}: give a length for a vector field, None for a float field")
        packer = codec._encoder.packer
        fields = {n: static.get(n, default) for n, default, _ in plan}
        if len(plan) + 1 >= 16:
            raise TypeError(f"{cls.__name__}: too many fields for a template")  # (a fixmap header below)
        # the packed map, cut where each dynamic value goes: statics[0] seq statics[1] stamp statics[2] ...
        statics, cur = [], bytes([0x80 | (len(plan) + 1)]) + packer.pack(codec._MSG) + packer.pack(cls.__name__)
        self.kinds: list[struct.Struct | None] = []  # per dynamic field: its vector's Struct, None for a float
        for n, _, vector in plan:
            cur += packer.pack(n)
            if n in ("seq", "stamp_ns"):
                statics.append(cur)
                cur = b""
            elif n in dynamic:
                size = dynamic[n]
                if size is None:
                    statics.append(cur + b"\xcb")
                    self.kinds.append(None)
                else:
                    wrapper = packer.pack({codec._ND: [codec._F64_STR, [size], bytes(8 * size)]})
                    if 8 * size >= codec.INLINE_MAX:
                        raise TypeError(f"{cls.__name__}.{n}: {size} values travel as a frame of their own")
                    statics.append(cur + wrapper[: len(wrapper) - 8 * size])
                    self.kinds.append(struct.Struct(f"<{size}d"))
                cur = b""
            else:
                v = fields[n]
                if vector:  # packed as encode_fields packs it (a static vector may not need a frame of its own)
                    w = codec._vector(v) if v is not None and type(v) is not np.ndarray else None
                    v = w if w is not None else codec._encoder.array(codec._f64(v))
                cur += packer.pack(v)
        statics.append(cur)
        self.statics = statics
        self.order = [n for n, _, _ in plan if n in dynamic]  # dynamic fields in the message's order
        self._where = [list(dynamic).index(n) for n in self.order]

    def encode(self, seq: int, stamp_ns: int, values: Sequence[Any]) -> bytes:
        """The header of the message with these numbers (`values`: the dynamic fields in the order given)."""
        statics, pack = self.statics, codec._encoder.packer.pack
        out = [statics[0], pack(seq), statics[1], pack(stamp_ns), statics[2]]
        try:
            for k, (kind, at) in enumerate(zip(self.kinds, self._where)):
                v = values[at]
                if kind is None:
                    if type(v) is not float:
                        raise TypeError  # msgpack packs an int, a numpy scalar... as something else
                    out.append(_BE_DOUBLE.pack(v))
                else:
                    out.append(kind.pack(*v))
                out.append(statics[k + 3])
        except (TypeError, struct.error):  # not what the template was made for: the general path decides
            fields = dict(self.static, seq=seq, stamp_ns=stamp_ns, **dict(zip(self.dynamic, values)))
            header, buffers = codec.encode_fields(self.cls, fields)
            if buffers:
                raise TypeError(f"{self.cls.__name__}: a template's message travels in one frame") from None
            return header
        return b"".join(out)


_BE_INTS = {0xCC: struct.Struct(">B"), 0xCD: struct.Struct(">H"), 0xCE: struct.Struct(">I"), 0xCF: struct.Struct(">Q")}


def _uint_at(b: bytes, at: int) -> tuple[int, int]:
    """A msgpack unsigned int at `at` (fixint, uint8...uint64): its value and where the next value starts."""
    t = b[at]
    if t < 0x80:
        return t, at + 1
    s = _BE_INTS[t]  # (KeyError: not an unsigned int; the caller falls back)
    return s.unpack_from(b, at + 1)[0], at + 1 + s.size


class FieldsReader:
    """`read(header)` = `codec.decode_fields(cls, header)` for a stream whose messages differ only in their numbers
    (a gate's joint commands at the driver's rate): it learns the stream's shape from a message (a `FieldsTemplate`
    whose bytes must be the message's own), then takes each next message's numbers out of their places and checks
    that every other byte is the template's. Anything else (another shape, names, a frame of its own) is decoded
    by `codec.decode_fields`; a shape that changes for good is learned anew after its second message."""

    def __init__(self, cls: type):
        codec.decode_fields_plan(cls)  # a TypeError now for a type decode_fields cannot give
        self.cls = cls
        self.template: FieldsTemplate | None = None
        self._fixed: dict[str, Any] = {}  # the fields the template holds, as decode_fields gives them
        self._missed = False  # the previous message was not the template's
        self._copied: set[str] = set()  # static fields handed out as copies (lists, dicts)
        self._names: list[str] = []
        self.hits = self.misses = 0

    def read(self, header: bytes, buffers: Sequence[Any] = ()) -> dict[str, Any]:
        t = self.template
        if t is not None and not buffers:
            out = self._match(t, header)
            if out is not None:
                self.hits += 1
                self._missed = False
                return out
        self.misses += 1
        fields = codec.decode_fields(self.cls, header, buffers)
        if not buffers and (t is None or self._missed):
            self._learn(fields, header)
        self._missed = True
        return fields

    def _learn(self, fields: dict[str, Any], header: bytes) -> None:
        """A template of the message `fields` were read from, if it gives the same bytes back; else none."""
        vectors = getattr(self.cls, "VECTORS", ())
        dynamic: dict[str, int | None] = {}
        for n, v in fields.items():
            if n in ("seq", "stamp_ns"):
                continue
            if n in vectors and type(v) is list and v and 8 * len(v) < codec.INLINE_MAX:
                dynamic[n] = len(v)
            elif type(v) is float:
                dynamic[n] = None
        static = {n: v for n, v in fields.items() if n not in dynamic and n not in ("seq", "stamp_ns")}
        self.template = None
        if any(type(x) in (list, dict) for v in static.values() if type(v) in (list, dict) for x in v):
            return  # nested containers: each message would need a deep copy of them; decode_fields makes them anew
        try:
            t = FieldsTemplate(self.cls, dynamic, **static)
            ok = t.encode(fields["seq"], fields["stamp_ns"], [fields[n] for n in dynamic]) == header
        except Exception:  # a message this cannot describe (odd static values, too many fields): decode it always
            return
        if ok:  # (copies: the caller gets `fields` itself, and may change its lists)
            self.template = t
            self._fixed = {n: (v.copy() if type(v) in (list, dict) else v) for n, v in static.items()}
            self._copied = {n for n, v in static.items() if type(v) in (list, dict)}
            self._names = list(fields)  # decode_fields' order (the plan's)

    def _match(self, t: FieldsTemplate, h: bytes) -> dict[str, Any] | None:
        """The fields of `h` if it is the template's message with other numbers; None if it is not."""
        statics = t.statics
        s = statics[0]
        if not h.startswith(s):
            return None
        try:
            seq, at = _uint_at(h, len(s))
            s = statics[1]
            if not h.startswith(s, at):
                return None
            stamp, at = _uint_at(h, at + len(s))
            s = statics[2]
            if not h.startswith(s, at):
                return None
            at += len(s)
            values: list[Any] = [None] * len(t.order)
            for k, (kind, where) in enumerate(zip(t.kinds, t._where)):
                if kind is None:
                    values[where] = _BE_DOUBLE.unpack_from(h, at)[0]
                    at += 8
                else:
                    values[where] = list(kind.unpack_from(h, at))
                    at += kind.size
                s = statics[k + 3]
                if not h.startswith(s, at):
                    return None
                at += len(s)
        except (KeyError, IndexError, struct.error):
            return None
        if at != len(h):
            return None
        got = dict(self._fixed, seq=seq, stamp_ns=stamp)
        got.update(zip(t.dynamic, values))
        for n in self._copied:
            got[n] = got[n].copy()
        return {n: got[n] for n in self._names}
