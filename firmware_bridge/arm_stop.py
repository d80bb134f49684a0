"""How the arm driver rides out bus faults: a window that tells a transient fault from a persistent one,
and the protective stop that follows a persistent one.

A transient fault (no reply, a corrupt reply, a protocol-error byte) is retried while the motors hold
the last goal with torque on. Only a fault that lasts longer than `window_s` starts a protective stop:
hold the last goal for `hold_s`, then (brakeless arms) move every joint to its rest pose at no more
than `speed` rad/s, and stay there — torque on throughout, since a brakeless arm with torque off falls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loopylab.firmware_bridge.servo.bus import MotorBusError


@dataclass
class FaultWindow:
    """Consecutive failed cycles, from the first failure of a run of them. `longest` (s) is the longest of those
    cycles, from when it was due to its failure: one far longer than its tries' deadlines (a few tens of ms)
    means the host held the driver or the port up, not that the motors were silent that long (measured on a
    2-core VM at load 60: a pty that passed no byte of nine requests for 356 ms, then all of them at once)."""

    window_s: float = 0.25
    since: float | None = None  # monotonic time of the first failure of this run
    first: MotorBusError | None = None  # what started it (logged and published by class)
    count: int = 0
    longest: float = 0.0

    def failed(self, err: MotorBusError, now: float, took: float = 0.0) -> bool:
        """Record a failure (of a cycle that took `took` s); True once the run has lasted past the window."""
        if self.since is None:
            self.since, self.first, self.count, self.longest = now, err, 0, 0.0
        self.count += 1
        self.longest = max(self.longest, took)
        return now - self.since > self.window_s

    def ok(self) -> None:
        self.since, self.first, self.count, self.longest = None, None, 0, 0.0

    @property
    def active(self) -> bool:
        return self.since is not None


@dataclass
class LowerToRest:
    """Goals (rad, one per motor) of a protective stop started at `t0` from goal `start`."""

    start: np.ndarray
    rest: np.ndarray
    t0: float
    hold_s: float = 1.0
    speed: float = 0.2  # rad/s: slow enough to be harmless, fast enough to finish
    lower: bool = True  # False (arms with brakes): hold only
    mask: np.ndarray = field(default=None)  # joints that move (others hold); default all

    def __post_init__(self):
        self.start = np.asarray(self.start, dtype=float)
        self.rest = np.asarray(self.rest, dtype=float)
        if self.mask is None:
            self.mask = np.ones(len(self.start), dtype=bool)

    def goal(self, now: float) -> np.ndarray:
        t = now - self.t0 - self.hold_s
        if not self.lower or t <= 0:
            return self.start.copy()
        step = self.speed * t
        delta = np.where(self.mask, self.rest - self.start, 0.0)
        return self.start + np.clip(delta, -step, step)

    def done(self, now: float) -> bool:
        return bool(np.allclose(self.goal(now), np.where(self.mask, self.rest, self.start)))
