"""Rendered scenes with known ground truth, for tests, benchmarks and calibration dry runs.

PyBullet DIRECT + TinyRenderer (CPU). A scene holds textured marker quads, coloured boxes and an
optional floor; `render()` takes an OpenCV camera pose and intrinsics and returns RGB, metric depth and
the segmentation mask. Facts that matter for millimetre accuracy:
- PyBullet matrices are column-major (`reshape(4, 4).T`); the GL camera looks down -z with y up, the
  OpenCV camera down +z with y down (`diag(1, -1, -1)` between them);
- the depth buffer is non-linear: z = far*near / (far - (far - near) * d);
- the projection below is built from K directly, so the principal point is where K says it is.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import cv2
import numpy as np
import pybullet as p

from loopylab.perception.geometry import invert, pose_from_T

GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def pinhole_K(width: int, height: int, fov_v_deg: float) -> np.ndarray:
    """Intrinsics of an ideal camera with a vertical field of view (pixel centres at integer coordinates)."""
    f = (height / 2.0) / np.tan(np.radians(fov_v_deg) / 2.0)
    return np.array([[f, 0, (width - 1) / 2.0], [0, f, (height - 1) / 2.0], [0, 0, 1.0]])


def gl_projection(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """OpenGL projection matrix that TinyRenderer turns into images with exactly the intrinsics K."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # TinyRenderer samples pixel column u at window x = u and counts rows from the bottom, so OpenCV
    # row v sits at window y = height - 1 - v (measured: corners land within 0.2 px of the projection).
    return np.array(
        [
            [2 * fx / width, 0, 1 - 2 * cx / width, 0],
            [0, 2 * fy / height, 2 * (cy + 1.0) / height - 1, 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ]
    )


def marker_texture(
    marker_id: int, dictionary: int = cv2.aruco.DICT_4X4_50, px_per_cell: int = 64, margin_cells: int = 1
) -> tuple[np.ndarray, float]:
    """RGB texture of a marker with a white quiet zone; returns (image, quad side / marker side)."""
    d = cv2.aruco.getPredefinedDictionary(dictionary)
    cells = d.markerSize + 2
    img = cv2.aruco.generateImageMarker(d, marker_id, cells * px_per_cell)
    img = cv2.copyMakeBorder(img, *(4 * [margin_cells * px_per_cell]), cv2.BORDER_CONSTANT, value=255)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), (cells + 2 * margin_cells) / cells


@dataclass
class Rendered:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32, metres along the optical axis
    seg: np.ndarray  # (H, W) int32 body id (-1 background)
    K: np.ndarray
    T_world_camera: np.ndarray


@dataclass
class SceneObject:
    body: int
    label: str
    kind: str  # marker | box
    T_world: np.ndarray
    size: tuple = ()
    marker_id: int = -1


class SyntheticScene:
    """A PyBullet DIRECT world used only for rendering (no stepping needed)."""

    def __init__(self, floor: bool = True, floor_rgba=(0.55, 0.55, 0.55, 1)):
        self.client = p.connect(p.DIRECT)
        self._tmp = tempfile.TemporaryDirectory(prefix="loopylab-synth-")
        self.objects: dict[str, SceneObject] = {}
        if floor:
            vis = p.createVisualShape(
                p.GEOM_BOX, halfExtents=[2, 2, 0.005], rgbaColor=floor_rgba, physicsClientId=self.client
            )
            p.createMultiBody(0, -1, vis, basePosition=[0, 0, -0.005], physicsClientId=self.client)

    def close(self):
        if self.client is not None:
            p.disconnect(self.client)
            self.client = None
            self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _quad_obj(self, half: float) -> str:
        path = os.path.join(self._tmp.name, f"quad_{half:.6f}.obj")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(
                    f"v {-half} {-half} 0\nv {half} {-half} 0\nv {half} {half} 0\nv {-half} {half} 0\n"
                    "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\n"
                    "f 1/1/1 2/2/1 3/3/1\nf 1/1/1 3/3/1 4/4/1\n"
                )
        return path

    def add_marker(
        self, label: str, marker_id: int, size: float, T_world: np.ndarray, dictionary: int = cv2.aruco.DICT_4X4_50
    ) -> SceneObject:
        """A flat marker of black-square side `size` (m); its frame: x right, y up, z out of the face."""
        tex, ratio = marker_texture(marker_id, dictionary)
        png = os.path.join(self._tmp.name, f"marker_{dictionary}_{marker_id}.png")
        cv2.imwrite(png, cv2.cvtColor(tex, cv2.COLOR_RGB2BGR))
        vis = p.createVisualShape(p.GEOM_MESH, fileName=self._quad_obj(size * ratio / 2), physicsClientId=self.client)
        pos, quat = pose_from_T(T_world)
        body = p.createMultiBody(0, -1, vis, basePosition=pos, baseOrientation=quat, physicsClientId=self.client)
        tid = p.loadTexture(png, physicsClientId=self.client)
        p.changeVisualShape(body, -1, textureUniqueId=tid, rgbaColor=[1, 1, 1, 1], physicsClientId=self.client)
        obj = SceneObject(body, label, "marker", T_world.copy(), (size,), marker_id)
        self.objects[label] = obj
        return obj

    def add_box(self, label: str, size, rgba, T_world: np.ndarray) -> SceneObject:
        size = tuple(float(s) for s in np.broadcast_to(np.asarray(size, float), (3,)))
        vis = p.createVisualShape(
            p.GEOM_BOX, halfExtents=[s / 2 for s in size], rgbaColor=list(rgba), physicsClientId=self.client
        )
        pos, quat = pose_from_T(T_world)
        body = p.createMultiBody(0, -1, vis, basePosition=pos, baseOrientation=quat, physicsClientId=self.client)
        obj = SceneObject(body, label, "box", T_world.copy(), size)
        self.objects[label] = obj
        return obj

    def move(self, label: str, T_world: np.ndarray) -> None:
        obj = self.objects[label]
        pos, quat = pose_from_T(T_world)
        p.resetBasePositionAndOrientation(obj.body, pos, quat, physicsClientId=self.client)
        obj.T_world = T_world.copy()

    def render(
        self,
        T_world_camera: np.ndarray,
        K: np.ndarray,
        width: int = 640,
        height: int = 480,
        near: float = 0.02,
        far: float = 5.0,
        light_direction=(0.3, -0.4, 1.0),
        shadow: bool = False,
        supersample: int = 1,
    ) -> Rendered:
        """Render through an OpenCV camera. `supersample` > 1 renders n times larger and averages
        n x n blocks: edges then carry partial coverage as in a real sensor (TinyRenderer does not
        anti-alias, and staircase edges bias subpixel corners by up to ~1 px)."""
        if supersample > 1:
            n = supersample
            Kn = K.copy()
            Kn[:2, :2] *= n
            Kn[:2, 2] = K[:2, 2] * n + (n - 1) / 2.0  # low-res pixel u spans high-res n*u .. n*u+n-1
            hi = self.render(T_world_camera, Kn, width * n, height * n, near, far, light_direction, shadow)
            rgb = hi.rgb.reshape(height, n, width, n, 3).mean(axis=(1, 3)).round().astype(np.uint8)
            depth = hi.depth.reshape(height, n, width, n).mean(axis=(1, 3))
            seg = hi.seg[n // 2 :: n, n // 2 :: n].copy()
            return Rendered(rgb, depth, seg, K.copy(), T_world_camera.copy())
        view = invert(T_world_camera @ GL_FROM_CV)
        proj = gl_projection(K, width, height, near, far)
        _, _, rgba, zbuf, seg = p.getCameraImage(
            width,
            height,
            viewMatrix=view.T.ravel().tolist(),
            projectionMatrix=proj.T.ravel().tolist(),
            renderer=p.ER_TINY_RENDERER,
            lightDirection=list(light_direction),
            shadow=int(shadow),
            physicsClientId=self.client,
        )
        rgb = np.asarray(rgba, np.uint8).reshape(height, width, 4)[:, :, :3].copy()
        zbuf = np.asarray(zbuf, np.float32).reshape(height, width)
        depth = (far * near / (far - (far - near) * zbuf)).astype(np.float32)
        seg = np.asarray(seg, np.int32).reshape(height, width)
        return Rendered(rgb, depth, seg, K.copy(), T_world_camera.copy())
