"""The simulated arm's hardware layer, without the bus: joint position servos, gripper, wrist F/T sensor.

What a real arm's firmware would do: track the last joint command with effort-limited position servos,
report joint positions/velocities/efforts, and a wrist wrench. Grasping is constraint-assisted: when the
gripper closes on an object that touches the hand, a fixed constraint holds it (PyBullet friction grasps
of 3–8 cm blocks, balls and cylinders are unreliable); opening the gripper releases it. Robots without
fingers (kuka_iiwa, xarm6) get the same behaviour as a suction tool. The held object's weight and contact
forces still reach the wrist sensor, because the constraint acts on the hand link after the sensor.
"""
from __future__ import annotations

import numpy as np
import pybullet as p

from sim.world import World

VIRTUAL_OPENING = 0.08   # m: the "opening" range of a suction-like tool on robots without fingers
GRASP_DISTANCE = 0.006   # m: an object this close to the hand when the gripper closes is grasped
GRASP_WINDOW_S = 0.5     # s after a close command during which contact makes a grasp (a gripper closed
                         # in the air stays a closed gripper: pushing with it never picks anything up)


class ArmSim:
    def __init__(self, world: World, position_gain: float = 0.3):
        if world.robot is None:
            raise ValueError("ArmSim needs a world with a robot")
        self.w, self.r, self.c = world, world.robot, world.cid
        self.gain = position_gain
        self.target = np.array([p.getJointState(self.r.body, j, physicsClientId=self.c)[0] for j in self.r.arm])
        rs = self.r.spec
        self.max_opening = rs.max_opening or VIRTUAL_OPENING
        self.gripper_target = self.max_opening
        self.gripper_force = 20.0
        self.grasped: str | None = None
        self._constraint: int | None = None
        self._grasp_window = 0.0

    # -- commands ----------------------------------------------------------------
    def command_positions(self, q) -> None:
        q = np.asarray(q, float)
        if q.shape != self.target.shape or not np.all(np.isfinite(q)):
            raise ValueError(f"joint command must be {self.target.shape[0]} finite values, got {q!r}")
        self.target = q

    def command_gripper(self, opening: float, force: float = 20.0) -> None:
        was_open = self.gripper_target >= 0.5 * self.max_opening
        self.gripper_target = float(np.clip(opening, 0.0, self.max_opening))
        if was_open and self.gripper_target < 0.5 * self.max_opening:
            self._grasp_window = GRASP_WINDOW_S  # a closing gripper grasps what it touches soon after
        self.gripper_force = float(max(0.0, force))

    # -- stepping -------------------------------------------------------------------
    def apply(self) -> None:
        r, c = self.r, self.c
        p.setJointMotorControlArray(r.body, r.arm, p.POSITION_CONTROL, targetPositions=self.target.tolist(),
                                    forces=r.effort.tolist(), positionGains=[self.gain] * len(r.arm),
                                    physicsClientId=c)
        if r.gripper and self.grasped is None:
            frac = self.gripper_target / self.max_opening
            rs = r.spec
            q = [lo + (hi - lo) * frac for lo, hi in zip(rs.gripper_closed, rs.gripper_open)]
            p.setJointMotorControlArray(r.body, r.gripper, p.POSITION_CONTROL, targetPositions=q,
                                        forces=[self.gripper_force] * len(q), physicsClientId=c)
        self._update_grasp()

    def step(self, n: int) -> None:
        self.apply()
        self.w.step(n)
        self._grasp_window = max(0.0, self._grasp_window - n * self.w.dt)

    def _update_grasp(self) -> None:
        closing = self.gripper_target < 0.5 * self.max_opening
        if self.grasped is None and closing and self._grasp_window > 0:
            label = self._touching_object()
            if label is not None:
                self._attach(label)
        elif self.grasped is not None and not closing:
            p.removeConstraint(self._constraint, physicsClientId=self.c)
            self.grasped, self._constraint = None, None

    def _touching_object(self) -> str | None:
        for label, body in self.w.objects.items():
            for link in self.r.hand_links:
                if p.getClosestPoints(self.r.body, body, GRASP_DISTANCE, linkIndexA=link, physicsClientId=self.c):
                    return label
        return None

    def _attach(self, label: str) -> None:
        c, body = self.c, self.w.objects[label]
        ls = p.getLinkState(self.r.body, self.r.ee, computeForwardKinematics=True, physicsClientId=c)
        ee_pos, ee_orn = ls[0], ls[1]  # constraint frames are relative to the link's centre of mass
        ob_pos, ob_orn = p.getBasePositionAndOrientation(body, physicsClientId=c)
        inv_pos, inv_orn = p.invertTransform(ee_pos, ee_orn)
        rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, ob_pos, ob_orn)
        self._constraint = p.createConstraint(self.r.body, self.r.ee, body, -1, p.JOINT_FIXED, [0, 0, 0],
                                              rel_pos, [0, 0, 0], rel_orn, [0, 0, 0, 1], physicsClientId=c)
        p.changeConstraint(self._constraint, maxForce=500, physicsClientId=c)
        self.grasped = label
        if self.r.gripper:  # stop closing where the fingers are: squeezing a constrained body only adds strain
            q = [p.getJointState(self.r.body, j, physicsClientId=c)[0] for j in self.r.gripper]
            p.setJointMotorControlArray(self.r.body, self.r.gripper, p.POSITION_CONTROL, targetPositions=q,
                                        forces=[self.gripper_force] * len(q), physicsClientId=c)

    # -- sensing ------------------------------------------------------------------------
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = p.getJointStates(self.r.body, self.r.arm, physicsClientId=self.c)
        return (np.array([x[0] for x in s]), np.array([x[1] for x in s]), np.array([x[3] for x in s]))

    def wrench(self) -> tuple[np.ndarray, np.ndarray]:
        """Wrist wrench in the base frame: force [N] and torque [N·m] that the hand (and anything it holds or
        touches) exerts on the arm at the sensor. A held 1 kg mass adds about -9.8 N to force z."""
        c = self.c
        raw = np.asarray(p.getJointState(self.r.body, self.r.ft, physicsClientId=c)[2])
        orn = p.getLinkState(self.r.body, self.r.ft, physicsClientId=c)[5]
        R = np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        return -(R @ raw[:3]), -(R @ raw[3:])

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        ls = p.getLinkState(self.r.body, self.r.ee, computeForwardKinematics=True, physicsClientId=self.c)
        return np.asarray(ls[4]), np.asarray(ls[5])

    def gripper_opening(self) -> float:
        if not self.r.gripper:
            return self.gripper_target
        rs = self.r.spec
        q = p.getJointState(self.r.body, self.r.gripper[0], physicsClientId=self.c)[0]
        lo, hi = rs.gripper_closed[0], rs.gripper_open[0]
        return float(np.clip((q - lo) / (hi - lo), 0, 1) * self.max_opening)

    def reset(self) -> None:
        """Arm to home, gripper open, nothing held (objects are the world's business)."""
        if self._constraint is not None:
            p.removeConstraint(self._constraint, physicsClientId=self.c)
        self.grasped, self._constraint = None, None
        rs = self.r.spec
        for j, q in zip(self.r.arm, rs.home):
            p.resetJointState(self.r.body, j, q, 0.0, physicsClientId=self.c)
        for j, q in zip(self.r.gripper, rs.gripper_open):
            p.resetJointState(self.r.body, j, q, 0.0, physicsClientId=self.c)
        self.target = np.asarray(rs.home, float)
        self.gripper_target = self.max_opening
