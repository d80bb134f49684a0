"""Experiment protocols: the geometry and timing of each skill and how its raw signals become measurements.

Shared by the arm-driven skills (`loopylab.actuation.skills`) and the object-level twin (`loopylab.lab.twin`), so
that a prediction and a measurement are computed the same way. Pure numpy (and scipy rotations): no bus, no simulator.

Physics each protocol exposes (flat table, the table's coefficients are 1, so the object's show):
- push at constant speed: steady sliding force ≈ μ·m·g (force_mean_N over the middle of the contact);
- strike (velocity launch, then the pusher brakes harder than friction can): slide ≈ v²/(2μg);
- weigh: wrist force change when the object hangs from the gripper = m·g;
- drop from height h onto the table: first bounce apex ≈ e²·h;
- hold still: the wrist torque of the held weight about the sensor, τ = r × F, locates the object's
  centre of mass in the horizontal plane (x = -τy/Fz, y = τx/Fz from the sensor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from loopylab.world.robots import CONTROL_HZ
from loopylab.world.trajectory import speed_profile

G = 9.81
TIP_Z = 0.006  # m: height of the tool's lowest point while pushing/striking
PUSH_GAP = 0.02  # m: free travel before contact (room to reach the push speed)
PUSH_ACCEL = 1.0  # m/s^2 along the push path
STEADY = (0.25, 0.9)  # fraction of the commanded distance over which the force is averaged
# a push's vertical load (N, down > 0) outside this range is no pushed object's: the hand met another
# object or the table (seen: -135 to -7 N when a Panda's hand ran into a neighbour, 5-18 N when its wide hand
# rode on a taller neighbour's top). A round flange (the kuka's) presses on the block it pushes, 0.27-0.64 N,
# which the load term models; a Panda's palm pressed a tall block down by up to 10 N until the push learnt to
# pass it over the top (actuation/skills/push.clear_the_top).
PUSH_LOAD_RANGE = (-2.0, 3.0)
# The steady force is a trimmed mean over the window's stretches of travel: a share TRIM of them cut at each end.
# An arm streamed late (a starved host) catches up at its servos' full speed, and the wrist then reads the hand's
# own inertia and the knock on the object, in stretches a mean over travel does not cancel: one push on the
# emulated SO-101 under 6 CPU hogs read 0.608 N for a 0.504 N friction, six stretches at 2.0 N in the window,
# 0.518 trimmed; over 28 pushes the trim moved the others by at most 0.015 N.
TRIM = 0.1
STRIKE_CONTACT_SPEED = 0.03  # m/s: close the gap gently, so the launch is a push, not a collision
STRIKE_ACCEL = 4.0  # m/s^2 up to the strike speed, in contact
STRIKE_CRUISE = 0.03  # m at constant strike speed (the launch speed is measured here)
STRIKE_BRAKE = 20.0  # m/s^2: harder than any friction (μ ≤ 1 -> μg < 10), so the object separates, and
# within an arm's reach: a Panda's hand manages 30+ across its reach; along it
# (10-20) the gate scales the braking steps and the strike brakes a few ms late
STRIKE_MAX_SPEED = 0.6  # m/s
WEIGH_LIFT = 0.05  # m
PLACE_CARRY = 0.10  # m: a placed object is carried this high, above the tallest neighbour (8 cm)
SETTLE_S = 0.25  # s of holding still before a baseline or a reading
TILT_RAD = math.radians(35)  # a drop tilts the held object this far to see its vertical COM offset
TILT_MIN_RAD = math.radians(10)  # ... and needs at least this much to resolve it
# ... and a standard error of the vertical offset (from the torque's white noise) no larger than this: on the
# FT 300-S (sim/ft_noise.py) a 0.2 kg block's offset scatters by 3-4 mm, which moves the twin's bounce by a
# third, more than leaving the offset out does (NoiseModel.unseen_com)
COM_Z_MAX_SD = 0.0015
DIRECTIONS = {"+x": (1.0, 0.0), "-x": (-1.0, 0.0), "+y": (0.0, 1.0), "-y": (0.0, -1.0)}


class BadArgs(ValueError):
    """A skill request with missing or out-of-range arguments."""


def direction(name: str) -> np.ndarray:
    try:
        return np.array([*DIRECTIONS[name], 0.0])
    except KeyError:
        raise BadArgs(f"direction must be one of {' '.join(DIRECTIONS)}, not {name!r}") from None


def number(args: dict, key: str, lo: float, hi: float, default: float | None = None) -> float:
    if key not in args:
        if default is None:
            raise BadArgs(f"missing argument {key!r}")
        return default
    try:
        v = float(args[key])
    except (TypeError, ValueError):
        raise BadArgs(f"{key} must be a number, got {args[key]!r}") from None
    if not (lo <= v <= hi):
        raise BadArgs(f"{key}={v} outside [{lo}, {hi}]")
    return v


@dataclass
class PushPlan:
    start: np.ndarray  # tool tip start (base frame)
    end: np.ndarray
    path: np.ndarray  # path positions per control tick (m from start)
    steady: tuple[float, float]  # path interval where the force is averaged
    brake_s: float = 0.0  # strike: path position where braking starts


def push_plan(
    obj_pos: Sequence[float] | np.ndarray,
    size: float,
    dir_name: str,
    distance: float,
    speed: float,
    pad: float,
    hz: float = CONTROL_HZ,
) -> PushPlan:
    d = direction(dir_name)
    start = np.array([obj_pos[0], obj_pos[1], TIP_Z]) - d * (size / 2 + PUSH_GAP + pad)
    travel = PUSH_GAP + distance
    path = speed_profile([(travel, speed, PUSH_ACCEL)], hz)
    steady = (PUSH_GAP + STEADY[0] * distance, PUSH_GAP + STEADY[1] * distance)
    return PushPlan(start, start + d * travel, path, steady)


def strike_plan(
    obj_pos: Sequence[float] | np.ndarray, size: float, dir_name: str, speed: float, pad: float, hz: float = CONTROL_HZ
) -> PushPlan:
    d = direction(dir_name)
    start = np.array([obj_pos[0], obj_pos[1], TIP_Z]) - d * (size / 2 + PUSH_GAP + pad)
    contact = PUSH_GAP + 0.002
    accel = (speed**2 - STRIKE_CONTACT_SPEED**2) / (2 * STRIKE_ACCEL) + STRIKE_CRUISE
    brake = speed**2 / (2 * STRIKE_BRAKE) * (1 - 1e-6)  # just under: the profile starts braking at once
    path = speed_profile(
        [(contact, STRIKE_CONTACT_SPEED, PUSH_ACCEL), (accel, speed, STRIKE_ACCEL), (brake, speed, STRIKE_BRAKE)], hz
    )
    travel = contact + accel + brake
    return PushPlan(
        start, start + d * travel, path, (contact + accel - STRIKE_CRUISE, contact + accel), contact + accel
    )


def analyze_push(
    path_s: ArrayLike,
    force_along: ArrayLike,
    pos_before: ArrayLike,
    pos_after: ArrayLike,
    steady: tuple[float, float],
    sigma: float,
    force_up: ArrayLike | None = None,
) -> dict:
    """path_s[i]: pusher path position at sample i; force_along[i]: contact force along the push (N);
    force_up[i] (optional): the contacts' vertical force on the hand (N, up > 0), i.e. the hand pressing
    down on the object, reported as `load_N` over the same window: friction is mu (m g + load).
    `force_mean_N` is the window's trimmed mean (TRIM)."""
    s, f = np.asarray(path_s, float), np.asarray(force_along, float)
    win = (s >= steady[0]) & (s <= steady[1])
    disp = np.asarray(pos_after, float)[:2] - np.asarray(pos_before, float)[:2]
    step = max(1, len(f) // 100)
    extra = {}
    if force_up is not None and win.any():
        extra["load_N"] = float(np.asarray(force_up, float)[win].mean())
    return {
        **extra,
        "force_mean_N": trimmed_mean(f[win], TRIM) if win.any() else 0.0,
        "force_peak_N": float(f.max()) if len(f) else 0.0,
        "force_profile_N": [round(float(v), 4) for v in f[::step]],
        "displacement_m": [float(disp[0]), float(disp[1])],
        "moved_m": float(np.linalg.norm(disp)),
        "displacement_sigma_m": float(np.sqrt(2) * sigma),
    }


def trimmed_mean(x: ArrayLike, cut: float) -> float:
    """The mean of `x` less its `cut` share of lowest and of highest values (the whole mean where that leaves
    nothing)."""
    x = np.sort(np.asarray(x, float))
    k = int(cut * len(x))
    return float(x[k : len(x) - k].mean() if len(x) > 2 * k else x.mean())


def analyze_strike(t: ArrayLike, xy: ArrayLike, t_brake: float, speed: float, sigma: float) -> dict:
    """t, xy: object track (s, [N,2]); t_brake: when the pusher starts braking after cruising at `speed`.
    Launch speed: a line fit over the cruise; slide: from the object's position at braking to its rest."""
    t, xy = np.asarray(t, float), np.asarray(xy, float)
    cruise = (t <= t_brake + 1e-9) & (t >= t_brake - STRIKE_CRUISE / max(speed, 1e-3) - 1e-9)
    v = 0.0
    if cruise.sum() >= 2:
        v = float(np.hypot(np.polyfit(t[cruise], xy[cruise, 0], 1)[0], np.polyfit(t[cruise], xy[cruise, 1], 1)[0]))
    i0 = min(int(np.searchsorted(t, t_brake - 1e-9)), len(xy) - 1)
    rest = np.median(xy[-5:], axis=0)
    return {
        "slide_m": float(np.linalg.norm(rest - xy[i0])),
        "slide_sigma_m": float(np.sqrt(2) * sigma),
        "launch_speed_mps": v,
    }


def analyze_drop(t: ArrayLike, z: ArrayLike, sigma: float, size: float) -> dict:
    """z: object centre height from release. Bounce = how far the centre rises from the first impact (the
    end of the fall) to the apex of the first rebound.

    Measured from the impact, not from where the object comes to rest: a block that tumbles after its
    bounce may end up leaning on a neighbour or on an edge, centimetres above the height it landed at,
    and a rest-based reading then sees no bounce at all (0.001 m for a 0.012 m rebound)."""
    z = np.asarray(z, float)
    if len(z) < 3 or not np.all(np.isfinite(z)):
        return {"bounce_m": 0.0, "bounce_sigma_m": float(sigma)}
    tol = max(0.001, 3 * sigma)  # a dip this deep ends the rebound's rise (noise does not)
    falling = np.nonzero(z < z[0] - 0.5 * (z[0] - z.min()))[0]  # well into the fall
    i = int(falling[0]) if len(falling) else 0
    while i + 1 < len(z) and z[i + 1] < z[i]:
        i += 1  # the first impact: the fall's lowest point
    low = top = z[i]
    for v in z[i + 1 :]:
        if v < top - tol:
            break  # past the rebound's apex, falling again
        top = max(top, v)
    return {"bounce_m": float(max(0.0, top - low)), "bounce_sigma_m": float(np.sqrt(2) * sigma)}


def analyze_com(
    wrench_base: ArrayLike,
    wrench_held: ArrayLike,
    sensor_pos: ArrayLike,
    centre: ArrayLike,
    orientation_xyzw: ArrayLike,
    min_force: float = 0.2,
    tilted: tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike, ArrayLike] | None = None,
) -> dict:
    """Centre-of-mass offset of a held object (m) in the frame of its faces as it is held, z up.

    wrench_*: (N, 6) samples [force xyz, torque xyz about the sensor, base frame] with the hand empty and
    holding the object still at the same orientation (the difference is the object's pull alone);
    sensor_pos: the sensor's position while holding; centre, orientation_xyzw: the object's geometric
    centre and orientation. The frame is the object's own with its most vertical axis as z: a block that
    tumbled onto another face is, for what happens next, a block standing on that face.

    Held level, the wrist torque sees only the horizontal offset (com_x_m, com_y_m). `tilted`: the same five
    readings with the object held tilted (at least TILT_MIN_RAD away from the level hold): the vertical
    offset then has a horizontal lever too, and a least-squares fit of both holds adds com_z_m. Returns {}
    when the held weight is too small to resolve (|dFz| < min_force N); a tilted reading that cannot be
    resolved, or whose standard error is over COM_Z_MAX_SD, is left out (no com_z_m).
    """
    level = _com_lever(wrench_base, wrench_held, sensor_pos, centre, min_force)
    if level is None:
        return {}
    R = Rotation.from_quat(np.asarray(orientation_xyzw, float)).as_matrix()
    k = int(np.argmax(np.abs(R[2])))  # the body axis that points (most nearly) up or down
    i, j = (k + 1) % 3, (k + 2) % 3  # (e_i, e_j, e_k) is right-handed
    if R[2, k] < 0:
        i, j = j, i  # (e_j, e_i, -e_k) is, with z up
    tilt = _com_lever(*tilted[:4], min_force) if tilted is not None else None
    if tilted is not None and tilt is not None:
        Rt = Rotation.from_quat(np.asarray(tilted[4], float)).as_matrix()
        A = np.vstack([R[:2], Rt[:2]])  # horizontal rows of (R o): the levers each hold measured
        # the smallest singular value of A is sqrt(2) sin(angle between the holds / 2)
        if np.linalg.svd(A, compute_uv=False)[-1] >= math.sqrt(2) * math.sin(TILT_MIN_RAD / 2):
            o = np.linalg.lstsq(A, np.concatenate([level, tilt]), rcond=None)[0]  # body frame
            lever_sd = np.concatenate([_lever_sd(wrench_base, wrench_held), _lever_sd(*tilted[:2])])
            z_sd = math.sqrt(np.linalg.pinv((A / lever_sd[:, None]).T @ (A / lever_sd[:, None]))[k, k])
            if z_sd <= COM_Z_MAX_SD:  # else the sensor's noise swamps it: better unmeasured than wrong
                return {"com_x_m": float(o[i]), "com_y_m": float(o[j]), "com_z_m": float(np.sign(R[2, k]) * o[k])}
    offset = np.array([*level, 0.0])
    return {"com_x_m": float(offset @ R[:, i]), "com_y_m": float(offset @ R[:, j])}


def _lever_sd(wrench_base: ArrayLike, wrench_held: ArrayLike) -> np.ndarray:
    """Standard errors (m) of the two horizontal levers `_com_lever` finds, from the torque samples' scatter
    (the sensor's white noise; a floor of 0.1 mm where the samples do not scatter)."""
    b, h = np.asarray(wrench_base, float), np.asarray(wrench_held, float)
    fz = abs(h[:, 2].mean() - b[:, 2].mean())
    se = np.sqrt(b[:, 3:5].var(axis=0) / len(b) + h[:, 3:5].var(axis=0) / len(h))
    return np.maximum(se[::-1] / max(fz, 1e-9), 1e-4)


def _com_lever(
    wrench_base: ArrayLike, wrench_held: ArrayLike, sensor_pos: ArrayLike, centre: ArrayLike, min_force: float
) -> np.ndarray | None:
    """The horizontal vector from the object's geometric centre to its centre of mass (base frame), from
    the torque of its weight about the sensor; None when the weight is too small to resolve."""
    d = np.mean(np.asarray(wrench_held, float), axis=0) - np.mean(np.asarray(wrench_base, float), axis=0)
    fz = d[2]
    if not np.isfinite(fz) or abs(fz) < min_force or not np.all(np.isfinite(d[3:5])):
        return None
    return np.asarray(sensor_pos, float)[:2] + np.array([-d[4] / fz, d[3] / fz]) - np.asarray(centre, float)[:2]


def analyze_weigh(fz_base: ArrayLike, fz_held: ArrayLike) -> dict:
    """The held mass from two still holds; its sigma is the standard error of the difference of their means
    (the sensor's white noise). What drifts between the holds is not in it: the belief engine's noise model
    holds that (NoiseModel.floor, measured on dev worlds by scripts/calibrate_noise.py)."""
    b, h = np.asarray(fz_base, float), np.asarray(fz_held, float)
    m = -(h.mean() - b.mean()) / G
    sig = float(np.sqrt(b.var() / max(1, len(b)) + h.var() / max(1, len(h))) / G)
    return {"mass_kg": float(m), "force_z_N": float(-(h.mean() - b.mean())), "mass_sigma_kg": sig}
