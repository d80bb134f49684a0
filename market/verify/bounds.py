"""Hard physical bounds, applied to every submission whatever its bounty declares: what no sensor on a
bench reports and no arm does. Every number finite and within any sensor's range, stamps neither in the
future nor going backwards, wrist wrenches within the largest wrist sensors' range, joints within their
robot's URDF limits (world.robots; an arm the catalogue does not know gets generic bounds), joint speeds,
measured or implied by successive positions, within what the motors can do, gripper openings and forces,
object poses on the bench with unit quaternions.

The margins are generous on purpose: the bounds catch the impossible (1e6 N, 1000 rad, year 2100, a
teleporting joint), and the twin replay and the bounty's own checks judge the merely unlikely."""

from __future__ import annotations

import math
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from typing import Any

from loopylab.market.verify.decode import BadStamp, raw_stamp, stamp

MAX_ABS = 1e9  # any number past this is no measurement (a stamp is not a leaf; see decode.SKIP_KEYS)
MAX_FORCE_N = 2500.0  # the largest common 6-axis wrist sensor's range (ATI Omega160: 2500 N)
MAX_TORQUE_NM = 400.0
FUTURE_SLACK_NS = 3600 * 10**9  # clock skew allowed between a rig and the market
POSITION_MARGIN = 0.1  # rad past a URDF limit (calibration offsets)
VELOCITY_FACTOR = 1.5  # measured speed past the URDF limit (encoder noise at a tick's speed)
IMPLIED_FACTOR = 2.0  # speed from successive positions (stamps jitter)
EFFORT_FACTOR = 2.0
GENERIC = (-4 * math.pi, 4 * math.pi, 30.0, 1000.0)  # lower, upper, velocity, effort of an unknown joint
MAX_OPENING_M = 0.5  # a gripper's opening
MAX_GRIP_N = 1000.0
MAX_POSE_M = 100.0  # an object pose on a bench, from the base
MIN_DT_NS = 1_000_000  # successive positions closer than this in time are not differentiated
MAX_REPORTED = 3


@dataclass(frozen=True)
class JointLimit:
    lower: float
    upper: float
    velocity: float
    effort: float


@cache
def known_joints() -> dict[str, JointLimit]:
    """Every catalogue robot's joint limits by joint name, from its URDF (no PyBullet). A name two robots
    share (so101 and koch) gets the looser of both: a bound must never reject a real arm."""
    from loopylab.world.robots import CATALOGUE

    out: dict[str, JointLimit] = {}
    for rs in CATALOGUE.values():
        try:
            root = ET.parse(rs.urdf).getroot()
        except (OSError, ET.ParseError):
            continue
        for j in root.iter("joint"):
            lim = j.find("limit")
            if j.get("type") not in ("revolute", "prismatic") or lim is None:
                continue
            new = JointLimit(
                float(lim.get("lower", GENERIC[0])),
                float(lim.get("upper", GENERIC[1])),
                float(lim.get("velocity", GENERIC[2])) or GENERIC[2],
                float(lim.get("effort", GENERIC[3])) or GENERIC[3],
            )
            old = out.get(j.get("name", ""))
            if old is not None:
                new = JointLimit(
                    min(old.lower, new.lower),
                    max(old.upper, new.upper),
                    max(old.velocity, new.velocity),
                    max(old.effort, new.effort),
                )
            out[j.get("name", "")] = new
    return out


def _limit(name: str) -> JointLimit:
    return known_joints().get(name) or JointLimit(*GENERIC)


def _get(msg: Any, key: str) -> Any:
    return msg.get(key) if isinstance(msg, dict) else getattr(msg, key, None)


def _seq(v: Any) -> list | None:
    if v is None or isinstance(v, (str, bytes, dict)):
        return None
    try:
        return [float(x) for x in list(v)]
    except (TypeError, ValueError):
        return None


class Violations:
    def __init__(self) -> None:
        self.found: list[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.found) < MAX_REPORTED:
            self.found.append(text)


def check(
    messages: dict[str, list[tuple[int, Any]]], leaves: dict[str, list[dict[str, float]]], now_ns: int | None = None
) -> tuple[bool, str]:
    """(ok, detail) of the hard bounds over decoded messages (topic -> [(log_time, msg)]) and their numeric
    leaves (topic -> [{path: value}], in the same order)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    v = Violations()
    for topic, rows in messages.items():
        _numbers(topic, leaves.get(topic, []), v)
        _stamps(topic, rows, now_ns, v)
        prev: tuple[int, list, list] | None = None
        for i, (lt, msg) in enumerate(rows):
            force, torque = _seq(_get(msg, "force")), _seq(_get(msg, "torque"))
            if force is not None and torque is not None:
                _wrench(topic, i, force, torque, v)
            names, pos = _get(msg, "name"), _seq(_get(msg, "position"))
            if isinstance(names, (list, tuple)) and pos is not None:
                prev = _joints(topic, i, lt, msg, [str(n) for n in names], pos, prev, v)
            elif _get(msg, "object_detected") is not None or _get(msg, "speed") is not None:
                _gripper(topic, i, msg, v)
            objects = _get(msg, "objects")
            if isinstance(objects, (list, tuple)):
                _poses(topic, i, objects, v)
    if v.count:
        more = f" (+{v.count - len(v.found)} more)" if v.count > len(v.found) else ""
        return False, "; ".join(v.found) + more
    n = sum(len(r) for r in messages.values())
    return True, f"{n} messages within physical bounds (finite, stamps in order and not in the future, forces, joints)"


def _numbers(topic: str, rows: list[dict[str, float]], v: Violations) -> None:
    for i, row in enumerate(rows):
        for path, x in row.items():
            if not math.isfinite(x):
                v.add(f"{topic}[{i}].{path} is {x} (not a finite number)")
                return
            if abs(x) > MAX_ABS:
                v.add(f"{topic}[{i}].{path} = {x:g} is beyond any sensor's range")
                return


def _stamps(topic: str, rows: list[tuple[int, Any]], now_ns: int, v: Violations) -> None:
    last = None
    for i, (lt, msg) in enumerate(rows):
        try:
            s = stamp(msg, lt)
        except BadStamp as e:
            v.add(f"{topic}[{i}]: {e}")
            return
        for what, t in (("stamp", s), ("log time", int(lt))):
            if t > now_ns + FUTURE_SLACK_NS:
                v.add(f"{topic}[{i}]: {what} {t} is in the future ({_date(t)})")
                return
        if raw_stamp(msg) and last is not None and s < last:
            v.add(f"{topic}[{i}]: stamp {s} goes back {(last - s) / 1e9:.3g} s")
            return
        last = s


def _date(ns: int) -> str:
    try:
        return time.strftime("%Y-%m-%d", time.gmtime(ns / 1e9))
    except (OverflowError, OSError, ValueError):
        return "beyond the calendar"


def _wrench(topic: str, i: int, force: list, torque: list, v: Violations) -> None:
    f = max((abs(x) for x in force), default=0.0)
    t = max((abs(x) for x in torque), default=0.0)
    if f > MAX_FORCE_N:
        v.add(f"{topic}[{i}]: force {f:g} N beyond any wrist sensor's range ({MAX_FORCE_N:g} N)")
    elif t > MAX_TORQUE_NM:
        v.add(f"{topic}[{i}]: torque {t:g} N·m beyond any wrist sensor's range ({MAX_TORQUE_NM:g} N·m)")


def _gripper(topic: str, i: int, msg: Any, v: Violations) -> None:
    """GripperState / GripperCommand: an opening in metres, a force in newtons."""
    try:
        pos, force = float(_get(msg, "position") or 0.0), float(_get(msg, "effort") or _get(msg, "force") or 0.0)
    except (TypeError, ValueError):
        v.add(f"{topic}[{i}]: gripper position/force are not numbers")
        return
    if not -0.01 <= pos <= MAX_OPENING_M:
        v.add(f"{topic}[{i}]: gripper opening {pos:g} m outside [0, {MAX_OPENING_M:g}]")
    elif abs(force) > MAX_GRIP_N:
        v.add(f"{topic}[{i}]: grip force {force:g} N beyond any gripper's ({MAX_GRIP_N:g} N)")


def _poses(topic: str, i: int, objects: list | tuple, v: Violations) -> None:
    """ObjectPoses: positions on a bench, unit quaternions."""
    for o in objects:
        p, q = _seq(_get(o, "position")), _seq(_get(o, "orientation"))
        if p is not None and any(abs(x) > MAX_POSE_M for x in p):
            v.add(f"{topic}[{i}]: object {_get(o, 'label')} at {max(abs(x) for x in p):g} m from the base")
            return
        if q is not None and len(q) == 4 and not 0.9 <= math.sqrt(sum(x * x for x in q)) <= 1.1:
            v.add(f"{topic}[{i}]: object {_get(o, 'label')} orientation is not a unit quaternion")
            return


def _joints(topic, i, lt, msg, names, pos, prev, v: Violations):
    if len(names) != len(pos):
        v.add(f"{topic}[{i}]: {len(names)} joint names for {len(pos)} positions")
        return prev
    lims = [_limit(n) for n in names]
    for n, q, lim in zip(names, pos, lims):
        if not lim.lower - POSITION_MARGIN <= q <= lim.upper + POSITION_MARGIN:
            v.add(f"{topic}[{i}]: joint {n} at {q:g} rad, outside its limits [{lim.lower:g}, {lim.upper:g}]")
            return prev
    for key, factor, what, unit in (
        ("velocity", VELOCITY_FACTOR, "velocity", "rad/s"),
        ("effort", EFFORT_FACTOR, "effort", ""),
    ):
        vals = _seq(_get(msg, key)) or []
        for n, x, lim in zip(names, vals, lims):
            cap = factor * (lim.velocity if key == "velocity" else lim.effort)
            if abs(x) > cap:
                v.add(f"{topic}[{i}]: joint {n} {what} {x:g} {unit} beyond the motor's {cap:g}".rstrip())
                return prev
    try:
        t = stamp(msg, lt)
    except BadStamp:
        return prev
    if prev is not None and prev[1] == names and t - prev[0] >= MIN_DT_NS:
        dt = (t - prev[0]) / 1e9
        for n, a, b, lim in zip(names, prev[2], pos, lims):
            speed = abs(b - a) / dt
            if speed > IMPLIED_FACTOR * lim.velocity:
                v.add(
                    f"{topic}[{i}]: joint {n} moved {abs(b - a):.3g} rad in {dt:.3g} s ({speed:.3g} rad/s), "
                    f"faster than its motor ({lim.velocity:g} rad/s)"
                )
                break
    return (t, names, pos)
