"""Render a CameraSpec: RGB, depth in metres, and intrinsics consistent with the image.

TinyRenderer (CPU) by default; the EGL plugin when a GPU is present (`use_egl`). Intrinsics follow
OpenCV (pixel centres at integers): f = (H/2)/tan(fov_v/2), cx = (W-1)/2, cy = (H-1)/2.
`T_base_camera` is the camera pose in the base frame in OpenCV axes (x right, y down, z forward).
"""

from __future__ import annotations

import glob
import os
import pkgutil

import numpy as np
import pybullet as p

from loopylab.world.scene import CameraSpec

_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def gpu_present() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or bool(os.environ.get("LOOPYLAB_EGL"))


def use_egl(cid: int) -> bool:
    """Load the EGL renderer plugin into client `cid`; False (TinyRenderer stays) if it cannot load."""
    try:
        loader = pkgutil.get_loader("eglRenderer")
        if loader is None:
            return False
        return p.loadPlugin(loader.get_filename(), "_eglRendererPlugin", physicsClientId=cid) >= 0
    except Exception:
        return False


def intrinsics(cam: CameraSpec) -> np.ndarray:
    f = (cam.height / 2) / np.tan(np.radians(cam.fov_deg) / 2)
    return np.array([[f, 0, (cam.width - 1) / 2], [0, f, (cam.height - 1) / 2], [0, 0, 1.0]])


def camera_world_pose(cam: CameraSpec, ee_pose=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eye, target, up) in the base frame; wrist cameras are carried by the end effector."""
    eye, tgt, up = (np.asarray(v, float) for v in (cam.position, cam.target, cam.up))
    if cam.mount == "wrist":
        if ee_pose is None:
            raise ValueError(f"camera {cam.name!r} is wrist-mounted: the end-effector pose is needed")
        pos, orn = ee_pose
        R = np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        eye, tgt, up = pos + R @ eye, pos + R @ tgt, R @ up
    return eye, tgt, up


def render(
    cid: int,
    cam: CameraSpec,
    ee_pose=None,
    renderer: int = p.ER_TINY_RENDERER,
    out: tuple[np.ndarray, np.ndarray] | None = None,
):
    """-> rgb (H,W,3) uint8, depth (H,W) float32 metres, K (3,3), T_base_camera (4,4).

    `out`: the (rgb, depth) arrays to write the images into (a publisher's loans: `Publisher.loan`), else new ones."""
    eye, tgt, up = camera_world_pose(cam, ee_pose)
    view = p.computeViewMatrix(eye.tolist(), tgt.tolist(), up.tolist(), physicsClientId=cid)
    proj = p.computeProjectionMatrixFOV(cam.fov_deg, cam.width / cam.height, cam.near, cam.far, physicsClientId=cid)
    _, _, rgba, zbuf, _ = p.getCameraImage(
        cam.width, cam.height, view, proj, renderer=renderer, flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=cid
    )
    hw = (cam.height, cam.width)
    rgb, depth = out if out is not None else (np.empty((*hw, 3), np.uint8), np.empty(hw, np.float32))
    np.copyto(rgb, np.asarray(rgba, np.uint8).reshape(*hw, 4)[:, :, :3])
    z = np.asarray(zbuf, np.float32).reshape(hw)
    np.divide(cam.far * cam.near, cam.far - (cam.far - cam.near) * z, out=depth)
    V = np.asarray(view).reshape(4, 4).T  # PyBullet matrices are column-major
    T = np.linalg.inv(V) @ _GL_TO_CV
    return rgb, depth, intrinsics(cam), T
