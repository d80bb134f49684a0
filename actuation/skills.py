"""Experiment skills served on `skills/execute`: move_to, push, lift, weigh, drop, strike, place.

Each skill plans its whole motion first (IK for every point; an unreachable point fails before the arm
moves), then streams `arm/joint_target` one control period at a time, waiting for each new
`arm/joint_state` — so it runs in lockstep with a lockstep sim and at real time with real hardware.
Every target goes through the safety gate; a rejection or an e-stop aborts the skill and the arm stays
where the gate held it. Measurements come from sensors only: wrist wrench, joint states, and object
poses from `perception/objects` (or the scene spec when nothing publishes them; `source` says which).
"""
from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np
import pybullet as p
from scipy.spatial.transform import Rotation

from loopylab.bus import GripperCommand, GripperState, JointCommand, JointState, Node, ObjectPoses, SafetyState, Wrench
from loopylab.world import protocols as P
from loopylab.world.kinematics import Kinematics, Unreachable
from loopylab.world.limits import GateConfig
from loopylab.world.trajectory import cartesian_line, min_jerk, speed_profile

FOLLOW_MARGIN = 0.8   # the share of the gate's velocity limit a fast plan may use (see _check_followable)

log = logging.getLogger("loopylab.skills")


class SkillFailed(RuntimeError):
    """The skill could not be done safely (unreachable, limit, e-stop, lost grasp)."""


class Skills:
    def __init__(self, node: Node, robot: str = "panda", scene=None, control_hz: float = P.CONTROL_HZ,
                 velocity_scale: float = 0.4, acceleration: float = 4.0, tick_timeout: float = 5.0):
        from loopylab.world.robots import robot_spec  # the catalogue of arm descriptions (URDF, tool, grasp style)
        self.node, self.rs, self.scene = node, robot_spec(robot), scene
        self.kin = Kinematics(self.rs.urdf, self.rs.ee_link, list(self.rs.arm_joints))
        self.names = list(self.kin.joint_names)
        self.hz, self.tick_timeout = control_hz, tick_timeout
        self.vmax = self.kin.limits.velocity * velocity_scale
        self.amax = np.full(self.kin.n, acceleration)
        self._lock = threading.Lock()           # one skill at a time
        self._rec_lock = threading.Lock()
        self._recording = False
        self._wrench: dict[int, np.ndarray] = {}
        self._objects: dict[int, ObjectPoses] = {}
        self.target_pub = node.publisher("arm/joint_target", JointCommand)
        self.grip_pub = node.publisher("gripper/command", GripperCommand)
        self.js = node.subscribe("arm/joint_state", JointState, mode="latest")
        self.grip = node.subscribe("gripper/state", GripperState, mode="latest")
        self.safety = node.subscribe("safety/state", SafetyState, mode="latest")
        self.objects = node.subscribe("perception/objects", ObjectPoses, callback=self._on_objects)
        node.subscribe("wrist/wrench", Wrench, callback=self._on_wrench, queue_size=5000)
        node.subscribe("sim/scene", None, callback=self._on_scene)  # a simulator says what the world holds
        self._hand_links = self._links_after(self.rs.ft_joint)
        self._ft_link = self.kin.link_index(self.rs.ft_joint)  # the wrist sensor's frame (torque reference)
        self._probe = None
        self._epoch_ns = 0
        node.service("skills/execute", self.execute)

    # -- service -----------------------------------------------------------------------------
    def execute(self, req: dict) -> dict:
        t0 = time.monotonic()
        req = req or {}
        name, args = req.get("skill"), req.get("args") or {}
        fn = getattr(self, f"skill_{name}", None) if isinstance(name, str) else None
        if fn is None:
            return {"ok": False, "measurements": {"source": "scene", "duration_s": 0.0},
                    "error": f"unknown skill {name!r} (known: move_to, push, lift, weigh, drop, strike, place)"}
        if not self._lock.acquire(timeout=0.1):
            return {"ok": False, "measurements": {"source": "scene", "duration_s": 0.0},
                    "error": "another skill is running"}
        self._source = "scene"
        try:
            self._wait_ready()
            m = fn(args)
            ok, err = True, ""
        except (P.BadArgs, Unreachable, SkillFailed, KeyError, TimeoutError) as e:
            m, ok, err = {}, False, f"{name}: {e}"
            log.warning("%s", err)
        finally:
            self._lock.release()
        m["source"] = self._source
        m["duration_s"] = round(time.monotonic() - t0, 4)
        return {"ok": ok, "measurements": m, "error": err}

    # -- sensing -----------------------------------------------------------------------------------
    def _on_wrench(self, msg: Wrench) -> None:
        if self._recording:
            with self._rec_lock:
                self._wrench[msg.stamp_ns] = np.concatenate([msg.force, msg.torque])  # [f xyz, torque xyz]

    def _on_scene(self, msg) -> None:
        from loopylab.world.scene import SceneSpec
        try:
            self.scene = SceneSpec.from_dict(msg["scene"]).perceived()
            self._epoch_ns = int(msg.get("epoch_ns", 0))  # poses stamped earlier belong to a previous world
        except Exception as e:
            log.warning("ignoring a malformed sim/scene: %s", e)

    def _on_objects(self, msg: ObjectPoses) -> None:
        if self._recording:
            with self._rec_lock:
                self._objects[msg.stamp_ns] = msg

    def _record(self, on: bool) -> None:
        with self._rec_lock:
            if on:
                self._wrench, self._objects = {}, {}
            self._recording = on

    def _q(self) -> np.ndarray:
        """The arm's measured joints, from the current world: right after a sim reset the newest state on
        hand may still be the old world's, and a path planned from there starts with a jump."""
        js = self.js.latest()
        if js is None or js.stamp_ns < self._epoch_ns:
            try:
                js = self.js.wait_for(lambda m: m.stamp_ns >= self._epoch_ns, timeout=self.tick_timeout * 2)
            except TimeoutError:
                raise SkillFailed("no arm/joint_state from the current world: is the arm driver running?") from None
        return np.asarray(js.position, float)

    def object(self, label: str) -> tuple[np.ndarray, float, str]:
        """(position, size, source) of an object: perception/objects if fresh, else the scene spec."""
        size = 0.05
        spec = None
        if self.scene is not None:
            try:
                spec = self.scene.object(label)
                size = spec.size
            except KeyError:
                pass
        msg = self._fresh_objects()
        if msg is not None:
            o = msg.get(label)
            if o is not None:
                src = "mocap" if msg.frame_id == "mocap" else "perception"
                return np.asarray(o.position, float), size, src
        if spec is None:
            raise KeyError(f"unknown object {label!r}: not in perception/objects nor in the scene")
        return np.asarray(spec.position, float), size, "scene"

    def _fresh_objects(self, max_lag_s: float = 0.25, timeout: float = 2.0) -> ObjectPoses | None:
        """The newest pose set no older than `max_lag_s` of the arm's clock (after a sim reset the last
        message of the old world may still be in flight), or None when no pose source publishes."""
        if self.objects.latest() is None:
            return None
        js = self.js.latest()
        if js is None:
            return self.objects.latest()
        t = max(js.stamp_ns - int(max_lag_s * 1e9), self._epoch_ns)
        try:
            return self.objects.wait_for(lambda m: m.stamp_ns >= t, timeout=timeout)
        except TimeoutError:
            return None

    def _obj_now(self, label: str) -> np.ndarray:
        pos, _, src = self.object(label)
        self._source = src
        return pos

    def _wait_ready(self, timeout: float = 2.0, still: float = 0.05, still_s: float = 0.05) -> None:
        """Right after start-up the gate waits for the first joint states, and right after a sim reset (or
        a stop) the arm may still be swinging: wait until the current world's states have had every joint
        slower than `still` rad/s for `still_s` (a new world's first state reads still too). A plan starts
        where the arm stands; from a moving arm its first waypoint is already behind, and the gate clamps
        the whole stream (then overshoots its end)."""
        deadline = time.monotonic() + timeout
        still_since = None  # stamp of the first of the current run of still states
        while time.monotonic() < deadline:
            s, js = self.safety.latest(), self.js.latest()
            ready = (js is not None and js.stamp_ns >= self._epoch_ns and s is not None and not s.protective_stop
                     and not (len(js.velocity) and float(np.max(np.abs(js.velocity))) >= still))
            if not ready:
                still_since = None
            elif still_since is None:
                still_since = js.stamp_ns
            elif js.stamp_ns - still_since >= still_s * 1e9:
                break
            time.sleep(0.005)
        self._check_safety()

    def _check_safety(self, pause_s: float = 0.0) -> None:
        """Raise on an e-stop. A protective stop (lost joint-state heartbeat, e.g. a stalled host) is a
        pause: wait up to `pause_s` for it to clear, then carry on from where the arm stands."""
        s = self.safety.latest()
        if s is not None and s.estop:
            # the state may predate a safety/reset whose reply beat it here (service and topic are separate
            # sockets): the gate republishes its state every period, so a released latch shows within one
            try:
                s = self.safety.wait_for(lambda m: not m.estop, timeout=0.25)
            except TimeoutError:
                pass
        if s is not None and s.protective_stop and not s.estop and pause_s > 0:
            try:
                s = self.safety.wait_for(lambda m: not m.protective_stop or m.estop, timeout=pause_s)
            except TimeoutError:
                pass
        if s is not None and (s.estop or s.protective_stop):
            raise SkillFailed("e-stop engaged" if s.estop else f"protective stop: {s.reason}")

    # -- motion -------------------------------------------------------------------------------------------
    def _orientation(self, pos, dir_name: str | None = None):
        if self.rs.down_yaw_follows_base:
            return self.rs.down_orientation(pos)
        r, pch, y = self.rs.down_rpy
        if dir_name in ("+y", "-y"):  # present the same (thin) side of the tool to the object
            y += math.pi / 2
        return p.getQuaternionFromEuler([r, pch, y])

    def _ee(self, tip) -> np.ndarray:
        """EE frame position for a tool tip position (tool pointing down)."""
        return np.asarray(tip, float) + [0.0, 0.0, self.rs.tool_length]

    def _joint_path(self, q_from, q_to) -> np.ndarray:
        return min_jerk(q_from, q_to, self.vmax, self.amax, self.hz)

    def _line(self, a, b, speed: float, q0, dir_name=None, accel: float = 0.5) -> np.ndarray:
        length = float(np.linalg.norm(np.asarray(b) - np.asarray(a)))
        if length < 1e-6:
            return np.empty((0, self.kin.n))
        path = speed_profile([(length, speed, accel)], self.hz)
        return cartesian_line(self.kin, a, b, lambda x: self._orientation(x, dir_name), path, q0)

    def _stream(self, qs, on_tick=None) -> list[int]:
        """Send each waypoint, wait for the state it produced. Returns the state stamps.
        A protective stop (the arm's heartbeat lapsed: a stalled host) pauses the stream and the waypoint
        is sent again once it clears; any other rejection by the gate, or an e-stop, aborts the skill."""
        stamps = []
        for q in qs:
            for attempt in range(3):
                self._check_safety(pause_s=10.0)
                rejected = self._rejected()
                prev = self.js.latest()
                last_seq = prev.seq if prev is not None else 0
                self.target_pub.publish(JointCommand(name=self.names, position=np.asarray(q, float)))
                try:
                    js = self.js.wait_for(lambda m: m.seq > last_seq, timeout=self.tick_timeout)
                except TimeoutError:
                    raise SkillFailed("no arm/joint_state: is the arm driver running?") from None
                if self._rejected() == rejected:
                    break
                s = self.safety.latest()
                if s is None or s.estop or not (s.protective_stop or "protective stop" in s.reason):
                    raise SkillFailed(f"safety gate rejected a target: {s.reason if s else ''}")
            else:
                raise SkillFailed("protective stop did not clear: the arm's joint states keep lapsing")
            stamps.append(js.stamp_ns)
            if on_tick is not None:
                on_tick(js)
        return stamps

    def _clamped(self) -> int:
        s = self.safety.latest()
        return s.clamped_count if s is not None else 0

    def _rejected(self) -> int:
        s = self.safety.latest()
        return s.rejected_count if s is not None else 0

    def _hold(self, seconds: float, q=None) -> list[int]:
        q = self._last_q if q is None else q
        return self._stream([q] * max(1, int(round(seconds * self.hz))))

    def _run(self, *segments) -> None:
        for seg in segments:
            if len(seg):
                self._stream(seg)
                self._last_q = np.asarray(seg[-1])

    def _gripper(self, opening: float, wait_for=None, max_s: float = 1.0) -> list[int]:
        """Command the gripper; with `wait_for` (a test on GripperState) keep the arm still, tick by tick,
        until the gripper reports it (or max_s of arm time). Returns the stamps of those ticks."""
        self.grip_pub.publish(GripperCommand(position=opening, force=20.0))
        stamps: list[int] = []
        if wait_for is None:
            return stamps
        for _ in range(int(max_s * self.hz)):
            g = self._fresh_gripper()
            if g is not None and wait_for(g):
                break
            stamps += self._stream([self._last_q])
        return stamps

    def _fresh_gripper(self, timeout: float = 5.0) -> GripperState | None:
        """The gripper state of the arm's latest tick (it travels on another socket than the joint state)."""
        stamp = self.js.latest().stamp_ns
        try:
            return self.grip.wait_for(lambda g: g.stamp_ns >= stamp, timeout=timeout)
        except TimeoutError:
            return self.grip.latest()

    def _wait_stamps(self, table: dict, stamps: list[int], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while stamps and stamps[-1] not in table and time.monotonic() < deadline:
            time.sleep(0.001)  # the sample of the last tick is in flight on another socket

    def _links_after(self, joint_name: str) -> list[int]:
        c, b = self.kin._cid, self.kin.body
        for j in range(p.getNumJoints(b, physicsClientId=c)):
            if p.getJointInfo(b, j, physicsClientId=c)[1].decode() == joint_name:
                return list(range(j, p.getNumJoints(b, physicsClientId=c)))
        return []

    def _pad(self, q, dir_name: str) -> float:
        """How far the tool reaches beyond the EE axis towards the push direction, 1 cm above its lowest
        point (the contact offset): a probe sphere slides in along the direction until it touches."""
        d = P.direction(dir_name)
        tip = self.kin.fk(q)[0] - [0.0, 0.0, self.rs.tool_length - 0.01]
        c, body = self.kin._cid, self.kin.body
        with self.kin._lock:
            self.kin._set(q)
            if self._probe is None:
                self._probe = p.createMultiBody(0, p.createCollisionShape(p.GEOM_SPHERE, radius=0.001,
                                                                          physicsClientId=c), physicsClientId=c)
            def touches(s):
                p.resetBasePositionAndOrientation(self._probe, (tip + d * s).tolist(), [0, 0, 0, 1], physicsClientId=c)
                return any(p.getClosestPoints(body, self._probe, 0.0, linkIndexA=l, physicsClientId=c)
                           for l in self._hand_links)
            lo, hi = 0.0, 0.15
            if not touches(lo):
                return 0.0
            for _ in range(14):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if touches(mid) else (lo, mid)
        return lo

    # -- skills ---------------------------------------------------------------------------------------------
    def skill_move_to(self, args: dict) -> dict:
        pos = np.asarray(args.get("position", ()), float)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise P.BadArgs("position must be [x, y, z] in metres")
        orn = args.get("orientation")
        orn = self._orientation(pos) if orn is None else [float(v) for v in orn]
        q0 = self._q()
        q1 = self.kin.ik(pos, orn, q0=q0)
        self._last_q = q0
        self._run(self._joint_path(q0, q1))
        self._hold(P.SETTLE_S)
        return {"position_error_m": float(np.linalg.norm(self.kin.fk(self._q())[0] - pos))}

    def _approach(self, tip, dir_name=None) -> tuple[np.ndarray, np.ndarray]:
        """Plan: joints to above `tip`, then a line down to it. Returns (joint path, line path)."""
        clearance = self.rs.clearance
        q0 = self._q()
        above = self._ee(tip) + [0, 0, clearance]
        q_above = self.kin.ik(above, self._orientation(above, dir_name), q0=q0)
        down = self._line(above, self._ee(tip), 0.1, q_above, dir_name)
        return self._joint_path(q0, q_above), down

    def _push_like(self, args: dict, strike: bool) -> dict:
        label = str(args.get("object", ""))
        dir_name = str(args.get("direction", "+x"))
        P.direction(dir_name)
        if strike:
            speed = P.number(args, "speed", 0.05, P.STRIKE_MAX_SPEED)
            distance = 0.0
        else:
            distance = P.number(args, "distance", 0.005, 0.3)
            speed = P.number(args, "speed", 0.005, 0.3, default=0.05)
        pos0 = self._obj_now(label)
        _, size, _ = self.object(label)
        probe = self._q()
        q_probe = self.kin.ik(self._ee([pos0[0], pos0[1], P.TIP_Z + self.rs.clearance]),
                              self._orientation(pos0, dir_name), q0=probe)
        pad = self._pad(q_probe, dir_name)
        plan = (P.strike_plan(pos0, size, dir_name, speed, pad, self.hz) if strike else
                P.push_plan(pos0, size, dir_name, distance, speed, pad, self.hz))
        to_above, down = self._approach(plan.start, dir_name)
        line = cartesian_line(self.kin, self._ee(plan.start), self._ee(plan.end),
                              lambda x: self._orientation(x, dir_name), plan.path, down[-1])
        up = self._line(self._ee(plan.end), self._ee(plan.end) + [0, 0, self.rs.clearance], 0.1, line[-1], dir_name)
        if strike:
            self._check_followable(line, down[-1] if len(down) else probe, f"strike {dir_name} at {speed:.2f} m/s")
        # everything is planned: move
        self._last_q = probe
        opening = self.rs.max_opening or 0.08  # closed in the air: a closed gripper pushes, never grasps
        self._gripper(0.0, wait_for=lambda g: g.position < 0.2 * opening and not g.object_detected)
        self._run(to_above, down)
        self._record(True)
        base_stamps = self._hold(P.SETTLE_S)
        clamps = self._clamped()
        stamps = self._stream(line)
        clamps = self._clamped() - clamps
        self._last_q = line[-1]
        if strike:
            stamps += self._settle_object(label)
        else:
            stamps += self._hold(0.15)
        self._wait_stamps(self._wrench, stamps)
        self._wait_objects(stamps[-1])
        self._record(False)
        pos1 = self._obj_now(label)
        self._run(up)
        d = P.direction(dir_name)
        if strike:
            t, xy = self._track(label, stamps)
            if len(t) < 5:
                raise SkillFailed("no object track during the strike (is perception/objects running?)")
            i_brake = min(int(np.searchsorted(plan.path, plan.brake_s - 1e-9)), len(stamps) - 1)
            t_brake = (stamps[i_brake] - stamps[0]) / 1e9
            m = P.analyze_strike(t, xy, t_brake, speed, self._sigma(label))
        else:
            base = np.mean([self._wrench[s] for s in base_stamps if s in self._wrench], axis=0)
            pushed = stamps[:len(line)]
            f = np.array([-(self._wrench[s][:3] - base[:3]) @ d if s in self._wrench else 0.0 for s in pushed])
            up = np.array([self._wrench[s][2] - base[2] if s in self._wrench else 0.0 for s in pushed])
            m = P.analyze_push(plan.path[:len(f)], f, pos0, pos1, plan.steady, self._sigma(label), force_up=up)
            if not P.PUSH_LOAD_RANGE[0] <= m.get("load_N", 0.0) <= P.PUSH_LOAD_RANGE[1]:
                raise SkillFailed(f"the hand hit something besides {label} (vertical force "
                                  f"{m['load_N']:.1f} N while pushing): the force reading is not the object's")
        m["gate_clamps"] = int(clamps)  # > 0: the gate slowed the motion; the reading may be off
        return m

    def _check_followable(self, qs, q_before, what: str) -> None:
        """Refuse, before moving, a fast motion whose joint speeds exceed the gate's default velocity limit
        (velocity_scale x the URDF's): the gate would slow it down, and the measurement would be of another
        experiment than the one asked for. (Accelerations are left to the gate: second differences of IK
        waypoints carry the redundant arm's null-space jitter, and the gate scales such steps smoothly.)
        A plan must keep FOLLOW_MARGIN below the limit: the gate checks each step from the *measured* state,
        a tick or two behind the plan, so a plan at 91 % of it (an SO-101 strike at 0.25 m/s) was clamped 4-7
        times and now and then missed its block or was rejected mid-strike."""
        v = np.abs(np.diff(np.vstack([q_before, qs]), axis=0)) * self.hz
        limit = self.kin.limits.velocity * GateConfig().velocity_scale * FOLLOW_MARGIN
        frac = v / limit
        if frac.max() > 1.0:
            i, j = np.unravel_index(int(np.argmax(frac)), frac.shape)
            raise Unreachable(f"{what}: the arm cannot follow it here (joint {j} would turn at {v[i, j]:.2f} "
                              f"rad/s; plans may use {limit[j]:.2f} rad/s, {FOLLOW_MARGIN:.0%} of the gate's limit); try a lower speed or another direction")

    def _settle_object(self, label: str, max_s: float = 3.0) -> list[int]:
        """Hold still until the object has stopped moving (or max_s). Returns the stamps."""
        stamps, seen, last_stamp = [], [], -1
        for _ in range(int(max_s * self.hz)):
            stamps += self._stream([self._last_q])
            self._wait_objects(stamps[-1])
            stamp, msg = self._newest_objects(stamps[-1])
            o = msg.get(label) if msg is not None else None
            if o is None or stamp == last_stamp:
                continue  # no new pose yet (a camera-based tracker is slower than the control rate)
            last_stamp = stamp
            seen.append((stamp, np.asarray(o.position, float)))
            # still: moved less than 1 mm (+ 3 sigma of the pose noise) over the last 0.1 s
            old = [x for s_, x in seen if s_ <= stamp - 0.1e9]
            if old and np.linalg.norm(seen[-1][1] - old[-1]) < 1e-3 + 3 * self._sigma(label):
                break
        return stamps

    def _wait_objects(self, stamp: int, timeout: float = 5.0) -> None:
        """Motion capture publishes a pose set every tick, stamped like the tick: wait for this tick's
        (it travels on another socket). Slower pose sources are not waited for."""
        msg = self.objects.latest()
        if msg is None or msg.frame_id != "mocap":
            return
        deadline = time.monotonic() + timeout
        while stamp not in self._objects and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _newest_objects(self, stamp: int):
        with self._rec_lock:
            older = [s for s in self._objects if s <= stamp]
            if not older:
                return -1, None
            s = max(older)
            return s, self._objects[s]

    def _track(self, label: str, stamps: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The object's recorded poses between the first and last stamp: (t [s from the first], xyz)."""
        with self._rec_lock:
            items = sorted((s, m) for s, m in self._objects.items() if stamps[0] <= s <= stamps[-1])
        t, xy = [], []
        for s, msg in items:
            o = msg.get(label)
            if o is not None:
                t.append((s - stamps[0]) / 1e9)  # the arm's clock: sim time in lockstep
                xy.append(np.asarray(o.position, float))
        return np.asarray(t), np.asarray(xy).reshape(-1, 3)

    def _sigma(self, label: str) -> float:
        msg = self.objects.latest()
        o = msg.get(label) if msg is not None else None
        return float(np.sqrt(max(o.covariance[0, 0], 0.0))) if o is not None else 0.0

    def skill_push(self, args: dict) -> dict:
        return self._push_like(args, strike=False)

    def skill_strike(self, args: dict) -> dict:
        return self._push_like(args, strike=True)

    # grasping skills ---------------------------------------------------------------------------------------
    def _grasp_tip(self, pos, size) -> np.ndarray:
        if self.rs.gripper_joints and self.rs.name == "panda":
            return np.array([pos[0], pos[1], max(size / 2, 0.012)])    # pinch: fingers around the middle
        return np.array([pos[0], pos[1], size + 0.002])                 # contact/suction from the top

    def _plan_grasp(self, label: str, lift: float, speed: float = 0.1, q0=None) -> dict:
        """Every path of a grasp-and-lift, planned before the arm moves (an unreachable point fails here)."""
        pos0 = self._obj_now(label)
        _, size, _ = self.object(label)
        tip = self._grasp_tip(pos0, size)
        q0 = self._q() if q0 is None else q0
        above = self._ee(tip) + [0, 0, self.rs.clearance]
        q_above = self.kin.ik(above, self._orientation(above), q0=q0)
        down = self._line(above, self._ee(tip), 0.1, q_above)
        up = self._line(self._ee(tip), self._ee(tip) + [0, 0, lift], speed, down[-1])
        back = self._line(self._ee(tip) + [0, 0, lift], self._ee(tip), speed, up[-1])
        retreat = self._line(self._ee(tip), above, 0.1, down[-1])
        return dict(pos0=pos0, size=size, tip=tip, q_above=q_above, down=down, up=up, back=back, retreat=retreat)

    def _grasp(self, plan: dict, label: str) -> None:
        """Run: joints to above, open, line down, close. Fails (and backs off) when nothing was grasped."""
        self._last_q = self._q()
        opening = self.rs.max_opening or 0.08
        self._gripper(opening, wait_for=lambda g: g.position > 0.8 * opening)
        self._run(self._joint_path(self._last_q, plan["q_above"]), plan["down"])
        self._gripper(0.0, wait_for=lambda g: g.object_detected, max_s=1.0)
        self._hold(0.1)
        g = self._fresh_gripper()
        if g is None or not g.object_detected:
            self._gripper(self.rs.max_opening or 0.08)
            self._run(plan["retreat"])
            raise SkillFailed(f"could not grasp {label!r}")

    def _ensure_lifted(self, label: str, plan: dict, stamps: list[int], rise: float) -> None:
        """(While recording, after lifting by `rise`.) The object asked for must have risen with the hand,
        or what the skill measures next belongs to something else: an object fixed to the table (a weigh
        then read 0 kg), or a neighbour the hand took instead (seeds 1009, 1044: the sim's grasp took what
        the palm touched, and a rank came out wrong; on a real arm, a ball that rolled into the fingers).
        Fails, after putting down what it holds; unchecked where no pose source runs (positions from the
        scene)."""
        self._wait_objects(stamps[-1])
        pos, _, src = self.object(label)
        risen = float(pos[2] - plan["pos0"][2])
        if src == "scene" or risen >= 0.5 * rise:
            return
        self._record(False)
        self._release_and_retreat(plan)
        raise SkillFailed(f"{label!r} did not rise with the hand ({1000 * risen:.0f} of {1000 * rise:.0f} mm): it is "
                          f"fixed down, or the hand took something else")

    def _release_and_retreat(self, plan: dict) -> None:
        self._run(plan["back"])
        self._gripper(self.rs.max_opening or 0.08)
        self._hold(0.3)
        self._run(plan["retreat"])

    def skill_lift(self, args: dict) -> dict:
        label = str(args.get("object", ""))
        height = P.number(args, "height", 0.005, 0.25)
        plan = self._plan_grasp(label, height)
        self._grasp(plan, label)
        self._run(plan["up"])
        self._hold(P.SETTLE_S)
        lifted = float(self._obj_now(label)[2] - plan["pos0"][2])
        self._release_and_retreat(plan)
        return {"lifted_m": lifted}

    def skill_weigh(self, args: dict) -> dict:
        label = str(args.get("object", ""))
        q0 = self._q()
        plan = self._plan_grasp(label, P.WEIGH_LIFT, q0=q0)
        lifted = self._ee(plan["tip"]) + [0, 0, P.WEIGH_LIFT]
        q_read = self.kin.ik(lifted, self._orientation(lifted), q0=plan["q_above"])
        self._last_q = q0
        self._gripper(self.rs.max_opening or 0.08)
        self._run(self._joint_path(q0, q_read))
        self._record(True)   # baseline: the empty tool at the very pose of the reading
        base = self._hold(P.SETTLE_S * 2)
        self._wait_stamps(self._wrench, base)
        self._record(False)
        fz_base = [self._wrench[s][2] for s in base[len(base) // 2:] if s in self._wrench]
        self._grasp(plan, label)
        self._run(plan["up"])
        self._record(True)
        held = self._hold(P.SETTLE_S * 2)
        self._ensure_lifted(label, plan, held, P.WEIGH_LIFT)
        self._wait_stamps(self._wrench, held)
        self._record(False)
        fz_held = [self._wrench[s][2] for s in held[len(held) // 2:] if s in self._wrench]
        self._release_and_retreat(plan)
        return P.analyze_weigh(fz_base, fz_held)

    def skill_place(self, args: dict) -> dict:
        """Pick the object up, carry it above its neighbours and set it down at `position` (x, y on the
        table): to give a boxed-in object room to be pushed and struck. Returns how far it moved."""
        label = str(args.get("object", ""))
        target = np.asarray(args.get("position", ()), float)
        if target.shape != (2,) or not np.all(np.isfinite(target)):
            raise P.BadArgs("position must be [x, y] in metres")
        plan = self._plan_grasp(label, P.PLACE_CARRY)
        tip = self._grasp_tip([*target, 0.0], plan["size"])
        high = self._ee(tip) + [0, 0, P.PLACE_CARRY]
        across = self._line(self._ee(plan["tip"]) + [0, 0, P.PLACE_CARRY], high, 0.1, plan["up"][-1])
        lower = self._line(high, self._ee(tip) + [0, 0, 0.002], 0.05, across[-1] if len(across) else plan["up"][-1])
        retreat = self._line(self._ee(tip) + [0, 0, 0.002], self._ee(tip) + [0, 0, self.rs.clearance], 0.1, lower[-1])
        self._grasp(plan, label)
        self._run(plan["up"], across, lower)
        self._gripper(self.rs.max_opening or 0.08, wait_for=lambda g: not g.object_detected)
        self._hold(0.3)
        self._record(True)
        self._run(retreat)
        self._settle_object(label, max_s=1.0)
        self._record(False)
        pos = self._obj_now(label)
        return {"placed_m": float(np.linalg.norm(pos[:2] - plan["pos0"][:2])),
                "position_error_m": float(np.linalg.norm(pos[:2] - target))}

    def skill_drop(self, args: dict) -> dict:
        label = str(args.get("object", ""))
        height = P.number(args, "height", 0.02, 0.3)
        plan = self._plan_grasp(label, height)
        top = self._ee(plan["tip"]) + [0, 0, height]
        away = self._line(top, top + [0, 0, 0.1], 0.4, plan["up"][-1], accel=8.0)
        # the held object tilted, for its vertical centre-of-mass offset, and the empty hand the same way
        # above it for the baseline; skipped (no com_z_m) where the arm cannot tilt its hand there
        q_tilt = self._tilted(top, plan["up"][-1])
        q_tilt_away = self._tilted(top + [0, 0, 0.1], away[-1]) if q_tilt is not None else None
        self._grasp(plan, label)
        self._run(plan["up"])
        self._record(True)
        held = self._hold(P.SETTLE_S)
        self._ensure_lifted(label, plan, held, height)
        q_held = self._last_q
        held_tilt = self._hold_tilted(q_tilt) if q_tilt_away is not None else []
        # release holding still (the object falls from rest), then take the hand out of the bounce's way
        stamps = self._stream([self._last_q])
        stamps += self._gripper(self.rs.max_opening or 0.08, wait_for=lambda g: not g.object_detected)
        stamps += self._stream(away)
        self._last_q = away[-1]
        stamps += self._settle_object(label, max_s=2.0)
        base = self._hold(P.SETTLE_S)    # the empty hand at the holding orientation: the torque baseline
        base_tilt = self._hold_tilted(q_tilt_away) if held_tilt else []
        self._wait_objects(stamps[-1])
        self._wait_stamps(self._wrench, base + base_tilt)
        self._record(False)
        t, xyz = self._track(label, stamps)
        if len(t) < 5:
            raise SkillFailed("no object track during the drop (is perception/objects running?)")
        out = P.analyze_drop(t, xyz[:, 2], self._sigma(label), plan["size"])
        tilted = (held_tilt, base_tilt, q_tilt) if held_tilt else None
        out.update(self._com_offset(label, plan["size"], held[len(held) // 2:], base[len(base) // 2:], q_held, tilted))
        return out

    def _tilted(self, pos, q0) -> np.ndarray | None:
        """Joints that hold the tool at `pos` turned P.TILT_RAD about its own x axis (across a pinch: the
        fingers keep the object from swinging), near `q0`; None where the arm cannot."""
        down = Rotation.from_quat(self._orientation(pos))
        turn = Rotation.from_rotvec(down.as_matrix()[:, 0] * P.TILT_RAD)
        try:
            q = self.kin.ik(pos, (turn * down).as_quat(), q0=q0, restarts=2)
        except Unreachable:
            return None
        return q if np.max(np.abs(q - np.asarray(q0))) < 1.5 else None  # not a wholly different arm pose

    def _hold_tilted(self, q_tilt) -> list[int]:
        """Turn to `q_tilt`, hold still (the stamps returned), turn back to the current joints."""
        q_level = self._last_q
        self._run(self._joint_path(q_level, q_tilt))
        stamps = self._hold(P.SETTLE_S * 2)
        self._run(self._joint_path(q_tilt, q_level))
        self._hold(P.SETTLE_S)
        return stamps[len(stamps) // 2:]

    def _com_offset(self, label: str, size: float, held: list[int], base: list[int], q_held,
                    tilted: tuple | None = None) -> dict:
        """The held object's centre-of-mass offset from the wrist torque (`protocols.analyze_com`), held
        level and, with `tilted` = (held stamps, baseline stamps, joints), tilted too;
        {} when a signal is missing (no wrist sensor, no object pose)."""
        def between(table: dict, stamps: list[int]) -> list:  # sensors may run slower than the control rate
            return [v for s, v in sorted(table.items()) if stamps[0] <= s <= stamps[-1]]

        def reading(held: list[int], base: list[int], q) -> tuple | None:
            with self._rec_lock:
                w_held, w_base = between(self._wrench, held), between(self._wrench, base)
                poses = [o for o in (m.get(label) for m in between(self._objects, held)) if o is not None]
            if len(w_held) < 3 or len(w_base) < 3 or not poses:
                return None
            centre = np.mean([o.position for o in poses], axis=0)
            return w_base, w_held, self.kin.fk(q, self._ft_link)[0], centre, poses[-1].orientation

        level = reading(held, base, q_held)
        if level is None:
            return {}
        out = P.analyze_com(*level, tilted=reading(*tilted) if tilted else None)
        if out and np.linalg.norm([out.get(k, 0.0) for k in ("com_x_m", "com_y_m", "com_z_m")]) > 0.5 * size:
            # outside the object: the grip slipped or a finger touched something; no offset rather than a wrong one
            log.info("drop %s: discarding a centre-of-mass estimate of %s", label, out)
            return {}
        return out

    def close(self) -> None:
        self.kin.close()


def run_skills(node: Node, robot: str = "panda", seed: int | None = 0, n_objects: int | None = None,
               scene: str | None = None, control_hz: float = P.CONTROL_HZ) -> Skills:
    """Graph entry point (`loopylab.actuation.skills:run_skills`). The scene (perceived: sizes, shapes) gives object
    sizes and fallback positions; live positions come from perception/objects."""
    from loopylab.world.scene import SceneSpec, scene_from_seed
    spec = None
    if scene:
        spec = SceneSpec.from_toml(scene).perceived()
    elif seed is not None:
        spec = scene_from_seed(int(seed), n_objects, robot).perceived()
    return Skills(node, robot, spec, control_hz)
