"""weigh: the wrist's vertical force with the object held, less the empty tool's at the very same pose."""

from __future__ import annotations

from collections.abc import Callable

from loopylab.actuation.skills.grasp import ensure_lifted, grasp, plan_grasp, release_and_retreat
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import ArmSession, SkillFailed
from loopylab.world import protocols as P

MIN_SAMPLES = 5  # wrench samples in a settled half-hold; fewer: the sensor paused, hold again
TRIES = 3


def weigh(arm: ArmSession, mo: Motion, args: dict) -> dict:
    label = str(args.get("object", ""))
    q0 = arm.q()
    plan = plan_grasp(arm, mo, label, P.WEIGH_LIFT, q0=q0)
    lifted = mo.ee(plan["tip"]) + [0, 0, P.WEIGH_LIFT]
    q_read = mo.kin.ik(lifted, mo.orientation(lifted), q0=plan["q_above"])
    arm.last_q = q0
    arm.gripper(mo.opening)
    arm.run(mo.joint_path(q0, q_read))
    fz_base = still_fz(arm)  # baseline: the empty tool at the very pose of the reading
    grasp(arm, mo, plan, label)
    arm.run(plan["up"])
    fz_held = still_fz(arm, lambda held: ensure_lifted(arm, mo, label, plan, held, P.WEIGH_LIFT))
    release_and_retreat(arm, mo, plan)
    return P.analyze_weigh(fz_base, fz_held)


def still_fz(arm: ArmSession, check: Callable[[list[int]], None] | None = None) -> list[float]:
    """Vertical wrist force over the settled second half of a hold: every sample in it (the sensor may run on
    its own clock). A sensor that paused (a wrist sensor restarting its stream) is waited out by holding again;
    `check` runs once, on the first hold's stamps, while recording."""
    for attempt in range(TRIES):
        arm.record(True)
        stamps = arm.hold(P.SETTLE_S * 2)
        if check is not None and attempt == 0:
            check(stamps)
        arm.wait_stamps(arm.wrench, stamps)
        arm.record(False)
        fz = [w[2] for w in arm.recorded(arm.wrench, stamps[len(stamps) // 2 :])]
        if len(fz) >= MIN_SAMPLES:
            return fz
    raise SkillFailed("no wrist/wrench samples while holding still: is the force sensor publishing?")
