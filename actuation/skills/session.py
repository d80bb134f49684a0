"""The arm session: everything a skill says to and hears from the bus.

Streams `arm/joint_target` through the safety gate one control period at a time (waiting for each new
`arm/joint_state`, so a skill runs in lockstep with a lockstep sim and at real time with real hardware),
commands the gripper, records the wrist wrench and object poses by stamp, checks the gate's state, and
knows the world: the perceived scene from the sim's latched `sim/scene` (or a scene file) and object poses
from `perception/objects`.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time

import numpy as np

from loopylab.bus import GripperCommand, GripperState, JointCommand, JointState, Node, ObjectPoses, SafetyState, Wrench
from loopylab.world.joints import reorder

log = logging.getLogger("loopylab.skills")

FIRST_SCENE_WAIT_S = 2.0  # a freshly started bench's latched sim/scene may still be on its way to the first skill
# the scene of a world a reset just built travels on another socket than the reset's reply; at load 100+ it has
# come more than 10 s late (a skill failed with the world on its way), so the wait is sized for a busy machine
WORLD_WAIT_S = 30.0
# s of arm time the fingers may take to report what they were told: a Robotiq 2F-85 at full speed is ~0.6 s
# from open to a 3-4 cm block, and its state comes back over Modbus polls. On the emulated SO-101 at load 80
# the polls came a second apart or more (pymodbus retries): the fingers took 2.4 s to close on a block and the
# report came later still, and an open took 7 s to act on. The wait ends as soon as the gripper reports: the
# allowance costs time only where it never does.
CLOSE_S = 5.0

BASE_FRAMES = ("", "base", "world")  # a wrench in any other frame is the wrist sensor's own (an FT300: "ft300")


class SkillFailed(RuntimeError):
    """The skill could not be done safely (unreachable, limit, e-stop, lost grasp)."""


class ArmSession:
    def __init__(self, node: Node, names: list[str], scene=None, control_hz: float = 120.0, tick_timeout: float = 5.0):
        self.node, self.names, self.scene = node, list(names), scene
        self.hz, self.tick_timeout = control_hz, tick_timeout
        self.source = "scene"  # where the last object position came from
        # objects a skill moved while nothing but the scene file said where they stood: the file still says where
        # they were, so a later skill on one is refused, not run against the old spot (a second push on the
        # camera-less rig read 0.01 N of a 0.50 N friction and said ok; a sim/scene names a new world and clears it)
        self.moved_blind: set[str] = set()
        self.last_q: np.ndarray | None = None  # the joints the arm was last sent to
        self._rec_lock = threading.Lock()
        self._recording = False
        self.wrench: dict[int, np.ndarray] = {}  # recorded: stamp -> [f xyz, torque xyz]
        self.object_poses: dict[int, ObjectPoses] = {}  # recorded: stamp -> pose set
        self.joints: dict[int, np.ndarray] = {}  # recorded: stamp -> every joint state's positions (self.names)
        # joints -> the wrist sensor's axes in the base frame (3x3), for a wrench in the sensor's own frame (the
        # skills node sets it from the arm's kinematics); None: wrenches are taken as they come
        self.sensor_rotation = None
        self._scene_cond = threading.Condition()
        self._first_scene_waited = scene is not None
        self.epoch_ns = 0  # the first stamp of the scene's world: states stamped earlier belong to a previous one
        self.target_pub = node.publisher("arm/joint_target", JointCommand)
        self.grip_pub = node.publisher("gripper/command", GripperCommand)
        self.js = node.subscribe("arm/joint_state", JointState, mode="latest")
        self.grip = node.subscribe("gripper/state", GripperState, mode="latest")
        self.safety = node.subscribe("safety/state", SafetyState, mode="latest")
        self.objects = node.subscribe("perception/objects", ObjectPoses, callback=self._on_objects)
        # every state while recording, not only those a stream waits for: where the hand really was between
        node.subscribe("arm/joint_state", JointState, callback=self._on_joints, queue_size=5000)
        node.subscribe("wrist/wrench", Wrench, callback=self._on_wrench, queue_size=5000)
        node.subscribe("sim/scene", None, callback=self._on_scene)  # a simulator says what the world holds

    # -- the world --------------------------------------------------------------------------------
    def _on_scene(self, msg) -> None:
        from loopylab.world.scene import SceneSpec

        try:
            scene = SceneSpec.from_dict(msg["scene"]).perceived()
            epoch = int(msg.get("epoch_ns", 0))
        except Exception as e:
            log.warning("ignoring a malformed sim/scene: %s", e)
            return
        with self._scene_cond:
            self.scene, self.epoch_ns = scene, epoch
            self.moved_blind.clear()
            self._scene_cond.notify_all()

    def wait_world(self, epoch_ns: int = 0) -> None:
        """Wait for the scene of the world `epoch_ns` names (a sim/reset's reply) or a later one: its sim/scene
        travels on another socket than the request. Without one, the first skill waits briefly for a first
        scene (a bench just started); later ones use the scene they have."""
        with self._scene_cond:
            if epoch_ns:
                wait = max(WORLD_WAIT_S, self.tick_timeout * 2)
                if not self._scene_cond.wait_for(lambda: self.epoch_ns >= epoch_ns, wait):
                    raise SkillFailed(f"no sim/scene of the requested world (epoch {epoch_ns}) within {wait:.0f} s")
            elif not self._first_scene_waited:
                self._scene_cond.wait_for(lambda: self.scene is not None, FIRST_SCENE_WAIT_S)
            self._first_scene_waited = True

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
        if label in self.moved_blind:
            if self.objects.latest() is not None:  # a camera runs but does not see it: pushed out of view, hidden
                raise SkillFailed(
                    f"where {label} stands now is unknown: an earlier skill moved it and the pose source "
                    "(perception/objects) does not see it now (out of the camera's view, or hidden)"
                )
            raise SkillFailed(
                f"where {label} stands now is unknown: an earlier skill moved it and no pose source "
                "(perception/objects) is running, so the scene file still gives where it was; start the camera "
                "and perception nodes, or put it back and restart the skills node"
            )
        return np.asarray(spec.position, float), size, "scene"

    def tracked(self) -> dict[str, np.ndarray]:
        """{label: position} of every object a fresh pose set holds now (empty where no pose source runs)."""
        msg = self._fresh_objects()
        return {} if msg is None else {o.label: np.asarray(o.position, float) for o in msg.objects}

    def obj_now(self, label: str) -> np.ndarray:
        """The object's position now; its source becomes the measurement's."""
        pos, _, src = self.object(label)
        self.source = src
        return pos

    def _fresh_objects(self, max_lag_s: float = 0.25, timeout: float = 2.0) -> ObjectPoses | None:
        """The newest pose set no older than `max_lag_s` of the arm's clock (after a sim reset the last
        message of the old world may still be in flight), or None when no pose source publishes."""
        if self.objects.latest() is None:
            return None
        js = self.js.latest()
        if js is None:
            return self.objects.latest()
        t = max(js.stamp_ns - int(max_lag_s * 1e9), self.epoch_ns)
        try:
            return self.objects.wait_for(lambda m: m.stamp_ns >= t, timeout=timeout)
        except TimeoutError:
            return None

    def sigma(self, label: str) -> float:
        """The pose source's position noise for `label` (0 without one)."""
        msg = self.objects.latest()
        o = msg.get(label) if msg is not None else None
        return float(np.sqrt(max(o.covariance[0, 0], 0.0))) if o is not None else 0.0

    # -- joints and safety -------------------------------------------------------------------------------
    def q(self) -> np.ndarray:
        """The arm's measured joints, from the current world: right after a sim reset the newest state on
        hand may still be the old world's, and a path planned from there starts with a jump."""
        js = self.js.latest()
        if js is None or js.stamp_ns < self.epoch_ns:
            try:
                js = self.js.wait_for(lambda m: m.stamp_ns >= self.epoch_ns, timeout=self.tick_timeout * 2)
            except TimeoutError:
                raise SkillFailed("no arm/joint_state from the current world: is the arm driver running?") from None
        return reorder(js.position, js.name, self.names)

    def wait_ready(self, timeout: float = 10.0, still: float = 0.05, still_s: float = 0.05) -> None:
        """Right after start-up the gate waits for the first joint states, and right after a sim reset (or
        a stop) the arm may still be swinging: wait until the current world's states have had every joint
        slower than `still` rad/s for `still_s` (a new world's first state reads still too). A plan starts
        where the arm stands; from a moving arm its first waypoint is already behind, and the gate clamps
        the whole stream (then overshoots its end). The deadline is sized for a loaded host, where the sim's
        states arrive late (2 s was too short at load 20+); past it the skill goes on and says so."""
        deadline = time.monotonic() + timeout
        still_since = None  # stamp of the first of the current run of still states
        while time.monotonic() < deadline:
            s, js = self.safety.latest(), self.js.latest()
            ready = (
                js is not None
                and js.stamp_ns >= self.epoch_ns
                and s is not None
                and not s.protective_stop
                and not (len(js.velocity) and float(np.max(np.abs(js.velocity))) >= still)
            )
            if not ready:
                still_since = None
            elif still_since is None:
                still_since = js.stamp_ns
            elif js.stamp_ns - still_since >= still_s * 1e9:
                break
            time.sleep(0.005)
        else:
            log.warning("arm not still after %.0f s (joint states late or the arm moving): planning from here", timeout)
        self.check_safety()

    def check_safety(self, pause_s: float = 0.0) -> None:
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

    def clamped(self) -> int:
        """How many targets the gate has slowed down so far."""
        s = self.safety.latest()
        return s.clamped_count if s is not None else 0

    def _rejected(self) -> int:
        s = self.safety.latest()
        return s.rejected_count if s is not None else 0

    # -- motion ---------------------------------------------------------------------------------------
    def stream(self, qs, on_tick=None) -> list[int]:
        """Send each waypoint, wait for the state it produced. Returns the state stamps.
        A protective stop (the arm's heartbeat lapsed: a stalled host) pauses the stream and the waypoint
        is sent again once it clears; any other rejection by the gate, or an e-stop, aborts the skill."""
        stamps = []
        for q in qs:
            for _attempt in range(3):
                self.check_safety(pause_s=10.0)
                rejected = self._rejected()
                prev = self.js.latest()
                last_seq = prev.seq if prev is not None else 0
                self.target_pub.publish(JointCommand(name=self.names, position=np.asarray(q, float)))
                try:
                    js = self.js.wait_for(lambda m, last=last_seq: m.seq > last, timeout=self.tick_timeout)
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

    def hold(self, seconds: float, q=None) -> list[int]:
        """Keep the arm at `q` (default: where it was last sent) for `seconds`. Returns the stamps."""
        q = self.last_q if q is None else q
        return self.stream([q] * max(1, int(round(seconds * self.hz))))

    def run(self, *segments) -> None:
        """Stream joint paths one after the other."""
        for seg in segments:
            if len(seg):
                self.stream(seg)
                self.last_q = np.asarray(seg[-1])

    def gripper(self, opening: float, wait_for=None, max_s: float = 1.0, fail: str | None = None) -> list[int]:
        """Command the gripper; with `wait_for` (a test on GripperState) keep the arm still, tick by tick,
        until the gripper reports it (or max_s of arm time). Returns the stamps of those ticks. With `fail`
        (what it means), a gripper that never reports it fails the skill instead of letting it go on."""
        self.grip_pub.publish(GripperCommand(position=opening, force=20.0))
        stamps: list[int] = []
        if wait_for is None:
            return stamps
        for _ in range(int(max_s * self.hz)):
            g = self.fresh_gripper()
            if g is not None and wait_for(g):
                return stamps
            stamps += self.stream([self.last_q])
        g = self.fresh_gripper()
        if fail is not None and not (g is not None and wait_for(g)):
            said = "nothing" if g is None else f"{1000 * g.position:.0f} mm open, object detected: {g.object_detected}"
            raise SkillFailed(f"{fail}: after {max_s:.1f} s of arm time the gripper reports {said}")
        return stamps

    def fresh_gripper(self, timeout: float = 5.0) -> GripperState | None:
        """The gripper state of the arm's latest tick (it travels on another socket than the joint state)."""
        stamp = self.js.latest().stamp_ns
        try:
            return self.grip.wait_for(lambda g: g.stamp_ns >= stamp, timeout=timeout)
        except TimeoutError:
            return self.grip.latest()

    def settle_object(self, label: str, max_s: float = 3.0) -> list[int]:
        """Hold still until the object has stopped moving (or max_s). Returns the stamps."""
        stamps, seen, last_stamp = [], [], -1
        for _ in range(int(max_s * self.hz)):
            stamps += self.stream([self.last_q])
            self.wait_objects(stamps[-1])
            stamp, msg = self._newest_objects(stamps[-1])
            o = msg.get(label) if msg is not None else None
            if o is None or stamp == last_stamp:
                continue  # no new pose yet (a camera-based tracker is slower than the control rate)
            last_stamp = stamp
            seen.append((stamp, np.asarray(o.position, float)))
            # still: moved less than 1 mm (+ 3 sigma of the pose noise) over the last 0.1 s
            old = [x for s_, x in seen if s_ <= stamp - 0.1e9]
            if old and np.linalg.norm(seen[-1][1] - old[-1]) < 1e-3 + 3 * self.sigma(label):
                break
        return stamps

    # -- recording ------------------------------------------------------------------------------------
    def _on_wrench(self, msg: Wrench) -> None:
        if self._recording:
            w = np.concatenate([msg.force, msg.torque])  # [f xyz, torque xyz]
            if msg.frame_id not in BASE_FRAMES and self.sensor_rotation is not None:
                # a wrist sensor's own axes turn with the wrist: into the base frame at the arm's newest joints
                # (the skills read forces while the hand holds still or moves slowly at a fixed orientation)
                js = self.js.latest()
                if js is not None:
                    r = self.sensor_rotation(reorder(js.position, js.name, self.names))
                    w = np.concatenate([r @ w[:3], r @ w[3:]])
            with self._rec_lock:
                self.wrench[msg.stamp_ns] = w

    def _on_objects(self, msg: ObjectPoses) -> None:
        if self._recording:
            with self._rec_lock:
                self.object_poses[msg.stamp_ns] = msg

    def _on_joints(self, msg: JointState) -> None:
        if self._recording:
            q = reorder(msg.position, msg.name, self.names)
            with self._rec_lock:
                self.joints[msg.stamp_ns] = q

    def record(self, on: bool) -> None:
        """Start (afresh) or stop recording the wrench, the object poses and the joint states."""
        with self._rec_lock:
            if on:
                self.wrench, self.object_poses, self.joints = {}, {}, {}
            self._recording = on

    def recorded(self, table: dict, stamps: list[int]) -> list:
        """The samples of a recorded table between the first and last stamp, in order (sensors may run
        slower than the control rate)."""
        with self._rec_lock:
            return [v for s, v in sorted(table.items()) if stamps[0] <= s <= stamps[-1]]

    def wait_stamps(self, table: dict, stamps: list[int], timeout: float = 10.0) -> None:
        """Wait until the recorded `table` holds the sample of the last tick, or (a sensor on a clock of its
        own, such as a wrist sensor on its own serial port) one stamped at or after it."""
        deadline = time.monotonic() + timeout
        while stamps and time.monotonic() < deadline:
            with self._rec_lock:
                if stamps[-1] in table or (table and max(table) >= stamps[-1]):
                    return
            time.sleep(0.001)  # the sample of the last tick is in flight on another socket

    def sampled(self, table: dict, stamps: list[int]) -> list:
        """Per tick, the recorded sample of that stamp, else the newest one before it (a sensor on its own
        clock); None where there is none yet."""
        with self._rec_lock:
            keys = sorted(table)
            out = []
            for s in stamps:
                if s in table:
                    out.append(table[s])
                    continue
                i = bisect.bisect_right(keys, s)
                out.append(table[keys[i - 1]] if i else None)
            return out

    def wait_objects(self, stamp: int, timeout: float = 5.0) -> None:
        """Motion capture publishes a pose set every tick, stamped like the tick: wait for this tick's
        (it travels on another socket). Slower pose sources are not waited for."""
        msg = self.objects.latest()
        if msg is None or msg.frame_id != "mocap":
            return
        deadline = time.monotonic() + timeout
        while stamp not in self.object_poses and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _newest_objects(self, stamp: int):
        with self._rec_lock:
            older = [s for s in self.object_poses if s <= stamp]
            if not older:
                return -1, None
            s = max(older)
            return s, self.object_poses[s]

    def track(self, label: str, stamps: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The object's recorded poses between the first and last stamp: (t [s from the first], xyz)."""
        with self._rec_lock:
            items = sorted((s, m) for s, m in self.object_poses.items() if stamps[0] <= s <= stamps[-1])
        t, xy = [], []
        for s, msg in items:
            o = msg.get(label)
            if o is not None:
                t.append((s - stamps[0]) / 1e9)  # the arm's clock: sim time in lockstep
                xy.append(np.asarray(o.position, float))
        return np.asarray(t), np.asarray(xy).reshape(-1, 3)
