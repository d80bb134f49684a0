"""lift: grasp the object, raise it by `height`, hold, and put it back; reports how far it rose."""

from __future__ import annotations

from loopylab.actuation.skills.grasp import grasp, plan_grasp, release_and_retreat
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import ArmSession
from loopylab.world import protocols as P


def lift(arm: ArmSession, mo: Motion, args: dict) -> dict:
    label = str(args.get("object", ""))
    height = P.number(args, "height", 0.005, 0.25)
    plan = plan_grasp(arm, mo, label, height)
    grasp(arm, mo, plan, label)
    arm.run(plan["up"])
    arm.hold(P.SETTLE_S)
    lifted = float(arm.obj_now(label)[2] - plan["pos0"][2])
    release_and_retreat(arm, mo, plan)
    return {"lifted_m": lifted}
