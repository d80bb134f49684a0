"""lift: grasp the object, raise it by `height`, hold, and put it back; reports how far it rose, and how far
every other tracked object rose meanwhile (what lifting one object lifts with it: a hidden attachment)."""

from __future__ import annotations

from loopylab.actuation.skills.grasp import grasp, plan_grasp, release_and_retreat
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import ArmSession
from loopylab.world import protocols as P


def lift(arm: ArmSession, mo: Motion, args: dict) -> dict:
    label = str(args.get("object", ""))
    height = P.number(args, "height", 0.005, 0.25)
    plan = plan_grasp(arm, mo, label, height)
    others = tracked_heights(arm, exclude=label)
    grasp(arm, mo, plan, label)
    arm.run(plan["up"])
    arm.hold(P.SETTLE_S)
    lifted = float(arm.obj_now(label)[2] - plan["pos0"][2])
    now = tracked_heights(arm, exclude=label)
    release_and_retreat(arm, mo, plan)
    return {"lifted_m": lifted, **{f"rose_{k}_m": now[k] - z for k, z in others.items() if k in now}}


def tracked_heights(arm: ArmSession, exclude: str) -> dict[str, float]:
    """{label: height} of every other object a pose source sees now (none where positions come from the scene)."""
    return {k: float(pos[2]) for k, pos in arm.tracked().items() if k != exclude}
