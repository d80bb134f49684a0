"""Colour-blob tracker: HSV thresholds per object, depth back-projection, centre from the known shape.

A depth camera sees only the faces turned towards it, so the mean of the back-projected blob is pulled
towards the camera and upwards (~10 mm at 0.7 m for a 5 cm cube). The object's known shape and size
remove that bias:
- cube / cylinder (resting, axis vertical): the top face is seen whole from any camera above it, so
  the centroid of the points in the top plane is the top-face centre; the centre is size/2 below it;
- sphere: least-squares fit of a sphere of known radius to the visible points.
Without depth, the blob centroid's ray is intersected with the horizontal plane at the object's centre
height (object resting on the table at z = 0), a coarser fallback with a larger covariance.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import cv2
import numpy as np

from loopylab.perception.geometry import R_to_quat, make_T

# OpenCV hue is 0..180. Ranges are lists of (h_lo, h_hi); red wraps around 0.
NAMED_HUES: dict[str, list[tuple[int, int]]] = {
    "red": [(0, 8), (172, 180)],
    "orange": [(9, 20)],
    "yellow": [(21, 34)],
    "green": [(35, 85)],
    "cyan": [(86, 100)],
    "blue": [(101, 130)],
    "purple": [(131, 155)],
    "magenta": [(156, 171)],
}
ROT_UNKNOWN_VAR = 10.0  # rad^2: an angle the view cannot tell (a sphere's or cylinder's yaw)
OCCLUDED = object()  # marker result: the object is partly hidden (e.g. by the arm), no trustworthy centre


@dataclass
class ColourObject:
    """An object the blob tracker looks for."""

    label: str
    shape: str = "cube"  # cube | cylinder | sphere
    size: float = 0.05  # edge / diameter, m (cylinder height = size unless `height`)
    hue: list = field(default_factory=list)  # [(h_lo, h_hi), ...] OpenCV hue; empty: from colour/rgba
    colour: str = ""  # a NAMED_HUES key, e.g. "red"
    rgba: tuple = ()  # or the rendered colour: a hue window around it
    s_min: int = 110
    v_min: int = 40
    height: float | None = None
    id: int = 0

    def __post_init__(self):
        if self.shape not in ("cube", "cylinder", "sphere"):
            raise ValueError(f"object {self.label!r}: shape must be cube, cylinder or sphere, not {self.shape!r}")
        if not self.hue:
            if self.colour:
                if self.colour not in NAMED_HUES:
                    raise ValueError(
                        f"object {self.label!r}: unknown colour {self.colour!r} (known: {', '.join(NAMED_HUES)})"
                    )
                self.hue = list(NAMED_HUES[self.colour])
            elif self.rgba:
                self.hue = hue_window(self.rgba)
            else:
                word = self.label.split("_")[0]
                if word not in NAMED_HUES:
                    raise ValueError(
                        f"object {self.label!r}: give `colour`, `rgba` or `hue` "
                        f"(its label does not start with a known colour)"
                    )
                self.hue = list(NAMED_HUES[word])
        self.hue = [tuple(int(v) for v in h) for h in self.hue]

    @property
    def h(self) -> float:
        return float(self.height if self.height is not None else self.size)


def hue_window(rgba, half_width: int = 10) -> list[tuple[int, int]]:
    """OpenCV hue ranges (wrapping at 180) around the hue of an RGB(A) colour in 0..1."""
    h = colorsys.rgb_to_hsv(*[float(c) for c in rgba[:3]])[0] * 180.0
    lo, hi = h - half_width, h + half_width
    if lo < 0:
        return [(0, int(np.ceil(hi))), (int(np.floor(180 + lo)), 180)]
    if hi > 180:
        return [(int(np.floor(lo)), 180), (0, int(np.ceil(hi - 180)))]
    return [(int(np.floor(lo)), int(np.ceil(hi)))]


@dataclass
class BlobObservation:
    label: str
    position: np.ndarray  # object centre, base frame
    yaw: float | None  # about base z; None when the shape hides it
    covariance: np.ndarray  # 6x6, base frame
    pixels: int
    method: str  # top-face | sphere-fit | ray-plane

    @property
    def T(self) -> np.ndarray:
        c, s = np.cos(self.yaw or 0.0), np.sin(self.yaw or 0.0)
        return make_T(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]), self.position)

    @property
    def orientation(self) -> np.ndarray:
        return R_to_quat(self.T[:3, :3])


@dataclass
class BlobTrackerConfig:
    min_pixels: int = 25
    depth_sigma: float = 0.001  # depth noise per pixel, m (sim: quantisation; RealSense: ~1 % of z)
    systematic_sigma: float = 0.0012  # per-axis floor for what averaging cannot remove (edges, calibration)
    top_band: float = 0.004  # points within this of the top plane belong to the top face
    min_visible: float = 0.6  # refuse a blob showing less than this fraction of its top face / disc


def hsv_mask(hsv: np.ndarray, obj: ColourObject) -> np.ndarray:
    mask = np.zeros(hsv.shape[:2], np.uint8)
    for lo, hi in obj.hue:
        mask |= cv2.inRange(hsv, (lo, obj.s_min, obj.v_min), (hi, 255, 255))
    return mask


def largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


class BlobTracker:
    def __init__(self, objects: list[ColourObject], config: BlobTrackerConfig | None = None):
        self.objects = list(objects)
        self.config = config or BlobTrackerConfig()
        self.occluded: dict[str, int] = {}  # observations refused because too little of the object showed

    def observe(
        self, rgb: np.ndarray, depth: np.ndarray | None, K: np.ndarray, T_base_camera: np.ndarray
    ) -> list[BlobObservation]:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        out = []
        for obj in self.objects:
            blob = largest_component(hsv_mask(hsv, obj))
            n = int(blob.sum())
            if n < self.config.min_pixels:
                continue
            obs = None
            if depth is not None:
                obs = self._from_depth(obj, blob, depth, K, T_base_camera)
                if obs is OCCLUDED:
                    self.occluded[obj.label] = self.occluded.get(obj.label, 0) + 1
                    continue
            if obs is None:
                obs = self._from_ray(obj, blob, K, T_base_camera)
            if obs is not None:
                out.append(obs)
        return out

    # -- with depth ------------------------------------------------------------------
    def _points(self, blob, depth, K, T_base_camera):
        v, u = np.nonzero(blob)
        z = depth[v, u].astype(np.float64)
        ok = np.isfinite(z) & (z > 0)
        u, v, z = u[ok], v[ok], z[ok]
        x = (u - K[0, 2]) / K[0, 0] * z
        y = (v - K[1, 2]) / K[1, 1] * z
        pc = np.column_stack([x, y, z])
        return pc @ T_base_camera[:3, :3].T + T_base_camera[:3, 3], z

    def _from_depth(self, obj, blob, depth, K, T_base_camera) -> BlobObservation | None:
        cfg = self.config
        P, z = self._points(blob, depth, K, T_base_camera)
        if len(P) < cfg.min_pixels:
            return None
        m_per_px = float(np.median(z)) / K[0, 0]
        if obj.shape == "sphere":
            r_px = obj.size / 2 / m_per_px
            if len(P) < cfg.min_visible * np.pi * r_px**2 * 0.9:  # the disc is partly hidden
                return OCCLUDED
            return self._sphere(obj, P, T_base_camera[:3, 3], m_per_px, len(P))
        z_top = float(np.percentile(P[:, 2], 95))
        top = P[np.abs(P[:, 2] - z_top) < max(cfg.top_band, 3 * cfg.depth_sigma)]
        if len(top) < cfg.min_pixels // 2:
            return None
        z_top = float(np.median(top[:, 2]))
        # Side faces are vertical: their points just under the top edge fall ON the top outline in xy,
        # weighting the near edges. The outline's extent is immune to that weight, its centroid is not.
        pts = top[:, :2].astype(np.float32)
        yaw, s_yaw = None, np.sqrt(ROT_UNKNOWN_VAR)
        if obj.shape == "cube":
            (cx, cy), _, ang = cv2.minAreaRect(pts)
            yaw = float(np.radians(ang) % (np.pi / 2))  # a cube's yaw is known modulo 90 deg
            if yaw > np.pi / 4:
                yaw -= np.pi / 2
            s_yaw = float(np.clip(2 * m_per_px / max(obj.size, 1e-3), 0.01, 0.5))
        else:
            (cx, cy), _ = cv2.minEnclosingCircle(pts)
        centre = np.array([cx, cy, z_top - obj.h / 2])
        # Partly hidden (the arm above it, a neighbour in front): the visible top is smaller than the
        # known face, and its centre is not the object's. Refuse, or widen by what is missing.
        expected = obj.size**2 if obj.shape == "cube" else np.pi * obj.size**2 / 4
        visible = min(1.0, cv2.contourArea(cv2.convexHull(pts)) / expected)
        if visible < cfg.min_visible:
            return OCCLUDED
        # An outline edge moves by up to a pixel when the blob gains or loses a column.
        s_xy = np.hypot(np.hypot(cfg.systematic_sigma, 0.5 * m_per_px), max(0.0, 0.9 - visible) * obj.size / 2)
        s_z = np.hypot(cfg.systematic_sigma, cfg.depth_sigma / np.sqrt(len(top)))
        cov = np.diag([s_xy**2, s_xy**2, s_z**2, 0.02**2, 0.02**2, s_yaw**2])
        return BlobObservation(obj.label, centre, yaw, cov, len(P), "top-face")

    def _sphere(self, obj, P, cam_pos, m_per_px, n) -> BlobObservation:
        r = obj.size / 2
        # start behind the visible cap, away from the camera
        c = P.mean(axis=0)
        ray = c - cam_pos
        c = c + ray / np.linalg.norm(ray) * r * 0.5
        for _ in range(15):  # Gauss-Newton on |p - c| = r
            d = P - c
            dist = np.linalg.norm(d, axis=1)
            res = dist - r
            J = -d / dist[:, None]
            step = np.linalg.lstsq(J, -res, rcond=None)[0]
            c = c + step
            if np.linalg.norm(step) < 1e-6:
                break
        resid = float(np.sqrt(np.mean(res**2)))
        JtJ_inv = np.linalg.pinv(J.T @ J)
        s2 = max(resid, self.config.depth_sigma) ** 2
        cov3 = s2 * JtJ_inv + np.eye(3) * self.config.systematic_sigma**2
        cov = np.zeros((6, 6))
        cov[:3, :3] = cov3
        cov[3:, 3:] = np.eye(3) * ROT_UNKNOWN_VAR
        return BlobObservation(obj.label, c, None, cov, n, "sphere-fit")

    # -- without depth ------------------------------------------------------------------
    def _from_ray(self, obj, blob, K, T_base_camera) -> BlobObservation | None:
        ys, xs = np.nonzero(blob)
        u, v = xs.mean(), ys.mean()
        d = T_base_camera[:3, :3] @ np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
        o = T_base_camera[:3, 3]
        zc = obj.h / 2
        if abs(d[2]) < 1e-6:
            return None
        t = (zc - o[2]) / d[2]
        if t <= 0:
            return None
        centre = o + t * d
        # the silhouette centroid is off the centre by up to ~half the object's height times the slant
        slant = np.hypot(d[0], d[1]) / abs(d[2])
        # A point-symmetric object's silhouette centroid is its centre's projection, up to perspective.
        s_xy = 0.002 + 0.1 * obj.h * slant
        cov = np.diag([s_xy**2, s_xy**2, 0.002**2, 0.02**2, 0.02**2, ROT_UNKNOWN_VAR])
        return BlobObservation(obj.label, centre, None, cov, len(xs), "ray-plane")
