"""push and strike: the closed hand moves an object along the table, slowly (the force it takes: friction)
or fast and stopping short (how far it slides on: friction and launch speed)."""

from __future__ import annotations

import numpy as np

from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import CLOSE_S, ArmSession, SkillFailed
from loopylab.world import protocols as P
from loopylab.world.kinematics import Unreachable
from loopylab.world.limits import GateConfig
from loopylab.world.trajectory import cartesian_line

TOP_CLEARANCE = 0.003  # m: a part of the hand ahead of the push face passes this far over the object's top
FOLLOWED = 0.75  # a pushed object moves at least this share of the distance, or
STUCK_M = 0.02  # m: ... no more than this (held down): else the hand lost it partway (check_followed)
FACE_MIN = 0.03  # m: a push face shorter than this is a round flange's rim (the kuka's leads from 1.5 cm up)
FOLLOW_MARGIN = 0.8  # the share of the gate's velocity limit a fast plan may use (see check_followable)
# A steady push keeps the hand on the object: nearly every reading in its window is near the mean force. On the
# emulated SO-101 under a host load of ~35 the hand moved in jerks (joint states and targets in bursts, each goal
# met at the servo's full speed): readings of 0 N between knocks of 1-8 N, means of 0.09-0.65 N for one block
# whose steady push reads 0.62. Such a reading is not the friction: the push fails cleanly instead.
CONTACT_SHARE = 0.6  # of the window's readings that must exceed a quarter of its mean force
# The zero before a push: its noise enters every reading of the push (the 30 samples of a 0.25 s hold carried
# an FT 300-S's 0.1 N/sample noise as a 0.02 N sd: 5 % of an SO-101 block's 0.39 N, as much as the push's own
# noise), so a longer hold, and only its settled part.
BASELINE_S = 0.5
BASELINE_USED = 0.7  # the share of the hold at its end that is averaged
BASELINE_MIN = 10  # readings; fewer: the sensor paused, hold again
BASELINE_TRIES = 3
# A stretch of the push above KNOCK x the window's median force, and KNOCK_FLOOR_N above it, is a knock:
# over 29 pushes of one block on the emulated SO-101 (2 and 6 CPU hogs) a steady push's stretches reached 2.2 x;
# the knocks of a jerky one 3.9 x (8 % of its window). The floor is 5 sd of a wrist sample's noise (FT 300-S:
# 0.1 N), which alone lifts a light block's stretches several times its 0.1 N friction.
KNOCK = 3.0
KNOCK_FLOOR_N = 0.5


def push(arm: ArmSession, mo: Motion, args: dict) -> dict:
    return _push_like(arm, mo, args, strike=False)


def strike(arm: ArmSession, mo: Motion, args: dict) -> dict:
    return _push_like(arm, mo, args, strike=True)


def _approach(arm: ArmSession, mo: Motion, tip, dir_name=None) -> tuple[np.ndarray, np.ndarray]:
    """Plan: joints to above `tip`, then a line down to it. Returns (joint path, line path)."""
    q0 = arm.q()
    above = mo.ee(tip) + [0, 0, mo.rs.clearance]
    q_above = mo.kin.ik(above, mo.orientation(above, dir_name), q0=q0)
    down = mo.line(above, mo.ee(tip), 0.1, q_above, dir_name)
    return mo.joint_path(q0, q_above), down


def _push_like(arm: ArmSession, mo: Motion, args: dict, strike: bool) -> dict:
    label = str(args.get("object", ""))
    dir_name = str(args.get("direction", "+x"))
    P.direction(dir_name)
    if strike:
        speed = P.number(args, "speed", 0.05, P.STRIKE_MAX_SPEED)
        distance = 0.0
    else:
        distance = P.number(args, "distance", 0.005, 0.3)
        speed = P.number(args, "speed", 0.005, 0.3, default=0.05)
    pos0 = arm.obj_now(label)
    _, size, _ = arm.object(label)
    probe = arm.q()
    q_probe = mo.kin.ik(mo.ee([pos0[0], pos0[1], P.TIP_Z + mo.rs.clearance]), mo.orientation(pos0, dir_name), q0=probe)
    pad = mo.pad(q_probe, dir_name, size)
    raised = clear_the_top(mo, q_probe, dir_name, pad, size, label)
    lift = np.array([0.0, 0.0, mo.below_tip(q_probe) + raised])  # the hand's lowest point at P.TIP_Z (+ raised)
    plan = (
        P.strike_plan(pos0, size, dir_name, speed, pad, mo.hz)
        if strike
        else P.push_plan(pos0, size, dir_name, distance, speed, pad, mo.hz)
    )
    start, end = plan.start + lift, plan.end + lift
    to_above, down = _approach(arm, mo, start, dir_name)
    line = cartesian_line(mo.kin, mo.ee(start), mo.ee(end), lambda x: mo.orientation(x, dir_name), plan.path, down[-1])
    up = mo.line(mo.ee(end), mo.ee(end) + [0, 0, mo.rs.clearance], 0.1, line[-1], dir_name)
    if strike:
        check_followable(mo, line, down[-1] if len(down) else probe, f"strike {dir_name} at {speed:.2f} m/s")
    # everything is planned: move
    arm.last_q = probe
    # closed in the air: a closed gripper pushes, never grasps. The push used to go on after 1 s whatever the
    # gripper said (a fresh SO-101 rig's 2F-85 took 0.74 s of it idle; under 6 CPU hogs one never closed):
    # fingers still closing as the hand came down could close on the object mid-push and drag it
    arm.gripper(
        0.0,
        wait_for=lambda g: g.position < 0.2 * mo.opening and not g.object_detected,
        max_s=CLOSE_S,
        fail=f"the gripper did not close before pushing {label}",
    )
    arm.run(to_above, down)
    arm.record(True)
    base = None
    if strike:
        arm.hold(P.SETTLE_S)
    else:
        base = baseline(arm)
    clamps = arm.clamped()
    stamps = arm.stream(line)
    clamps = arm.clamped() - clamps
    arm.last_q = line[-1]
    if strike:
        stamps += arm.settle_object(label)
    else:
        stamps += arm.hold(0.15)
    arm.wait_stamps(arm.wrench, stamps)
    arm.wait_objects(stamps[-1])
    arm.record(False)
    pos1 = arm.obj_now(label)
    arm.run(up)
    d = P.direction(dir_name)
    if strike:
        t, xy = arm.track(label, stamps)
        if len(t) < 5:
            raise SkillFailed("no object track during the strike (is perception/objects running?)")
        i_brake = min(int(np.searchsorted(plan.path, plan.brake_s - 1e-9)), len(stamps) - 1)
        t_brake = (stamps[i_brake] - stamps[0]) / 1e9
        m = P.analyze_strike(t, xy, t_brake, speed, arm.sigma(label))
    else:
        s, f, vert = _force_by_travel(arm, mo, mo.ee(start), d, base, stamps, speed / mo.hz)
        m = P.analyze_push(s, f, pos0, pos1, plan.steady, arm.sigma(label), force_up=vert)
        check_contact(s, f, plan.steady, label)
        check_steady(s, f, plan.steady, label)
        if arm.source != "scene":  # where it ended up is measured
            check_followed(m["moved_m"], distance, label)
        if not P.PUSH_LOAD_RANGE[0] <= m.get("load_N", 0.0) <= P.PUSH_LOAD_RANGE[1]:
            raise SkillFailed(
                f"the hand hit something besides {label} (vertical force "
                f"{m['load_N']:.1f} N while pushing): the force reading is not the object's"
            )
    m["gate_clamps"] = int(clamps)  # > 0: the gate slowed the motion; the reading may be off
    return m


def clear_the_top(mo: Motion, q, dir_name: str, pad: float, size: float, label: str) -> float:
    """How far to raise the hand so that a part of it leading the push face (Motion.overhang: a palm) passes
    TOP_CLEARANCE over the object's top instead of meeting its edge; refused where the fingers would then meet
    the object above its middle (it would tip). 0 for objects the hand's overhang already clears, and for a
    hand with no flat face FACE_MIN tall (a round flange leads from its rim up: rising would not clear it, and
    its press on the object is read as the push's load)."""
    over = mo.overhang(q, dir_name, pad, size)
    if over is None or over < FACE_MIN or over >= size + TOP_CLEARANCE:
        return 0.0
    raised = size + TOP_CLEARANCE - over
    if P.TIP_Z + raised > size / 2:
        raise SkillFailed(
            f"{label} ({100 * size:.1f} cm tall) is too tall to push with this hand: the part of the hand "
            f"{100 * over:.1f} cm above its fingertips would meet its top"
        )
    return raised


def baseline(arm: ArmSession) -> np.ndarray:
    """The wrench of the hand held still before a push (its zero): the mean of the readings over the settled
    part of a hold (BASELINE_S; the servos still close in on the line's end at first). A sensor that paused
    (a wrist sensor restarting its stream on a starved host) is waited out by holding again."""
    for _ in range(BASELINE_TRIES):
        stamps = arm.hold(BASELINE_S)
        arm.wait_stamps(arm.wrench, stamps)
        still = arm.recorded(arm.wrench, stamps[int(len(stamps) * (1 - BASELINE_USED)) :])
        if len(still) >= BASELINE_MIN:
            return np.mean(still, axis=0)
    raise SkillFailed("no wrist/wrench readings while the hand held still before the push: no zero to read from")


def _force_by_travel(arm: ArmSession, mo: Motion, ee_start, d, base, stamps: list[int], step: float):
    """The push's force along its path, by where the hand really was (every joint state recorded, through
    the kinematics), not by the tick a waypoint was sent on: returns (path positions, force along the push,
    force up) on a grid of `step` m, each the work over that stretch of the hand's travel / its length.
    A host that streams in fits and starts moves the hand in steps and stops: a mean over ticks counted the
    stops (0 N, the block at rest) as much as the pushing, and a stopped hand's stale sample stood for a
    whole tick's reading (the emulated SO-101 under load: 0.02 N read for a block that took 1.1 N, and
    pushes refused for lost contact); the work along the travel is the friction's whatever the timing."""
    with arm._rec_lock:
        joints = sorted((t, q) for t, q in arm.joints.items() if stamps[0] <= t <= stamps[-1])
        ft = sorted((t, w) for t, w in arm.wrench.items() if t <= stamps[-1])
    if len(joints) < 5 or not ft:
        raise SkillFailed("too few joint states or wrist readings recorded during the push")
    t_ft = np.array([t for t, _ in ft])
    w = np.array([w for _, w in ft]) - base
    along, vert = -(w[:, :3] @ d), w[:, 2]
    t_js = np.array([t for t, _ in joints])
    s_js = np.array([(mo.kin.fk(q)[0] - ee_start) @ d for _, q in joints])
    return by_travel(t_js, s_js, t_ft, np.column_stack([along, vert]), step)


def by_travel(t_js, s_js, t_ft, values, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Readings (`values`: [N, 2] at stamps `t_ft`) against the hand's travel (`s_js` at stamps `t_js`): each
    interval between joint states with readings inside it takes their mean, and counts by how far the hand
    moved forward in it (one without a reading, a frame lost, counts for nothing: filled with a neighbour's,
    a stop's 0 N stood for a stretch of pushing). Resampled onto a grid of `step` m of travel (a stretch no
    reading covers is left out). Returns (grid midpoints, column 0, column 1)."""
    t_js, s_js, t_ft = (np.asarray(x, float) for x in (t_js, s_js, t_ft))
    values = np.asarray(values, float)
    ds = np.maximum(np.diff(s_js), 0.0)  # forward travel only: a stopped (or settling) hand does no work
    lo = np.searchsorted(t_ft, t_js[:-1], side="right")  # readings in (t_{i-1}, t_i]
    hi = np.searchsorted(t_ft, t_js[1:], side="right")
    csum = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    n = hi - lo
    f = (csum[hi] - csum[lo]) / np.maximum(n, 1)[:, None]
    seen = np.where(n > 0, ds, 0.0)
    travel = np.concatenate([[s_js[0]], s_js[0] + np.cumsum(ds)])
    cover = np.concatenate([[0.0], np.cumsum(seen)])
    work = np.vstack([np.zeros((1, 2)), np.cumsum(f * seen[:, None], axis=0)])
    grid = np.arange(travel[0], travel[-1] + 1e-12, step)
    if len(grid) < 2:
        raise SkillFailed("the hand hardly moved while pushing")
    dc = np.diff(np.interp(grid, travel, cover))
    dw = np.column_stack([np.diff(np.interp(grid, travel, work[:, k])) for k in range(2)])
    keep = dc > 0.05 * step
    if not keep.any():
        raise SkillFailed("no wrist readings while the hand moved")
    per = dw[keep] / dc[keep, None]
    return (grid[:-1] + step / 2)[keep], per[:, 0], per[:, 1]


def check_steady(path_s, f, steady: tuple[float, float], label: str) -> None:
    """Refuse a push whose window holds more knocks (stretches above KNOCK x its median force, and KNOCK_FLOOR_N
    over it) than the trimmed mean takes out (protocols.TRIM): the arm caught up with late goals at full speed,
    again and again, and no mean of such a window is the friction."""
    s, f = np.asarray(path_s, float), np.asarray(f, float)
    win = f[(s >= steady[0]) & (s <= steady[1])]
    level = float(np.median(win)) if len(win) else 0.0  # knocks up to half the window leave it the steady force
    share = float(np.mean(win > max(KNOCK * level, level + KNOCK_FLOOR_N))) if level > 0 else 0.0
    if share > P.TRIM:
        raise SkillFailed(
            f"the hand knocked {label} along instead of pushing it steadily ({share:.0%} of the push above "
            f"{KNOCK:g} x its steady {level:.2f} N): the arm moved in jerks (a starved host?)"
        )


def check_followed(moved: float, distance: float, label: str) -> None:
    """Refuse a push whose object moved part of the way, neither with the hand (FOLLOWED x the distance) nor
    not at all (STUCK_M: held down, itself evidence): the hand lost it partway, and the window's force is not its
    sliding friction. A cylinder pushed at 0.10 m/s slid off the Panda's 2 cm finger pad sideways (moved 0.051,
    0.068 and 0.070 m of 0.10, reading 0.11-0.50 N: two of the rank_friction misses on dev); over 120 other dev
    pushes, none moved between 2 cm and 0.85 x the distance. But the emulated SO-101's camera reads its followed
    6 cm pushes short: 0.046-0.053 m (174 of 188 pushes on 12 test worlds at 0.051 or more), and 0.85 (0.051)
    refused some of them (a slides miss: "moved 0.050 m of the 0.060"); 0.75 lies between the two."""
    if STUCK_M < moved < FOLLOWED * distance:
        raise SkillFailed(
            f"the hand lost {label} partway: it moved {moved:.3f} m of the {distance:.3f} m pushed (a round "
            f"object slides off the pad; try it slower), so the force is not its sliding friction"
        )


def check_contact(path_s, f, steady: tuple[float, float], label: str) -> None:
    """Refuse a push whose hand did not stay on the object through the steady window (CONTACT_SHARE)."""
    s, f = np.asarray(path_s, float), np.asarray(f, float)
    win = f[(s >= steady[0]) & (s <= steady[1])]
    mean = float(win.mean()) if len(win) else 0.0
    if mean > 0 and np.mean(win > 0.25 * mean) < CONTACT_SHARE:
        raise SkillFailed(
            f"the hand kept losing {label} during the push ({np.mean(win > 0.25 * mean):.0%} of the readings in "
            f"contact): the arm moved in jerks (a starved host?), and the mean force is not the friction"
        )


def check_followable(mo: Motion, qs, q_before, what: str) -> None:
    """Refuse, before moving, a fast motion whose joint speeds exceed the gate's default velocity limit
    (velocity_scale x the URDF's): the gate would slow it down, and the measurement would be of another
    experiment than the one asked for. (Accelerations are left to the gate: second differences of IK
    waypoints carry the redundant arm's null-space jitter, and the gate scales such steps smoothly.)
    A plan must keep FOLLOW_MARGIN below the limit: the gate checks each step from the *measured* state,
    a tick or two behind the plan, so a plan at 91 % of it (an SO-101 strike at 0.25 m/s) was clamped 4-7
    times and now and then missed its block or was rejected mid-strike."""
    v = np.abs(np.diff(np.vstack([q_before, qs]), axis=0)) * mo.hz
    limit = mo.kin.limits.velocity * GateConfig().velocity_scale * FOLLOW_MARGIN
    frac = v / limit
    if frac.max() > 1.0:
        i, j = np.unravel_index(int(np.argmax(frac)), frac.shape)
        raise Unreachable(
            f"{what}: the arm cannot follow it here (joint {j} would turn at {v[i, j]:.2f} "
            f"rad/s; plans may use {limit[j]:.2f} rad/s, {FOLLOW_MARGIN:.0%} of the gate's limit); "
            f"try a lower speed or another direction"
        )
