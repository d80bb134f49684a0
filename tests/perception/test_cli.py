"""`loopylab camera ...` end to end on synthetic captures."""

import cv2
import numpy as np
import pytest
import tomli_w
from typer.testing import CliRunner

from loopylab.lab.cli import app
from loopylab.perception.calibration import BoardSpec, render_board_view
from loopylab.perception.camera_config import CameraCalibration, load_calibration, save_calibration
from loopylab.perception.geometry import invert, make_T, pose_from_T, rotation_angle
from loopylab.perception.synthetic import SyntheticScene, pinhole_K
from tests.perception.helpers import view_from, write_table_camera
from tests.perception.test_calibration import D_TRUE, K_TRUE, board_views, synthetic_handeye

runner = CliRunner()


@pytest.fixture(scope="module")
def board_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("board")
    for i, (img, _) in enumerate(board_views(11, seed=5)):
        cv2.imwrite(str(d / f"{i:03d}.png"), img)
    return d


def test_calibrate_writes_intrinsics_and_reports_error(board_folder, tmp_path):
    out = tmp_path / "cams" / "usb0.toml"
    r = runner.invoke(app, ["camera", "calibrate", str(board_folder), "--out", str(out), "--name", "usb0"])
    assert r.exit_code == 0, r.output
    assert "reprojection error" in r.output and "11 views" in r.output
    cal = load_calibration(out)
    assert cal.name == "usb0" and cal.views == 11 and cal.reprojection_error_px < 0.3
    assert np.allclose(cal.K[0, 0], K_TRUE[0, 0], rtol=0.01)


def test_calibrate_refuses_too_few_views(board_folder, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted(board_folder.iterdir())[:3]:
        (few / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "x.toml"
    r = runner.invoke(app, ["camera", "calibrate", str(few), "--out", str(out)])
    assert r.exit_code == 1
    assert "only 3 usable views" in r.output and not out.exists()


def test_calibrate_on_missing_device_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["camera", "calibrate", "/dev/video61", "--out", str(tmp_path / "x.toml")])
    assert r.exit_code == 1 and "/dev/video61 not found" in r.output


def test_handeye_from_files(tmp_path):
    """Board on the table, camera on the flange; robot poses from a file; images rendered from them."""
    spec = BoardSpec()
    X, T_bf, _ = synthetic_handeye("eye_in_hand", 12, 0, 0, seed=4)
    # board placed so the camera sees it: its centre under the flange's average position
    T_base_board = make_T(np.diag([1.0, -1.0, -1.0]), [0.5 - 0.14, 0.0 + 0.1, 0.0])
    imgs, poses = tmp_path / "imgs", []
    imgs.mkdir()
    for i, T in enumerate(T_bf):
        T_cb = invert(T @ X) @ T_base_board
        cv2.imwrite(str(imgs / f"{i:02d}.png"), render_board_view(spec, K_TRUE, D_TRUE, T_cb))
        pos, quat = pose_from_T(T)
        poses.append({"image": f"{i:02d}.png", "position": pos.tolist(), "orientation_xyzw": quat.tolist()})
    (tmp_path / "poses.toml").write_text(tomli_w.dumps({"pose": poses}))
    save_calibration(CameraCalibration("wrist", 640, 480, K_TRUE, D_TRUE), tmp_path / "wrist.toml")
    r = runner.invoke(
        app,
        [
            "camera",
            "handeye",
            "-i",
            str(tmp_path / "wrist.toml"),
            "--images",
            str(imgs),
            "--poses",
            str(tmp_path / "poses.toml"),
        ],
    )
    assert r.exit_code == 0, r.output
    cal = load_calibration(tmp_path / "wrist.toml")
    assert cal.mount == "wrist"
    assert np.linalg.norm(cal.T_flange_camera[:3, 3] - X[:3, 3]) < 0.002
    assert rotation_angle(cal.T_flange_camera[:3, :3], X[:3, :3]) < np.radians(0.4)  # board poses from images
    assert "consistency" in r.output


def test_view_writes_annotated_frames(tmp_path):
    K = pinhole_K(640, 480, 60)
    T = view_from(0.4, 25, 1.0, (0, 0, 0.002))
    folder = tmp_path / "frames"
    folder.mkdir()
    with SyntheticScene() as s:
        s.add_marker("tag", 3, 0.05, make_T(t=[0, 0, 0.002]))
        cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(s.render(T, K).rgb, cv2.COLOR_RGB2BGR))
    save_calibration(CameraCalibration("c", 640, 480, K, np.zeros(5), "world", T), tmp_path / "c.toml")
    r = runner.invoke(
        app,
        [
            "camera",
            "view",
            str(folder),
            "-c",
            str(tmp_path / "c.toml"),
            "--marker",
            "3:0.05:tag",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "tag" in r.output and "marker" in r.output
    out = cv2.imread(str(tmp_path / "out" / "frame_0000.png"))
    src = cv2.imread(str(folder / "a.png"))
    assert out.shape == src.shape and np.count_nonzero(np.any(out != src, axis=2)) > 200  # drawn on
    r = runner.invoke(app, ["camera", "view", str(folder)])
    assert r.exit_code == 1 and "nothing to look for" in r.output


def test_board_is_printable(tmp_path):
    r = runner.invoke(app, ["camera", "board", str(tmp_path / "b.png"), "--dpi", "150"])
    assert r.exit_code == 0, r.output
    img = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_GRAYSCALE)
    assert img is not None and img.shape[1] > img.shape[0] > 500


def test_view_reads_a_camera_on_the_bus(tmp_path, monkeypatch):
    """`camera view bus:NAME`: frames and calibration (K, T_base_camera) straight from a running graph."""
    import uuid

    from loopylab.bus import Node
    from loopylab.perception.sources import run_camera

    K = pinhole_K(320, 240, 60)
    T = view_from(0.6, 20, 1.0, (0.5, 0, 0))
    folder = write_table_camera(tmp_path, T, K)
    url = f"inproc://{uuid.uuid4().hex}"
    monkeypatch.setenv("LOOPYLAB_BUS", url)
    with Node("cam", url) as cam_node:
        pub = run_camera(cam_node, str(folder), "table", calibration=str(tmp_path / "table.toml"), fps=20, loop=True)
        r = runner.invoke(
            app,
            ["camera", "view", "bus:table", "--object", "red_block:cube:0.05", "-n", "2", "-o", str(tmp_path / "out")],
        )
        pub.close()
    assert r.exit_code == 0, r.output
    assert "red_block" in r.output, r.output
    import re

    xyz = [float(v) for v in re.search(r"red_block\s*│\s*blob\s*│\s*([-\d.]+) ([-\d.]+) ([-\d.]+)", r.output).groups()]
    assert np.linalg.norm(np.subtract(xyz, [0.5, 0.0, 0.025])) < 0.003  # base frame: calibration from the bus
    assert (tmp_path / "out" / "frame_0001.png").exists()
