"""The arm driver's units: one SYNC READ block of six motors to SI arrays, and joint angles to goal ticks.

Per joint: rad = sign * (present - zero) * 2π/4096 with the calibration's drive mode (sign) and zero;
velocity in the family's unit (Dynamixel 0.229 rpm, Feetech ticks/s); effort in N·m from each model's
register (servo.models: XL430 load 0.1 %, XL330 current, STS3215 load). The whole block is one
struct.unpack and a few list comprehensions into plain lists (a few microseconds; numpy's per-call overhead
was 50-80 µs), which `Publisher.publish_fields` packs straight to the wire.
"""

from __future__ import annotations

import math
import struct
from operator import mul as _mul
from operator import sub as _sub

from loopylab.firmware_bridge.servo.bus import MotorBus
from loopylab.firmware_bridge.servo.calibration import TICK_RAD, MotorCalibration
from loopylab.firmware_bridge.servo.models import effort_unit

BLOCKS = {
    "dynamixel": ["Present_Current", "Present_Velocity", "Present_Position"],  # 126 is Present_Load on XL430
    "feetech": ["Present_Position", "Present_Velocity", "Present_Load"],
}
VELOCITY_UNIT = {"dynamixel": 0.229 * 2.0 * math.pi / 60.0, "feetech": TICK_RAD}  # rad/s per unit


class ArmCodec:
    def __init__(self, bus: MotorBus, names: list[str], models: dict[str, str], calib: dict[str, MotorCalibration]):
        self.names, self.kind = names, bus.kind
        self.ids = [bus.ids[n] for n in names]
        self.block = BLOCKS[bus.kind]
        self.effort_reg = self.block[0] if bus.kind == "dynamixel" else "Present_Load"
        self.addr, self.length = bus.block(self.block)
        t = bus.proto.table
        regs = sorted(self.block, key=lambda r: t[r].address)
        fmt, at = "", self.addr
        for r in regs:  # one struct for the whole block of every motor (pads for gaps)
            fmt += (
                "x" * (t[r].address - at)
                + {(2, True): "h", (2, False): "H", (4, True): "i", (4, False): "I"}[(t[r].size, t[r].signed == "twos")]
            )
            at = t[r].address + t[r].size
        fmt += "x" * (self.addr + self.length - at)
        self.struct = struct.Struct("<" + fmt * len(names))
        self.k = len(regs)
        self.at = {r: regs.index(r) for r in self.block}  # each register's place in a motor's unpacked values
        self.sign_bits = {self.at[r]: t[r].signed for r in self.block if isinstance(t[r].signed, int)}
        self.calib = calib
        self.sign = [-1.0 if calib[n].drive_mode else 1.0 for n in names]
        self.zero = [float(calib[n].zero) for n in names]
        self.index = {n: i for i, n in enumerate(names)}
        self.vel_scale = VELOCITY_UNIT[bus.kind]
        self.eff_scale = [effort_unit(bus.kind, models.get(n, "")).nm_per_unit for n in names]
        # per joint, the factors from raw units to rad, rad/s and N·m (the calibration's sign folded in)
        self.pos_k = [s * TICK_RAD for s in self.sign]
        self.vel_k = [s * self.vel_scale for s in self.sign]
        self.eff_k = [s * e for s, e in zip(self.sign, self.eff_scale)]
        # decode's columns (position, velocity, effort) in a motor's unpacked values, and the sign-magnitude ones
        self._cols = (self.at["Present_Position"], self.at["Present_Velocity"], self.at[self.effort_reg])
        self._signed = [
            (c, self.sign_bits[j], (1 << self.sign_bits[j]) - 1)
            for c, j in enumerate(self._cols)
            if j in self.sign_bits
        ]

    def decode(self, raw: bytes | dict[int, bytes]) -> tuple[list[int], list[float], list[float], list[float]]:
        """(present ticks, position rad, velocity rad/s, effort N·m), one entry per joint in `names` order.
        `raw`: the block of every motor joined in `ids` order (or {id: block})."""
        if not isinstance(raw, (bytes, bytearray)):
            raw = b"".join(raw[i] for i in self.ids)
        vals, k = self.struct.unpack(raw), self.k
        cols = [vals[j::k] for j in self._cols]
        for c, bit, mask in self._signed:  # Feetech sign-magnitude
            cols[c] = [-(x & mask) if x >> bit & 1 else x for x in cols[c]]
        ticks = list(cols[0])
        # (map with operator's functions: the loops run in C, no frame per list as a comprehension makes)
        pos = list(map(_mul, self.pos_k, map(_sub, ticks, self.zero)))
        return ticks, pos, list(map(_mul, self.vel_k, cols[1])), list(map(_mul, self.eff_k, cols[2]))

    def to_rad(self, name: str, ticks: float) -> float:
        i = self.index[name]
        return float(self.sign[i] * (ticks - self.zero[i]) * TICK_RAD)

    def to_ticks(self, name: str, rad: float) -> int:
        i = self.index[name]
        return int(round(self.zero[i] + self.sign[i] * rad / TICK_RAD))
