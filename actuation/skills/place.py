"""place: pick the object up, carry it above its neighbours and set it down at a table position (to give a
boxed-in object room to be pushed and struck); reports how far it moved and how close it landed."""

from __future__ import annotations

import numpy as np

from loopylab.actuation.skills.grasp import grasp, grasp_tip, plan_grasp
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import ArmSession
from loopylab.world import protocols as P


def place(arm: ArmSession, mo: Motion, args: dict) -> dict:
    label = str(args.get("object", ""))
    target = np.asarray(args.get("position", ()), float)
    if target.shape != (2,) or not np.all(np.isfinite(target)):
        raise P.BadArgs("position must be [x, y] in metres")
    plan = plan_grasp(arm, mo, label, P.PLACE_CARRY)
    tip = grasp_tip(mo, [*target, 0.0], plan["size"])
    high = mo.ee(tip) + [0, 0, P.PLACE_CARRY]
    across = mo.line(mo.ee(plan["tip"]) + [0, 0, P.PLACE_CARRY], high, 0.1, plan["up"][-1])
    lower = mo.line(high, mo.ee(tip) + [0, 0, 0.002], 0.05, across[-1] if len(across) else plan["up"][-1])
    retreat = mo.line(mo.ee(tip) + [0, 0, 0.002], mo.ee(tip) + [0, 0, mo.rs.clearance], 0.1, lower[-1])
    grasp(arm, mo, plan, label)
    arm.run(plan["up"], across, lower)
    arm.gripper(mo.opening, wait_for=lambda g: not g.object_detected)
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
