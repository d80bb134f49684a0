"""SimArm: the simulated arm as a bus driver, interchangeable with a real arm's driver node.

Publishes arm/joint_state (with efforts), wrist/wrench, gripper/state, camera/<name>/image|depth|info,
the latched sim/scene (the perceived scene of the current world, for every node that needs one), and
(unless disabled) perception/objects as a simulated motion-capture system with noise (source "mocap").
Consumes arm/joint_command (from the safety gate only) and gripper/command. Serves sim/reset and the
privileged sim/oracle (ground truth, for evaluation only).

Clocks:
- lockstep (default): each arm/joint_command advances the world by one control period, at once, and the
  new state is published stamped with sim time; so the sim runs as fast as its controller. Without
  commands it keeps ticking at real-time pace (holding the last command) so states keep flowing.
- realtime: one control period per wall-clock period, applying the latest command.
Cameras render at their configured rate in sim time (EGL on a GPU, TinyRenderer otherwise).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pybullet as p

from loopylab.bus import (
    CameraInfo,
    GripperCommand,
    GripperState,
    Image,
    JointCommand,
    JointState,
    Node,
    ObjectPose,
    ObjectPoses,
    Wrench,
)
from loopylab.sim.arm import ArmSim
from loopylab.sim.cameras import gpu_present, render, use_egl
from loopylab.sim.ft_noise import FT300, sensor_stream
from loopylab.sim.secret import resolve as resolve_secret
from loopylab.sim.world import World
from loopylab.world.joints import JointMismatch, reorder
from loopylab.world.robots import CONTROL_HZ
from loopylab.world.scene import SceneSpec, scene_from_seed, with_structure

log = logging.getLogger("loopylab.sim")
ORACLE_ROLES = ("grader",)  # the truth: the grader only
RESET_ROLES = ("evaluator",)  # which world is loaded: the evaluator's choice, never the agent's


class SimArm:
    def __init__(
        self,
        node: Node,
        scene: SceneSpec,
        clock: str = "lockstep",
        control_hz: float = CONTROL_HZ,
        cameras: bool = True,
        mocap: bool = True,
        mocap_noise: float = 0.0005,
        renderer: str = "auto",
        start: bool = True,
        ft_noise: bool = True,
        world_secret: str | None = None,
    ):
        if clock not in ("lockstep", "realtime"):
            raise ValueError(f"clock must be lockstep or realtime, not {clock!r}")
        self.node, self.clock, self.control_hz = node, clock, float(control_hz)
        self.cameras_on, self.mocap_on, self.mocap_noise = cameras, mocap, float(mocap_noise)
        self._mocap_cov = np.diag([self.mocap_noise**2] * 3 + [1e-4] * 3)  # shared by every pose: read-only
        self._mocap_cov.flags.writeable = False
        self.renderer_name = renderer
        self.ft_noise = bool(ft_noise)  # the wrist sensor reads like an FT 300-S (sim/ft_noise.py), or exactly
        # the world builder's secret: a seed's hidden properties come from it (world/scene.py); None: public worlds
        self._secret = resolve_secret(world_secret)
        self._lock = threading.RLock()
        self._time_offset = 0.0
        self._epoch_ns = 0  # the current world's first stamp: a command stamped before it was meant for another
        self.stale_commands = 0  # commands dropped for that
        self._build(scene)
        self.js_pub = node.publisher("arm/joint_state", JointState)
        self.wrench_pub = node.publisher("wrist/wrench", Wrench)
        self.grip_pub = node.publisher("gripper/state", GripperState)
        self.obj_pub = node.publisher("perception/objects", ObjectPoses) if mocap else None
        # what a lab may know of the current world (latched): the skills and perception nodes learn it here,
        # across resets; "epoch_ns" is the new world's first stamp (states stamped earlier are the old one's)
        self.scene_pub = node.publisher("sim/scene", None, latched=True)
        self.scene_pub.publish({"scene": scene.perceived().to_dict(), "epoch_ns": self._stamp()})
        self.cam_pubs = {}
        for cam in scene.cameras:
            self.cam_pubs[cam.name] = (
                node.publisher(f"camera/{cam.name}/image", Image),
                node.publisher(f"camera/{cam.name}/depth", Image),
                node.publisher(f"camera/{cam.name}/info", CameraInfo, latched=True),
            )
        self.cmd_sub = node.subscribe("arm/joint_command", JointCommand, queue_size=1000)
        node.subscribe("gripper/command", GripperCommand, callback=self._on_gripper)
        # who may load a world and who may read its truth (a graph file's [access] table may say otherwise)
        node.service("sim/reset", self._on_reset, allow=RESET_ROLES)
        node.service("sim/oracle", self._on_oracle, allow=ORACLE_ROLES)
        self.ticks = 0
        self._thread = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="sim_arm:loop", daemon=True)
            self._thread.start()

    # -- world ------------------------------------------------------------------------------
    def _build(self, scene: SceneSpec) -> None:
        self.scene = scene
        self.world = World(scene)
        self.arm = ArmSim(self.world, ft_noise=FT300 if self.ft_noise else None, secret=self._secret)
        self.steps_per_tick = max(1, round(1.0 / (self.control_hz * scene.dt)))
        self.names = list(self.world.robot.spec.arm_joints)
        self._rng = sensor_stream(scene, "mocap", 7, self._secret)  # mocap noise: as the wrist sensor's
        self._next_render = {c.name: 0.0 for c in scene.cameras}
        self._renderer = p.ER_TINY_RENDERER
        if self.cameras_on and (self.renderer_name == "egl" or (self.renderer_name == "auto" and gpu_present())):
            if use_egl(self.world.cid):
                self._renderer = p.ER_BULLET_HARDWARE_OPENGL
                log.info("cameras: EGL renderer")

    @property
    def sim_time(self) -> float:
        return self.world.t

    def _stamp(self) -> int:
        """Sim time in lockstep (continuing across resets: stamps never go back), wall time otherwise."""
        if self.clock != "lockstep":
            return time.time_ns()
        return int(round((self._time_offset + self.world.t) * 1e9)) + 1

    # -- callbacks ----------------------------------------------------------------------------
    def _on_gripper(self, msg: GripperCommand) -> None:
        with self._lock:
            self.arm.command_gripper(msg.position, msg.force)

    def _on_reset(self, req) -> dict:
        req = req or {}
        if "scene" in req:
            scene = SceneSpec.from_dict(req["scene"])
        else:
            scene = scene_from_seed(
                int(req.get("seed", self.scene.seed or 0)),
                req.get("n_objects"),
                req.get("robot", self.scene.robot),
                secret=self._secret,
            )
            if req.get("structure"):  # a question about structure: the world draws which model is true
                scene = with_structure(scene, str(req["structure"]), secret=self._secret)
        fresh = SimArm.__new__(SimArm)  # build the new world aside: the old one keeps ticking meanwhile
        fresh.control_hz, fresh.cameras_on, fresh.renderer_name = self.control_hz, self.cameras_on, self.renderer_name
        fresh.ft_noise, fresh._secret = self.ft_noise, self._secret
        fresh._build(scene)
        with self._lock:
            old = self.world
            self._time_offset += old.t + 1.0  # a 1 s gap: any stamp says which world it came from
            for k in ("scene", "world", "arm", "steps_per_tick", "names", "_rng", "_next_render", "_renderer"):
                setattr(self, k, getattr(fresh, k))
            old.close()
            epoch = self._epoch_ns = self._stamp()
            self.scene_pub.publish({"scene": scene.perceived().to_dict(), "epoch_ns": epoch})
            while True:  # commands for the old world must not move the new one
                try:
                    self.cmd_sub.get(timeout=0)
                except TimeoutError:
                    break
            self._publish()
        # the epoch names the new world: a skill requested with it waits for this sim/scene (see docs/sim.md)
        return {"ok": True, "scene": scene.perceived().to_dict(), "epoch_ns": epoch}

    def _on_oracle(self, req) -> dict:
        with self._lock:
            return {
                "ok": True,
                "scene": self.scene.to_dict(),
                "objects": self.world.object_truth(),
                "sim_time": self.world.t,
                "grasped": self.arm.grasped or "",
            }

    # -- stepping ------------------------------------------------------------------------------
    def apply_command(self, msg: JointCommand) -> None:
        if msg.stamp_ns and msg.stamp_ns < self._epoch_ns:
            # stamped from a state of the world before the last reset: the gate's deadman hold fires 0.5 s
            # after a skill's last target and commands the arm's newest state, which a reset within that
            # half second leaves the old world's. Applied, it swept the arm from home to where the old
            # world's arm was, through the new world's objects (test 2000000: a block knocked 50 cm away
            # on a bench reset world after world)
            self.stale_commands += 1
            log.debug("joint command stamped before this world (%d < %d): ignored", msg.stamp_ns, self._epoch_ns)
            return
        q, names = msg.position, msg.name
        if len(names) and names != self.names:  # (a tuple in the same order goes the long way, to the same end)
            try:
                q = reorder(q, names, self.names, exact=True)
            except JointMismatch as e:
                log.warning("joint command ignored: %s", e)
                return
        try:
            self.arm.command_positions(q, 1.0 / self.control_hz)
        except ValueError as e:
            log.warning("joint command ignored: %s", e)

    def tick(self) -> None:
        """Advance one control period and publish what the sensors see."""
        with self._lock:
            wrench = self.wrench_pub.has_subscribers()
            self.arm.step(self.steps_per_tick, wrench=wrench)
            self.ticks += 1
            self._publish(wrench)

    def _publish(self, wrench: bool | None = None) -> None:
        # Every sensor stream is sampled each tick, but one nobody subscribes to is not even computed (as a
        # ROS 2 driver checks its subscription count): the state of the arm is always published.
        stamp = self._stamp()
        q, v, e = self.arm.joint_values()
        self.js_pub.publish_fields(name=self.names, position=q, velocity=v, effort=e, stamp_ns=stamp, frame_id="base")
        if self.wrench_pub.has_subscribers() if wrench is None else wrench:
            f, t = self.arm.wrench()
            self.wrench_pub.publish(Wrench(force=f, torque=t, stamp_ns=stamp, frame_id="base"))
        if self.grip_pub.has_subscribers():
            self.grip_pub.publish(
                GripperState(
                    position=self.arm.gripper_opening(),
                    object_detected=self.arm.grasped is not None,
                    ready=True,
                    stamp_ns=stamp,
                )
            )
        if self.obj_pub is not None and self.obj_pub.has_subscribers():
            self.obj_pub.publish(self.mocap(stamp))
        if self.cameras_on:
            self._render_due(stamp)

    def mocap(self, stamp: int = 0) -> ObjectPoses:
        s = self.mocap_noise
        noise = self._rng.normal(0.0, s, (len(self.scene.objects), 3)) if s > 0 else None
        objs = []
        for i, o in enumerate(self.scene.objects):
            pos, orn = self.world.object_pose(o.label)
            if noise is not None:
                pos += noise[i]
            objs.append(ObjectPose(id=i, label=o.label, position=pos, orientation=orn, covariance=self._mocap_cov))
        return ObjectPoses(objects=objs, stamp_ns=stamp, frame_id="mocap")

    def _render_due(self, stamp: int) -> None:
        for cam in self.scene.cameras:
            if self.world.t + 1e-9 < self._next_render[cam.name]:
                continue
            self._next_render[cam.name] = self.world.t + 1.0 / cam.hz
            img, dep, info = self.cam_pubs[cam.name]
            # rendered straight into the publishers' loans: on an ipc graph, into shared memory that publish()
            # sends as it is (elsewhere they are plain arrays)
            hw = (cam.height, cam.width)
            rgb, depth, K, T = render(
                self.world.cid,
                cam,
                self.arm.ee_pose(),
                self._renderer,
                out=(img.loan((*hw, 3), np.uint8), dep.loan(hw, np.float32)),
            )
            img.publish(Image.from_array(rgb, "rgb8", stamp_ns=stamp, frame_id=cam.name))
            dep.publish(Image.from_array(depth, "32FC1", stamp_ns=stamp, frame_id=cam.name))
            info.publish(
                CameraInfo(width=cam.width, height=cam.height, K=K, T_base_camera=T, stamp_ns=stamp, frame_id=cam.name)
            )

    def _loop(self) -> None:
        while self.node.running:
            try:
                self._run_clock()
            except Exception:  # a bad command or a failed render must not stop the arm's heartbeat
                if self.node.running:
                    log.exception("sim loop error; continuing")

    def _run_clock(self) -> None:
        period = 1.0 / self.control_hz
        next_t = time.monotonic()
        while self.node.running:
            if self.clock == "lockstep":
                try:
                    msg = self.cmd_sub.get(timeout=period)
                    with self._lock:
                        self.apply_command(msg)
                except TimeoutError:  # idle: tick at real-time pace holding the last command still
                    self.arm.hold_still()
                self.tick()
            else:
                msg = None
                while True:  # latest command wins
                    try:
                        msg = self.cmd_sub.get(timeout=0)
                    except TimeoutError:
                        break
                if msg is not None:
                    with self._lock:
                        self.apply_command(msg)
                self.tick()
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # real-time pacing of the simulation itself
                else:
                    next_t = time.monotonic()

    def close(self) -> None:
        self.node.shutdown()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        with self._lock:
            self.world.close()


def run_sim_arm(
    node: Node,
    robot: str = "panda",
    seed: int = 0,
    n_objects: int | None = None,
    scene: str | None = None,
    clock: str = "lockstep",
    control_hz: float = CONTROL_HZ,
    cameras: bool = True,
    mocap: bool = True,
    mocap_noise: float = 0.0005,
    renderer: str = "auto",
    ft_noise: bool = True,
    world_secret: str | None = None,
) -> SimArm:
    """Graph entry point (`loopylab.sim.node:run_sim_arm`): the scene from a TOML file, else from (seed, robot);
    `ft_noise=false`: an exact wrist sensor (tests of geometry), else the FT 300-S's noise. `world_secret`: the
    key of the seeds' hidden properties (sim/secret.py: None for the public worlds, "sealed" for the builder's
    own), held by this node alone."""
    secret = resolve_secret(world_secret)
    spec = SceneSpec.from_toml(scene) if scene else scene_from_seed(seed, n_objects, robot, secret=secret)
    return SimArm(
        node,
        spec,
        clock,
        control_hz,
        cameras,
        mocap,
        mocap_noise,
        renderer,
        ft_noise=ft_noise,
        world_secret=world_secret,
    )
