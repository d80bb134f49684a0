"""weigh: the wrist's vertical force with the object held, less the empty tool's at the very same pose."""

from __future__ import annotations

from loopylab.actuation.skills.grasp import ensure_lifted, grasp, plan_grasp, release_and_retreat
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import ArmSession
from loopylab.world import protocols as P


def weigh(arm: ArmSession, mo: Motion, args: dict) -> dict:
    label = str(args.get("object", ""))
    q0 = arm.q()
    plan = plan_grasp(arm, mo, label, P.WEIGH_LIFT, q0=q0)
    lifted = mo.ee(plan["tip"]) + [0, 0, P.WEIGH_LIFT]
    q_read = mo.kin.ik(lifted, mo.orientation(lifted), q0=plan["q_above"])
    arm.last_q = q0
    arm.gripper(mo.opening)
    arm.run(mo.joint_path(q0, q_read))
    arm.record(True)  # baseline: the empty tool at the very pose of the reading
    base = arm.hold(P.SETTLE_S * 2)
    arm.wait_stamps(arm.wrench, base)
    arm.record(False)
    # the second half of each hold (settled), every sample in it: the wrist sensor may run on its own clock
    fz_base = [w[2] for w in arm.recorded(arm.wrench, base[len(base) // 2 :])]
    grasp(arm, mo, plan, label)
    arm.run(plan["up"])
    arm.record(True)
    held = arm.hold(P.SETTLE_S * 2)
    ensure_lifted(arm, mo, label, plan, held, P.WEIGH_LIFT)
    arm.wait_stamps(arm.wrench, held)
    arm.record(False)
    fz_held = [w[2] for w in arm.recorded(arm.wrench, held[len(held) // 2 :])]
    release_and_retreat(arm, mo, plan)
    return P.analyze_weigh(fz_base, fz_held)
