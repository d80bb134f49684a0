"""The arm driver's units: one SYNC READ block of six motors to SI arrays, and joint angles to goal ticks.

Per joint: rad = sign * (present - zero) * 2π/4096 with the calibration's drive mode (sign) and zero;
velocity in the family's unit (Dynamixel 0.229 rpm, Feetech ticks/s); effort in N·m from each model's
register (servo.models: XL430 load 0.1 %, XL330 current, STS3215 load). The whole block is one
struct.unpack and a few list comprehensions (a few microseconds; numpy's per-call overhead was 50-80 µs).
"""

from __future__ import annotations

import math
import struct

import numpy as np

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
        self.fields = {r: regs.index(r) for r in self.block}
        self.sign_bits = {r: t[r].signed for r in self.block if isinstance(t[r].signed, int)}
        self.calib = calib
        self.sign = [-1.0 if calib[n].drive_mode else 1.0 for n in names]
        self.zero = [float(calib[n].zero) for n in names]
        self.vel_scale = VELOCITY_UNIT[bus.kind]
        self.eff_scale = [effort_unit(bus.kind, models.get(n, "")).nm_per_unit for n in names]

    def decode(self, raw: dict[int, bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(present ticks, position rad, velocity rad/s, effort N·m), one entry per joint in `names` order."""
        vals = self.struct.unpack(b"".join(raw[i] for i in self.ids))
        k = len(self.block)
        v = {r: vals[j::k] for r, j in self.fields.items()}
        for r, bit in self.sign_bits.items():  # Feetech sign-magnitude
            mask = (1 << bit) - 1
            v[r] = [-(x & mask) if x >> bit & 1 else x for x in v[r]]
        ticks = v["Present_Position"]
        pos = [s * (t - z) * TICK_RAD for s, t, z in zip(self.sign, ticks, self.zero)]
        vel = [s * x * self.vel_scale for s, x in zip(self.sign, v["Present_Velocity"])]
        eff = [s * x * e for s, x, e in zip(self.sign, v[self.effort_reg], self.eff_scale)]
        return np.array(ticks), np.array(pos), np.array(vel), np.array(eff)

    def to_rad(self, name: str, ticks: float) -> float:
        i = self.names.index(name)
        return float(self.sign[i] * (ticks - self.zero[i]) * TICK_RAD)

    def to_ticks(self, name: str, rad: float) -> int:
        i = self.names.index(name)
        return int(round(self.zero[i] + self.sign[i] * rad / TICK_RAD))
