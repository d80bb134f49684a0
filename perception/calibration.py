"""Camera calibration: intrinsics from ChArUco board views, hand-eye (eye-in-hand and eye-to-hand).

ChArUco (a chessboard whose white squares hold ArUco markers) gives chessboard-accurate corners that
stay identifiable when the board is partly out of view, so every view counts. Hand-eye uses
`cv2.calibrateHandEye` (OpenCV 4.x; opencv-python 5.0 dropped it) on pairs of robot flange poses
(base frame) and board poses (camera frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from loopylab.perception.geometry import R_to_rvec, T_from_rvec, invert, make_T, rotation_angle
from loopylab.perception.markers import dictionary_by_name


class CalibrationError(ValueError):
    """The captures cannot give a trustworthy calibration; the message says what to capture instead."""


@dataclass
class BoardSpec:
    squares_x: int = 7
    squares_y: int = 5
    square: float = 0.04  # m
    marker: float = 0.03  # m
    dictionary: str = "DICT_5X5_100"

    def board(self) -> cv2.aruco.CharucoBoard:
        return cv2.aruco.CharucoBoard(
            (self.squares_x, self.squares_y), self.square, self.marker, dictionary_by_name(self.dictionary)
        )

    def image(self, px_per_m: float = 4000.0, margin_px: int = 0) -> np.ndarray:
        """The board as a grey picture (print it at 100 % scale: `loopylab camera board`)."""
        w, h = round(self.squares_x * self.square * px_per_m), round(self.squares_y * self.square * px_per_m)
        return self.board().generateImage((w + 2 * margin_px, h + 2 * margin_px), marginSize=margin_px)

    @property
    def n_corners(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)


class BoardDetector:
    def __init__(self, spec: BoardSpec):
        self.spec = spec
        self.board = spec.board()
        self.detector = cv2.aruco.CharucoDetector(self.board)

    def detect(self, gray: np.ndarray, min_corners: int = 6):
        """(object points (N,3), image points (N,2), ids) of the visible chessboard corners, or None."""
        if gray.ndim == 3:
            gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
        corners, ids, _, _ = self.detector.detectBoard(gray)
        if ids is None or len(ids) < min_corners:
            return None
        obj, img = self.board.matchImagePoints(corners, ids)
        if obj is None or len(obj) < min_corners:
            return None
        obj = obj.reshape(-1, 3).astype(np.float64)
        if np.linalg.matrix_rank(obj[:, :2] - obj[:, :2].mean(0)) < 2:  # all on one line
            return None
        return obj, img.reshape(-1, 2).astype(np.float64), ids.ravel()

    def pose(self, gray, K, D, min_corners: int = 6):
        """T_camera_board and the RMS reprojection error (px), or None when the board is not seen."""
        det = self.detect(gray, min_corners)
        if det is None:
            return None
        obj, img, _ = det
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, D, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            return None
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, D, rvec, tvec)
        proj = cv2.projectPoints(obj, rvec, tvec, K, D)[0].reshape(-1, 2)
        return T_from_rvec(rvec, tvec), float(np.sqrt(np.mean(np.sum((proj - img) ** 2, axis=1))))


@dataclass
class IntrinsicsResult:
    K: np.ndarray
    D: np.ndarray
    rms_px: float
    views: int
    image_size: tuple[int, int]  # (width, height)
    per_view_rms_px: list[float] = field(default_factory=list)
    rejected: int = 0  # images where the board was not found


def calibrate_intrinsics(
    images, spec: BoardSpec, min_views: int = 10, min_corners: int = 8, max_rms_px: float = 1.5, progress=None
) -> IntrinsicsResult:
    """K and D (plumb_bob) from grey or RGB images of the board. Refuses too few views or a bad fit."""
    det = BoardDetector(spec)
    objs, imgs, size, rejected = [], [], None, 0
    for im in images:
        size_i = (im.shape[1], im.shape[0])
        if size is not None and size_i != size:
            raise CalibrationError(f"images differ in size: {size_i} vs {size}; calibrate one resolution at a time")
        size = size_i
        d = det.detect(im, min_corners)
        if d is None:
            rejected += 1
        else:
            objs.append(d[0].astype(np.float32))
            imgs.append(d[1].astype(np.float32))
        if progress:
            progress()
    if len(objs) < min_views:
        raise CalibrationError(
            f"only {len(objs)} usable views (board found with >= {min_corners} corners; {rejected} images "
            f"rejected); need at least {min_views}: capture more, with the board tilted and filling "
            f"different parts of the image"
        )
    rms, K, D, rvecs, tvecs = cv2.calibrateCamera(objs, imgs, size, None, None)
    per_view = []
    for o, i, r, t in zip(objs, imgs, rvecs, tvecs):
        p = cv2.projectPoints(o, r, t, K, D)[0].reshape(-1, 2)
        per_view.append(float(np.sqrt(np.mean(np.sum((p - i) ** 2, axis=1)))))
    if rms > max_rms_px:
        worst = int(np.argmax(per_view))
        raise CalibrationError(
            f"reprojection error {rms:.2f} px exceeds {max_rms_px} px (worst view #{worst}: "
            f"{per_view[worst]:.2f} px): blurred or mis-detected captures; retake them"
        )
    return IntrinsicsResult(
        K,
        D.ravel()[:5] if D.size >= 5 else np.pad(D.ravel(), (0, 5 - D.size)),
        float(rms),
        len(objs),
        size,
        per_view,
        rejected,
    )


# -- synthetic views (tests, dry runs) ------------------------------------------------------------------
_RAYS: dict[bytes, np.ndarray] = {}


def _normalised_rays(K, D, W, H, n) -> np.ndarray:
    """Undistorted normalised coordinates of every (supersampled) pixel centre; cached per camera."""
    key = np.concatenate([K.ravel(), D.ravel(), [W, H, n]]).tobytes()
    if key not in _RAYS:
        us, vs = np.meshgrid((np.arange(W * n) - (n - 1) / 2) / n, (np.arange(H * n) - (n - 1) / 2) / n)
        pts = np.stack([us.ravel(), vs.ravel()], axis=1).astype(np.float64).reshape(-1, 1, 2)
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-9)
        norm = cv2.undistortPointsIter(pts, K, D, None, None, crit) if D.any() else cv2.undistortPoints(pts, K, D)
        if len(_RAYS) > 4:
            _RAYS.clear()
        _RAYS[key] = norm.reshape(-1, 2)
    return _RAYS[key]


def render_board_view(
    spec: BoardSpec,
    K: np.ndarray,
    D: np.ndarray | None,
    T_camera_board: np.ndarray,
    size=(640, 480),
    background: int = 100,
    supersample: int = 2,
) -> np.ndarray:
    """A grey image of the board as a (distorting) camera would see it: exact, anti-aliased."""
    W, H = size
    n = supersample
    D = np.zeros(5) if D is None else np.asarray(D, float)
    norm = _normalised_rays(K, D, W, H, n)
    R, t = T_camera_board[:3, :3], T_camera_board[:3, 3]
    Hn = np.column_stack([R[:, 0], R[:, 1], t])  # board (x, y, 1) -> normalised image
    Hi = np.linalg.inv(Hn)  # normalised image -> board, per pixel:
    x, y = norm[:, 0], norm[:, 1]
    w = Hi[2, 0] * x + Hi[2, 1] * y + Hi[2, 2]
    bx = (Hi[0, 0] * x + Hi[0, 1] * y + Hi[0, 2]) / w
    by = (Hi[1, 0] * x + Hi[1, 1] * y + Hi[1, 2]) / w
    ppm = 4000.0
    margin = int(round(spec.square * ppm * 0.5))
    board = spec.image(ppm, margin)
    mx = (bx * ppm + margin - 0.5).reshape(H * n, W * n).astype(np.float32)
    my = (by * ppm + margin - 0.5).reshape(H * n, W * n).astype(np.float32)
    behind = (w <= 0).reshape(H * n, W * n)  # rays that meet the board's plane behind the camera
    mx[behind] = -1e6
    hi = cv2.remap(board, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=background)
    return hi.reshape(H, n, W, n).mean(axis=(1, 3)).round().astype(np.uint8)


# -- hand-eye -----------------------------------------------------------------------------------------------
HANDEYE_METHODS = {
    "tsai": cv2.CALIB_HAND_EYE_TSAI,
    "park": cv2.CALIB_HAND_EYE_PARK,
    "horaud": cv2.CALIB_HAND_EYE_HORAUD,
    "andreff": cv2.CALIB_HAND_EYE_ANDREFF,
    "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS,
}


@dataclass
class HandEyeResult:
    T: np.ndarray  # eye-in-hand: T_flange_camera; eye-to-hand: T_base_camera
    mode: str
    method: str
    poses: int
    spread_mm: float  # how well the fixed transform (target in base / in flange) agrees across poses
    spread_deg: float


def _refine_handeye(A, B, X0, metres_per_rad: float = 0.5) -> np.ndarray:
    from scipy.optimize import least_squares

    Y0 = A[0] @ X0 @ B[0]

    def unpack(v):
        return T_from_rvec(v[:3], v[3:6]), T_from_rvec(v[6:9], v[9:12])

    def residuals(v):
        X, Y = unpack(v)
        Yinv = invert(Y)
        out = []
        for a, b in zip(A, B):
            E = Yinv @ a @ X @ b
            out.append(np.concatenate([E[:3, 3], metres_per_rad * R_to_rvec(E[:3, :3])]))
        return np.concatenate(out)

    v0 = np.concatenate([R_to_rvec(X0[:3, :3]), X0[:3, 3], R_to_rvec(Y0[:3, :3]), Y0[:3, 3]])
    sol = least_squares(residuals, v0, method="lm", x_scale="jac")
    return unpack(sol.x)[0]


def calibrate_handeye(
    T_base_flange: list[np.ndarray],
    T_camera_target: list[np.ndarray],
    mode: str = "eye_in_hand",
    method: str = "park",
    min_poses: int = 5,
    refine: bool = True,
) -> HandEyeResult:
    """Solve AX = XB. eye_in_hand: the camera rides on the flange, the board is fixed in the world;
    eye_to_hand: the camera is fixed, the board rides on the flange.

    The closed-form solution weighs pose pairs through their relative motions; `refine` then solves
    jointly for X and the fixed board transform Y by least squares over every pose (A_i X B_i = Y),
    which is the maximum-likelihood answer when the board poses carry the noise.
    """
    mode = mode.replace("-", "_")
    if mode not in ("eye_in_hand", "eye_to_hand"):
        raise CalibrationError(f"mode must be eye-in-hand or eye-to-hand, not {mode!r}")
    if method not in HANDEYE_METHODS:
        raise CalibrationError(f"method must be one of {', '.join(HANDEYE_METHODS)}, not {method!r}")
    if len(T_base_flange) != len(T_camera_target):
        raise CalibrationError(f"{len(T_base_flange)} robot poses but {len(T_camera_target)} board poses")
    if len(T_base_flange) < min_poses:
        raise CalibrationError(
            f"only {len(T_base_flange)} pose pairs; need at least {min_poses} "
            f"(15-20 recommended, with rotations about different axes)"
        )
    A = T_base_flange if mode == "eye_in_hand" else [invert(T) for T in T_base_flange]
    rots = [rotation_angle(A[0][:3, :3], T[:3, :3]) for T in A[1:]]
    if max(rots) < np.radians(10):
        raise CalibrationError(
            "the robot poses barely rotate (< 10 deg apart): hand-eye needs rotations about at least two different axes"
        )
    R, t = cv2.calibrateHandEye(
        [T[:3, :3] for T in A],
        [T[:3, 3] for T in A],
        [T[:3, :3] for T in T_camera_target],
        [T[:3, 3] for T in T_camera_target],
        method=HANDEYE_METHODS[method],
    )
    X = make_T(R, t)
    if refine:
        X = _refine_handeye(A, T_camera_target, X)
    # the transform that must stay fixed: board in the base (eye-in-hand) or in the flange (eye-to-hand)
    fixed = [a @ X @ b for a, b in zip(A, T_camera_target)]
    p = np.array([F[:3, 3] for F in fixed])
    spread_mm = float(1000 * np.sqrt(np.mean(np.sum((p - p.mean(0)) ** 2, axis=1))))
    spread_deg = float(
        np.degrees(np.sqrt(np.mean([rotation_angle(fixed[0][:3, :3], F[:3, :3]) ** 2 for F in fixed[1:]])))
    )
    return HandEyeResult(X, mode, method, len(A), spread_mm, spread_deg)
