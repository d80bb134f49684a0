"""Square fiducial markers (ArUco and AprilTag dictionaries of cv2.aruco): detection, pose, covariance.

Pose comes from `solvePnPGeneric(..., SOLVEPNP_IPPE_SQUARE)`, which returns BOTH poses that fit a
planar square. Far away or seen face-on, the two fit almost equally well and the wrong one is a
"flip" (the marker's normal mirrored about the line of sight, tens of degrees off). We therefore
keep both and call an observation ambiguous unless the runner-up's reprojection error is clearly
larger than the winner's AND larger than the pixel noise could explain. Ambiguous observations are
resolved later by the tracker (temporal consistency, an expected normal), or reported with an
uninformative orientation: a flip is never reported as a confident pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from loopylab.perception.geometry import T_from_rvec, rvec_to_R

# Orientation variance (rad^2) reported when the orientation is unknown (ambiguous, unresolved).
UNKNOWN_ROT_VAR = 10.0
HALF_FRAC = 0.45  # edge-profile half-width, as a fraction of the border's width


def dictionary_by_name(name: str) -> cv2.aruco.Dictionary:
    attr = name if name.startswith("DICT_") else f"DICT_{name.upper()}"
    if not hasattr(cv2.aruco, attr):
        known = sorted(a for a in dir(cv2.aruco) if a.startswith("DICT_"))
        raise ValueError(f"unknown marker dictionary {name!r}; one of: {', '.join(known)}")
    return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, attr))


def marker_object_points(size: float) -> np.ndarray:
    """Corners TL, TR, BR, BL in the marker frame (x right, y up, z out of the face), as IPPE_SQUARE wants."""
    h = size / 2.0
    return np.array([[-h, h, 0], [h, h, 0], [h, -h, 0], [-h, -h, 0]], np.float64)


@dataclass
class MarkerObservation:
    id: int
    corners: np.ndarray  # (4, 2) pixels, TL TR BR BL
    T_camera_marker: np.ndarray  # best IPPE solution
    T_camera_marker_alt: np.ndarray  # the other one
    reproj_px: float  # RMS reprojection error of the best solution
    reproj_alt_px: float
    ambiguous: bool
    covariance: np.ndarray = field(default_factory=lambda: np.zeros((6, 6)))  # camera frame: x y z rx ry rz
    covariance_alt: np.ndarray = field(default_factory=lambda: np.zeros((6, 6)))

    @property
    def side_px(self) -> float:
        return float(np.mean(np.linalg.norm(self.corners - np.roll(self.corners, 1, 0), axis=1)))


@dataclass
class MarkerDetectorConfig:
    dictionary: str = "DICT_4X4_50"
    pixel_sigma: float = 0.15  # corner noise floor, px (edge-fitted corners on a sharp image)
    ambiguity_ratio: float = 2.0  # runner-up must fit this many times worse ...
    ambiguity_sigmas: float = 3.0  # ... and worse than this many pixel sigmas, else ambiguous
    min_side_px: float = 12.0  # smaller markers are ignored (unreliable corners)


def refine_corners_by_edges(gray: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Corners as intersections of the four sides, each side a line fitted to subpixel edge points.

    OpenCV's window-based corner refinement is biased at the L-shaped outer corners of a marker (the
    square comes out ~1.5 % small and up to 1 deg rotated: +1.5 % depth). Sampling the intensity
    profile across each side and taking the centroid of its gradient, then fitting a line over the
    side's whole length, averages out aliasing and noise (corners within ~0.1 px on rendered images).
    """
    side = float(np.mean(np.linalg.norm(corners - np.roll(corners, 1, 0), axis=1)))
    # work on the marker's neighbourhood only (a float copy of the whole frame costs more than the fit)
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 6, 0)
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 7
    g = gray[y0:y1, x0:x1].astype(np.float32)
    origin = np.array([x0, y0], float)
    corners = corners - origin
    step = 0.25
    lines = []
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        d = b - a
        length = float(np.linalg.norm(d))
        if length < 1e-6:
            return corners + origin
        normal = np.array([d[1], -d[0]]) / length
        # stay inside the black border (1 of ~6 cells across): its width is the distance to the opposite
        # side over 6, which on a sheared (tilted) marker is much less than the side's length over 6
        across = abs(float(normal @ ((corners[(i + 2) % 4] + corners[(i + 3) % 4]) / 2 - a)))
        half = float(np.clip(across / 6 * HALF_FRAC, 1.5, 4.0))
        offs = np.arange(-half, half + 1e-9, step)
        centres = offs[:-1] + step / 2
        # away from the corners: near an acute corner the profile would cross the neighbouring side
        ends = []
        for c, other in ((a, corners[i - 1]), (b, corners[(i + 2) % 4])):
            e = other - c
            sin = abs(float(np.cross(d / length, e / max(np.linalg.norm(e), 1e-9))))
            ends.append(min(0.4, max(0.12, (half + 1.0) / max(sin, 0.2) / length)))
        pts = a + np.linspace(ends[0], 1 - ends[1], max(8, int(length)))[:, None] * d
        s = (pts[:, None, :] + offs[None, :, None] * normal).astype(np.float32)
        vals = cv2.remap(g, s[..., 0], s[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        grad = np.abs(np.diff(vals, axis=1))
        grad = np.maximum(grad - 0.2 * grad.max(axis=1, keepdims=True), 0)  # ignore noise tails
        w = grad.sum(1)
        ok = w > 1e-6
        if ok.sum() < 4:
            return corners + origin
        edge = pts[ok] + ((grad[ok] * centres).sum(1) / w[ok])[:, None] * normal
        lines.append(_fit_line(edge, w[ok]))
    out = np.empty((4, 2))
    for i in range(4):  # corner i joins side i-1 and side i
        (p1, d1), (p2, d2) = lines[i - 1], lines[i]
        A = np.column_stack([d1, -d2])
        if abs(np.linalg.det(A)) < 1e-6:
            return corners + origin
        out[i] = p1 + np.linalg.solve(A, p2 - p1)[0] * d1
    if np.abs(out - corners).max() > max(3.0, 0.2 * side):  # refinement ran off: keep the detector's corners
        return corners + origin
    return out + origin


def _fit_line(pts: np.ndarray, weights: np.ndarray, iterations: int = 2):
    """(point, unit direction) of the weighted total-least-squares line, with points far off it (an inner
    cell's edge caught in the profile) down-weighted once more."""
    w = weights
    for _ in range(iterations):
        c = (pts * w[:, None]).sum(0) / w.sum()
        d = pts - c
        sxx, syy, sxy = (w * d[:, 0] ** 2).sum(), (w * d[:, 1] ** 2).sum(), (w * d[:, 0] * d[:, 1]).sum()
        a = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # principal axis of the 2x2 scatter, closed form
        direction = np.array([np.cos(a), np.sin(a)])
        r = d[:, 1] * direction[0] - d[:, 0] * direction[1]
        w = weights / (1.0 + (r / 0.3) ** 2)  # Cauchy-like: residuals beyond ~0.3 px count less
    return c, direction


def pose_jacobian(obj: np.ndarray, T: np.ndarray, K: np.ndarray, D: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d(pixels)/d(translation, rotation) for a perturbation applied in the camera frame: (2N, 6)."""
    R, t = T[:3, :3], T[:3, 3]

    def project(R_, t_):
        pts, _ = cv2.projectPoints(obj, cv2.Rodrigues(R_)[0], t_, K, D)
        return pts.reshape(-1)

    base = project(R, t)
    J = np.zeros((base.size, 6))
    for i in range(3):
        dt = np.zeros(3)
        dt[i] = eps
        J[:, i] = (project(R, t + dt) - base) / eps
        w = np.zeros(3)
        w[i] = eps
        # rotate about the marker's origin, expressed in camera axes: R' = exp(w) R
        J[:, 3 + i] = (project(rvec_to_R(w) @ R, t) - base) / eps
    return J


def pose_covariance(obj, T, K, D, sigma_px: float) -> np.ndarray:
    J = pose_jacobian(obj, T, K, D)
    return sigma_px**2 * np.linalg.pinv(J.T @ J)


class MarkerDetector:
    """Finds markers in a grey image and estimates each one's pose in the camera frame."""

    def __init__(self, config: MarkerDetectorConfig | None = None):
        self.config = config or MarkerDetectorConfig()
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_NONE  # ours is better: refine_corners_by_edges
        self.detector = cv2.aruco.ArucoDetector(dictionary_by_name(self.config.dictionary), params)

    def detect(self, gray: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if gray.ndim == 3:
            gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
        corners, ids, _ = self.detector.detectMarkers(gray)
        if ids is None:
            return []
        return [
            (int(i), refine_corners_by_edges(gray, c.reshape(4, 2).astype(np.float64)))
            for i, c in zip(ids.ravel(), corners)
        ]

    def estimate(
        self, marker_id: int, corners: np.ndarray, size: float, K: np.ndarray, D: np.ndarray | None = None
    ) -> MarkerObservation | None:
        D = np.zeros(5) if D is None else np.asarray(D, float)
        obj = marker_object_points(size)
        n, rvecs, tvecs, errs = cv2.solvePnPGeneric(obj, corners.reshape(4, 1, 2), K, D, flags=cv2.SOLVEPNP_IPPE_SQUARE)
        if n == 0:
            return None
        sols = sorted(zip(np.ravel(errs), rvecs, tvecs), key=lambda s: s[0])
        sols = [s for s in sols if s[2].ravel()[2] > 0] or sols  # in front of the camera
        err, rv, tv = sols[0]
        T = T_from_rvec(rv, tv)
        if len(sols) > 1:
            err_alt, rv_alt, tv_alt = sols[1]
            T_alt = T_from_rvec(rv_alt, tv_alt)
        else:
            err_alt, T_alt = float("inf"), T
        cfg = self.config
        residual = cv2.projectPoints(obj, cv2.Rodrigues(T[:3, :3])[0], T[:3, 3], K, D)[0].reshape(4, 2) - corners
        # 8 measurements, 6 unknowns: the residual alone underestimates noise; keep a floor.
        sigma = max(cfg.pixel_sigma, float(np.sqrt(np.mean(residual**2) * 8 / 2)))
        ambiguous = not (err_alt > cfg.ambiguity_ratio * err and err_alt > cfg.ambiguity_sigmas * sigma)
        return MarkerObservation(
            marker_id,
            corners,
            T,
            T_alt,
            float(err),
            float(err_alt),
            ambiguous,
            pose_covariance(obj, T, K, D, sigma),
            pose_covariance(obj, T_alt, K, D, sigma),
        )

    def observe(
        self, gray: np.ndarray, sizes: dict[int, float], K: np.ndarray, D: np.ndarray | None = None
    ) -> list[MarkerObservation]:
        """Detect and estimate every marker whose id has a known size (others are ignored)."""
        out = []
        for mid, corners in self.detect(gray):
            size = sizes.get(mid)
            if size is None:
                continue
            side = float(np.mean(np.linalg.norm(corners - np.roll(corners, 1, 0), axis=1)))
            if side < self.config.min_side_px:
                continue
            obs = self.estimate(mid, corners, size, K, D)
            if obs is not None:
                out.append(obs)
        return out


def offset_pose(T_camera_marker: np.ndarray, cov: np.ndarray, T_marker_object: np.ndarray):
    """Pose and covariance of a rigidly attached object frame (e.g. the centre of the cube under a marker)."""
    T = T_camera_marker @ T_marker_object
    r = T_camera_marker[:3, :3] @ T_marker_object[:3, 3]  # lever arm in camera axes
    J = np.eye(6)
    # p_obj = p_marker + R r_local; a rotation w moves it by w x r = -[r]x w
    J[:3, 3:] = -np.array([[0, -r[2], r[1]], [r[2], 0, -r[0]], [-r[1], r[0], 0]])
    return T, J @ cov @ J.T


__all__ = [
    "UNKNOWN_ROT_VAR",
    "MarkerDetector",
    "MarkerDetectorConfig",
    "MarkerObservation",
    "dictionary_by_name",
    "marker_object_points",
    "offset_pose",
    "pose_covariance",
    "refine_corners_by_edges",
]
