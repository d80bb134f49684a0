"""Intrinsics recovered from synthetic ChArUco views; hand-eye recovered from synthetic poses."""

import numpy as np
import pytest

from loopylab.perception.calibration import (
    BoardDetector,
    BoardSpec,
    CalibrationError,
    calibrate_handeye,
    calibrate_intrinsics,
    render_board_view,
)
from loopylab.perception.geometry import invert, look_at, make_T, rotation_angle, rvec_to_R

SPEC = BoardSpec()
K_TRUE = np.array([[600.0, 0, 322.0], [0, 605.0, 238.0], [0, 0, 1]])
D_TRUE = np.array([-0.12, 0.06, 0.001, -0.0005, 0.0])
CENTRE = np.array([SPEC.squares_x * SPEC.square / 2, SPEC.squares_y * SPEC.square / 2, 0])


def board_views(n, seed=0, K=K_TRUE, D=D_TRUE):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        eye = CENTRE + [rng.uniform(-0.15, 0.15), rng.uniform(-0.12, 0.12), -rng.uniform(0.3, 0.45)]
        T_board_cam = look_at(eye, CENTRE + [rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03), 0], up=(0, -1, 0))
        out.append((render_board_view(SPEC, K, D, invert(T_board_cam), supersample=2), invert(T_board_cam)))
    return out


@pytest.fixture(scope="module")
def views():
    return board_views(12)


def test_intrinsics_recovered_from_synthetic_charuco_views(views):
    res = calibrate_intrinsics([v for v, _ in views], SPEC, min_views=10)
    assert res.views == 12 and res.rejected == 0
    assert res.rms_px < 0.3
    assert np.allclose(np.diag(res.K)[:2], np.diag(K_TRUE)[:2], rtol=0.01)
    assert np.allclose(res.K[:2, 2], K_TRUE[:2, 2], atol=3.0)
    assert abs(res.D[0] - D_TRUE[0]) < 0.03


def test_too_few_views_are_refused(views):
    with pytest.raises(CalibrationError, match="only 4 usable views.*need at least 10"):
        calibrate_intrinsics([v for v, _ in views[:4]], SPEC, min_views=10)
    blank = np.full((480, 640), 100, np.uint8)
    with pytest.raises(CalibrationError, match="3 images rejected"):
        calibrate_intrinsics([blank] * 3, SPEC)


def test_board_pose_from_a_view(views):
    img, T_true = views[0]
    T, rms = BoardDetector(SPEC).pose(img, K_TRUE, D_TRUE)
    assert np.linalg.norm(T[:3, 3] - T_true[:3, 3]) < 0.001
    assert rotation_angle(T[:3, :3], T_true[:3, :3]) < np.radians(0.2)
    assert rms < 0.3


def _random_rotation(rng, max_deg):
    axis = rng.normal(size=3)
    return rvec_to_R(axis / np.linalg.norm(axis) * np.radians(rng.uniform(5, max_deg)))


def _unit(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def synthetic_handeye(mode, n, noise_mm, noise_deg, seed):
    rng = np.random.default_rng(seed)
    if mode == "eye_in_hand":  # the unknown X: camera on the flange; the board lies on the table
        X = make_T(rvec_to_R([0.1, -0.2, 1.4]), [0.04, -0.02, 0.06])
        T_fixed = make_T(rvec_to_R([np.pi, 0.1, 0.3]), [0.55, 0.05, 0.0])
    else:  # X: camera on a stand looking at the workspace; the board is on the flange
        X = look_at([0.5, 0.55, 0.6], [0.5, 0.0, 0.4])
        T_fixed = make_T(rvec_to_R([0.0, 0.2, 0.1]), [0.0, 0.0, 0.05])
    T_bf, T_ct = [], []
    for _ in range(n):
        T = make_T(
            _random_rotation(rng, 50) @ rvec_to_R([np.pi, 0, 0]),
            [0.5 + rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), 0.45 + rng.uniform(-0.05, 0.1)],
        )
        if mode == "eye_in_hand":  # camera on flange: T_camera_target = inv(X) inv(T_bf) T_base_target
            ct = invert(X) @ invert(T) @ T_fixed
        else:  # camera fixed (X = T_base_camera), board on flange
            ct = invert(X) @ T @ T_fixed
        # noise of the stated size (1 mm, 0.1 deg), in a random direction
        noise = make_T(rvec_to_R(_unit(rng) * np.radians(noise_deg)), _unit(rng) * noise_mm / 1000)
        T_bf.append(T)
        T_ct.append(ct @ noise)
    return X, T_bf, T_ct


@pytest.mark.parametrize("mode", ["eye_in_hand", "eye_to_hand"])
def test_handeye_recovered_from_synthetic_poses(mode):
    X, T_bf, T_ct = synthetic_handeye(mode, 20, 1.0, 0.1, seed=1)
    X_true = X  # eye-in-hand: T_flange_camera; eye-to-hand: T_base_camera
    res = calibrate_handeye(T_bf, T_ct, mode)
    assert 1000 * np.linalg.norm(res.T[:3, 3] - X_true[:3, 3]) < 1.5
    assert np.degrees(rotation_angle(res.T[:3, :3], X_true[:3, :3])) < 0.15
    assert res.spread_mm < 5 and res.poses == 20
    # exact data: exact answer
    X, T_bf, T_ct = synthetic_handeye(mode, 8, 0.0, 0.0, seed=2)
    res = calibrate_handeye(T_bf, T_ct, mode)
    assert np.allclose(res.T, X, atol=1e-6)


def test_handeye_refuses_bad_input():
    X, T_bf, T_ct = synthetic_handeye("eye_in_hand", 4, 0, 0, seed=3)
    with pytest.raises(CalibrationError, match="only 4 pose pairs"):
        calibrate_handeye(T_bf, T_ct)
    with pytest.raises(CalibrationError, match="robot poses but"):
        calibrate_handeye(T_bf, T_ct[:3], min_poses=3)
    same = [T_bf[0]] * 6
    with pytest.raises(CalibrationError, match="barely rotate"):
        calibrate_handeye(same, [T_ct[0]] * 6)
