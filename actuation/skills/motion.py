"""Motion planning for the skills: the tool's orientation, joint-space and Cartesian paths, tilted holds and
the tool's reach, from the robot description and the arm's kinematics (no bus: plans are made before the
arm moves, so an unreachable point fails first)."""

from __future__ import annotations

import math

import numpy as np
import pybullet as p
from scipy.spatial.transform import Rotation

from loopylab.world import protocols as P
from loopylab.world.kinematics import Kinematics, Unreachable
from loopylab.world.trajectory import cartesian_line, min_jerk, speed_profile


class Motion:
    def __init__(
        self,
        robot: str = "panda",
        control_hz: float = P.CONTROL_HZ,
        velocity_scale: float = 0.4,
        acceleration: float = 4.0,
    ):
        from loopylab.world.robots import robot_spec  # the catalogue of arm descriptions (URDF, tool, grasp style)

        self.rs = robot_spec(robot)
        self.kin = Kinematics(self.rs.urdf, self.rs.ee_link, list(self.rs.arm_joints))
        self.hz = control_hz
        self.vmax = self.kin.limits.velocity * velocity_scale
        self.amax = np.full(self.kin.n, acceleration)
        self._hand_links = self._links_after(self.rs.ft_joint)
        self.ft_link = self.kin.link_index(self.rs.ft_joint)  # the wrist sensor's frame (torque reference)
        self._probe = None

    @property
    def opening(self) -> float:
        """The gripper's widest opening."""
        return self.rs.max_opening or 0.08

    def orientation(self, pos, dir_name: str | None = None):
        if self.rs.down_yaw_follows_base:
            return self.rs.down_orientation(pos)
        r, pch, y = self.rs.down_rpy
        if dir_name in ("+y", "-y"):  # present the same (thin) side of the tool to the object
            y += math.pi / 2
        return p.getQuaternionFromEuler([r, pch, y])

    def ee(self, tip) -> np.ndarray:
        """EE frame position for a tool tip position (tool pointing down)."""
        return np.asarray(tip, float) + [0.0, 0.0, self.rs.tool_length]

    def joint_path(self, q_from, q_to) -> np.ndarray:
        return min_jerk(q_from, q_to, self.vmax, self.amax, self.hz)

    def line(self, a, b, speed: float, q0, dir_name=None, accel: float = 0.5) -> np.ndarray:
        length = float(np.linalg.norm(np.asarray(b) - np.asarray(a)))
        if length < 1e-6:
            return np.empty((0, self.kin.n))
        path = speed_profile([(length, speed, accel)], self.hz)
        return cartesian_line(self.kin, a, b, lambda x: self.orientation(x, dir_name), path, q0)

    def tilted(self, pos, q0) -> np.ndarray | None:
        """Joints that hold the tool at `pos` turned P.TILT_RAD about its own x axis (across a pinch: the
        fingers keep the object from swinging), near `q0`; None where the arm cannot."""
        down = Rotation.from_quat(self.orientation(pos))
        turn = Rotation.from_rotvec(down.as_matrix()[:, 0] * P.TILT_RAD)
        try:
            q = self.kin.ik(pos, (turn * down).as_quat(), q0=q0, restarts=2)
        except Unreachable:
            return None
        return q if np.max(np.abs(q - np.asarray(q0))) < 1.5 else None  # not a wholly different arm pose

    def _links_after(self, joint_name: str) -> list[int]:
        c, b = self.kin._cid, self.kin.body
        for j in range(p.getNumJoints(b, physicsClientId=c)):
            if p.getJointInfo(b, j, physicsClientId=c)[1].decode() == joint_name:
                return list(range(j, p.getNumJoints(b, physicsClientId=c)))
        return []

    def pad(self, q, dir_name: str) -> float:
        """How far the tool reaches beyond the EE axis towards the push direction, 1 cm above its lowest
        point (the contact offset): a probe sphere slides in along the direction until it touches."""
        d = P.direction(dir_name)
        tip = self.kin.fk(q)[0] - [0.0, 0.0, self.rs.tool_length - 0.01]
        c, body = self.kin._cid, self.kin.body
        with self.kin._lock:
            self.kin._set(q)
            if self._probe is None:
                self._probe = p.createMultiBody(
                    0, p.createCollisionShape(p.GEOM_SPHERE, radius=0.001, physicsClientId=c), physicsClientId=c
                )

            def touches(s):
                p.resetBasePositionAndOrientation(self._probe, (tip + d * s).tolist(), [0, 0, 0, 1], physicsClientId=c)
                return any(
                    p.getClosestPoints(body, self._probe, 0.0, linkIndexA=link, physicsClientId=c)
                    for link in self._hand_links
                )

            lo, hi = 0.0, 0.15
            if not touches(lo):
                return 0.0
            for _ in range(14):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if touches(mid) else (lo, mid)
        return lo

    def close(self) -> None:
        self.kin.close()
