"""The safety gate's pure limits: what a command may be, given where the arm is and what it was sent before.

`SafetyLimits.filter(target, state)` is the pure core (property-tested): joint position limits, max step
from the measured position (LeRobot's `max_relative_target`), velocity and acceleration of the command
stream, the end-effector workspace box (via FK), and measured effort. `GateConfig` is the tightening a
graph asks for on top of a URDF's limits. The bus node that applies them is `loopylab.actuation.gate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from loopylab.world.config import load_table
from loopylab.world.robots import CONTROL_HZ

if TYPE_CHECKING:  # for annotations only: kinematics loads PyBullet
    from loopylab.world.kinematics import Kinematics


@dataclass
class GateConfig:
    """Tightening on top of the URDF's limits. Fractions scale the URDF values; absolute values are used as is."""

    mode: str = "clamp"  # clamp | reject
    position_margin: float = 0.02  # rad kept clear of each URDF position limit
    velocity_scale: float = 0.8  # fraction of the URDF velocity limit
    acceleration: float | None = None  # rad/s^2, default from the robot spec
    effort_scale: float = 1.0  # measured effort above this fraction of the URDF limit -> reject
    # (sim servos saturate at the URDF limit; real arms set < 1)
    max_step: float = 0.25  # rad: |command - measured position| per command
    pause_ms: float = 100.0  # a stream resuming after this long without targets checks that the
    # arm is where the stream left it:
    settle_tolerance: float = 0.01  # rad; farther than this outside the span from where it was to its last
    # command, something else moved it (a sim reset, a push): the stream
    # restarts at rest from where it is
    control_hz: float = CONTROL_HZ  # expected target rate (velocity/acceleration per command period)
    workspace_min: Sequence[float] = (-1.0, -1.0, -0.005)  # end-effector box in the base frame, m
    workspace_max: Sequence[float] = (1.0, 1.0, 1.2)
    deadman_ms: float = 500.0  # no fresh target for this long -> hold position
    heartbeat_ms: float = 1000.0  # no arm/joint_state for this long -> protective stop
    state_hz: float = 10.0  # periodic safety/state

    @classmethod
    def from_toml(cls, path: str | Path | None) -> GateConfig:
        """The [gate] table of TOML file `path` (defaults when None); an unknown key is a ConfigError."""
        return cls() if path is None else load_table(cls, path, "gate")


@dataclass
class Intervention:
    kind: str  # position | step | velocity | acceleration | braking | workspace | effort | infeasible
    # | invalid | resync
    detail: str


@dataclass
class SafetyLimits:
    """Per-joint limits and the EE box. `fk(q) -> position[3]` is needed for the workspace check."""

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray  # rad/s
    acceleration: np.ndarray  # rad/s^2
    effort: np.ndarray  # N·m
    max_step: np.ndarray  # rad
    dt: float  # command period, s
    workspace_min: np.ndarray = field(default_factory=lambda: np.full(3, -np.inf))
    workspace_max: np.ndarray = field(default_factory=lambda: np.full(3, np.inf))
    fk: Callable[[np.ndarray], np.ndarray] | None = None
    mode: str = "clamp"
    settle_tolerance: float = 0.01  # rad (see GateConfig)
    last: np.ndarray | None = None  # last command let through
    last_vel: np.ndarray | None = None  # its velocity (rad/s)
    last_target: np.ndarray | None = None  # the last target asked for (its motion: see _braking)
    last_measured: np.ndarray | None = None  # the arm's position when the last command was let through

    def __post_init__(self) -> None:
        if self.mode not in ("clamp", "reject"):
            raise ValueError(f"gate mode must be clamp or reject, not {self.mode!r}")
        n = len(self.lower)
        for name in ("upper", "velocity", "acceleration", "effort", "max_step"):
            v = np.broadcast_to(np.asarray(getattr(self, name), float), (n,)).copy()
            setattr(self, name, v)
        self.lower = np.asarray(self.lower, float)
        self.workspace_min, self.workspace_max = (
            np.asarray(v, float) for v in (self.workspace_min, self.workspace_max)
        )

    @classmethod
    def from_kinematics(cls, kin: Kinematics, cfg: GateConfig, acc_limit: float) -> SafetyLimits:
        lim = kin.limits
        return cls(
            lim.lower + cfg.position_margin,
            lim.upper - cfg.position_margin,
            lim.velocity * cfg.velocity_scale,
            np.asarray(cfg.acceleration or acc_limit, float),
            lim.effort * cfg.effort_scale,
            np.asarray(cfg.max_step, float),
            1.0 / cfg.control_hz,
            np.asarray(cfg.workspace_min, float),
            np.asarray(cfg.workspace_max, float),
            fk=lambda q: kin.fk(q)[0],
            mode=cfg.mode,
            settle_tolerance=cfg.settle_tolerance,
        )

    def reset(self, position: ArrayLike | None = None) -> None:
        """Forget the command history (after a stop): the next command starts from rest at `position`."""
        self.last_target = None
        if position is None:
            self.last = self.last_vel = self.last_measured = None
            return
        self.last = np.asarray(position, float).copy()
        self.last_vel = np.zeros_like(self.last)
        self.last_measured = self.last.copy()

    def in_workspace(self, q: np.ndarray) -> bool:
        if self.fk is None:
            return True
        x = np.asarray(self.fk(q))
        return bool((x >= self.workspace_min).all() and (x <= self.workspace_max).all())

    def _bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[str, np.ndarray, np.ndarray]]]:
        """Allowed interval per joint: intersection of the position, step, velocity and acceleration bounds."""
        n, dt = len(self.lower), self.dt
        last = x if self.last is None else self.last
        vel = np.zeros(n) if self.last_vel is None else self.last_vel
        vlo = np.maximum(-self.velocity, vel - self.acceleration * dt)
        vhi = np.minimum(self.velocity, vel + self.acceleration * dt)
        # an arm found outside its (tightened) position limits may only be commanded back towards them
        bounds = [
            ("position", np.minimum(self.lower, x), np.maximum(self.upper, x)),
            ("step", x - self.max_step, x + self.max_step),
            ("velocity", last - self.velocity * dt, last + self.velocity * dt),
            ("acceleration", last + vlo * dt, last + vhi * dt),
        ]
        return np.maximum.reduce([b[1] for b in bounds]), np.minimum.reduce([b[2] for b in bounds]), bounds

    def filter(
        self, target: ArrayLike, position: ArrayLike, effort: ArrayLike | None = None, paused: bool = False
    ) -> tuple[np.ndarray | None, list[Intervention]]:
        """The command to send for `target` given the measured `position` (and `effort`), or None to send
        nothing. Clamps (mode=clamp) or rejects (mode=reject) anything outside the limits. A refused target
        ends the command stream: the arm comes to rest at the last command it got, and the next stream
        starts from there at rest (not with the velocity of a stream that stopped). `paused`: the stream
        is resuming after a pause, in which the arm can only have moved from where it was towards its last
        command; found elsewhere, something else moved it, and the stream restarts from where it is."""
        cmd, out = self._filter(target, position, effort, paused)
        if cmd is None and self.last is not None:
            self.last_vel = np.zeros_like(self.last)
        return cmd, out

    def _filter(
        self, target: ArrayLike, position: ArrayLike, effort: ArrayLike | None, paused: bool = False
    ) -> tuple[np.ndarray | None, list[Intervention]]:
        n = len(self.lower)
        t = np.asarray(target, float)
        x = np.asarray(position, float)
        out: list[Intervention] = []
        if t.shape != (n,) or x.shape != (n,) or not (np.isfinite(t).all() and np.isfinite(x).all()):
            return None, [Intervention("invalid", f"target must be {n} finite values, got {t.tolist()}")]
        if effort is not None:
            e = np.abs(np.asarray(effort, float))
            if e.shape == (n,) and (e > self.effort * (1 + 1e-6)).any():
                j = int(np.argmax(e / self.effort))
                return None, [Intervention("effort", f"joint {j} effort {e[j]:.1f} > {self.effort[j]:.1f}")]
        if self.last is not None and (np.abs(x - self.last) > self.max_step).any():
            # the arm is not where we last sent it (sim reset, external push, driver restart):
            # a new command stream starts from rest at the measured position
            out.append(Intervention("resync", "arm far from the last command: restarting from the measured position"))
            self.reset(x)
        elif paused and self.last is not None and self.last_measured is not None and self._moved_elsewhere(x):
            # (a sim reset to a pose less than max_step away: the old history would clamp the new stream
            # and command the arm back towards where it was)
            out.append(
                Intervention("resync", "the arm moved while the stream paused: restarting from the measured position")
            )
            self.reset(x)
        lo, hi, bounds = self._bounds(x)
        if (lo > hi).any() and self.last is not None:
            # no command can continue the stream within every limit (the arm is far from the command
            # history): restart the stream from rest at the measured position
            out.append(Intervention("resync", "command history infeasible: restarting from the measured position"))
            self.reset(x)
            lo, hi, bounds = self._bounds(x)
        if (lo > hi).any():
            j = int(np.argmax(lo - hi))
            return None, out + [
                Intervention("infeasible", f"joint {j}: no command satisfies every limit (measured {x[j]:.3f})")
            ]
        goal = np.clip(t, bounds[0][1], bounds[0][2])
        lo, hi = self._braking(goal, lo, hi)
        bounds.append(("braking", lo, hi))
        cmd = t
        resynced = len(out)
        for kind, blo, bhi in bounds:
            bad = (t < blo - 1e-12) | (t > bhi + 1e-12)
            if bad.any():
                j = int(np.argmax(bad))
                out.append(Intervention(kind, f"joint {j} target {t[j]:.4f} outside [{blo[j]:.4f}, {bhi[j]:.4f}]"))
        if len(out) > resynced:
            if self.mode == "reject":
                return None, out
            cmd = self._scaled_step(goal, lo, hi)
        if self.fk is not None and not self.in_workspace(cmd):
            return None, out + [
                Intervention(
                    "workspace", f"end effector would leave the workspace box at {np.round(self.fk(cmd), 3).tolist()}"
                )
            ]
        last = x if self.last is None else self.last
        self.last_vel = (cmd - last) / self.dt
        self.last = cmd.copy()
        self.last_target = goal
        self.last_measured = x.copy()
        return cmd, out

    def _moved_elsewhere(self, x: np.ndarray) -> bool:
        """Whether the arm stands outside the span from where it was at the last command to that command
        (widened by `settle_tolerance` for a servo's overshoot and sag): where a paused stream left it."""
        a, b, tol = self.last_measured, self.last, self.settle_tolerance
        assert a is not None and b is not None  # the caller checks: a paused stream has a history
        return bool(((x < np.minimum(a, b) - tol) | (x > np.maximum(a, b) + tol)).any())

    def _braking(self, goal: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tighten (lo, hi) so that a lagging stream can still stop at `goal` within the acceleration limit.

        A clamped stream lags its targets and builds up speed; without this bound it would overshoot a target
        that stopped (a teleoperated leader arm halting) by v²/2a before the acceleration bound turned it round:
        0.13 rad at 2 rad/s on a real arm's 15 rad/s². Per joint, the step towards the goal, relative to the
        goal's own motion (so a moving target can still be caught up with), is at most the largest s with
        s + (s - δ) + (s - 2δ) + ... (positive terms) <= the gap, δ = a·dt². It never binds on a stream the
        gate let through as it was (no gap), and it is never tighter than the hardest allowed deceleration
        (the acceleration bound already in lo, hi)."""
        if self.last is None or (self.last_target is not None and np.array_equal(self.last, self.last_target)):
            return lo, hi  # no history, or the stream is where it was asked to be: nothing to brake for
        target_step = np.zeros_like(goal) if self.last_target is None else goal - self.last_target
        dist = goal - target_step - self.last  # the gap before this tick: what braking has to close
        delta = self.acceleration * self.dt * self.dt
        n = np.abs(dist) / delta  # the distance in units of δ: steps of m + f, m - 1 + f, ..., f (in δ) cover
        m = np.floor((np.sqrt(1.0 + 8.0 * n) - 1.0) / 2.0)  # (m + 1)(f + m/2), the most with whole m, f < 1
        s = np.minimum((m + np.clip(n / (m + 1.0) - m / 2.0, 0.0, 1.0)) * delta, np.abs(dist))
        hi = np.where(dist > 0, np.maximum(np.minimum(hi, self.last + target_step + s), lo), hi)
        lo = np.where(dist < 0, np.minimum(np.maximum(lo, self.last + target_step - s), hi), lo)
        return lo, hi

    def _scaled_step(self, goal: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The command nearest `goal` (the target clipped to the position limits) that keeps the joints in
        proportion: the farthest point towards `goal` on the line from the last command that every bound
        allows. Moving all joints along one line keeps the end effector near its path; clipping joint by
        joint would bend the path (a strike braking harder than the arm can dips the hand into the table),
        and continuing each joint at its own last velocity would let a joint that is already at its goal
        drift past it while a slower joint catches up. When no point of that line is allowed (a joint too
        fast to stop on it this tick), the stream is continued at its last velocity and scaled towards
        `goal` from there; when even that makes no progress, each joint is clipped."""
        if self.last is None:
            return np.clip(goal, lo, hi)
        s = self._room(self.last, goal - self.last, lo, hi)
        if s is not None:
            return np.clip(self.last + s * (goal - self.last), lo, hi)
        vel = self.last_vel if self.last_vel is not None else np.zeros_like(self.last)
        p0 = self.last + vel * self.dt
        s = self._room(p0, goal - p0, lo, hi)
        if not s:  # the arm lags its commands, or brakes, or a joint is at its limit: no way along the stream
            return np.clip(goal, lo, hi)
        return np.clip(p0 + s * (goal - p0), lo, hi)

    @staticmethod
    def _room(origin: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float | None:
        """The largest s in [0, 1] with origin + s·d inside [lo, hi], or None when no such s exists."""
        d = np.where(np.abs(d) < 1e-12, 0.0, d)  # a joint already at its goal only has to stay in bounds
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a, b = (lo - origin) / d, (hi - origin) / d
            s_lo = np.where(d > 0, a, np.where(d < 0, b, np.where((origin >= lo) & (origin <= hi), -np.inf, np.inf)))
            s_hi = np.where(d > 0, b, np.where(d < 0, a, np.inf))
        first, final = max(float(np.max(s_lo)), 0.0), min(float(np.min(s_hi)), 1.0)
        return final if first <= final + 1e-12 else None

    def check(self, cmd: np.ndarray, prev: np.ndarray, prev_vel: np.ndarray, position: np.ndarray) -> list[str]:
        """Violations of `cmd` given the previous command (for tests and audits)."""
        v = []
        tol = 1e-9
        if np.any(cmd < np.minimum(self.lower, position) - tol) or np.any(cmd > np.maximum(self.upper, position) + tol):
            v.append("position")
        if np.any(np.abs(cmd - position) > self.max_step + tol):
            v.append("step")
        vel = (cmd - prev) / self.dt
        if np.any(np.abs(vel) > self.velocity + 1e-6):
            v.append("velocity")
        if np.any(np.abs(vel - prev_vel) > self.acceleration * self.dt + 1e-6):
            v.append("acceleration")
        if not self.in_workspace(cmd):
            v.append("workspace")
        return v
