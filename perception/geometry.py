"""Rigid transforms: 4x4 matrices, quaternions (xyzw, as on the bus) and OpenCV rotation vectors."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial.transform import Rotation


def make_T(R: np.ndarray | None = None, t=None) -> np.ndarray:
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    if t is not None:
        T[:3, 3] = np.asarray(t, float).ravel()
    return T


def invert(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return make_T(R.T, -R.T @ t)


def rvec_to_R(rvec) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(rvec, float).reshape(3, 1))[0]


def R_to_rvec(R: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(R, float))[0].ravel()


def T_from_rvec(rvec, tvec) -> np.ndarray:
    return make_T(rvec_to_R(rvec), tvec)


def quat_to_R(q_xyzw) -> np.ndarray:
    return Rotation.from_quat(np.asarray(q_xyzw, float)).as_matrix()


def R_to_quat(R: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(R).as_quat()


def T_from_pose(position, orientation_xyzw) -> np.ndarray:
    return make_T(quat_to_R(orientation_xyzw), position)


def pose_from_T(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return T[:3, 3].copy(), R_to_quat(T[:3, :3])


def rotation_angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Angle (rad) of the rotation taking Ra to Rb."""
    c = (np.trace(Ra.T @ Rb) - 1.0) / 2.0
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


def look_at(eye, target, up=(0, 0, 1)) -> np.ndarray:
    """Pose of an OpenCV camera (x right, y down, z forward) at `eye` looking at `target`."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking along `up`: any perpendicular will do
        x = np.cross(z, [1.0, 0, 0] if abs(z[0]) < 0.9 else [0, 1.0, 0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_T(np.column_stack([x, y, z]), eye)


def rotate_covariance(cov6: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Express a 6x6 (translation, small-rotation) covariance in a frame rotated by R."""
    J = np.zeros((6, 6))
    J[:3, :3] = R
    J[3:, 3:] = R
    return J @ cov6 @ J.T
