"""The market's twin replay (a `loopylab.verifiers` plug-in; the market cannot import the sim): the recorded
arm/joint_command stream is replayed, in order, in a PyBullet twin of the recorded robot, and the recorded
arm/joint_state (positions, velocities, efforts) is compared with what the twin's joints do.

Cheap to verify, expensive to fake: the replay is a few hundred physics steps a second of recording, while a
stream made by a script has to get what physics decides right at every tick, above all the efforts (the
torques that hold the arm up against gravity as it moves, and those that accelerate it). A real arm differs
from its twin by model error and sensor noise, so the tolerances are wide against those (TOLERANCE) and still
far below what a made-up stream misses by. Efforts are judged by how they vary with the motion (low-passed,
correlated joint by joint) and by their scale, not value by value: a real arm's servo gains change the
fast part of its efforts, not the gravity and inertia the twin predicts. Velocities are reported, not judged
(light simulated links make them jitter).

Plain data in and out (market/verify/twin.py): `verify(streams, context) -> {"ok", "detail"}` where streams is
topic -> [(log_time_ns, message dict)], in recorded order; ok None when there is nothing to replay.
"""

from __future__ import annotations

import numpy as np
import pybullet as p

from loopylab.world.joints import JointMismatch, reorder
from loopylab.world.robots import CATALOGUE, CONTROL_HZ
from loopylab.world.scene import SceneSpec

COMMANDS, STATES = "arm/joint_command", "arm/joint_state"
MAX_SECONDS = 120.0  # of recording replayed; the rest is not checked (said in the verdict)
MAX_GAP_S = 1.0  # a gap in the states longer than this is replayed as this long
POSITION_TOL = (0.1, 0.1)  # rad: rms of (recorded - twin) allowed, fixed + this share of the twin's rms (model
# error, calibration, sensor noise of a real arm)
SMOOTH_S = 0.25  # efforts are compared low-passed: servo-loop chatter differs with gains, gravity does not
EFFORT_CORR = 0.6  # median over the joints whose twin effort varies of corr(recorded, twin)
EFFORT_SCALE = (0.5, 2.0)  # rms(recorded) / rms(twin): a sensor in other units or a made-up scale fails


def _robot(names: list[str]):
    for rs in CATALOGUE.values():
        if set(names) == set(rs.arm_joints):
            return rs
    return None


def verify(streams: dict, context: dict) -> dict:
    states, cmds = streams.get(STATES) or [], streams.get(COMMANDS) or []
    if len(states) < 2 or not cmds:
        return {"ok": None, "detail": f"nothing to replay (needs {COMMANDS} and {STATES})"}
    names = [str(n) for n in (states[0][1].get("name") or [])]
    rs = _robot(names)
    if rs is None:
        return {"ok": None, "detail": f"the joints {names[:8]} match no robot the twin knows"}
    try:
        return _replay(rs, names, states, cmds)
    except (JointMismatch, KeyError, TypeError, ValueError) as e:
        return {"ok": False, "detail": f"the recorded joint streams cannot be replayed: {e}"}


def _vec(msg: dict, key: str, names: list[str], want) -> np.ndarray:
    vals = msg.get(key) or []
    if len(vals) == 0:
        return np.zeros(len(want))
    return reorder([float(x) for x in vals], [str(n) for n in msg.get("name") or names], want)


def _replay(rs, names, states, cmds) -> dict:
    from loopylab.sim.arm import ArmSim
    from loopylab.sim.world import World

    want = list(rs.arm_joints)
    with World(SceneSpec(robot=rs.name, objects=[])) as world:
        arm = ArmSim(world)
        r, c = world.robot, world.cid
        q0 = _vec(states[0][1], "position", names, want)
        for j, q in zip(r.arm, q0):
            p.resetJointState(r.body, j, float(q), 0.0, physicsClientId=c)
        arm.command_positions(q0)
        keys = ("position", "velocity", "effort")
        rec: dict = {k: [] for k in keys}
        twin: dict = {k: [] for k in keys}
        ci, t0 = 0, int(states[0][1].get("stamp_ns") or states[0][0])
        prev, replayed = t0, 0.0
        for lt, st in states[1:]:
            stamp = int(st.get("stamp_ns") or lt)
            if (stamp - t0) / 1e9 > MAX_SECONDS:
                break
            fresh = False
            while ci < len(cmds) and cmds[ci][0] <= lt:  # the commands received before this state
                arm.command_positions(_vec(cmds[ci][1], "position", names, want), 1.0 / CONTROL_HZ)
                ci, fresh = ci + 1, True
            if not fresh:
                arm.hold_still()
            dt = min(max((stamp - prev) / 1e9, 0.0), MAX_GAP_S)
            prev = stamp
            n = max(1, round(dt / world.dt))
            arm.step(n, wrench=False)
            replayed += n * world.dt
            q, v, e = arm.joint_values()
            for key, got in (("position", q), ("velocity", v), ("effort", e)):
                rec[key].append(_vec(st, key, names, want))
                twin[key].append(np.asarray(got))
    return _verdict(rec, twin, len(rec["position"]), replayed)


def _smooth(a: np.ndarray, w: int) -> np.ndarray:
    if w <= 1:
        return a
    k = np.ones(w) / w
    return np.stack([np.convolve(a[:, j], k, mode="valid") for j in range(a.shape[1])], axis=1)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a**2))) if a.size else 0.0


def _verdict(rec: dict, twin: dict, n: int, seconds: float) -> dict:
    r = {k: np.asarray(v, dtype=float) for k, v in rec.items()}
    t = {k: np.asarray(v, dtype=float) for k, v in twin.items()}
    for k, a in r.items():
        if not np.all(np.isfinite(a)):
            return {"ok": False, "detail": f"recorded {k} is not finite"}
    problems = []
    pos_err = _rms(r["position"] - t["position"])
    pos_tol = POSITION_TOL[0] + POSITION_TOL[1] * _rms(t["position"])
    if pos_err > pos_tol:
        problems.append(f"positions {pos_err:.3g} rad rms from the twin's (tolerance {pos_tol:.3g})")
    w = max(1, min(round(SMOOTH_S * n / max(seconds, 1e-9)), n // 4))
    re_, te = _smooth(r["effort"], w), _smooth(t["effort"], w)
    scale = _rms(re_) / max(_rms(te), 1e-9)
    corrs = []
    for j in range(te.shape[1] if te.ndim == 2 else 0):
        if te[:, j].std() > 0.02 * (np.abs(te).max() + 1e-9):
            sd = re_[:, j].std()
            corrs.append(float(np.corrcoef(re_[:, j], te[:, j])[0, 1]) if sd > 0 else 0.0)
    corr = float(np.median(corrs)) if corrs else 1.0
    if not EFFORT_SCALE[0] <= scale <= EFFORT_SCALE[1]:
        problems.append(f"efforts {scale:.2g}x the twin's")
    if corr < EFFORT_CORR:
        problems.append(f"efforts do not follow the motion as the twin's do (median correlation {corr:.2f})")
    vel_err = _rms(r["velocity"] - t["velocity"])
    facts = (
        f"position rms error {pos_err:.3g} rad (tolerance {pos_tol:.3g}), effort correlation {corr:.2f} "
        f"over {len(corrs)} joints, effort scale {scale:.2f}, velocity rms error {vel_err:.3g} rad/s"
    )
    if problems:
        return {
            "ok": False,
            "detail": f"{n} joint states over {seconds:.1f} s: physics disagrees: "
            + "; ".join(problems)
            + f" ({facts})",
        }
    return {"ok": True, "detail": f"{n} joint states over {seconds:.1f} s replayed in the twin; {facts}"}


def recorded_run(
    robot: str = "panda", seconds: float = 2.0, seed: int = 0, gain: float = 0.3, start_ns: int = 1_700_000_000 * 10**9
) -> dict:
    """What a rig records on a reach (for tests, benchmarks, docs): the twin driven as the lockstep SimArm
    drives it (a command, a control period, a state), with every joint swinging by up to 0.4 rad. `gain`
    other than the twin's 0.3 stands for a real arm whose servos are not the model's. Returns plain streams
    as verify() takes them: topic -> [(log_time_ns, message dict)]."""
    from loopylab.sim.arm import ArmSim
    from loopylab.sim.world import World

    rs = CATALOGUE[robot]
    rng = np.random.default_rng(seed)
    amp, freq, phase = rng.uniform(0.1, 0.4, len(rs.arm_joints)), rng.uniform(0.2, 0.6), rng.uniform(0, 6.3)
    home = np.asarray(rs.home)
    names = list(rs.arm_joints)
    out: dict = {COMMANDS: [], STATES: []}
    with World(SceneSpec(robot=robot, objects=[])) as world:
        arm = ArmSim(world, position_gain=gain)
        steps = max(1, round(1.0 / (CONTROL_HZ * world.dt)))

        def state(stamp: int) -> dict:
            q, v, e = arm.joint_values()
            return {"stamp_ns": stamp, "name": names, "position": list(q), "velocity": list(v), "effort": list(e)}

        out[STATES].append((start_ns + 1000, state(start_ns)))
        for k in range(1, int(seconds * CONTROL_HZ) + 1):
            t = k / CONTROL_HZ
            q = home + amp * np.sin(2 * np.pi * freq * t + phase) - amp * np.sin(phase)
            stamp = start_ns + round(t * 1e9)
            out[COMMANDS].append(
                (stamp - 500_000, {"stamp_ns": stamp - 500_000, "name": names, "position": q.tolist()})
            )
            arm.command_positions(q, 1.0 / CONTROL_HZ)
            arm.step(steps, wrench=False)
            out[STATES].append((stamp + 1000, state(stamp)))
    return out
