"""The simulated arm's hardware layer, without the bus: joint position servos, gripper, wrist F/T sensor.

What a real arm's firmware would do: track the last joint command with effort-limited position servos,
report joint positions/velocities/efforts, and a wrist wrench. Grasping is constraint-assisted: when the
gripper closes on an object that touches the hand, a fixed constraint holds it (PyBullet friction grasps
of 3–8 cm blocks, balls and cylinders are unreliable); opening the gripper releases it. Robots without
fingers (kuka_iiwa, xarm6) get the same behaviour as a suction tool. The held object's weight and contact
forces still reach the wrist sensor, because the constraint acts on the hand link after the sensor.
The sensor reads them as a Robotiq FT 300-S would: with its noise, a drifting zero and its resolution
(sim/ft_noise.py; `ft_noise=None` gives the exact wrench).
"""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

from loopylab.bus.messages import _f64
from loopylab.sim.ft_noise import FT300, FTNoise, FTNoiseSpec, world_stream
from loopylab.sim.world import World

VIRTUAL_OPENING = 0.08  # m: the "opening" range of a suction-like tool on robots without fingers
GRASP_DISTANCE = 0.006  # m: an object this close to the hand when the gripper closes is grasped
SUCTION_DISTANCE = 0.015  # m: the same for robots without fingers (a suction cup's reach)
GRASP_WINDOW_S = 0.5  # s after a close command during which contact makes a grasp (a gripper closed
# in the air stays a closed gripper: pushing with it never picks anything up)


def _cross(a, b) -> np.ndarray:
    """a x b of two 3-vectors: np.cross costs ~30x more on 3 values (it is general over axes), and the
    wrist sensor calls this for every contact of every physics step."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


class ArmSim:
    def __init__(
        self,
        world: World,
        position_gain: float = 0.3,
        ft_noise: FTNoiseSpec | None = FT300,
        secret: bytes | str | None = None,
    ):
        """`secret`: the world builder's (sim/secret.py), which keys the wrist sensor's noise; None: the seed's."""
        if world.robot is None:
            raise ValueError("ArmSim needs a world with a robot")
        self.w, self.r, self.c = world, world.robot, world.cid
        self.gain = position_gain
        # targets as plain float lists: pybullet takes lists, and on 7 values numpy's per-call overhead is
        # most of a control tick's Python cost (measured: ~15 us per command with arrays, after a physics step)
        self._target = [p.getJointState(self.r.body, j, physicsClientId=self.c)[0] for j in self.r.arm]
        self._target_vel = [0.0] * len(self._target)
        rs = self.r.spec
        self.max_opening = rs.max_opening or VIRTUAL_OPENING
        self.gripper_target = self.max_opening
        self.gripper_force = 20.0
        self.grasped: str | None = None
        self._constraint: int | None = None
        self._grasp_window = 0.0
        self._hand_masses = np.array(
            [p.getDynamicsInfo(self.r.body, link, physicsClientId=self.c)[0] for link in self.r.hand_links]
        )
        self._hand_mass = max(float(self._hand_masses.sum()), 1e-9)
        self._hand_weight = np.array([0.0, 0.0, self._hand_masses.sum() * world.spec.gravity])
        self._ft_and_hand = [self.r.ft, *self.r.hand_links]
        self._efforts = self.r.effort.tolist()
        self._gains, self._vgains = [position_gain] * len(self.r.arm), [1.0] * len(self.r.arm)
        self._grip_applied: tuple | None = None  # (target, force) last given to the finger motors
        self._held_v = np.zeros(3)
        self._hand_set = set(self.r.hand_links)
        self._steps_since = 1
        self._wrench = None
        self.ft_noise = FTNoise(ft_noise, world_stream(world.spec, secret)) if ft_noise is not None else None

    # -- commands ----------------------------------------------------------------
    @property
    def target(self) -> np.ndarray:
        """The joint position targets the servos track."""
        return np.array(self._target)

    def command_positions(self, q, period: float | None = None) -> None:
        """New joint targets. With `period` (the command stream's interval) the servos also get the
        implied velocity as feed-forward, so a moving target is tracked without lag."""
        n, given = len(self._target), q
        try:
            if type(q) is np.ndarray:  # a decoded command: float64 already, and tolist() gives Python floats
                q = _f64(q).tolist() if q.ndim == 1 else None
            else:
                q = [float(x) for x in q]
            ok = q is not None and len(q) == n and all(map(math.isfinite, q))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"joint command must be {n} finite values, got {given!r}")
        self._target_vel = [(a - b) / period for a, b in zip(q, self._target)] if period else [0.0] * len(q)
        self._target = q

    def set_efforts(self, efforts) -> None:
        """Per-joint torque limits of the position servos (default: the URDF's efforts)."""
        self._efforts = [float(x) for x in efforts]

    def hold_still(self) -> None:
        """No velocity feed-forward: the servos hold the current targets."""
        self._target_vel = [0.0] * len(self._target)

    def command_gripper(self, opening: float, force: float = 20.0) -> None:
        was_open = self.gripper_target >= 0.5 * self.max_opening
        self.gripper_target = float(np.clip(opening, 0.0, self.max_opening))
        if was_open and self.gripper_target < 0.5 * self.max_opening:
            self._grasp_window = GRASP_WINDOW_S  # a closing gripper grasps what it touches soon after
        self.gripper_force = float(max(0.0, force))

    # -- stepping -------------------------------------------------------------------
    def apply(self) -> None:
        r, c = self.r, self.c
        p.setJointMotorControlArray(
            r.body,
            r.arm,
            p.POSITION_CONTROL,
            targetPositions=self._target,
            targetVelocities=self._target_vel,
            forces=self._efforts,
            positionGains=self._gains,
            velocityGains=self._vgains,
            physicsClientId=c,
        )
        grip = (self.gripper_target, self.gripper_force)
        if r.gripper and self.grasped is None and grip != self._grip_applied:  # motor targets persist
            frac = self.gripper_target / self.max_opening
            rs = r.spec
            q = [lo + (hi - lo) * frac for lo, hi in zip(rs.gripper_closed, rs.gripper_open)]
            p.setJointMotorControlArray(
                r.body,
                r.gripper,
                p.POSITION_CONTROL,
                targetPositions=q,
                forces=[self.gripper_force] * len(q),
                physicsClientId=c,
            )
            self._grip_applied = grip
        self._update_grasp()

    def step(self, n: int, wrench: bool = True) -> None:
        """n physics steps under the current commands; the wrist wrench is averaged over them (a sensor's
        low-pass: contact forces alternate step to step while an object slides). wrench=False skips the
        sensor (nobody reads it); `wrench()` then measures the last step only."""
        self.apply()
        if not wrench:
            self.w.step(n)
            self._steps_since = n
            self._wrench = None
        else:
            f, t = np.zeros(3), np.zeros(3)
            for _ in range(n):
                self.w.step(1)
                self._steps_since = 1
                fi, ti = self._wrench_now(weight=False)
                f += fi
                t += ti
            fw, tw = self._weight_wrench()
            self._wrench = self._sensed(f / n + fw, t / n + tw, n * self.w.dt)
        self._grasp_window = max(0.0, self._grasp_window - n * self.w.dt)

    def _update_grasp(self) -> None:
        if self.grasped is None and self._grasp_window <= 0:
            return  # nothing held and no grasp pending: most ticks
        closing = self.gripper_target < 0.5 * self.max_opening
        if self.grasped is None and closing and self._grasp_window > 0 and len(self.r.gripper) >= 2:
            if self.gripper_opening() < 0.05 * self.max_opening:
                self._grasp_window = 0.0  # closed on nothing: a closed gripper never grasps later
        if self.grasped is None and closing and self._grasp_window > 0:
            label = self._touching_object()
            if label is not None:
                self._attach(label)
        elif self.grasped is not None and not closing:
            p.removeConstraint(self._constraint, physicsClientId=self.c)
            self.grasped, self._constraint = None, None

    def _touching_object(self) -> str | None:
        """What a closing gripper takes: for a pinch (two or more fingers), the object within reach of every
        finger, i.e. between them; a palm resting on a taller neighbour does not lift it (seed 1044: the
        Panda's hand, closing on a 3.5 cm block, touched a 6 cm block 12 cm away and carried that one).
        For a suction-like tool (fewer fingers), the object nearest the hand within its reach: what the tool
        is pressed on, not a neighbour its jaw passes (dev world 1000001: the SO-101 on a green block, 0.4 mm
        away, took the red block 9 mm from its jaw because it came first)."""
        if len(self.r.gripper) >= 2:
            for label, body in self.w.objects.items():
                if all(self._gap(body, link, GRASP_DISTANCE) is not None for link in self.r.gripper):
                    return label
            return None
        gaps = {}
        for label, body in self.w.objects.items():
            near = [g for link in self.r.hand_links if (g := self._gap(body, link, SUCTION_DISTANCE)) is not None]
            if near:
                gaps[label] = min(near)
        return min(gaps, key=gaps.__getitem__) if gaps else None

    def _gap(self, body: int, link: int, reach: float) -> float | None:
        """The distance from a hand link to `body`, or None where it is farther than `reach`."""
        pts = p.getClosestPoints(self.r.body, body, reach, linkIndexA=link, physicsClientId=self.c)
        return min(q[8] for q in pts) if pts else None

    def _attach(self, label: str) -> None:
        c, body = self.c, self.w.objects[label]
        ls = p.getLinkState(self.r.body, self.r.ee, computeForwardKinematics=True, physicsClientId=c)
        ee_pos, ee_orn = ls[0], ls[1]  # constraint frames are relative to the link's centre of mass
        ob_pos, ob_orn = p.getBasePositionAndOrientation(body, physicsClientId=c)
        inv_pos, inv_orn = p.invertTransform(ee_pos, ee_orn)
        rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, ob_pos, ob_orn)
        self._constraint = p.createConstraint(
            self.r.body,
            self.r.ee,
            body,
            -1,
            p.JOINT_FIXED,
            [0, 0, 0],
            rel_pos,
            [0, 0, 0],
            rel_orn,
            [0, 0, 0, 1],
            physicsClientId=c,
        )
        p.changeConstraint(self._constraint, maxForce=500, physicsClientId=c)
        self.grasped = label
        self._held_v = np.asarray(p.getBaseVelocity(body, physicsClientId=c)[0])
        if self.r.gripper:  # stop closing where the fingers are: squeezing a constrained body only adds strain
            q = [p.getJointState(self.r.body, j, physicsClientId=c)[0] for j in self.r.gripper]
            p.setJointMotorControlArray(
                self.r.body,
                self.r.gripper,
                p.POSITION_CONTROL,
                targetPositions=q,
                forces=[self.gripper_force] * len(q),
                physicsClientId=c,
            )
            self._grip_applied = None  # re-apply the commanded opening once the grasp ends

    # -- sensing ------------------------------------------------------------------------
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.array(x) for x in self.joint_values())

    def joint_values(self) -> tuple[tuple, tuple, tuple]:
        """(positions, velocities, efforts) as tuples of floats: what the driver publishes every tick (numpy
        costs more than the rest of an encode on 7 values, right after a physics step)."""
        q, v, _, e = zip(*p.getJointStates(self.r.body, self.r.arm, physicsClientId=self.c))
        return q, v, e

    def wrench(self) -> tuple[np.ndarray, np.ndarray]:
        """The wrist wrench averaged over the last `step` (see `_wrench_now`)."""
        if self._wrench is None:
            self._wrench = self._sensed(*self._wrench_now(), self.w.dt)
        return self._wrench[0].copy(), self._wrench[1].copy()

    def _sensed(self, force: np.ndarray, torque: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
        """What the sensor reads of the true wrench (averaged over `period` s)."""
        if self.ft_noise is None:
            return force, torque
        return self.ft_noise.sample(force, torque, self.w.t, period)

    def _weight_wrench(self) -> tuple[np.ndarray, np.ndarray]:
        """The hand's own weight about the sensor: its force, and the torque of the hand's centre of mass
        offset from the sensor joint (one batched link-state query; a 3-vector cross by hand)."""
        states = p.getLinkStates(self.r.body, self._ft_and_hand, physicsClientId=self.c)
        centre = states[0][4]
        ms = self._hand_masses
        com = [sum(m * s[0][k] for m, s in zip(ms, states[1:])) / self._hand_mass for k in range(3)]
        dx, dy = com[0] - centre[0], com[1] - centre[1]
        fz = self._hand_weight[2]  # the weight is along z only: r x (0, 0, fz) = (dy·fz, -dx·fz, 0)
        return self._hand_weight.copy(), np.array([dy * fz, -dx * fz, 0.0])

    def _wrench_now(self, weight: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Wrist wrench in the base frame, about the sensor joint: the force [N] and torque [N·m] the hand
        exerts on the arm — its own weight, plus every contact on the hand, plus a grasped object's pull.
        A held 1 kg mass adds about -9.8 N to force z; pushing an object along +x gives force x < 0.

        Computed from contact and constraint forces rather than PyBullet's joint reaction sensor, which
        mixes in the position servos' constraint forces while the arm moves (1–27 N at 5 cm/s on the
        Panda, growing with the servo gain) and would swamp a 1 N friction force.
        """
        c, body = self.c, self.r.body
        force, torque = self._weight_wrench() if weight else (np.zeros(3), np.zeros(3))
        hand = self._hand_set
        contacts = p.getContactPoints(bodyA=body, physicsClientId=c)
        if not contacts and self._constraint is None:
            return force, torque  # the common case in free motion: no query for the sensor's pose
        centre = np.asarray(p.getLinkState(body, self.r.ft, physicsClientId=c)[4])
        # a rigidly grasped object acts on the hand only through its weight and inertia at its centre of
        # mass (added below): the grip forces between fingers and object are internal and cancel
        held = self.w.objects[self.grasped] if self._constraint is not None else None
        for cp in contacts:
            if cp[3] not in hand or cp[2] == body or cp[2] == held:
                continue
            f = cp[9] * np.asarray(cp[7]) + cp[10] * np.asarray(cp[11]) + cp[12] * np.asarray(cp[13])
            force += f
            torque += _cross(np.asarray(cp[5]) - centre, f)
        if self._constraint is not None:
            # the grasp holds the object: it pulls on the hand with (the object's weight + its inertia)
            obj = self.w.objects[self.grasped]
            m = p.getDynamicsInfo(obj, -1, physicsClientId=c)[0]
            v = np.asarray(p.getBaseVelocity(obj, physicsClientId=c)[0])
            acc = (v - self._held_v) / (self.w.dt * max(1, self._steps_since))
            self._held_v = v
            f = m * (np.array([0.0, 0.0, self.w.spec.gravity]) - acc)
            com = np.asarray(p.getBasePositionAndOrientation(obj, physicsClientId=c)[0])
            force += f
            torque += _cross(com - centre, f)
        return force, torque

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
        self._grip_applied = None
        rs = self.r.spec
        for j, q in zip(self.r.arm, rs.home):
            p.resetJointState(self.r.body, j, q, 0.0, physicsClientId=self.c)
        for j, q in zip(self.r.gripper, rs.gripper_open):
            p.resetJointState(self.r.body, j, q, 0.0, physicsClientId=self.c)
        self._target = [float(x) for x in rs.home]
        self.hold_still()
        self.gripper_target = self.max_opening
