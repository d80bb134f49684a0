"""A message's bytes for a stream whose messages differ only in their numbers (a driver's joint state).

`codec.encode_fields` walks the message's fields and has msgpack pack a fresh dict every time. A
`FieldsTemplate` packs everything that never changes once (the type, the field names, the joint names, the
frame, each vector's array header) and, per message, only the numbers: seq and stamp_ns, each float field
(msgpack's float64, big-endian) and each vector (its float64s, little-endian, as the array's bytes travel).
The result is byte for byte what `encode_fields` gives for the same fields; a value of another kind than
the template was made for (an int for a float, a vector of another length) goes through `encode_fields`.
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
