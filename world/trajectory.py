"""Joint-space and Cartesian trajectories sampled at the control rate, within velocity/acceleration limits.

- `min_jerk(q0, q1, vmax, amax, hz)`: the smooth default for free motion.
- `trapezoid(q0, q1, vmax, amax, hz)`: constant-velocity cruise (when the speed itself matters).
- `speed_profile(segments, hz)`: 1-D path positions for piecewise constant-acceleration segments.
- `cartesian_line(kin, ...)`: a straight tool path with a given speed profile, solved by IK point by point
  (seeded from the previous point, so the arm never flips configuration mid-line).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for annotations only: kinematics loads PyBullet
    from loopylab.world.kinematics import Kinematics

Quaternion = Sequence[float] | np.ndarray  # xyzw

MIN_JERK_V = 1.875  # peak velocity of a min-jerk move = 1.875 * d / T
MIN_JERK_A = 5.7735  # peak acceleration = 5.7735 * d / T^2


def min_jerk(
    q0: ArrayLike, q1: ArrayLike, vmax: ArrayLike, amax: ArrayLike, hz: float, min_time: float = 0.05
) -> np.ndarray:
    """Waypoints (N, n) from q0 (excluded) to q1 (included) on a minimum-jerk profile."""
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
    d = np.abs(q1 - q0)
    T = max(
        min_time,
        float(np.max(MIN_JERK_V * d / np.asarray(vmax))),
        float(np.max(np.sqrt(MIN_JERK_A * d / np.asarray(amax)))),
    )
    n = max(1, int(np.ceil(T * hz)))
    s = np.arange(1, n + 1) / n
    blend = 10 * s**3 - 15 * s**4 + 6 * s**5
    return q0 + blend[:, None] * (q1 - q0)


def trapezoid(q0: ArrayLike, q1: ArrayLike, vmax: ArrayLike, amax: ArrayLike, hz: float) -> np.ndarray:
    """Waypoints (N, n) with a trapezoidal velocity profile, all joints synchronised to the slowest."""
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
    d = np.abs(q1 - q0)
    dmax = float(d.max())
    if dmax == 0:
        return q1[None, :]
    # the slowest joint (relative to its limits) sets the time; scale the path parameter s in [0, 1]
    vs = float(np.min(np.asarray(vmax) / np.maximum(d, 1e-12)))
    as_ = float(np.min(np.asarray(amax) / np.maximum(d, 1e-12)))
    s = speed_profile([(1.0, vs, as_)], hz)
    return q0 + s[:, None] * (q1 - q0)


def speed_profile(segments: Sequence[tuple[float, float, float]], hz: float, v0: float = 0.0) -> np.ndarray:
    """Path positions at the control rate for consecutive segments (length, cruise speed, acceleration):
    each segment accelerates (or decelerates) from the previous speed to its cruise speed, then cruises;
    the final segment ends at rest. Returns cumulative path positions (excluding 0)."""
    dt = 1.0 / hz
    out, s0, v = [], 0.0, v0
    for k, (length, vc, a) in enumerate(segments):
        last = k == len(segments) - 1
        s, end = 0.0, length
        while s < end - 1e-12:
            remaining = end - s
            if last and v * v / (2 * a) >= remaining:  # time to brake to rest at the end
                v = max(v - a * dt, 0.0)
                if v == 0.0:
                    s = end
                    out.append(s0 + s)
                    break
            elif v < vc:
                v = min(vc, v + a * dt)
            elif v > vc:
                v = max(vc, v - a * dt)
            s = min(end, s + v * dt)
            out.append(s0 + s)
        s0 += length
    return np.asarray(out)


def cartesian_line(
    kin: Kinematics,
    start: ArrayLike,
    end: ArrayLike,
    orientation: Quaternion | Callable[[np.ndarray], Quaternion],
    path: np.ndarray,
    q0: ArrayLike,
) -> np.ndarray:
    """Joint waypoints for the tool moving along start->end at path positions `path` (metres from start).
    `orientation` is a quaternion or a function of the position. Raises kinematics.Unreachable (with the
    failing point) when any point cannot be reached."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = float(np.linalg.norm(end - start))
    u = (end - start) / length if length > 0 else np.zeros(3)
    qs, q = [], np.asarray(q0, float)
    for s in path:
        x = start + u * s
        q = kin.ik(x, orientation(x) if callable(orientation) else orientation, q0=q, restarts=1)
        qs.append(q)
    return np.asarray(qs).reshape(len(qs), -1)
