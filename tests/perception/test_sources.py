"""Camera sources and calibration files: clear errors for absent devices, image-folder replay over the bus
into the perception node, TOML round trips."""

import uuid

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.bus import Node, ObjectPoses
from loopylab.perception.camera_config import (
    CalibrationFileError,
    CameraCalibration,
    load_calibration,
    save_calibration,
)
from loopylab.perception.geometry import make_T, quat_to_R
from loopylab.perception.node import run_perception
from loopylab.perception.sources import CameraError, DeviceSource, open_source, run_camera
from loopylab.perception.synthetic import pinhole_K
from tests.perception.helpers import view_from, write_table_camera


def test_missing_camera_device_gives_a_clear_error():
    with pytest.raises(CameraError, match=r"/dev/video57 not found .*video devices on this machine"):
        DeviceSource(57).open()
    with pytest.raises(CameraError, match="not found"):
        open_source("/dev/video-does-not-exist").open()


def test_device_that_cannot_be_opened_says_busy_or_permission():
    with pytest.raises(CameraError, match="busy .* permission"):
        DeviceSource("/dev/null").open()


def test_unknown_source_kind_is_rejected(tmp_path):
    with pytest.raises(CameraError, match="not a device index"):
        open_source(tmp_path / "nothing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="no images"):
        open_source(tmp_path / "empty").open()


def test_calibration_file_missing_or_broken(tmp_path):
    with pytest.raises(CalibrationFileError, match="loopylab camera calibrate"):
        load_calibration("cams/none.toml", tmp_path)
    (tmp_path / "bad.toml").write_text("[intrinsics]\nK = 3\n")
    with pytest.raises(CalibrationFileError, match="bad.toml"):
        load_calibration(tmp_path / "bad.toml")


finite = st.floats(-2, 2, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    f=st.floats(100, 2000),
    cx=st.floats(100, 700),
    k=st.lists(st.floats(-0.5, 0.5), min_size=5, max_size=5),
    pos=st.lists(finite, min_size=3, max_size=3),
    q=st.lists(st.floats(-1, 1), min_size=4, max_size=4),
    mount=st.sampled_from(["world", "wrist"]),
)
def test_calibration_toml_round_trip(tmp_path_factory, f, cx, k, pos, q, mount):
    q = np.asarray(q)
    if np.linalg.norm(q) < 0.1:
        q = np.array([0, 0, 0, 1.0])
    T = make_T(quat_to_R(q / np.linalg.norm(q)), pos)
    cal = CameraCalibration(
        "cam",
        800,
        600,
        [[f, 0, cx], [0, f * 1.01, 300], [0, 0, 1]],
        k,
        mount,
        T_base_camera=T if mount == "world" else np.eye(4),
        T_flange_camera=T if mount == "wrist" else np.eye(4),
        reprojection_error_px=0.3,
        views=12,
    )
    path = save_calibration(cal, tmp_path_factory.mktemp("c") / "cam.toml")
    back = load_calibration(path)
    assert np.allclose(back.K, cal.K) and np.allclose(back.D, cal.D)
    assert np.allclose(back.T_base_camera, cal.T_base_camera, atol=1e-9)
    assert np.allclose(back.T_flange_camera, cal.T_flange_camera, atol=1e-9)
    assert (back.mount, back.views, back.reprojection_error_px) == (mount, 12, 0.3)


def test_image_folder_replayed_into_the_perception_node(tmp_path):
    """Rendered RGB-D frames in a folder + a calibration TOML next to the graph -> perception/objects."""
    K = pinhole_K(320, 240, 60)
    T = view_from(0.7, 25, 1.0, (0.52, 0, 0))
    folder = write_table_camera(tmp_path, T, K, frames=2)
    url = f"inproc://{uuid.uuid4().hex}"
    with Node("cam", url) as cam_node, Node("perception", url) as per_node, Node("client", url) as client:
        sub = client.subscribe("perception/objects", ObjectPoses, mode="latest")
        pn = run_perception(
            per_node, cameras=["table"], hz=20, objects=[{"label": "red_block", "shape": "cube", "size": 0.05}]
        )
        pub = run_camera(
            cam_node, str(folder), "table", calibration="table.toml", graph_dir=str(tmp_path), fps=20, loop=True
        )
        msg = sub.wait_for(lambda m: m.get("red_block") is not None, timeout=10)
        assert np.linalg.norm(msg.get("red_block").position - [0.5, 0, 0.025]) < 0.004
        assert pub.calibration.width == 320 and pub.error is None
        pub.close()
        pn.close()


def test_video_file_replay(tmp_path):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (160, 120))
    for i in range(5):
        frame = np.full((120, 160, 3), 40 * i, np.uint8)
        w.write(frame)
    w.release()
    src = open_source(str(path))
    with src:
        frames = list(src)
        assert src.fps == pytest.approx(15.0) and (src.width, src.height) == (160, 120)
    assert len(frames) == 5
    assert [round(f.rgb.mean() / 40) for f in frames] == [0, 1, 2, 3, 4]  # in order, lossy codec
    with pytest.raises(CameraError, match="does not exist"):
        open_source(tmp_path / "missing.mp4").open()
