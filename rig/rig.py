"""The whole emulated rig: one world, its devices on their own ports, the files a maker's bench would have.

    with Rig(RigConfig(robot="so101", seed=7)) as rig:
        rig.ports      # {"arm": "/dev/pts/5", "gripper": "/dev/pts/6", "ft": "/dev/pts/7"}
        rig.files      # {"calibration": ".../so101.json", "scene": ".../scene.toml"}

- the arm's servos (Feetech STS3215 for so101, Dynamixel X for koch) on a pty (`rig.motors`);
- a Robotiq 2F-85 on Modbus RTU on its own pty whose fingers are the sim's (`gripper = "robotiq"`), or the
  arm's own gripper motor (`gripper = "motor"`);
- an FT300 streaming the physics' wrist wrench (base frame) with sensor noise on its own pty;
- the scene's cameras rendered from the same world and published on a bus (`node`, when given) as
  `<camera_prefix><name>/image|depth|info`, the way a camera driver on another machine would;
- `files`: the calibration the motors hold (for the arm node) and the perceived scene (labels, shapes,
  sizes, colours: what the person at the bench knows; for the skills and perception nodes); on a public world
  also `known`, the objects' true properties as a kitchen scale gives them (`loopylab lab calibrate-twin`).

`world_secret = "sealed"` builds the graded world of the seed, as the sim bench's `world_secret` does
(sim/secret.py): the rig is the world builder, so it alone resolves the secret, in its own process, and its
hidden properties (and a kind's hidden `structure`) come from the keyed stream. A sealed rig writes no
`known` file. Nothing on the ports or in the files carries a hidden property of a sealed world; `truth()` is
for tests and benchmarks (the grader's read).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from loopylab.bus import CameraInfo, Image, Node
from loopylab.firmware_bridge.emulators.ft300 import FT300Emulator
from loopylab.firmware_bridge.servo import calibration as cal
from loopylab.rig.gripper import physics_robotiq
from loopylab.rig.motors import physics_arm
from loopylab.rig.physics import RigPhysics
from loopylab.rig.render import RenderProcess, snapshot
from loopylab.sim.cameras import render
from loopylab.sim.secret import resolve as resolve_secret
from loopylab.world.scene import SceneSpec, scene_from_seed, with_structure

log = logging.getLogger("loopylab.rig")

FT_NOISE_N = 0.03  # FT300 force noise (N, 1 sigma; its datasheet's noise-free resolution is 0.1 N)
FT_NOISE_NM = 0.002  # torque noise (N·m)
EMULATED_LATENCY_S = 0.1  # the arm node's allowance per transaction on the emulated rig
EMULATED_FAULT_WINDOW_S = 1.0


@dataclass
class RigConfig:
    robot: str = "so101"
    seed: int = 0  # the world (scene_from_seed) and the arm's assembly (motor mounts)
    n_objects: int | None = None
    scene: str = ""  # a scene TOML instead of the seed's world
    # the seeds' hidden properties: None (the public world), "sealed" (the world builder's secret, sim/secret.py)
    world_secret: str | None = None
    structure: str | None = None  # a hidden structure drawn for the world (world.scene.STRUCTURES; a model kind's)
    gripper: str = "robotiq"  # robotiq | motor
    ft: bool = True
    ft_hz: float = 100.0
    ft_noise_n: float = FT_NOISE_N
    cameras: list[str] = field(default_factory=lambda: ["overhead"])  # rendered when a node is given
    # render them in a process of their own (rig/render.py: PyBullet holds the GIL through a frame, and the
    # devices' answers stood still meanwhile); False: in this process, under the physics lock
    render_process: bool = True
    camera_prefix: str = "camera/"
    out_dir: str = ""  # where the calibration and scene files go (default: a new temporary folder)
    link_dir: str = ""  # stable symlinks arm, gripper, ft to the ptys there (e.g. /tmp/rig)

    def __post_init__(self):
        if self.gripper not in ("robotiq", "motor"):
            raise ValueError(f"gripper must be robotiq or motor, not {self.gripper!r}")


class Rig:
    def __init__(self, cfg: RigConfig | None = None, node: Node | None = None, **kw):
        self.cfg = cfg = cfg or RigConfig(**kw)
        self.scene = _build_scene(cfg)
        if self.scene.robot != cfg.robot:
            raise ValueError(f"scene is for {self.scene.robot}, the rig is a {cfg.robot}")
        self.physics = RigPhysics(self.scene)
        link = (lambda name: str(Path(cfg.link_dir) / name)) if cfg.link_dir else (lambda name: None)
        if cfg.link_dir:
            Path(cfg.link_dir).mkdir(parents=True, exist_ok=True)
        self.motors, self.calibration = physics_arm(
            self.physics, cfg.robot, cfg.seed, gripper_motor=cfg.gripper == "motor", link=link("arm")
        )
        self.gripper = physics_robotiq(self.physics, link=link("gripper")) if cfg.gripper == "robotiq" else None
        self.ft = FT300Emulator(stream_hz=cfg.ft_hz, link=link("ft")) if cfg.ft else None
        self._rng = np.random.default_rng([cfg.seed, 0xF7])
        self._ft_lock = threading.Lock()
        self._ft_sum, self._ft_ticks, self._ft_last = np.zeros(6), 0, np.zeros(6)
        if self.ft is not None:
            self.physics.listeners.append(self._feed_ft)
            self._feed_ft(self.physics)
            self.ft.source = self._ft_reading
        out = Path(cfg.out_dir or tempfile.mkdtemp(prefix="loopylab-rig-"))
        out.mkdir(parents=True, exist_ok=True)
        self.files = {
            "calibration": str(cal.save(out / f"{cfg.robot}.json", self.calibration)),
            "scene": str(_write(out / "scene.toml", self.scene.perceived().to_toml())),
        }
        if cfg.world_secret is None:  # a sealed world's truth stays in the builder (the grader reads `truth()`)
            self.files["known"] = str(_write(out / "known.toml", known_objects(self.scene)))
        self.node = node
        self._camera_stop = threading.Event()
        self._camera_thread: threading.Thread | None = None
        self._renderer: RenderProcess | None = None

    # -- the ports -----------------------------------------------------------------------------
    @property
    def ports(self) -> dict[str, str]:
        out = {"arm": self.motors.path}
        if self.gripper is not None:
            out["gripper"] = self.gripper.path
        if self.ft is not None:
            out["ft"] = self.ft.path
        return out

    def overrides(self) -> list[str]:
        """`--set NODE.PARAM=VALUE` for graphs/<robot>.toml: this rig's ports and files."""
        sets = [f'arm.port="{self.motors.path}"', f'arm.calibration="{self.files["calibration"]}"']
        # the emulated servos answer from a Python process that shares the machine (and holds the GIL while
        # it steps or renders the world): allow it what a slow USB adapter gets, not an FTDI at 1 ms
        sets += [f"arm.latency_s={EMULATED_LATENCY_S}", f"arm.fault_window_s={EMULATED_FAULT_WINDOW_S}"]
        if self.gripper is not None:
            sets.append(f'gripper.port="{self.gripper.path}"')
        if self.ft is not None:
            sets.append(f'ft.port="{self.ft.path}"')
        sets += [f'skills.scene="{self.files["scene"]}"', f'perception.scene="{self.files["scene"]}"']
        return sets

    def truth(self) -> dict:
        return self.physics.truth()

    def place(self, _scene=None) -> None:
        """The emulated bench's answer to "place the objects" (`HardwareBench(place=rig.place)`): the world
        builder puts every object back where its world starts, at rest. Without it a second investigation on
        the rig started where the first had pushed its objects (an SO-101 block pushed to 8 cm from the base,
        where no weigh could take it), while the sim bench's reset restored the world: not the same worlds."""
        with self.physics.lock:
            arm = self.physics.arm
            if arm.grasped is not None:  # what the hand still holds is taken out of it first (a slow gripper
                # left a weighed block in the hand once: the parked arm carried it off the table)
                log.warning("the hand still held %s when the objects were placed: taken out of it", arm.grasped)
                arm.command_gripper(arm.max_opening)
                arm.apply()  # an open gripper lets go at once
            self.physics.world.reset_objects()

    # -- sensors fed by the physics ---------------------------------------------------------------
    def _feed_ft(self, physics: RigPhysics) -> None:
        f, t = physics.sensor_wrench()  # on the wrist: its own axes turn with it (the driver says frame "ft300")
        with self._ft_lock:
            self._ft_sum += np.concatenate([f, t])
            self._ft_ticks += 1

    def _ft_reading(self) -> tuple[np.ndarray, np.ndarray]:
        """The FT300's next reading: the mean wrench over the ticks since its last one (a real sensor filters what
        it samples before it sends 100 frames a second), plus its noise. The last tick alone aliased the 120 Hz
        world into the 100 Hz stream: one tick in six was never read, and where a push knocks its block along in
        jolts a few ticks carry its force (contact in 25-40 % of them), so pushes of one block from one spot read
        0.21-0.34 N for its 0.28 (dev world 1000005)."""
        with self._ft_lock:
            if self._ft_ticks:
                self._ft_last = self._ft_sum / self._ft_ticks
            self._ft_sum, self._ft_ticks = np.zeros(6), 0
            w = self._ft_last
            n = self._rng.normal(0.0, 1.0, 6)  # the stream's and a register read's threads share the generator
        return w[:3] + n[:3] * self.cfg.ft_noise_n, w[3:] + n[3:] * FT_NOISE_NM

    def _cameras(self) -> None:
        cams = [c for c in self.scene.cameras if c.name in self.cfg.cameras]
        pubs = {
            c.name: (
                self.node.publisher(f"{self.cfg.camera_prefix}{c.name}/image", Image),
                self.node.publisher(f"{self.cfg.camera_prefix}{c.name}/depth", Image),
                self.node.publisher(f"{self.cfg.camera_prefix}{c.name}/info", CameraInfo, latched=True),
            )
            for c in cams
        }
        period = 1.0 / max(c.hz for c in cams) if cams else 1.0
        while not self._camera_stop.wait(period):
            for c in cams:
                img, dep, info = pubs[c.name]
                if not img.has_subscribers():
                    continue
                try:
                    rgb, depth, K, T, stamp = self._render(c)
                except (TimeoutError, OSError, EOFError) as e:  # a lost frame, not a camera gone for good
                    log.warning("camera %s: no frame (%s)", c.name, e)
                    continue
                info.publish(CameraInfo(width=c.width, height=c.height, K=K, T_base_camera=T, stamp_ns=stamp))
                dep.publish(Image.from_array(depth, "32FC1", stamp_ns=stamp, frame_id=c.name))
                img.publish(Image.from_array(rgb, "rgb8", stamp_ns=stamp, frame_id=c.name))

    def _render(self, cam) -> tuple:
        """One frame of `cam` and its stamp: the moment the world stood as rendered."""
        with self.physics.lock:
            stamp = time.time_ns()
            if self._renderer is None:
                return (*render(self.physics.world.cid, cam, self.physics.arm.ee_pose()), stamp)
            snap = snapshot(self.physics.world, self.physics.arm.ee_pose())
        return (*self._renderer.render(cam.name, snap), stamp)

    # -- lifetime -----------------------------------------------------------------------------------
    def start(self) -> Rig:
        self.physics.start()
        self.motors.start()
        for dev in (self.gripper, self.ft):
            if dev is not None:
                dev.start()
        if self.node is not None and self.cfg.cameras:
            if self.cfg.render_process:
                self._renderer = RenderProcess(self.scene)
            self._camera_thread = threading.Thread(target=self._cameras, name="rig:cameras", daemon=True)
            self._camera_thread.start()
        return self

    def stop(self) -> None:
        self._camera_stop.set()
        if self._camera_thread is not None:
            self._camera_thread.join(5)
        if self._renderer is not None:
            self._renderer.close()
        for dev in (self.ft, self.gripper, self.motors):
            if dev is not None:
                dev.stop()
        self.physics.stop()

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _build_scene(cfg: RigConfig) -> SceneSpec:
    """The rig's world: the scene file, else the seed's (sealed with the builder's secret, resolved here and
    kept nowhere else), with the hidden `structure` drawn."""
    if cfg.scene:
        if cfg.structure:
            raise ValueError("a structure is drawn for a seeded world, not for a scene file")
        return SceneSpec.from_toml(cfg.scene)
    secret = resolve_secret(cfg.world_secret)
    scene = scene_from_seed(cfg.seed, cfg.n_objects, cfg.robot, secret=secret)
    return with_structure(scene, cfg.structure, secret=secret) if cfg.structure else scene


def known_objects(scene: SceneSpec) -> str:
    """The objects' true properties as a maker's known-objects file (`loopylab lab calibrate-twin --objects`),
    as if weighed on a kitchen scale."""
    lines = []
    for o in scene.objects:
        lines += ["[[object]]", f'label = "{o.label}"']
        lines += [f"{k} = {getattr(o, k)!r}" for k in ("mass", "friction", "restitution") if getattr(o, k) is not None]
        lines.append("")
    return "\n".join(lines)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
