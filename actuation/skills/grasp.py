"""Grasping, shared by lift, weigh, drop and place: plan every path of a grasp-and-lift before the arm moves,
take the object, check it rose with the hand, put it back down."""

from __future__ import annotations

import numpy as np

from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import CLOSE_S, ArmSession, SkillFailed

ARRIVE_S = 0.1  # s: a few of a hobby servo's time constants (the emulated rig's: rig.physics.TRACK_TAU_S)


def grasp_tip(mo: Motion, pos, size) -> np.ndarray:
    if mo.rs.gripper_joints and mo.rs.name == "panda":
        return np.array([pos[0], pos[1], max(size / 2, 0.012)])  # pinch: fingers around the middle
    return np.array([pos[0], pos[1], size + 0.002])  # contact/suction from the top


def plan_grasp(arm: ArmSession, mo: Motion, label: str, lift: float, speed: float = 0.1, q0=None) -> dict:
    """Every path of a grasp-and-lift, planned before the arm moves (an unreachable point fails here)."""
    pos0 = arm.obj_now(label)
    _, size, _ = arm.object(label)
    tip = grasp_tip(mo, pos0, size)
    q0 = arm.q() if q0 is None else q0
    above = mo.ee(tip) + [0, 0, mo.rs.clearance]
    q_above = mo.kin.ik(above, mo.orientation(above), q0=q0)
    down = mo.line(above, mo.ee(tip), 0.1, q_above)
    up = mo.line(mo.ee(tip), mo.ee(tip) + [0, 0, lift], speed, down[-1])
    back = mo.line(mo.ee(tip) + [0, 0, lift], mo.ee(tip), speed, up[-1])
    retreat = mo.line(mo.ee(tip), above, 0.1, down[-1])
    return dict(pos0=pos0, size=size, tip=tip, q_above=q_above, down=down, up=up, back=back, retreat=retreat)


def grasp(arm: ArmSession, mo: Motion, plan: dict, label: str) -> None:
    """Run: joints to above, open, line down, close. Fails (and backs off) when nothing was grasped."""
    arm.last_q = arm.q()
    opening = mo.opening
    arm.gripper(opening, wait_for=lambda g: g.position > 0.8 * opening)
    arm.run(mo.joint_path(arm.last_q, plan["q_above"]), plan["down"])
    arm.hold(ARRIVE_S)  # servos trail their goals: the hand reaches the bottom of its line before it closes
    arm.gripper(0.0, wait_for=lambda g: g.object_detected, max_s=CLOSE_S)
    arm.hold(0.1)
    g = arm.fresh_gripper()
    if g is None or not g.object_detected:
        open_hand(arm, mo)
        arm.run(plan["retreat"])
        raise SkillFailed(f"could not grasp {label!r}")


def ensure_lifted(arm: ArmSession, mo: Motion, label: str, plan: dict, stamps: list[int], rise: float) -> None:
    """(While recording, after lifting by `rise`.) The object asked for must have risen with the hand,
    or what the skill measures next belongs to something else: an object fixed to the table (a weigh
    then read 0 kg), or a neighbour the hand took instead (seeds 1009, 1044: the sim's grasp took what
    the palm touched, and a rank came out wrong; on a real arm, a ball that rolled into the fingers).
    Fails, after putting down what it holds; unchecked where no pose source runs (positions from the
    scene)."""
    arm.wait_objects(stamps[-1])
    pos, _, src = arm.object(label)
    risen = float(pos[2] - plan["pos0"][2])
    if src == "scene" or risen >= 0.5 * rise:
        return
    arm.record(False)
    release_and_retreat(arm, mo, plan)
    raise SkillFailed(
        f"{label!r} did not rise with the hand ({1000 * risen:.0f} of {1000 * rise:.0f} mm): it is "
        f"fixed down, or the hand took something else"
    )


def release_and_retreat(arm: ArmSession, mo: Motion, plan: dict) -> None:
    arm.run(plan["back"])
    open_hand(arm, mo)
    arm.hold(0.3)
    arm.run(plan["retreat"])


def open_hand(arm: ArmSession, mo: Motion) -> None:
    """Open the gripper and keep the arm still until it reports itself open (at most CLOSE_S of arm time).
    A hand that left at once carried its object away where the gripper's command was slow to arrive: on the
    emulated SO-101 at load 80 the Robotiq took 7 s to act on an open, a weighed block rode up with the hand
    to its parking spot, and the next investigation found it there."""
    arm.gripper(mo.opening, wait_for=lambda g: g.position > 0.6 * mo.opening and not g.object_detected, max_s=CLOSE_S)
