"""Camera calibration files: intrinsics and extrinsics in TOML, kept next to the graph that uses them.

[camera]            name, width, height
[intrinsics]        K (3 rows), D (k1 k2 p1 p2 k3), reprojection_error_px, views
[extrinsics]        mount = "world" (T_base_camera) | "wrist" (T_flange_camera: camera in the EE frame),
                    each as position [m] + orientation_xyzw
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomli_w

from loopylab.bus import CameraInfo
from loopylab.perception.geometry import T_from_pose, pose_from_T


class CalibrationFileError(ValueError):
    """A calibration file is missing, unreadable or inconsistent."""


@dataclass
class CameraCalibration:
    name: str = "camera"
    width: int = 640
    height: int = 480
    K: np.ndarray = field(default_factory=lambda: np.array([[600.0, 0, 319.5], [0, 600.0, 239.5], [0, 0, 1]]))
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    mount: str = "world"  # world | wrist
    T_base_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    T_flange_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    reprojection_error_px: float | None = None
    views: int = 0

    def __post_init__(self):
        self.K = np.asarray(self.K, float).reshape(3, 3)
        self.D = np.asarray(self.D, float).ravel()
        self.T_base_camera = np.asarray(self.T_base_camera, float).reshape(4, 4)
        self.T_flange_camera = np.asarray(self.T_flange_camera, float).reshape(4, 4)
        if self.mount not in ("world", "wrist"):
            raise CalibrationFileError(f"camera {self.name!r}: mount must be 'world' or 'wrist', not {self.mount!r}")

    def to_info(self, **kw) -> CameraInfo:
        return CameraInfo(
            width=self.width,
            height=self.height,
            K=self.K,
            D=self.D,
            T_base_camera=self.T_base_camera,
            frame_id=f"camera/{self.name}",
            **kw,
        )

    @classmethod
    def from_info(cls, info: CameraInfo, name: str = "camera") -> CameraCalibration:
        D = np.asarray(info.D, float)
        return cls(
            name=name,
            width=int(info.width),
            height=int(info.height),
            K=np.array(info.K),
            D=D if D.size else np.zeros(5),
            T_base_camera=np.array(info.T_base_camera),
        )

    def scaled(self, width: int, height: int) -> CameraCalibration:
        """The same camera at another resolution (a device may not honour the requested size)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, :] *= sx
        K[1, :] *= sy
        K[0, 2] = (self.K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (self.K[1, 2] + 0.5) * sy - 0.5
        return CameraCalibration(
            self.name,
            width,
            height,
            K,
            self.D,
            self.mount,
            self.T_base_camera,
            self.T_flange_camera,
            self.reprojection_error_px,
            self.views,
        )

    def to_dict(self) -> dict:
        intr = {"K": self.K.tolist(), "D": self.D.tolist(), "views": int(self.views)}
        if self.reprojection_error_px is not None:
            intr["reprojection_error_px"] = float(self.reprojection_error_px)
        T = self.T_base_camera if self.mount == "world" else self.T_flange_camera
        pos, quat = pose_from_T(T)
        return {
            "camera": {"name": self.name, "width": int(self.width), "height": int(self.height)},
            "intrinsics": intr,
            "extrinsics": {"mount": self.mount, "position": pos.tolist(), "orientation_xyzw": quat.tolist()},
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "calibration") -> CameraCalibration:
        try:
            cam, intr, ext = d.get("camera", {}), d["intrinsics"], d.get("extrinsics", {})
            mount = ext.get("mount", "world")
            T = np.eye(4)
            if "position" in ext:
                T = T_from_pose(ext["position"], ext.get("orientation_xyzw", [0, 0, 0, 1]))
            elif "T" in ext:
                T = np.asarray(ext["T"], float)
            return cls(
                name=cam.get("name", "camera"),
                width=int(cam.get("width", 640)),
                height=int(cam.get("height", 480)),
                K=intr["K"],
                D=intr.get("D", [0] * 5),
                mount=mount,
                T_base_camera=T if mount == "world" else np.eye(4),
                T_flange_camera=T if mount == "wrist" else np.eye(4),
                reprojection_error_px=intr.get("reprojection_error_px"),
                views=int(intr.get("views", 0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CalibrationFileError(f"{where}: {type(e).__name__}: {e}") from None


def resolve(path: str | Path, base_dir: str | Path | None = None) -> Path:
    """A calibration path as written in a graph: relative paths are relative to the graph's folder
    (`base_dir`, else $LOOPYLAB_GRAPH_DIR, else the working directory)."""
    p = Path(path).expanduser()
    base_dir = base_dir or os.environ.get("LOOPYLAB_GRAPH_DIR")
    return p if p.is_absolute() or not base_dir else Path(base_dir) / p


def load_calibration(path: str | Path, base_dir: str | Path | None = None) -> CameraCalibration:
    p = resolve(path, base_dir)
    try:
        d = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise CalibrationFileError(
            f"calibration file {p} does not exist (create one with `loopylab camera calibrate`)"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise CalibrationFileError(f"{p}: not valid TOML: {e}") from None
    return CameraCalibration.from_dict(d, str(p))


def save_calibration(cal: CameraCalibration, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(f"# camera calibration for {cal.name!r}, written by loopylab\n" + tomli_w.dumps(cal.to_dict()))
    tmp.replace(p)  # atomic: an interrupted write never leaves half a file
    return p
