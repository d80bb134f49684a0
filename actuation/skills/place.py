"""place: pick the object up, carry it above its neighbours and set it down at a table position (to give a
boxed-in object room to be pushed and struck); reports how far it moved and how close it landed."""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

from loopylab.actuation.skills.grasp import ensure_lifted, grasp, grasp_tip, open_hand, plan_grasp
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import ArmSession
from loopylab.world import protocols as P

CARRY_MARGIN = 0.02  # m: the carried object's underside passes this far above the tallest neighbour


def carry_height(arm: ArmSession, label: str) -> float:
    """How high to carry `label`: its underside clear of the tallest neighbour by CARRY_MARGIN, and never
    above P.PLACE_CARRY. (Always 10 cm, a desk arm's place failed: an SO-101 holds its tool down 13 cm up
    only within 0.21 m of its base, and its objects stand up to 0.22 m out.)"""
    scene = arm.scene
    if scene is None:
        return P.PLACE_CARRY
    others = [o.size for o in scene.objects if o.label != label]
    return min(P.PLACE_CARRY, max(others, default=0.0) + CARRY_MARGIN)


def keep_yaw(mo: Motion, start, target) -> tuple | None:
    """The hand's orientation over `target` that sets the object down turned as it stood when taken at `start`
    (None: the arm's hand keeps its yaw anyway). An SO-101's hand turns with its base, and so did what it
    carried: a block placed from 39 degrees off straight ahead to straight ahead stood turned by 38 degrees, and
    the pushes after it, which take the block square to its faces (as the twin does), read a corner. The yaw is
    the grasp's within a quarter turn of the hand's own over the target (a cube looks the same every quarter
    turn, and the wrist turns least)."""
    if not mo.rs.down_yaw_follows_base:
        return None
    r, pch, y = mo.rs.down_rpy
    a0, a1 = math.atan2(start[1], start[0]), math.atan2(target[1], target[0])
    quarter = round((a1 - a0) / (math.pi / 2)) * math.pi / 2
    return p.getQuaternionFromEuler([r, pch, y + a0 + quarter])


def place(arm: ArmSession, mo: Motion, args: dict) -> dict:
    label = str(args.get("object", ""))
    target = np.asarray(args.get("position", ()), float)
    if target.shape != (2,) or not np.all(np.isfinite(target)):
        raise P.BadArgs("position must be [x, y] in metres")
    carry = carry_height(arm, label)
    plan = plan_grasp(arm, mo, label, carry)
    tip = grasp_tip(mo, [*target, 0.0], plan["size"])
    high = mo.ee(tip) + [0, 0, carry]
    orn = keep_yaw(mo, plan["pos0"], target)
    across = mo.line(mo.ee(plan["tip"]) + [0, 0, carry], high, 0.1, plan["up"][-1], orientation=orn)
    lower = mo.line(
        high, mo.ee(tip) + [0, 0, 0.002], 0.05, across[-1] if len(across) else plan["up"][-1], orientation=orn
    )
    retreat = mo.line(mo.ee(tip) + [0, 0, 0.002], mo.ee(tip) + [0, 0, mo.rs.clearance], 0.1, lower[-1], orientation=orn)
    grasp(arm, mo, plan, label)
    arm.run(plan["up"])
    # the object asked for must be the one in the hand (a SO-101 closing on a block took its neighbour 7 cm off,
    # dev world 1000001: it was carried off and set down 9 cm away, and the block asked for "placed 0.001")
    arm.record(True)
    ensure_lifted(arm, mo, label, plan, arm.hold(P.SETTLE_S), carry)
    arm.record(False)
    arm.run(across, lower)
    open_hand(arm, mo)
    arm.hold(0.3)
    arm.record(True)
    arm.run(retreat)
    arm.settle_object(label, max_s=1.0)
    arm.record(False)
    pos = arm.obj_now(label)
    return {
        "placed_m": float(np.linalg.norm(pos[:2] - plan["pos0"][:2])),
        "position_error_m": float(np.linalg.norm(pos[:2] - target)),
    }
