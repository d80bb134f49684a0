"""The perception node: camera topics in, `perception/objects` out.

    [nodes.perception]
    run = "loopylab.perception.node:run_perception"
    params = { cameras = ["overhead"], objects = [{ label = "red_block", shape = "cube", size = 0.05 }],
               noise_sigma = 2.0, blur_px = 0.5, lighting = 0.1 }

Subscribes `camera/<name>/image`, `/depth` (when published) and `/info` (K, D, T_base_camera) for each
camera; processes the newest frame of each camera at `hz`; publishes `perception/objects` (ObjectPoses,
base frame, tracked objects only). Without `objects`, on a simulated bench, the colour objects are those of
the sim's latched `sim/scene` (labels, shapes, sizes, colours), followed across resets. Services:
- `perception/measure` {label, frames=3, after_ns | fresh=true, timeout=2.0} -> one pose fused over
  frames stamped after `after_ns` (fresh: after the newest frame received when the request came; works
  with any clock, sim time included; pass `after_ns` when you know when motion stopped), with its
  covariance (what displacement measurement uses);
- `perception/configure` {objects: [...]} or {scene: SceneSpec dict} -> replaces the colour objects
  and drops every track;
- `perception/tracks` {} -> every track with its state (tracking | lost), timestamps, reacquisitions.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import cv2
import numpy as np

from loopylab.bus import CameraInfo, Image, Node, ObjectPoses
from loopylab.perception.augment import ImageAugment
from loopylab.perception.camera_config import CameraCalibration, load_calibration
from loopylab.perception.geometry import pose_from_T
from loopylab.perception.pipeline import Frame, Perception, PerceptionConfig


def image_to_rgb(msg: Image) -> np.ndarray:
    a = np.asarray(msg.data)
    if msg.encoding == "rgb8":
        return a
    if msg.encoding == "bgr8":
        return cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    if msg.encoding == "rgba8":
        return a[:, :, :3]
    if msg.encoding == "mono8":
        return cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    raise ValueError(f"unsupported image encoding {msg.encoding!r} (rgb8, bgr8, rgba8, mono8)")


def depth_to_metres(msg: Image) -> np.ndarray:
    a = np.asarray(msg.data)
    if msg.encoding == "32FC1":
        return a.astype(np.float32, copy=False)
    if msg.encoding == "16UC1":  # millimetres, as RealSense and ROS drivers publish
        return a.astype(np.float32) / 1000.0
    raise ValueError(f"unsupported depth encoding {msg.encoding!r} (32FC1 metres, 16UC1 millimetres)")


class _ByStamp:
    """The last few messages of a topic keyed by stamp, to pair them with an image of the same stamp."""

    def __init__(self, node: Node, topic: str, msg_type: type, keep: int = 8):
        self._msgs: OrderedDict[int, object] = OrderedDict()
        self._lock = threading.Lock()
        self.keep = keep
        self.sub = node.subscribe(topic, msg_type, callback=self._on, queue_size=keep)

    def _on(self, msg) -> None:
        with self._lock:
            self._msgs[msg.stamp_ns] = msg
            while len(self._msgs) > self.keep:
                self._msgs.popitem(last=False)

    def get(self, stamp_ns: int, tolerance_ns: int = 20_000_000):
        with self._lock:
            if stamp_ns in self._msgs:
                return self._msgs[stamp_ns]
            near = [s for s in self._msgs if abs(s - stamp_ns) <= tolerance_ns]
            return self._msgs[min(near, key=lambda s: abs(s - stamp_ns))] if near else None

    def wait(self, stamp_ns: int, timeout: float):
        """The message of this stamp, waiting up to `timeout` when the topic has ever published."""
        msg = self.get(stamp_ns)
        deadline = time.monotonic() + timeout
        while msg is None and self.sub.count and time.monotonic() < deadline:
            time.sleep(0.002)  # it is on its way on another socket
            msg = self.get(stamp_ns)
        return msg

    def newest(self):
        return self.sub.latest()


class CameraInput:
    """The newest image of one camera, with the depth image and camera info of the same stamp (a wrist
    camera's pose changes every frame; the sim publishes the image before its info)."""

    def __init__(self, node: Node, name: str, calibration: CameraCalibration | None = None):
        self.name = name
        self.calibration = calibration  # from a file: overrides the info topic
        self.image = node.subscribe(f"camera/{name}/image", Image, mode="latest")
        self.info = _ByStamp(node, f"camera/{name}/info", CameraInfo)
        self.depth = _ByStamp(node, f"camera/{name}/depth", Image)
        self.last_seq = 0

    def next_frame(self, wait_s: float = 0.05) -> Frame | None:
        """The newest unprocessed frame, or None (nothing new, or no intrinsics yet)."""
        img = self.image.latest()
        if img is None or img.seq == self.last_seq:
            return None
        if self.calibration is not None:
            cal = self.calibration
        else:
            info = self.info.wait(img.stamp_ns, wait_s) or self.info.newest()
            if info is None:
                return None
            cal = CameraCalibration.from_info(info, self.name)
        depth = self.depth.wait(img.stamp_ns, wait_s)
        self.last_seq = img.seq
        return Frame(image_to_rgb(img), None if depth is None else depth_to_metres(depth), cal, img.stamp_ns, self.name)


class PerceptionNode:
    def __init__(
        self,
        node: Node,
        cameras=("overhead",),
        hz: float = 10.0,
        calibrations: dict | None = None,
        augment: ImageAugment | None = None,
        config: PerceptionConfig | None = None,
        systematic_sigma: float = 0.001,
        silent_after_s: float = 2.0,
        follow_scene: bool = False,
    ):
        self.node = node
        self.silent_after_s = silent_after_s
        self.perception = Perception(config)
        self.augment = augment or ImageAugment()
        self.inputs = [CameraInput(node, c, (calibrations or {}).get(c)) for c in cameras]
        self.pub = node.publisher("perception/objects", ObjectPoses)
        self.frames = 0
        self.last_stamp_ns = 0
        self._last_wall = time.monotonic()
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        floor = np.zeros((6, 6))
        floor[:3, :3] = np.eye(3) * systematic_sigma**2
        self.floor = floor
        self.mocap_seen = False
        node.subscribe("perception/objects", ObjectPoses, callback=self._check_other_publishers, mode="latest")
        node.service("perception/measure", self._measure)
        node.service("perception/tracks", self._tracks)
        node.service("perception/configure", self._configure)
        self.scene_epoch_ns: int | None = None
        if follow_scene:  # the colour objects of the simulated world, across resets
            node.subscribe("sim/scene", None, callback=self._on_scene)
        self.timer = node.timer(hz, self.step, name="perception")

    def step(self) -> int:
        """Process the newest frame of every camera; publish. Returns how many frames were processed."""
        done = 0
        for cam in self.inputs:
            frame = cam.next_frame()
            if frame is None:
                continue
            frame.rgb = self.augment(frame.rgb)
            with self._new:
                self.perception.process(frame)  # under the lock: services read the tracks
                self.last_stamp_ns = max(self.last_stamp_ns, frame.stamp_ns)
                self.frames += 1
                self._new.notify_all()
            done += 1
        now = time.monotonic()
        with self._lock:
            if done:
                self._last_wall = now
            elif now - self._last_wall > self.silent_after_s:
                # every camera silent (unplugged, driver stopped): the tracks go lost on wall time too.
                # Not sooner: a lockstep sim's camera time may advance slower than the wall clock.
                self.perception.tracker.tick(self.last_stamp_ns + int((now - self._last_wall) * 1e9))
            msg = self.perception.objects(self.last_stamp_ns or time.time_ns())
        if done or self.frames:
            self.pub.publish(msg)
        return done

    def _check_other_publishers(self, msg: ObjectPoses) -> None:
        if msg.frame_id == "mocap" and not self.mocap_seen:
            self.mocap_seen = True
            self.node.log.warning(
                "another node publishes perception/objects as mocap: turn the sim's mocap "
                "off (SimArm param mocap = false) so the skills read only this node"
            )

    # -- services --------------------------------------------------------------------------
    def _measure(self, req: dict) -> dict:
        label = req["label"]
        n = int(req.get("frames", 3))
        if req.get("fresh", "after_ns" not in req):  # newer than anything received so far
            received = [c.image.latest().stamp_ns for c in self.inputs if c.image.latest() is not None]
            with self._lock:
                after = max([self.last_stamp_ns, *received])
        else:
            after = int(req["after_ns"])
        deadline = time.monotonic() + float(req.get("timeout", 2.0))
        with self._new:
            while True:
                res = self.perception.tracker.fused(label, after, n, self.floor)
                if res is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    known = ", ".join(self.perception.tracker.tracks) or "none"
                    raise TimeoutError(
                        f"{label!r}: fewer than {n} measurements after {after} within the "
                        f"timeout (objects seen so far: {known})"
                    )
                self._new.wait(left)
        m, count = res
        pos, quat = pose_from_T(m.T)
        return {
            "label": label,
            "position": pos,
            "orientation": quat,
            "covariance": m.covariance,
            "stamp_ns": m.stamp_ns,
            "frames": count,
            "source": "perception",
        }

    def _configure(self, req: dict) -> dict:
        objects = objects_from_scene(req["scene"]) if "scene" in req else list(req.get("objects", []))
        cfg = self.perception.config
        new = PerceptionConfig.from_dict(
            {
                "objects": objects,
                "markers": [vars(m) for m in cfg.markers],
                "detector": vars(cfg.detector),
                "blobs": vars(cfg.blobs),
                "tracker": vars(cfg.tracker),
            }
        )
        with self._lock:
            self.perception = Perception(new)
        self.node.log.info("perception: now looking for %s", [o.label for o in new.objects])
        return {"ok": True, "objects": [o.label for o in new.objects]}

    def _on_scene(self, msg) -> None:
        epoch = int(msg.get("epoch_ns", 0))
        if epoch == self.scene_epoch_ns:
            return
        try:
            self._configure({"scene": msg["scene"]})
        except Exception as e:
            self.node.log.warning("ignoring a malformed sim/scene: %s", e)
            return
        self.scene_epoch_ns = epoch

    def _tracks(self, req: dict) -> dict:
        with self._lock:
            return {"tracks": [t.summary() for t in self.perception.tracker.tracks.values()]}

    def close(self):
        self.timer.cancel()


def objects_from_scene(scene) -> list[dict]:
    """Colour objects from a (perceived) SceneSpec or its dict: label, shape, size and rendered colour."""
    objs = scene.get("objects", []) if isinstance(scene, dict) else [vars(o) for o in scene.objects]
    return [
        {"label": o["label"], "shape": o["shape"], "size": float(o["size"]), "rgba": tuple(o["rgba"]), "id": i + 1}
        for i, o in enumerate(objs)
    ]


def run_perception(
    node: Node,
    cameras=("overhead",),
    hz: float = 10.0,
    objects=(),
    markers=(),
    dictionary: str = "DICT_4X4_50",
    calibration: dict | None = None,
    graph_dir: str | None = None,
    noise_sigma: float = 0.0,
    blur_px: float = 0.0,
    lighting: float = 0.0,
    gamma: float = 0.0,
    noise_seed: int = 0,
    lost_after_s: float = 0.5,
    systematic_sigma: float = 0.001,
    silent_after_s: float = 2.0,
    scene: str | None = None,
) -> PerceptionNode:
    """Graph entry point. `calibration` maps camera names to TOML files (relative to `graph_dir`);
    cameras without one take K, D and T_base_camera from their `info` topic (the sim's cameras).

    Objects: `objects` (list of tables), or those of `scene` (a scene TOML naming what is on the bench, as
    the skills node takes it: a hardware bench has no simulator to say); without either, the objects of the
    sim's latched `sim/scene`, as the skills node reads it: labels, shapes, sizes, colours.
    """
    if scene and not objects:
        from loopylab.world.scene import SceneSpec

        objects = objects_from_scene(SceneSpec.from_toml(scene).perceived())
    cfg = PerceptionConfig.from_dict(
        {
            "objects": list(objects),
            "markers": list(markers),
            "detector": {"dictionary": dictionary},
            "tracker": {"lost_after_s": lost_after_s},
        }
    )
    cals = {name: load_calibration(path, graph_dir) for name, path in (calibration or {}).items()}
    aug = ImageAugment(noise_sigma, blur_px, lighting, gamma, noise_seed)
    pn = PerceptionNode(
        node, list(cameras), hz, cals, aug, cfg, systematic_sigma, silent_after_s, follow_scene=not objects
    )
    node.log.info(
        "perception: cameras %s, %d colour objects, %d markers, augment %s",
        list(cameras),
        len(cfg.objects),
        len(cfg.markers),
        aug if aug.active else "off",
    )
    return pn
