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

OVERHANG_LEAD = 0.002  # m: a part of the hand this far ahead of the push face leads it
OVERHANG_RAY = 0.15  # m: where the rays that find it start, out from the tool's axis


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
        """The tool pointing down at `pos`; along a push or strike (`dir_name`) every arm presents the same
        side of its hand to the object wherever it is, and keeps it along the path. (An SO-101 whose hand
        turned with its base swept a tilted face across the object on a push across its reach: the block
        slid along it, and the force read 0.05 N of the 0.39 it takes.)"""
        if self.rs.down_yaw_follows_base and dir_name is None:
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

    def line(self, a, b, speed: float, q0, dir_name=None, accel: float = 0.5, orientation=None) -> np.ndarray:
        """A straight line of the tool from `a` to `b`; its orientation `self.orientation` along the way, or
        `orientation` (xyzw) throughout."""
        length = float(np.linalg.norm(np.asarray(b) - np.asarray(a)))
        if length < 1e-6:
            return np.empty((0, self.kin.n))
        path = speed_profile([(length, speed, accel)], self.hz)
        orn = (lambda x: orientation) if orientation is not None else (lambda x: self.orientation(x, dir_name))
        return cartesian_line(self.kin, a, b, orn, path, q0)

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

    def sensor_rotation(self, q) -> np.ndarray:
        """The wrist sensor's axes in the base frame at joints `q` (3x3: base = R @ sensor)."""
        return np.array(p.getMatrixFromQuaternion(self.kin.fk(q, self.ft_link)[1].tolist())).reshape(3, 3)

    def below_tip(self, q) -> float:
        """How far the hand reaches below the tool's tip (the EE frame less `tool_length`) at joints `q`: 0
        where the tip is its lowest point. An SO-101's closed jaw hangs 8 mm below it, 3 cm off the tool
        axis: a push planned for the tip at P.TIP_Z dragged the jaw 2 mm into the table (its reading was the
        table's, or the skill refused it). Below 3 mm it is left at 0: mesh bounding boxes run that loose."""
        tip_z = float(self.kin.fk(q)[0][2]) - self.rs.tool_length
        with self.kin._lock:
            self.kin._set(q)
            low = min(p.getAABB(self.kin.body, link, physicsClientId=self.kin._cid)[0][2] for link in self._hand_links)
        below = tip_z - low
        return below if below > 0.003 else 0.0

    def pad(self, q, dir_name: str, width: float = 0.0) -> float:
        """How far the hand reaches beyond the EE axis towards the push direction, 1 cm above its lowest
        point (the contact offset), over a band `width` wide across it (the face it pushes): probe spheres
        slide in along the direction from 15 cm out until they first touch (from outside: a hand whose
        profile has a gap, such as the SO-101's body and its jaw 3 cm away, leads with its outermost part;
        a hand turned with the base, as the desk arms' are, may lead with a corner off the axis)."""
        tip = self.kin.fk(q)[0] - [0.0, 0.0, self.rs.tool_length + self.below_tip(q) - 0.01]
        d = P.direction(dir_name)
        across = np.array([-d[1], d[0], 0.0])
        offsets = np.linspace(-width / 2, width / 2, 5) if width > 0 else [0.0]
        return max(self._pad_line(q, tip + across * o, d) for o in offsets)

    def overhang(self, q, dir_name: str, pad: float, width: float = 0.0) -> float | None:
        """How high above the hand's lowest point the lowest part of the hand starts that leads the push face
        (reaches along the direction more than OVERHANG_LEAD beyond `pad`, from 1.5 cm up, over a band `width`
        across): a Panda's palm, 5 cm above its fingertips and 2 cm ahead of them, met the top edge of taller
        objects first, and pressed a 5.7 cm block down with 9 N or tipped a 5.9 cm cylinder over. None: no part
        does. Rays cast at the hand against the push, every millimetre of height."""
        d = P.direction(dir_name)
        across = np.array([-d[1], d[0], 0.0])
        ee = self.kin.fk(q)[0]
        lowest = ee[2] - self.rs.tool_length - self.below_tip(q)
        zs = lowest + np.arange(0.015, 0.12, 0.001)
        offsets = np.linspace(-width / 2, width / 2, 5) if width > 0 else [0.0]
        axis = np.array([ee[0], ee[1], 0.0])
        starts = [axis + across * o + d * OVERHANG_RAY + [0, 0, z] for z in zs for o in offsets]
        ends = [x - d * OVERHANG_RAY for x in starts]  # to the tool's axis: only what leads it counts
        c, body, hand = self.kin._cid, self.kin.body, set(self._hand_links)
        with self.kin._lock:
            self.kin._set(q)
            hits = p.rayTestBatch([x.tolist() for x in starts], [x.tolist() for x in ends], physicsClientId=c)
        for i, h in enumerate(hits):  # in order of height
            if h[0] == body and h[1] in hand and OVERHANG_RAY * (1 - h[2]) > pad + OVERHANG_LEAD:
                return float(zs[i // len(offsets)] - lowest)
        return None

    def _pad_line(self, q, tip, d) -> float:
        """The hand's reach along `d` on the line through `tip` (0 when the line misses the hand)."""
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

            step = 0.002
            for s in np.arange(0.15, -1e-9, -step):  # the first touch from outside ...
                if touches(s):
                    lo, hi = float(s), float(s) + step
                    break
            else:
                return 0.0
            for _ in range(8):  # ... refined to 10 um
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if touches(mid) else (lo, mid)
        return lo

    def close(self) -> None:
        self.kin.close()
