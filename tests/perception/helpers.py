"""Rendered scenes shared by the perception tests (PyBullet TinyRenderer, exact ground truth)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pybullet as p

from loopylab.perception.camera_config import CameraCalibration, save_calibration
from loopylab.perception.geometry import look_at, make_T
from loopylab.perception.synthetic import SyntheticScene

TABLE_RGBA = (0.75, 0.65, 0.5, 1.0)
COLOURED = [  # label, shape, size, rgba, centre
    ("red_block", "cube", 0.05, (0.85, 0.1, 0.1, 1.0), (0.50, 0.00, 0.025)),
    ("blue_ball", "sphere", 0.06, (0.1, 0.2, 0.85, 1.0), (0.45, 0.14, 0.03)),
    ("green_cylinder", "cylinder", 0.05, (0.1, 0.7, 0.2, 1.0), (0.60, -0.13, 0.025)),
]


def yaw_T(yaw: float, t) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return make_T(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]), t)


def add_coloured(scene: SyntheticScene, label, shape, size, rgba, centre, yaw=0.0) -> int:
    cid = scene.client
    if shape == "cube":
        return scene.add_box(label, size, rgba, yaw_T(yaw, centre)).body
    if shape == "sphere":
        vis = p.createVisualShape(p.GEOM_SPHERE, radius=size / 2, rgbaColor=list(rgba), physicsClientId=cid)
    else:
        vis = p.createVisualShape(
            p.GEOM_CYLINDER, radius=size / 2, length=size, rgbaColor=list(rgba), physicsClientId=cid
        )
    return p.createMultiBody(0, -1, vis, basePosition=list(centre), physicsClientId=cid)


def coloured_scene() -> SyntheticScene:
    s = SyntheticScene(floor_rgba=TABLE_RGBA)
    for label, shape, size, rgba, centre in COLOURED:
        add_coloured(s, label, shape, size, rgba, centre, yaw=0.3)
    return s


def view_from(distance: float, tilt_deg: float, azimuth: float, target=(0, 0, 0)) -> np.ndarray:
    """Camera pose at `distance` from `target`, its axis `tilt_deg` from the vertical."""
    t = np.radians(tilt_deg)
    d = np.array([np.sin(t) * np.cos(azimuth), np.sin(t) * np.sin(azimuth), np.cos(t)])
    up = (np.cos(azimuth + 1.0), np.sin(azimuth + 1.0), 0.0)
    return look_at(np.asarray(target) + distance * d, target, up=up)


def write_table_camera(
    folder: Path, T: np.ndarray, K: np.ndarray, frames: int = 1, width: int = 320, height: int = 240
) -> Path:
    """The coloured scene seen by camera "table" at pose T, as a camera source replays it: RGB png and
    depth .npy frames in `folder`/frames, the calibration in `folder`/table.toml. Returns the frames folder."""
    frames_dir = folder / "frames"
    frames_dir.mkdir()
    with coloured_scene() as s:
        r = s.render(T, K, width, height)
    for i in range(frames):
        cv2.imwrite(str(frames_dir / f"{i:04d}.png"), cv2.cvtColor(r.rgb, cv2.COLOR_RGB2BGR))
        np.save(frames_dir / f"{i:04d}.depth.npy", r.depth)
    save_calibration(CameraCalibration("table", width, height, K, np.zeros(5), "world", T), folder / "table.toml")
    return frames_dir
