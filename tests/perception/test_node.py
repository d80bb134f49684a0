"""The perception node on a real bus: rendered camera topics in, perception/objects out; displacement
measured through the `perception/measure` service; tracks go lost and are reacquired."""

import threading
import time
import uuid

import numpy as np
import pytest

from loopylab.bus import CameraInfo, Image, Node, ObjectPoses
from loopylab.perception.displacement import DisplacementProbe
from loopylab.perception.geometry import make_T
from loopylab.perception.node import run_perception
from loopylab.perception.synthetic import SyntheticScene, pinhole_K
from tests.perception.helpers import TABLE_RGBA, view_from
from tests.waiting import wait_until

K = pinhole_K(320, 240, 60)


class RenderedCamera:
    """Stands in for a sim camera: renders the scene at `hz` and publishes camera/overhead/* ."""

    def __init__(self, node: Node, hz: float = 20.0):
        self.scene = SyntheticScene(floor_rgba=TABLE_RGBA)
        self.scene.add_box("red_block", 0.05, (0.85, 0.1, 0.1, 1), make_T(t=[0.5, 0.0, 0.025]))
        self.T = view_from(0.7, 20, 3.0, (0.52, 0, 0))
        self.lock = threading.Lock()
        self.paused = threading.Event()
        self.stop = threading.Event()
        self.img = node.publisher("camera/overhead/image", Image)
        self.depth = node.publisher("camera/overhead/depth", Image)
        self.info = node.publisher("camera/overhead/info", CameraInfo, latched=True)
        self.period = 1.0 / hz
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def move(self, xyz):
        with self.lock:
            self.scene.move("red_block", make_T(t=xyz))

    def _run(self):
        while not self.stop.is_set():
            if not self.paused.is_set():
                with self.lock:
                    stamp = time.time_ns()  # stamped when the scene is read, as a camera exposes
                    r = self.scene.render(self.T, K, 320, 240)
                self.info.publish(CameraInfo(width=320, height=240, K=K, T_base_camera=self.T, stamp_ns=stamp))
                self.depth.publish(Image.from_array(r.depth, "32FC1", stamp_ns=stamp))
                self.img.publish(Image.from_array(r.rgb, "rgb8", stamp_ns=stamp))
            self.stop.wait(self.period)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.scene.close()


@pytest.fixture
def graph():
    url = f"inproc://{uuid.uuid4().hex}"
    nodes = {name: Node(name, url) for name in ("camera", "perception", "client")}
    cam = RenderedCamera(nodes["camera"])
    pn = run_perception(
        nodes["perception"],
        cameras=["overhead"],
        hz=20.0,
        lost_after_s=0.3,
        silent_after_s=0.5,
        objects=[{"label": "red_block", "shape": "cube", "size": 0.05}],
        noise_sigma=2.0,
        noise_seed=1,
    )
    yield cam, pn, nodes["client"]
    cam.close()
    pn.close()
    for n in nodes.values():
        n.close()


def test_objects_published_and_displacement_within_reported_uncertainty(graph):
    cam, pn, client = graph
    sub = client.subscribe("perception/objects", ObjectPoses, mode="latest")
    msg = sub.wait_for(lambda m: m.get("red_block") is not None, timeout=10)
    assert np.linalg.norm(msg.get("red_block").position - [0.5, 0, 0.025]) < 0.004
    assert msg.frame_id == "base"

    probe = DisplacementProbe(client, frames=3, timeout=5.0)
    before = probe.measure("red_block")
    assert before.frames == 3 and before.source == "perception"
    cam.move([0.56, 0.03, 0.025])
    d = probe.displacement("red_block", before, after_ns=time.time_ns())  # frames exposed after the move
    true = np.array([0.06, 0.03])
    err = np.linalg.norm(d.planar - true)
    assert err < 0.004
    assert abs(d.moved_m - np.linalg.norm(true)) < 3 * d.sigma_m
    m = d.measurements()
    assert set(m) == {"displacement_m", "moved_m", "displacement_sigma_m", "source"}
    assert 0.0005 < m["displacement_sigma_m"] < 0.005


def test_lost_and_reacquired_states_over_the_bus(graph):
    cam, pn, client = graph
    sub = client.subscribe("perception/objects", ObjectPoses, mode="latest")
    sub.wait_for(lambda m: m.get("red_block") is not None, timeout=10)
    cam.paused.set()  # the camera goes silent: the track goes lost and leaves perception/objects
    sub.wait_for(lambda m: m.get("red_block") is None, timeout=5)
    tracks = client.call("perception/tracks", {})["tracks"]
    assert [(t["label"], t["state"]) for t in tracks] == [("red_block", "lost")]
    assert tracks[0]["lost_since_ns"] > tracks[0]["last_seen_ns"]
    cam.paused.clear()
    sub.wait_for(lambda m: m.get("red_block") is not None, timeout=10)
    t = client.call("perception/tracks", {})["tracks"][0]
    assert t["state"] == "tracking" and t["reacquired"] == 1


def test_measure_unknown_object_is_a_clear_error(graph):
    from loopylab.bus import ServiceError

    cam, pn, client = graph
    with pytest.raises(ServiceError, match="purple_thing"):
        client.call("perception/measure", {"label": "purple_thing", "timeout": 0.3}, timeout=3)


def test_a_mocap_publisher_on_the_same_topic_is_noticed(graph):
    cam, pn, client = graph
    pub = client.publisher("perception/objects", ObjectPoses)
    assert pub.wait_for_subscribers(1, timeout=5)
    mocap = client.timer(50.0, lambda: pub.publish(ObjectPoses(frame_id="mocap")))  # a fake mocap at 50 Hz
    try:
        assert wait_until(lambda: pn.mocap_seen, 5)
    finally:
        mocap.cancel()
