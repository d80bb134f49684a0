"""Forward/inverse kinematics and Jacobians from any URDF, with PyBullet (DIRECT) as the engine.

Usable for real hardware too: it loads only the URDF, never a world. PyBullet's default IK settings miss
by ~0.1 m on the Panda, so every IK answer here is iterated, restarted from random seeds when needed,
and verified with forward kinematics; a target it cannot reach within `tol` raises `Unreachable`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pybullet as p
from numpy.typing import ArrayLike


class Unreachable(ValueError):
    """No joint configuration within the limits puts the end effector at the requested pose."""


@dataclass(frozen=True)
class JointLimits:
    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


def quat_angle(q1: ArrayLike, q2: ArrayLike) -> float:
    """Angle (rad) between two xyzw quaternions."""
    d = abs(float(np.dot(np.asarray(q1, float), np.asarray(q2, float))))
    return 2.0 * float(np.arccos(min(1.0, d)))


class Kinematics:
    """Kinematic model of one arm.

    kin = Kinematics("panda.urdf", "panda_grasptarget", joint_names=[...])
    pos, quat = kin.fk(q);  q = kin.ik(pos, quat, q0=q);  J = kin.jacobian(q)  # 6 x n, linear then angular
    """

    def __init__(self, urdf: str, ee_link: str, joint_names: Sequence[str] | None = None, seed: int = 0) -> None:
        self._cid = p.connect(p.DIRECT)
        self._lock = threading.Lock()  # one PyBullet client: calls must not interleave across threads
        try:
            self.body = p.loadURDF(urdf, useFixedBase=True, physicsClientId=self._cid)
        except p.error as e:
            p.disconnect(self._cid)
            raise ValueError(f"cannot load URDF {urdf!r}: {e}") from None
        info = [
            p.getJointInfo(self.body, j, physicsClientId=self._cid)
            for j in range(p.getNumJoints(self.body, physicsClientId=self._cid))
        ]
        links = {i[12].decode(): i[0] for i in info}
        self._joint_index = {i[1].decode(): i[0] for i in info}  # a joint's index is its child link's
        if ee_link not in links:
            raise ValueError(f"{urdf}: no link {ee_link!r} (links: {', '.join(links)})")
        self.ee = links[ee_link]
        movable = [i for i in info if i[2] != p.JOINT_FIXED]
        self._movable = [i[0] for i in movable]  # PyBullet's IK/Jacobian index order
        by_name = {i[1].decode(): i for i in movable}
        names = list(joint_names) if joint_names else [i[1].decode() for i in movable]
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"{urdf}: no movable joints {missing}")
        self.joint_names = tuple(names)
        self.joints = [by_name[n][0] for n in names]
        self._cols = [self._movable.index(j) for j in self.joints]  # arm joints' columns among movable
        lo = np.array([by_name[n][8] for n in names], float)
        hi = np.array([by_name[n][9] for n in names], float)
        unlimited = hi < lo  # continuous joints report lower > upper
        lo[unlimited], hi[unlimited] = -2 * np.pi, 2 * np.pi
        self.limits = JointLimits(
            self.joint_names,
            lo,
            hi,
            np.array([by_name[n][11] for n in names], float),
            np.array([by_name[n][10] for n in names], float),
        )
        self._rng = np.random.default_rng(seed)
        self._q = np.clip(np.zeros(len(names)), lo, hi)

    @property
    def n(self) -> int:
        return len(self.joints)

    def _set(self, q: Sequence[float] | np.ndarray) -> None:
        # one call for every joint (5x cheaper than a resetJointState each: FK runs on every gated command)
        p.resetJointStatesMultiDof(self.body, self.joints, [[float(v)] for v in q], physicsClientId=self._cid)

    def fk(self, q: Sequence[float] | np.ndarray, link: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (or `link`'s frame: see `link_index`) (position [3], orientation xyzw [4]) in the
        base frame."""
        with self._lock:
            self._set(q)
            s = p.getLinkState(
                self.body, self.ee if link is None else link, computeForwardKinematics=True, physicsClientId=self._cid
            )
        return np.array(s[4]), np.array(s[5])

    def link_index(self, joint_name: str) -> int:
        """The index of the link a joint moves (e.g. the wrist F/T sensor's frame), for `fk(q, link)`."""
        if joint_name not in self._joint_index:
            raise ValueError(f"no joint {joint_name!r} in the URDF")
        return self._joint_index[joint_name]

    def jacobian(self, q: ArrayLike) -> np.ndarray:
        """6 x n geometric Jacobian of the EE frame origin (rows: linear xyz, angular xyz)."""
        q = np.asarray(q, float)
        with self._lock:
            self._set(q)
            full = np.zeros(len(self._movable))
            for c, v in zip(self._cols, q):
                full[c] = v
            lin, ang = p.calculateJacobian(
                self.body,
                self.ee,
                [0, 0, 0],
                list(full),
                [0.0] * len(full),
                [0.0] * len(full),
                physicsClientId=self._cid,
            )
        return np.vstack([np.asarray(lin)[:, self._cols], np.asarray(ang)[:, self._cols]])

    def ik(
        self,
        position: Sequence[float] | np.ndarray,
        orientation: Sequence[float] | np.ndarray | None = None,
        q0: ArrayLike | None = None,
        tol: float = 1e-3,
        ang_tol: float = 1e-2,
        restarts: int = 8,
        iterations: int = 100,
    ) -> np.ndarray:
        """Joint positions that put the EE at `position` (and `orientation`, xyzw), within the limits.

        Seeded from `q0` (the current configuration, for smooth paths), then from random seeds.
        Raises Unreachable with the best miss when nothing lands within `tol` metres / `ang_tol` rad.
        """
        pos = [float(v) for v in position]
        orn = None if orientation is None else [float(v) for v in orientation]
        lo, hi = self.limits.lower, self.limits.upper
        seeds = [np.asarray(q0, float) if q0 is not None else self._q]
        best = (np.inf, np.inf)
        for attempt in range(restarts + 1):
            if attempt >= len(seeds):
                seeds.append(self._rng.uniform(lo, hi))
            q = np.clip(seeds[attempt], lo, hi)
            for _ in range(4):  # re-seeding PyBullet's solver from its own answer refines it
                with self._lock:
                    self._set(q)
                    kw = dict(maxNumIterations=iterations, residualThreshold=1e-5, physicsClientId=self._cid)
                    sol = (
                        p.calculateInverseKinematics(self.body, self.ee, pos, **kw)
                        if orn is None
                        else p.calculateInverseKinematics(self.body, self.ee, pos, orn, **kw)
                    )
                q = np.asarray(sol, float)[self._cols]
                q = _wrap_into(q, lo, hi)
                perr, aerr = self._error(q, pos, orn)
                if perr < tol * 0.2 and aerr < ang_tol * 0.2:
                    break
            if perr > tol * 0.2 or aerr > ang_tol * 0.2:  # e.g. 5-DOF arms, where PyBullet's solver stalls
                q = self._polish(q, pos, orn, tol * 0.2, ang_tol * 0.2)
                perr, aerr = self._error(q, pos, orn)
            if np.all(q >= lo - 1e-9) and np.all(q <= hi + 1e-9):
                if perr <= tol and aerr <= ang_tol:
                    self._q = q
                    return q
                best = min(best, (perr, aerr))
        raise Unreachable(
            f"cannot reach position {np.round(pos, 4).tolist()}"
            + (f" orientation {np.round(orn, 3).tolist()}" if orn is not None else "")
            + f": best miss {best[0] * 1000:.1f} mm / {np.degrees(best[1]):.1f} deg "
            f"after {restarts + 1} tries (tolerance {tol * 1000:.1f} mm)"
        )

    def _polish(
        self,
        q: np.ndarray,
        pos: Sequence[float],
        orn: Sequence[float] | None,
        tol: float,
        ang_tol: float,
        iters: int = 60,
        damping: float = 1e-3,
    ) -> np.ndarray:
        """Damped least-squares steps on the full pose error, inside the joint limits."""
        lo, hi = self.limits.lower, self.limits.upper
        for _ in range(iters):
            fp, fo = self.fk(q)
            e = np.asarray(pos) - fp
            rows = slice(0, 3)
            if orn is not None:
                e = np.concatenate([e, _rot_error(fo, orn)])
                rows = slice(0, 6)
            if np.linalg.norm(e[:3]) < tol and (orn is None or np.linalg.norm(e[3:]) < ang_tol):
                break
            J = self.jacobian(q)[rows]
            dq = J.T @ np.linalg.solve(J @ J.T + damping * np.eye(J.shape[0]), e)
            q = np.clip(q + dq, lo, hi)
        return q

    def _error(self, q: np.ndarray, pos: Sequence[float], orn: Sequence[float] | None) -> tuple[float, float]:
        fp, fo = self.fk(q)
        perr = float(np.linalg.norm(fp - np.asarray(pos)))
        return perr, (0.0 if orn is None else quat_angle(fo, orn))

    def close(self) -> None:
        if self._cid is not None and p.isConnected(self._cid):
            p.disconnect(self._cid)
        self._cid = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _rot_error(q_from: Sequence[float] | np.ndarray, q_to: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rotation vector (base frame) taking orientation q_from to q_to."""
    dq = p.multiplyTransforms([0, 0, 0], q_to, [0, 0, 0], p.invertTransform([0, 0, 0], q_from)[1])[1]
    axis, angle = p.getAxisAngleFromQuaternion(dq)
    if angle > np.pi:
        angle -= 2 * np.pi
    return np.asarray(axis) * angle


def _wrap_into(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Move each angle by multiples of 2*pi into [lo, hi] when that is possible."""
    q = q.copy()
    for i in range(len(q)):
        while q[i] > hi[i] and q[i] - 2 * np.pi >= lo[i]:
            q[i] -= 2 * np.pi
        while q[i] < lo[i] and q[i] + 2 * np.pi <= hi[i]:
            q[i] += 2 * np.pi
    return q
