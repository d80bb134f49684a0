"""Camera sources: USB/CSI devices (OpenCV VideoCapture), video files and image folders (replay).

    src = open_source("0")                   # device index, /dev/video2, a video, an image folder, bus:NAME
    with src:
        frame = src.read()                   # CapturedFrame(rgb, depth | None, stamp_ns) or None at the end

`run_camera` (graph entry point) publishes a source as `camera/<name>/image`, `/depth` (when the source
has depth) and `/info` (K, D, T_base_camera from the calibration TOML). The sim's cameras publish the
same topics themselves, so the perception node reads all of them alike.
"""

from __future__ import annotations

import abc
import glob
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from loopylab.bus import CameraInfo, Image, Node
from loopylab.perception.camera_config import CameraCalibration, load_calibration

log = logging.getLogger("loopylab.perception.sources")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class CameraError(RuntimeError):
    """A camera could not be opened or stopped delivering frames; the message says why and what to try."""


@dataclass
class CapturedFrame:
    rgb: np.ndarray
    depth: np.ndarray | None
    stamp_ns: int
    index: int = 0
    path: str = ""
    calibration: CameraCalibration | None = None  # bus cameras carry their own (camera/<name>/info)


class FrameSource(abc.ABC):
    name = "source"
    fps: float = 30.0
    width = height = 0

    def open(self) -> FrameSource:
        return self

    @abc.abstractmethod
    def read(self) -> CapturedFrame | None:
        """The next frame, or None when a finite source has ended."""

    def close(self) -> None:  # noqa: B027  (a default, not an abstract method: most sources hold nothing)
        """Release the device or file; sources that hold nothing keep this default."""

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        while (f := self.read()) is not None:
            yield f


def list_video_devices() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


class VideoCaptureSource(FrameSource):
    """A source read through an OpenCV VideoCapture (`cap`, set by `open`): frames come BGR, numbered
    from 0 in the order read, stamped on arrival."""

    cap: cv2.VideoCapture | None = None
    _n = 0  # frames read so far

    def _frame(self, bgr: np.ndarray) -> CapturedFrame:
        self._n += 1
        return CapturedFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, time.time_ns(), self._n - 1)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class DeviceSource(VideoCaptureSource):
    """A live camera. `exposure`: None = automatic; else the driver's value (V4L2: units of 100 us)."""

    def __init__(
        self,
        device: int | str,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        exposure: float | None = None,
        fourcc: str = "MJPG",
    ):
        self.device, self.width, self.height, self.fps = device, width, height, fps
        self.exposure, self.fourcc = exposure, fourcc
        self.name = str(device)

    def _path(self) -> str | None:
        if isinstance(self.device, int) and sys.platform.startswith("linux"):
            return f"/dev/video{self.device}"
        return self.device if isinstance(self.device, str) else None

    def open(self) -> DeviceSource:
        path = self._path()
        if path is not None and not os.path.exists(path):
            avail = ", ".join(list_video_devices()) or "none"
            raise CameraError(
                f"camera device {path} not found (video devices on this machine: {avail}); "
                f"check the cable, or pick another with `--device`"
            )
        cap = cv2.VideoCapture(self.device if isinstance(self.device, int) else str(self.device))
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"camera {path or self.device} exists but could not be opened: it is busy (another "
                f"program is using it) or you lack permission (on Linux, join the 'video' group)"
            )
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        if self.exposure is not None:
            cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2: 1 = manual, 3 = aperture priority
            if not cap.set(cv2.CAP_PROP_EXPOSURE, float(self.exposure)):
                log.warning("camera %s: exposure control not supported by this device/backend", self.name)
        ok, img = cap.read()
        if not ok or img is None:
            cap.release()
            raise CameraError(
                f"camera {path or self.device} opened but delivers no frames (busy, or an "
                f"unsupported format; try another --width/--height or fourcc)"
            )
        self.height, self.width = img.shape[:2]
        self.fps = cap.get(cv2.CAP_PROP_FPS) or self.fps
        self.cap = cap
        self._first = img
        return self

    def read(self) -> CapturedFrame | None:
        if self.cap is None:
            self.open()
        img, self._first = self._first, None
        if img is None:
            ok, img = self.cap.read()
            if not ok:
                raise CameraError(f"camera {self.name} stopped delivering frames (unplugged?)")
        return self._frame(img)


class VideoFileSource(VideoCaptureSource):
    def __init__(self, path: str | Path, loop: bool = False, fps: float | None = None):
        self.path, self.loop = Path(path), loop
        self.name = self.path.stem
        self._fps = fps

    def open(self) -> VideoFileSource:
        if not self.path.exists():
            raise CameraError(f"video file {self.path} does not exist")
        self.cap = cv2.VideoCapture(str(self.path))
        if not self.cap.isOpened():
            raise CameraError(f"cannot decode video file {self.path} (unsupported codec?)")
        self.fps = self._fps or self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return self

    def read(self) -> CapturedFrame | None:
        if self.cap is None:
            self.open()
        ok, img = self.cap.read()
        if not ok and self.loop and self._n:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
        if not ok:
            return None
        return self._frame(img)


class ImageFolderSource(FrameSource):
    """Images in name order. Depth, when present, sits beside each image as `<stem>.depth.npy` (metres)
    or `<stem>.depth.png` (16-bit millimetres)."""

    def __init__(self, folder: str | Path, fps: float = 10.0, loop: bool = False):
        self.folder, self.fps, self.loop = Path(folder), fps, loop
        self.name = self.folder.name
        self.files: list[Path] = []
        self._i = 0

    def open(self) -> ImageFolderSource:
        if not self.folder.is_dir():
            raise CameraError(f"image folder {self.folder} does not exist")
        self.files = sorted(
            f for f in self.folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and not f.stem.endswith(".depth")
        )
        if not self.files:
            raise CameraError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.folder}")
        return self

    def read(self) -> CapturedFrame | None:
        if not self.files:
            self.open()
        if self._i >= len(self.files):
            if not self.loop:
                return None
            self._i = 0
        f = self.files[self._i]
        self._i += 1
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise CameraError(f"cannot read image {f}")
        self.height, self.width = img.shape[:2]
        depth = None
        if (d := f.with_name(f.stem + ".depth.npy")).exists():
            depth = np.load(d).astype(np.float32)
        elif (d := f.with_name(f.stem + ".depth.png")).exists():
            depth = cv2.imread(str(d), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
        return CapturedFrame(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), depth, time.time_ns(), self._i - 1, str(f))


class BusCameraSource(FrameSource):
    """A camera already on the bus (the sim's, or another machine's `run_camera`): `bus:overhead`.
    Frames come with depth when published and with the calibration from `camera/<name>/info`."""

    def __init__(self, name: str, bus: str | None = None, timeout: float = 5.0, node: Node | None = None):
        self.name, self.bus, self.timeout = name, bus, timeout
        self.node, self._own_node, self.input = node, node is None, None
        self._n = 0

    def open(self) -> BusCameraSource:
        from loopylab.perception.node import CameraInput

        if self.node is None:
            self.node = Node(f"camera-view-{os.getpid()}", self.bus, heartbeat_hz=0, start_directory=False)
        self.input = CameraInput(self.node, self.name)
        return self

    def read(self) -> CapturedFrame | None:
        if self.input is None:
            self.open()
        deadline = time.monotonic() + self.timeout
        while (f := self.input.next_frame()) is None:
            if time.monotonic() > deadline:
                raise CameraError(
                    f"no frames on camera/{self.name}/image (with its info) within "
                    f"{self.timeout:.0f} s: is the graph running, and the name right?"
                )
            time.sleep(0.005)
        self.height, self.width = f.rgb.shape[:2]
        self._n += 1
        return CapturedFrame(f.rgb, f.depth, f.stamp_ns, self._n - 1, calibration=f.calibration)

    def close(self) -> None:
        if self._own_node and self.node is not None:
            self.node.close()
            self.node = None


def open_source(
    spec: str | int,
    width: int = 640,
    height: int = 480,
    fps: float | None = None,
    exposure: float | None = None,
    loop: bool = False,
) -> FrameSource:
    """A source from what a user types: `0`, `/dev/video2`, `clip.mp4`, `captures/`, `bus:overhead`,
    `bus:overhead@ipc://loopylab-rig`."""
    s = str(spec)
    if s.startswith("bus:"):  # bus:NAME, or bus:NAME@URL for a camera on another graph's bus (an emulated rig's)
        name, _, url = s[4:].partition("@")
        return BusCameraSource(name, url or None)
    if s.isdigit():
        return DeviceSource(int(s), width, height, fps or 30.0, exposure)
    p = Path(s).expanduser()
    if s.startswith("/dev/"):
        return DeviceSource(s, width, height, fps or 30.0, exposure)
    if p.is_dir():
        return ImageFolderSource(p, fps or 10.0, loop)
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoFileSource(p, loop, fps)
    if p.suffix.lower() in IMAGE_EXTENSIONS or not p.exists():
        raise CameraError(
            f"camera source {s!r}: not a device index, /dev path, video file "
            f"({', '.join(VIDEO_EXTENSIONS)}) or image folder" + ("" if p.exists() else " (not found)")
        )
    return VideoFileSource(p, loop, fps)


class CameraPublisher:
    """Reads a source on its own thread and publishes every frame (paced at the source's fps)."""

    def __init__(self, node: Node, source: FrameSource, name: str, calibration: CameraCalibration | None = None):
        self.node, self.source, self.name = node, source, name
        source.open()
        cal = calibration or CameraCalibration(name=name, width=source.width or 640, height=source.height or 480)
        if source.width and (source.width, source.height) != (cal.width, cal.height):
            log.warning(
                "camera %s: frames are %dx%d, calibration is %dx%d: scaling K",
                name,
                source.width,
                source.height,
                cal.width,
                cal.height,
            )
            cal = cal.scaled(source.width, source.height)
        self.calibration = cal
        self._forward_info = calibration is None
        self.image = node.publisher(f"camera/{name}/image", Image)
        self.depth = node.publisher(f"camera/{name}/depth", Image)
        self.info = node.publisher(f"camera/{name}/info", CameraInfo, latched=True)
        self.published = 0
        self.done = threading.Event()
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"camera:{name}", daemon=True)
        self._thread.start()

    def _run(self):
        period = 1.0 / max(self.source.fps, 1e-3)
        next_t = time.monotonic()
        try:
            while self.node.running and not self.done.is_set():
                f = self.source.read()
                if f is None:
                    break
                stamp = f.stamp_ns
                # a camera from another bus brings its own calibration (its info) unless a file was given
                cal = f.calibration if self._forward_info and f.calibration is not None else self.calibration
                self.info.publish(cal.to_info(stamp_ns=stamp))
                if f.depth is not None:  # converted into a loan: on ipc, shared memory that publish() sends as is
                    depth = self.depth.loan(f.depth.shape, np.float32)
                    np.copyto(depth, f.depth, casting="unsafe")  # what astype(np.float32) does
                    self.depth.publish(Image.from_array(depth, "32FC1", stamp_ns=stamp))
                self.image.publish(Image.from_array(f.rgb, "rgb8", stamp_ns=stamp))
                self.published += 1
                next_t += period
                self.done.wait(max(0.0, next_t - time.monotonic()))
        except CameraError as e:
            self.error = e
            self.node.log.error("%s", e)
        finally:
            self.done.set()
            self.source.close()

    def close(self):
        self.done.set()
        self._thread.join(2)


def run_camera(
    node: Node,
    source: str | int = 0,
    name: str = "camera",
    calibration: str | None = None,
    graph_dir: str | None = None,
    width: int = 640,
    height: int = 480,
    fps: float | None = None,
    exposure: float | None = None,
    loop: bool = False,
) -> CameraPublisher:
    """Graph entry point: publish a device, video file or image folder as camera/<name>/*."""
    cal = load_calibration(calibration, graph_dir) if calibration else None
    src = open_source(source, width, height, fps, exposure, loop)
    return CameraPublisher(node, src, name, cal)
