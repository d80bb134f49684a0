"""The arm driver's units: one SYNC READ block of six motors to SI arrays, and joint angles to goal ticks.

Per joint: rad = sign * (present - zero) * 2π/4096 with the calibration's drive mode (sign) and zero;
velocity in the family's unit (Dynamixel 0.229 rpm, Feetech ticks/s); effort in N·m from each model's
register (servo.models: XL430 load 0.1 %, XL330 current, STS3215 load). Decoding the whole block is a
few vectorised numpy operations (microseconds), so the wire, not Python, bounds the cycle.
"""
from __future__ import annotations

import math

import numpy as np

from loopylab.firmware_bridge.servo.bus import MotorBus
from loopylab.firmware_bridge.servo.calibration import TICK_RAD, MotorCalibration
from loopylab.firmware_bridge.servo.models import effort_unit

BLOCKS = {"dynamixel": ["Present_Current", "Present_Velocity", "Present_Position"],   # 126 is Present_Load on XL430
          "feetech": ["Present_Position", "Present_Velocity", "Present_Load"]}
VELOCITY_UNIT = {"dynamixel": 0.229 * 2.0 * math.pi / 60.0, "feetech": TICK_RAD}      # rad/s per unit


class ArmCodec:
    def __init__(self, bus: MotorBus, names: list[str], models: dict[str, str],
                 calib: dict[str, MotorCalibration]):
        self.names, self.kind = names, bus.kind
        self.ids = [bus.ids[n] for n in names]
        self.block = BLOCKS[bus.kind]
        self.effort_reg = self.block[0] if bus.kind == "dynamixel" else "Present_Load"
        self.addr, self.length = bus.block(self.block)
        t = bus.proto.table
        self.signed = {r: t[r].signed for r in self.block}
        self.dtype = np.dtype({"names": self.block, "offsets": [t[r].address - self.addr for r in self.block],
                               "formats": [("<i2" if t[r].signed == "twos" else "<u2") if t[r].size == 2 else
                                           ("<i4" if t[r].signed == "twos" else "<u4") for r in self.block],
                               "itemsize": self.length})
        self.calib = calib
        self.sign = np.array([-1.0 if calib[n].drive_mode else 1.0 for n in names])
        self.zero = np.array([float(calib[n].zero) for n in names])
        self.vel_scale = VELOCITY_UNIT[bus.kind]
        self.eff_scale = np.array([effort_unit(bus.kind, models.get(n, "")).nm_per_unit for n in names])

    def decode(self, raw: dict[int, bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(present ticks, position rad, velocity rad/s, effort N·m), one entry per joint in `names` order."""
        rec = np.frombuffer(b"".join(raw[i] for i in self.ids), dtype=self.dtype)
        v = {}
        for r in self.block:
            x = rec[r].astype(np.int64)
            bit = self.signed[r]
            if isinstance(bit, int):            # Feetech sign-magnitude
                x = np.where(x & (1 << bit), -(x & ((1 << bit) - 1)), x)
            v[r] = x
        ticks = v["Present_Position"]
        pos = self.sign * (ticks - self.zero) * TICK_RAD
        vel = self.sign * v["Present_Velocity"] * self.vel_scale
        eff = self.sign * v[self.effort_reg] * self.eff_scale
        return ticks, pos, vel, eff

    def to_rad(self, name: str, ticks: float) -> float:
        i = self.names.index(name)
        return float(self.sign[i] * (ticks - self.zero[i]) * TICK_RAD)

    def to_ticks(self, name: str, rad: float) -> int:
        i = self.names.index(name)
        return int(round(self.zero[i] + self.sign[i] * rad / TICK_RAD))
