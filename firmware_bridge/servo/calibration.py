"""Arm calibration: homing offsets, joint ranges, drive directions and each joint's zero, saved as
JSON and checked against the motors on every connect (LeRobot's format, {motor: {id, drive_mode,
homing_offset, range_min, range_max}}, plus `zero`: the present position, in ticks, that is 0 rad).

Homing writes the offset that makes the zero pose read 2047 (Dynamixel: Present = Actual + Offset;
Feetech: Present = Actual - Offset); the ranges go into the motors' position-limit registers, so the
servos themselves refuse to go past them. Drive direction is applied on the host (radians sign):
rad = (-1 if drive_mode else 1) * (present - zero) * 2π / 4096.

`from_lerobot` imports a LeRobot calibration file. LeRobot leaves its homing offsets in the motors and
measures angles from the middle of each joint's recorded range (its DEGREES mode: (present - mid) x
360 / 4095, the frame of LeRobot's SO-101/Koch URDFs; RANGE_M100_100 maps range_min..range_max to
-100..100 and RANGE_0_100 the gripper to 0..100), so the import keeps offsets and ranges as they are
and sets zero = (range_min + range_max) / 2.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from loopylab.firmware_bridge.servo.bus import MotorBus
from loopylab.world.config import ConfigError, check_keys

CENTRE = 2047
UNCALIBRATED_ZERO = 2048.0  # the zero of files written before `zero` existed (and of uncalibrated arms)
LEROBOT_KEYS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")


class CalibrationMismatch(RuntimeError):
    """The motors hold different calibration registers than the file (motor swapped or recalibrated)."""


@dataclass
class MotorCalibration:
    id: int
    drive_mode: int = 0  # 1 = reversed (radians negated)
    homing_offset: int = 0
    range_min: int = 0
    range_max: int = 4095
    zero: float = UNCALIBRATED_ZERO  # present position (ticks) of 0 rad


TICK_RAD = 2.0 * math.pi / 4096


def to_rad(c: MotorCalibration, present: float) -> float:
    """Joint angle (rad) of a present position (ticks)."""
    return (-1.0 if c.drive_mode else 1.0) * (present - c.zero) * TICK_RAD


def to_ticks(c: MotorCalibration, rad: float) -> int:
    """Goal position (ticks) of a joint angle (rad)."""
    return int(round(c.zero + (-1.0 if c.drive_mode else 1.0) * rad / TICK_RAD))


def default_path(arm: str) -> Path:
    base = Path(os.environ.get("LOOPYLAB_CALIBRATION", Path.home() / ".cache" / "loopylab" / "calibration"))
    return base / f"{arm}.json"


def save(path: str | os.PathLike, calib: dict[str, MotorCalibration]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({n: asdict(c) for n, c in calib.items()}, indent=2))
    os.replace(tmp, path)  # never a half-written calibration file
    return path


def _read_json(path: str | os.PathLike) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read calibration file {path}: {e}") from None
    if not isinstance(raw, dict) or not all(isinstance(c, dict) for c in raw.values()):
        raise ConfigError(f"{path}: a calibration is {{joint: {{{', '.join(LEROBOT_KEYS)}}}}}")
    return raw


def load(path: str | os.PathLike) -> dict[str, MotorCalibration]:
    out = {}
    for name, c in _read_json(path).items():
        check_keys(c, LEROBOT_KEYS + ("zero",), f"{path}: {name}")
        missing = sorted(set(LEROBOT_KEYS) - set(c))
        if missing:
            raise ConfigError(f"{path}: {name}: missing {missing}")
        out[name] = MotorCalibration(**c)
    return out


def from_lerobot(path: str | os.PathLike, joints: list[str] | None = None) -> dict[str, MotorCalibration]:
    """A LeRobot calibration file (`~/.cache/huggingface/lerobot/calibration/robots/<type>/<id>.json`) as
    ours: offsets and ranges unchanged, each joint's zero at the middle of its range (LeRobot's 0°).
    `joints`: the arm's joints; the file must calibrate each of them, and only them."""
    raw = _read_json(path)
    if joints is not None and set(raw) != set(joints):
        raise ConfigError(f"{path}: LeRobot calibration of {sorted(raw)}, but this arm has {sorted(joints)}")
    out = {}
    for name, c in raw.items():
        check_keys(c, LEROBOT_KEYS, f"{path}: {name}")
        missing = sorted(set(LEROBOT_KEYS) - set(c))
        if missing:
            raise ConfigError(f"{path}: {name}: missing {missing}")
        if not c["range_min"] < c["range_max"]:
            raise ConfigError(f"{path}: {name}: range_min {c['range_min']} is not below range_max {c['range_max']}")
        out[name] = MotorCalibration(
            id=int(c["id"]),
            drive_mode=int(c["drive_mode"]),
            homing_offset=int(c["homing_offset"]),
            range_min=int(c["range_min"]),
            range_max=int(c["range_max"]),
            zero=(c["range_min"] + c["range_max"]) / 2,
        )
    return out


def identity(ids: dict[str, int]) -> dict[str, MotorCalibration]:
    """The calibration of motors as they leave the factory (no offset, full range, 2048 is 0 rad): what an
    emulated arm holds until it is calibrated."""
    return {n: MotorCalibration(id=i) for n, i in ids.items()}


def to_lerobot(calib: dict[str, MotorCalibration]) -> dict[str, dict[str, int]]:
    """The LeRobot file's content for our calibration (without `zero`, which LeRobot does not keep)."""
    return {n: {k: getattr(c, k) for k in LEROBOT_KEYS} for n, c in calib.items()}


def read_from_motors(bus: MotorBus) -> dict[str, dict[str, int]]:
    regs = ["Homing_Offset", "Min_Position_Limit", "Max_Position_Limit"]
    return {m: {r: bus.read(r, m) for r in regs} for m in bus.motors}


def check(bus: MotorBus, calib: dict[str, MotorCalibration]) -> None:
    """Raise CalibrationMismatch listing every register that differs from the file."""
    problems = []
    missing = set(bus.motors) - set(calib)
    if missing:
        problems.append(f"no calibration for {sorted(missing)}")
    for name, regs in read_from_motors(bus).items():
        c = calib.get(name)
        if c is None:
            continue
        if c.id != bus.ids[name]:
            problems.append(f"{name}: file says ID {c.id}, bus uses {bus.ids[name]}")
        for reg, want in (
            ("Homing_Offset", c.homing_offset),
            ("Min_Position_Limit", c.range_min),
            ("Max_Position_Limit", c.range_max),
        ):
            if regs[reg] != want:
                problems.append(f"{name} (motor {bus.ids[name]}): {reg} is {regs[reg]}, file says {want}")
    if problems:
        raise CalibrationMismatch(
            "calibration does not match the motors ("
            + "; ".join(problems)
            + "): run `loopylab arm calibrate` again, or import the calibration the motors "
            "hold (`--from-lerobot FILE`)"
        )


def write_to_motors(bus: MotorBus, calib: dict[str, MotorCalibration]) -> None:
    with bus.torque_disabled():
        for name, c in calib.items():
            bus.write("Homing_Offset", name, c.homing_offset)
            bus.write("Min_Position_Limit", name, c.range_min)
            bus.write("Max_Position_Limit", name, c.range_max)
    bus.set_torque(False)


def record_homing(bus: MotorBus) -> dict[str, int]:
    """With the arm held at the middle of its ranges: offsets that make every joint read 2047 there."""
    bus.set_torque(False)
    for m in bus.motors:
        bus.write("Homing_Offset", m, 0)
    actual = bus.sync_read("Present_Position")
    sign = 1 if bus.kind == "dynamixel" else -1  # Dynamixel adds the offset, Feetech subtracts it
    return {m: sign * (CENTRE - actual[m]) for m in bus.motors}


def record_ranges(
    bus: MotorBus, done: Callable[[], bool], period_s: float = 0.02, full_turn: tuple[str, ...] = ()
) -> dict[str, tuple[int, int]]:
    """Sample positions every `period_s` while the user sweeps each joint, until `done()`."""
    lo = dict.fromkeys(bus.motors, 1 << 30)
    hi = dict.fromkeys(bus.motors, -(1 << 30))
    while True:
        for m, p in bus.sync_read("Present_Position").items():
            lo[m], hi[m] = min(lo[m], p), max(hi[m], p)
        if done():
            break
        time.sleep(period_s)
    out = {m: (0, 4095) if m in full_turn else (lo[m], hi[m]) for m in bus.motors}
    flat = [m for m, (a, b) in out.items() if a == b]
    if flat:
        raise ValueError(f"joints {flat} did not move during the sweep; move each joint end to end")
    return out


def calibrate(
    bus: MotorBus,
    wait_centred: Callable[[], None],
    sweep_done: Callable[[], bool],
    reversed_joints: tuple[str, ...] = (),
    full_turn: tuple[str, ...] = (),
) -> dict[str, MotorCalibration]:
    """The full flow: centre -> homing offsets -> sweep -> ranges -> written to the motors."""
    bus.set_torque(False)
    for m in bus.motors:  # limits wide open while the user moves the arm
        bus.write("Min_Position_Limit", m, 0)
        bus.write("Max_Position_Limit", m, 4095)
    wait_centred()
    offsets = record_homing(bus)
    for m, off in offsets.items():
        bus.write("Homing_Offset", m, off)
    ranges = record_ranges(bus, sweep_done, full_turn=full_turn)
    calib = {
        m: MotorCalibration(
            id=bus.ids[m],
            drive_mode=int(m in reversed_joints),
            homing_offset=offsets[m],
            range_min=ranges[m][0],
            range_max=ranges[m][1],
            zero=CENTRE,
        )
        for m in bus.motors
    }
    for m, c in calib.items():
        bus.write("Min_Position_Limit", m, c.range_min)
        bus.write("Max_Position_Limit", m, c.range_max)
    return calib
