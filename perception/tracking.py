"""Per-object tracks: temporal filtering, explicit lost / reacquired states, marker flip resolution.

Each measurement is a pose with a 6x6 covariance (x y z rx ry rz, base frame). A track fuses them with
a constant-pose Kalman filter (the process noise lets objects move); an innovation far outside the
expected spread (a push moved the object) restarts the track at the measurement instead of dragging
the estimate through it. A track with no measurement for `lost_after_s` becomes LOST (kept, not
published); the next measurement REACQUIRES it, counted and time-stamped, starting afresh.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from loopylab.perception.geometry import R_to_rvec, make_T, rotation_angle, rvec_to_R

TRACKING, LOST = "tracking", "lost"
ROT_UNKNOWN_VAR = 10.0  # rad^2


@dataclass
class Measurement:
    stamp_ns: int
    T: np.ndarray  # 4x4 base frame
    covariance: np.ndarray  # 6x6
    source: str = ""  # e.g. "marker:3@overhead", "blob@overhead"


@dataclass
class Track:
    label: str
    id: int
    T: np.ndarray
    covariance: np.ndarray
    state: str = TRACKING
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    lost_since_ns: int = 0
    reacquired: int = 0
    updates: int = 0
    restarts: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=60))  # raw measurements, newest last

    @property
    def orientation_known(self) -> bool:
        return bool(np.trace(self.covariance[3:, 3:]) < ROT_UNKNOWN_VAR)

    def summary(self) -> dict:
        return {
            "label": self.label,
            "id": self.id,
            "state": self.state,
            "first_seen_ns": self.first_seen_ns,
            "last_seen_ns": self.last_seen_ns,
            "lost_since_ns": self.lost_since_ns,
            "reacquired": self.reacquired,
            "updates": self.updates,
            "restarts": self.restarts,
            "position": self.T[:3, 3].tolist(),
        }


@dataclass
class TrackerConfig:
    lost_after_s: float = 0.5
    # Process noise sets the lag: at 10 Hz with ~1.5 mm measurements the gain is ~0.85, so a pushed
    # object is followed within a frame or two while a still one is smoothed a little. Steady averaging
    # for experiments is `fused()` (the perception/measure service), not this filter.
    pos_process: float = 0.01  # m / sqrt(s)
    rot_process: float = 0.05  # rad / sqrt(s)
    gate_sigmas: float = 3.5  # innovations beyond this restart the track (the object was moved)
    flip_margin_deg: float = 10.0  # a candidate must be this much closer to the prior to be chosen


class Tracker:
    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: dict[str, Track] = {}

    # -- ambiguity -------------------------------------------------------------------
    def choose(self, label: str, candidates: list[np.ndarray]) -> int | None:
        """Which of two pose candidates (4x4, base frame) agrees with the live track's known orientation,
        or None when there is no such track or the choice is not clear-cut."""
        tr = self.tracks.get(label)
        if tr is None or tr.state != TRACKING or not tr.orientation_known:
            return None
        d = [rotation_angle(tr.T[:3, :3], c[:3, :3]) for c in candidates]
        best = int(np.argmin(d))
        if d[1 - best] - d[best] > np.radians(self.config.flip_margin_deg) and d[best] < np.radians(25):
            return best
        return None

    # -- updates -----------------------------------------------------------------------
    def update(self, label: str, m: Measurement, obj_id: int = 0) -> Track:
        cfg = self.config
        tr = self.tracks.get(label)
        if tr is None:
            tr = self.tracks[label] = Track(
                label, obj_id, m.T.copy(), m.covariance.copy(), first_seen_ns=m.stamp_ns, last_seen_ns=m.stamp_ns
            )
            tr.updates = 1
            tr.recent.append(m)
            return tr
        if tr.state == LOST:
            tr.state, tr.reacquired, tr.lost_since_ns = TRACKING, tr.reacquired + 1, 0
            tr.T, tr.covariance = m.T.copy(), m.covariance.copy()
        else:
            dt = max(0.0, (m.stamp_ns - tr.last_seen_ns) / 1e9)
            P = tr.covariance.copy()
            P[:3, :3] += np.eye(3) * cfg.pos_process**2 * dt
            P[3:, 3:] += np.eye(3) * cfg.rot_process**2 * dt
            innov = np.concatenate([m.T[:3, 3] - tr.T[:3, 3], R_to_rvec(m.T[:3, :3] @ tr.T[:3, :3].T)])
            S = P + m.covariance
            rot_known = np.trace(m.covariance[3:, 3:]) < ROT_UNKNOWN_VAR and tr.orientation_known
            idx = slice(0, 6) if rot_known else slice(0, 3)
            d2 = float(innov[idx] @ np.linalg.solve(S[idx, idx], innov[idx]))
            if d2 > cfg.gate_sigmas**2 * (6 if rot_known else 3):
                tr.T, tr.covariance = m.T.copy(), m.covariance.copy()
                tr.restarts += 1
            else:
                Kg = P @ np.linalg.inv(S)
                step = Kg @ innov
                if not rot_known:  # an unknown orientation must not drag a known one, nor vice versa
                    step[3:] = 0 if tr.orientation_known else innov[3:]
                R = rvec_to_R(step[3:]) @ tr.T[:3, :3]
                tr.T = make_T(R, tr.T[:3, 3] + step[:3])
                tr.covariance = (np.eye(6) - Kg) @ P
                tr.covariance = (tr.covariance + tr.covariance.T) / 2
                if not rot_known and not tr.orientation_known:
                    tr.covariance[3:, 3:] = m.covariance[3:, 3:]
        tr.last_seen_ns = m.stamp_ns
        tr.updates += 1
        tr.recent.append(m)
        return tr

    def tick(self, now_ns: int) -> list[Track]:
        """Mark tracks unseen for `lost_after_s` as LOST; returns the tracks that were just lost."""
        lost = []
        for tr in self.tracks.values():
            if tr.state == TRACKING and (now_ns - tr.last_seen_ns) / 1e9 > self.config.lost_after_s:
                tr.state, tr.lost_since_ns = LOST, now_ns
                lost.append(tr)
        return lost

    def tracked(self) -> list[Track]:
        return [t for t in self.tracks.values() if t.state == TRACKING]

    def fused(self, label: str, after_ns: int = 0, n: int = 3, floor: np.ndarray | None = None):
        """Information-weighted mean of the last `n` raw measurements newer than `after_ns`, or None.

        Frames of a still object share their systematic error, which averaging cannot remove: `floor`
        (6x6) is added back to the fused covariance.
        """
        tr = self.tracks.get(label)
        if tr is None:
            return None
        ms = [m for m in tr.recent if m.stamp_ns > after_ns][-n:]
        if len(ms) < n:
            return None
        info = sum(np.linalg.inv(m.covariance[:3, :3]) for m in ms)
        cov_p = np.linalg.inv(info)
        p = cov_p @ sum(np.linalg.inv(m.covariance[:3, :3]) @ m.T[:3, 3] for m in ms)
        ref = ms[-1].T[:3, :3]
        w = np.mean([R_to_rvec(m.T[:3, :3] @ ref.T) for m in ms], axis=0)
        cov = np.zeros((6, 6))
        cov[:3, :3] = cov_p
        cov[3:, 3:] = np.mean([m.covariance[3:, 3:] for m in ms], axis=0) / len(ms)
        if floor is not None:
            cov = cov + floor
        return Measurement(ms[-1].stamp_ns, make_T(rvec_to_R(w) @ ref, p), cov, ms[-1].source), len(ms)


def choose_by_normal(candidates: list[np.ndarray], expected_normal, margin_deg: float = 10.0) -> int | None:
    """Which candidate's z axis (a marker's normal) is clearly closer to `expected_normal`, or None."""
    n = np.asarray(expected_normal, float)
    n = n / np.linalg.norm(n)
    d = [np.arccos(np.clip(c[:3, 2] @ n, -1, 1)) for c in candidates]
    best = int(np.argmin(d))
    return best if d[1 - best] - d[best] > np.radians(margin_deg) else None
