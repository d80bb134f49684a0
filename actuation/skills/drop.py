"""drop: lift the object by `height`, let go from rest and follow its fall and bounce (restitution); while it
is held, the wrist torque level and tilted gives its centre-of-mass offset."""

from __future__ import annotations

import logging

import numpy as np

from loopylab.actuation.skills.grasp import ensure_lifted, grasp, plan_grasp
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import ArmSession, SkillFailed
from loopylab.world import protocols as P

log = logging.getLogger("loopylab.skills")


def drop(arm: ArmSession, mo: Motion, args: dict) -> dict:
    label = str(args.get("object", ""))
    height = P.number(args, "height", 0.02, 0.3)
    plan = plan_grasp(arm, mo, label, height)
    top = mo.ee(plan["tip"]) + [0, 0, height]
    # out of the bounce's way (it rises at most e^2 h < h): 10 cm, or the height itself for a low drop (a desk
    # arm's hand, pointing down, reaches no higher than 15 cm)
    away = mo.line(top, top + [0, 0, min(0.1, height)], 0.4, plan["up"][-1], accel=8.0)
    # the held object tilted, for its vertical centre-of-mass offset, and the empty hand the same way
    # above it for the baseline; skipped (no com_z_m) where the arm cannot tilt its hand there
    q_tilt = mo.tilted(top, plan["up"][-1])
    q_tilt_away = mo.tilted(top + [0, 0, 0.1], away[-1]) if q_tilt is not None else None
    grasp(arm, mo, plan, label)
    arm.run(plan["up"])
    arm.record(True)
    held = arm.hold(P.SETTLE_S)
    ensure_lifted(arm, mo, label, plan, held, height)
    q_held = arm.last_q
    held_tilt = _hold_tilted(arm, mo, q_tilt) if q_tilt_away is not None else []
    # release holding still (the object falls from rest), then take the hand out of the bounce's way
    stamps = arm.stream([arm.last_q])
    stamps += arm.gripper(mo.opening, wait_for=lambda g: not g.object_detected)
    stamps += arm.stream(away)
    arm.last_q = away[-1]
    stamps += arm.settle_object(label, max_s=2.0)
    base = arm.hold(P.SETTLE_S)  # the empty hand at the holding orientation: the torque baseline
    base_tilt = _hold_tilted(arm, mo, q_tilt_away) if held_tilt else []
    arm.wait_objects(stamps[-1])
    arm.wait_stamps(arm.wrench, base + base_tilt)
    arm.record(False)
    t, xyz = arm.track(label, stamps)
    if len(t) < 5:
        raise SkillFailed("no object track during the drop (is perception/objects running?)")
    out = P.analyze_drop(t, xyz[:, 2], arm.sigma(label), plan["size"])
    tilted = (held_tilt, base_tilt, q_tilt) if held_tilt else None
    out.update(
        _com_offset(arm, mo, label, plan["size"], held[len(held) // 2 :], base[len(base) // 2 :], q_held, tilted)
    )
    return out


def _hold_tilted(arm: ArmSession, mo: Motion, q_tilt) -> list[int]:
    """Turn to `q_tilt`, hold still (the stamps returned), turn back to the current joints."""
    q_level = arm.last_q
    arm.run(mo.joint_path(q_level, q_tilt))
    stamps = arm.hold(P.SETTLE_S * 2)
    arm.run(mo.joint_path(q_tilt, q_level))
    arm.hold(P.SETTLE_S)
    return stamps[len(stamps) // 2 :]


def _com_offset(
    arm: ArmSession,
    mo: Motion,
    label: str,
    size: float,
    held: list[int],
    base: list[int],
    q_held,
    tilted: tuple | None = None,
) -> dict:
    """The held object's centre-of-mass offset from the wrist torque (`protocols.analyze_com`), held
    level and, with `tilted` = (held stamps, baseline stamps, joints), tilted too;
    {} when a signal is missing (no wrist sensor, no object pose)."""

    def reading(held: list[int], base: list[int], q) -> tuple | None:
        w_held, w_base = arm.recorded(arm.wrench, held), arm.recorded(arm.wrench, base)
        poses = [o for o in (m.get(label) for m in arm.recorded(arm.object_poses, held)) if o is not None]
        if len(w_held) < 3 or len(w_base) < 3 or not poses:
            return None
        centre = np.mean([o.position for o in poses], axis=0)
        return w_base, w_held, mo.kin.fk(q, mo.ft_link)[0], centre, poses[-1].orientation

    level = reading(held, base, q_held)
    if level is None:
        return {}
    out = P.analyze_com(*level, tilted=reading(*tilted) if tilted else None)
    if out and np.linalg.norm([out.get(k, 0.0) for k in ("com_x_m", "com_y_m", "com_z_m")]) > 0.5 * size:
        # outside the object: the grip slipped or a finger touched something; no offset rather than a wrong one
        log.info("drop %s: discarding a centre-of-mass estimate of %s", label, out)
        return {}
    return out
