"""drop: lift the object by `height`, let go from rest and follow its fall and bounce (restitution); while it
is held, the wrist torque level and tilted gives its centre-of-mass offset."""

from __future__ import annotations

import logging

import numpy as np

from loopylab.actuation.skills.grasp import ensure_lifted, grasp, plan_grasp
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import CLOSE_S, ArmSession, SkillFailed
from loopylab.world import protocols as P

log = logging.getLogger("loopylab.skills")

MIN_TRACK = 5  # pose sets of the object from the release on; fewer: no pose source is running
# s of arm time the hand holds still, once the object has settled, for a slow pose source to give MIN_TRACK: a
# camera at 10 Hz gave fewer than that over a 3 cm drop that settled at once, and every drop on the emulated
# SO-101 (and on the sim bench with camera perception) failed "no object track", with it every com question
POSE_WAIT_S = 1.5


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
    before = _pose(arm, label)  # where it stood: an overhead camera does not see it in the hand
    grasp(arm, mo, plan, label)
    arm.run(plan["up"])
    arm.record(True)
    held = arm.hold(P.SETTLE_S)
    ensure_lifted(arm, mo, label, plan, held, height)
    q_held = arm.last_q
    held_tilt = _hold_tilted(arm, mo, q_tilt) if q_tilt_away is not None else []
    # release holding still (the object falls from rest), then take the hand out of the bounce's way
    stamps = arm.stream([arm.last_q])
    stamps += arm.gripper(
        mo.opening,
        wait_for=lambda g: not g.object_detected,
        max_s=CLOSE_S,
        fail=f"the gripper did not let go of {label}",
    )
    stamps += arm.stream(away)
    arm.last_q = away[-1]
    stamps += arm.settle_object(label, max_s=2.0)
    stamps += await_poses(arm, label, stamps)
    base = arm.hold(P.SETTLE_S)  # the empty hand at the holding orientation: the torque baseline
    base_tilt = _hold_tilted(arm, mo, q_tilt_away) if held_tilt else []
    arm.wait_objects(stamps[-1])
    arm.wait_stamps(arm.wrench, base + base_tilt)
    arm.record(False)
    t, xyz = arm.track(label, stamps)
    if not len(t):
        raise SkillFailed("no object track during the drop (is perception/objects running?)")
    out = P.analyze_drop(t, xyz[:, 2], arm.sigma(label), plan["size"])
    if not sees_bounce(t, height):  # the reading stands, with an error bar that says it tells nothing
        out["bounce_sigma_m"] = max(out["bounce_sigma_m"], height)
    tilted = (held_tilt, base_tilt, q_tilt) if held_tilt else None
    lifted = _lifted_pose(mo, before, plan["down"][-1], q_held)
    out.update(
        _com_offset(
            arm, mo, label, plan["size"], held[len(held) // 2 :], base[len(base) // 2 :], q_held, tilted, lifted
        )
    )
    return out


def sees_bounce(t, height: float) -> bool:
    """Whether a track stamped `t` (s) can show the bounce of a drop from `height`: MIN_TRACK poses, at least
    three in the fall's time. A camera at 10 Hz takes one frame or none in a 3 cm fall (78 ms) and misses the
    impact: on the sim bench with camera perception it read 0.0-0.2 mm where a rebound is 1-12 mm (the sim's
    motion capture, at the control rate, sees it)."""
    fall_s = float(np.sqrt(2 * height / 9.81))
    return len(t) >= MIN_TRACK and float(np.median(np.diff(t))) <= fall_s / 3


def await_poses(arm: ArmSession, label: str, stamps: list[int], n: int = MIN_TRACK, max_s: float = POSE_WAIT_S):
    """Hold still (while recording) until the object's recorded track since `stamps[0]` has `n` poses, or for
    `max_s` of arm time. Returns the stamps of the hold (none where the pose source keeps up: motion capture)."""
    more: list[int] = []
    for _ in range(int(max_s * arm.hz)):
        if len(arm.track(label, stamps + more)[0]) >= n:
            break
        more += arm.stream([arm.last_q])
    return more


def _pose(arm: ArmSession, label: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The object's newest (position, orientation) from the pose source, None without one."""
    msg = arm.objects.latest()
    o = msg.get(label) if msg is not None else None
    return None if o is None else (np.asarray(o.position, float), np.asarray(o.orientation, float))


def _lifted_pose(mo: Motion, before, q_grasp, q_held) -> tuple[np.ndarray, np.ndarray] | None:
    """Where the held object is by the hand: its pose before the grasp, moved as the hand moved from closing on
    it (`q_grasp`) to holding it up (`q_held`; a straight lift, the tool's orientation kept)."""
    if before is None:
        return None
    return before[0] + mo.kin.fk(q_held)[0] - mo.kin.fk(q_grasp)[0], before[1]


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
    lifted: tuple | None = None,
) -> dict:
    """The held object's centre-of-mass offset from the wrist torque (`protocols.analyze_com`), held
    level and, with `tilted` = (held stamps, baseline stamps, joints), tilted too; {} when a signal is missing
    (no wrist sensor, no object pose). Where the pose source does not see the held object (an overhead camera,
    the hand above it) its pose held level is `lifted`: where it stood, moved with the hand."""

    def reading(held: list[int], base: list[int], q, fallback=None) -> tuple | None:
        w_held, w_base = arm.recorded(arm.wrench, held), arm.recorded(arm.wrench, base)
        poses = [o for o in (m.get(label) for m in arm.recorded(arm.object_poses, held)) if o is not None]
        if poses:
            pose = np.mean([o.position for o in poses], axis=0), poses[-1].orientation
        else:
            pose = fallback
        if len(w_held) < 3 or len(w_base) < 3 or pose is None:
            return None
        return w_base, w_held, mo.kin.fk(q, mo.ft_link)[0], *pose

    level = reading(held, base, q_held, lifted)
    if level is None:
        return {}
    out = P.analyze_com(*level, tilted=reading(*tilted) if tilted else None)
    if out and np.linalg.norm([out.get(k, 0.0) for k in ("com_x_m", "com_y_m", "com_z_m")]) > 0.5 * size:
        # outside the object: the grip slipped or a finger touched something; no offset rather than a wrong one
        log.info("drop %s: discarding a centre-of-mass estimate of %s", label, out)
        return {}
    return out
