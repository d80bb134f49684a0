"""The body behind the ports: one PyBullet world (`loopylab.sim`) stepped in real time on its own thread.

Each joint is driven the way a position-mode servo drives it: with torque on, its own control loop closes
the gap to the goal as a first-order lag (`TRACK_TAU_S`), no faster than the joint's rated speed (the URDF's
velocity limit, STS3215 ~4.7 rad/s), and the motor pushes with at most its rated torque (the URDF's effort); with torque off the gearbox's friction
(`backdrive_nm`) is all that holds it. Until a host first turns torque on, the arm rests at its home pose
(as a powered-down arm rests where it was put). The wrist wrench is the sim's sensor model, averaged over
each control period (in the base frame; `sensor_wrench` turns it into the wrist sensor's own axes, as a
wrist-mounted FT300 reads it).

The devices never wait for the world. PyBullet is not thread-safe, so every call into it (a tick, a render, the
grader's truth, a placement) holds `lock`; the devices' servers instead read the snapshot the last tick left and
leave their commands (a joint's goal, the fingers' opening) for the next tick to apply. When they took the lock,
a host at load 40-60 waited 0.5-1.2 s for a Robotiq poll or a servo read (p90 550 ms, p99 1.2 s; the world could
not keep its 120 Hz, ticked back to back, and a released lock went straight back to the ticking thread), so the
pymodbus client timed out, retried and read stale replies, and the arm node's state went missing for 1-2 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pybullet as p

from loopylab.sim.arm import ArmSim
from loopylab.sim.world import World
from loopylab.world.robots import CONTROL_HZ
from loopylab.world.scene import SceneSpec

log = logging.getLogger("loopylab.rig")

LOAD_FILTER_S = 0.05  # s: time constant of the servos' load (current) reading
# s: a servo's response to a new goal. A real servo's PID loop (kHz) approaches each goal smoothly; a set point
# that met every goal within one tick moved the hand in steps and, where a goal came late (the host's 100 Hz
# stream against this 120 Hz world, or a starved host), stopped it dead for a tick: a steady push then knocked
# its block ahead in 1-6 N jolts with 0 N between them (contact in 23-47 % of the readings). The lag this adds
# while tracking a moving goal (~ speed x TRACK_TAU_S) is what `loopylab lab calibrate-twin` fits.
TRACK_TAU_S = 0.03
YIELD_S = 0.001  # s: the least gap between ticks, even behind time (the camera and the grader get the lock)
BACKDRIVE_NM = 0.6  # N·m: what a 1:345 servo gearbox resists with torque off (the arm barely sags)
SETTLE_S = 2.0  # s of world time at most, before the ports open, for the world to come to rest
STILL_RAD_S = 1e-3  # rad/s: every joint slower than this is an arm at rest


class RigPhysics:
    """`RigPhysics(scene).start()`: the world ticking at `control_hz` until `.stop()`."""

    def __init__(
        self,
        scene: SceneSpec,
        control_hz: float = CONTROL_HZ,
        backdrive_nm: float = BACKDRIVE_NM,
        track_tau_s: float = TRACK_TAU_S,
    ):
        self.scene, self.control_hz, self.backdrive_nm = scene, float(control_hz), float(backdrive_nm)
        self.world = World(scene)
        # the exact wrench: the rig's FT300 device (rig/rig.py) adds the sensor's noise as it streams it
        self.arm = ArmSim(self.world, ft_noise=None)
        r = self.world.robot
        self.names = list(r.spec.arm_joints)
        self.steps_per_tick = max(1, round(1.0 / (self.control_hz * scene.dt)))
        self.period = self.steps_per_tick * scene.dt
        # the share of the gap to its goal a servo closes per tick (1: at once, rated speed permitting)
        self._gain = 1.0 - float(np.exp(-self.period / track_tau_s)) if track_tau_s > 0 else 1.0
        self._rated_speed = r.velocity.copy()
        self._rated_effort = r.effort.tolist()
        n = len(self.names)
        self.goal: list[float | None] = [float(x) for x in self.arm.target]  # rad per joint; None: torque off
        self._powered = False  # no host has turned torque on yet: the arm rests at home
        self._setpoint = np.array(self.arm.target)
        self.q, self.v, self.effort = np.zeros(n), np.zeros(n), np.zeros(n)
        self.gripper_q = 0.0
        self.force, self.torque = np.zeros(3), np.zeros(3)
        self._gripper_cmd: tuple[float, float] | None = None  # the fingers' (opening, force), for the next tick
        self._held: str | None = None  # what the hand held at the last tick
        self._opening = 0.0  # the fingers' opening at the last tick (m)
        self.lock = threading.RLock()
        self.ticks = 0
        self.listeners: list[Callable[[RigPhysics], None]] = []  # called after every tick, lock held
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._snapshot()
        self._settle()

    def _settle(self) -> None:
        """Tick until the arm is at rest, before any device reads it: a world starts with transients (the
        SO-101's jaw, reset open past its URDF's (0, 0) limit, snaps shut and swings the wrist 0.9 rad over
        ~0.2 s), and a host that connected during them read a joint the physics had already moved on from."""
        for _ in range(max(1, round(SETTLE_S / self.period))):
            self.tick()
            if self.ticks >= 3 and float(np.abs(self.v).max(initial=0.0)) < STILL_RAD_S:
                break

    # -- what the devices say ---------------------------------------------------------------------
    # (no lock below: one attribute's assignment is atomic, and each tick replaces the snapshot's arrays whole)
    def set_goal(self, joint: int, rad: float | None) -> None:
        """The servo of `joint` holds `rad` (None: torque off) from the next tick on."""
        if rad is not None:
            self._powered = True
        self.goal[joint] = None if rad is None else float(rad)

    def command_gripper(self, opening: float, force: float) -> None:
        """The fingers go to `opening` (m) with `force` (N) from the next tick on."""
        self._gripper_cmd = (float(opening), float(force))

    # -- what the devices read: the last tick's snapshot -----------------------------------------
    def joint(self, joint: int) -> tuple[float, float, float]:
        """(position rad, velocity rad/s, motor torque N·m) of the last tick."""
        q, v, e = self._joints
        return float(q[joint]), float(v[joint]), float(e[joint])

    def gripper_opening(self) -> float:
        return self._opening

    def grasped(self) -> str | None:
        return self._held

    def wrench(self) -> tuple[np.ndarray, np.ndarray]:
        """The wrist wrench (base frame, N and N·m) over the last tick."""
        f, t, _ = self._wrench
        return f.copy(), t.copy()

    def sensor_wrench(self) -> tuple[np.ndarray, np.ndarray]:
        """The same wrench in the wrist sensor's own frame (its link's axes, turning with the wrist), as an
        FT300 mounted on the wrist reports it."""
        f, t, rot = self._wrench
        return rot.T @ f, rot.T @ t

    def truth(self) -> dict:
        """Ground truth of the objects (for tests and benchmarks: nothing on the ports carries it)."""
        with self.lock:
            return self.world.object_truth()

    # -- stepping -----------------------------------------------------------------------------------
    def tick(self) -> None:
        with self.lock:
            q = self.q
            step = self._rated_speed * self.period
            efforts = list(self._rated_effort)
            for i, g in enumerate(self.goal):
                if not self._powered:
                    continue  # resting where it was put (the initial targets)
                if g is None:  # torque off: the gearbox's friction holds against whatever pushes
                    self._setpoint[i] = q[i]
                    efforts[i] = self.backdrive_nm
                else:
                    self._setpoint[i] += np.clip(self._gain * (g - self._setpoint[i]), -step[i], step[i])
            self.arm.set_efforts(efforts)
            cmd, self._gripper_cmd = self._gripper_cmd, None
            if cmd is not None:
                self.arm.command_gripper(*cmd)
            self.arm.command_positions(self._setpoint, self.period)
            self.arm.step(self.steps_per_tick, wrench=True)
            self.ticks += 1
            self._snapshot()
            for fn in self.listeners:
                fn(self)

    def _snapshot(self) -> None:
        q, v, e = self.arm.joint_values()
        self.q, self.v = np.array(q), np.array(v)
        # what a servo reports as load is its filtered current, not the solver's per-step impulse (PyBullet's
        # position motors hit their force limit for a step whenever a new goal arrives)
        a = min(1.0, self.period / LOAD_FILTER_S)
        self.effort = np.array(e) if self.ticks == 0 else self.effort + a * (np.array(e) - self.effort)
        self.force, self.torque = self.arm.wrench()
        r = self.world.robot
        orn = p.getLinkState(r.body, r.ft, physicsClientId=self.world.cid)[5]
        self.sensor_rot = np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3)  # sensor axes in the base frame
        if r.gripper:
            self.gripper_q = p.getJointState(r.body, r.gripper[0], physicsClientId=self.world.cid)[0]
        self._joints = (self.q, self.v, self.effort)
        self._wrench = (self.force, self.torque, self.sensor_rot)
        self._opening, self._held = self.arm.gripper_opening(), self.arm.grasped

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the world keeps its clock whatever one tick did
                log.exception("rig physics tick failed; continuing")
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay < -0.25:
                next_t = time.monotonic()  # far behind (a stalled host): resume real time, never race
            self._stop.wait(max(delay, YIELD_S))  # behind or not, the lock's other users get a turn

    def start(self) -> RigPhysics:
        self._thread = threading.Thread(target=self._loop, name="rig:physics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self.lock:
            self.world.close()
