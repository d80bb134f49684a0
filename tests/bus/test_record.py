"""MCAP record/replay: record a live graph, read it back with the `mcap` library, replay it."""

import base64
import json
import threading
import time

import numpy as np
from mcap.reader import make_reader

from loopylab.bus import Image, JointState, Node, NotebookEntry, ObjectPose, ObjectPoses
from loopylab.bus.record import Recorder, read_messages, replay
from tests.bus import helpers
from tests.bus.test_codec import assert_same
from tests.waiting import wait_until


def _sample_messages():
    rgb = Image.from_array(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8), frame_id="cam")
    depth = Image.from_array(np.linspace(0.2, 2.0, 120 * 160, dtype=np.float32).reshape(120, 160))
    mono = Image.from_array(np.arange(30 * 40, dtype=np.uint16).reshape(30, 40).astype(np.uint8))
    objects = ObjectPoses(objects=[ObjectPose(id=3, label="red_block", position=[0.5, 0.0, 0.02])])
    note = NotebookEntry(
        investigation="inv1",
        step=2,
        kind="observation",
        text="force 1.83 moved 0.099",
        data={"force": 1.83, "nested": {"ok": True}},
    )
    return {
        "camera/front/image": [rgb, mono],
        "camera/front/depth": [depth],
        "arm/joint_state": [helpers.joint_state(i) for i in range(20)],
        "perception/objects": [objects],
        "lab/notebook": [note],
    }


def test_mcap_round_trip(inproc_url, tmp_path):
    path = tmp_path / "run.mcap"
    sent = _sample_messages()
    types = {
        "camera/front/image": Image,
        "camera/front/depth": Image,
        "arm/joint_state": JointState,
        "perception/objects": ObjectPoses,
        "lab/notebook": NotebookEntry,
    }
    with Node("robot", inproc_url) as robot, Node("recorder", inproc_url) as rec_node:
        pubs = {t: robot.publisher(t, types[t]) for t in sent}
        rec = Recorder(rec_node, path)  # every topic, discovered through the directory
        for p in pubs.values():
            assert p.wait_for_subscribers(1, timeout=5)
        total = 0
        for topic, msgs in sent.items():
            for m in msgs:
                pubs[topic].publish(m)
                total += 1
        assert wait_until(lambda: rec.written == total, 10), rec.summary()
        summary = rec.close()
    assert summary["dropped_queue"] == 0 and summary["dropped_transit"] == 0 and summary["errors"] == 0
    assert summary["topics"]["arm/joint_state"]["messages"] == 20

    # 1. what any MCAP reader (and Foxglove) sees
    with open(path, "rb") as f:
        reader = make_reader(f)
        s = reader.get_summary()
        channels = {c.topic: c for c in s.channels.values()}
        schemas = {sc.id: sc for sc in s.schemas.values()}
        assert set(channels) == set(sent)
        image_ch = channels["camera/front/image"]
        assert image_ch.message_encoding == "json"
        assert schemas[image_ch.schema_id].name == "foxglove.RawImage"
        assert schemas[image_ch.schema_id].encoding == "jsonschema"
        raw_schema = json.loads(schemas[image_ch.schema_id].data)
        assert raw_schema["properties"]["data"]["contentEncoding"] == "base64"
        js = channels["arm/joint_state"]
        assert js.message_encoding == "msgpack" and schemas[js.schema_id].name == "loopylab.JointState"
        assert "position" in json.loads(schemas[js.schema_id].data)["properties"]
        first_image = next(m for _, c, m in reader.iter_messages(topics=["camera/front/image"]))
        fox = json.loads(first_image.data)
        rgb = sent["camera/front/image"][0]
        assert (fox["width"], fox["height"], fox["encoding"], fox["step"]) == (640, 480, "rgb8", 1920)
        assert base64.b64decode(fox["data"]) == rgb.data.tobytes()
        assert fox["timestamp"]["sec"] * 10**9 + fox["timestamp"]["nsec"] == rgb.stamp_ns
        assert s.statistics.message_count == total

    # 2. our reader gives back the very messages
    got: dict[str, list] = {}
    times = []
    for topic, log_time, msg in read_messages(path):
        got.setdefault(topic, []).append(msg)
        times.append(log_time)
    assert times == sorted(times)
    for topic, msgs in sent.items():
        assert len(got[topic]) == len(msgs)
        for a, b in zip(msgs, got[topic]):
            assert_same(a, b)


def test_replay_keeps_order_content_and_timing(inproc_url, tmp_path):
    path = tmp_path / "paced.mcap"
    gap = 0.04
    with Node("robot", inproc_url) as robot, Node("recorder", inproc_url) as rec_node:
        pub = robot.publisher("arm/joint_state", JointState)
        rec = Recorder(rec_node, path, topics=["arm/*"])
        assert pub.wait_for_subscribers(1, timeout=5)
        for i in range(10):
            pub.publish(helpers.joint_state(i))
            time.sleep(gap)  # the recorded stream itself is paced: that is what replay must reproduce
        assert wait_until(lambda: rec.written == 10, 5)
        rec.close()

    from loopylab.bus.directory import stop_local

    url2 = inproc_url + "r"
    try:
        with Node("listener", url2) as listener, Node("replay", url2) as player:
            arrivals = []
            sub = listener.subscribe(
                "arm/joint_state", JointState, callback=lambda m: arrivals.append((time.monotonic(), m))
            )
            result = {}
            t = threading.Thread(target=lambda: result.update(replay(path, node=player, rate=2.0, wait_subscribers=1)))
            t.start()
            t.join(10)
            assert wait_until(lambda: sub.count == 10, 5)
    finally:
        stop_local(url2)
    assert result["messages"] == 10
    logged = [t for _, t, _ in read_messages(path)]
    expected = (logged[-1] - logged[0]) / 1e9 / 2  # rate 2: half the recorded span (about 0.18 s)
    span = arrivals[-1][0] - arrivals[0][0]
    assert 0.8 * expected < span < 1.5 * expected + 0.2, (span, expected)
    for i, (_, m) in enumerate(arrivals):
        np.testing.assert_array_equal(m.position, helpers.joint_state(i).position)


def test_recorder_never_slows_publishers_and_counts_drops(inproc_url, tmp_path):
    n = 150
    with Node("camera", inproc_url) as cam, Node("recorder", inproc_url) as rec_node:
        pub = cam.publisher("camera/front/image", Image)
        rec = Recorder(rec_node, tmp_path / "drops.mcap", topics=["camera/front/image"], queue_size=4)
        assert pub.wait_for_subscribers(1, timeout=5)
        frames = [Image.from_array(helpers.frame(i, 480, 640)) for i in range(8)]
        for i in range(n):
            f = frames[i % 8]
            f.seq = f.stamp_ns = 0
            pub.publish(f)
        written_when_done = rec.written
        accounted = lambda: rec.written + rec.dropped_queue + rec.summary()["dropped_transit"]  # noqa: E731
        assert wait_until(lambda: accounted() == n, 20), rec.summary()
        summary = rec.close()
    assert summary["dropped_queue"] > 0  # the writer (base64 + zstd) cannot keep up, and says so
    assert summary["messages"] > 0
    assert written_when_done < n  # the publisher finished without waiting for the recorder
    assert len(list(read_messages(tmp_path / "drops.mcap"))) == summary["messages"]


def test_recorder_as_a_graph_node(tmp_path):
    """`loopylab.bus.record:record_node` in a graph: the launcher's shutdown closes it, so the file is complete."""
    import uuid

    from loopylab.bus.launch import Launcher, parse_graph

    path = tmp_path / "graph.mcap"
    spec = parse_graph(
        {
            "graph": {"name": f"rec{uuid.uuid4().hex[:8]}", "transport": "inproc"},
            "nodes": {
                "steady": {"run": "tests.bus.helpers:steady", "params": {"hz": 100}},
                "recorder": {
                    "run": "loopylab.bus.record:record_node",
                    "params": {"path": str(path), "topics": ["test/*"]},
                },
            },
        }
    )
    assert Launcher(spec, duration=2.0).run() == 0
    msgs = list(read_messages(path))
    assert msgs and {t for t, _, _ in msgs} == {"test/steady"}
    assert all(isinstance(m, JointState) for _, _, m in msgs)


def test_recorder_closes_cleanly_after_its_node_stopped(inproc_url, tmp_path):
    """The launcher stops a node before closing what its function returned: the file must still be finished."""
    with Node("robot", inproc_url) as robot:
        pub = robot.publisher("arm/joint_state", JointState)
        rec_node = Node("recorder", inproc_url)
        rec = Recorder(rec_node, tmp_path / "late.mcap", topics=["arm/joint_state"])
        assert pub.wait_for_subscribers(1, 5)
        pub.publish(helpers.joint_state(1))
        assert wait_until(lambda: rec.written == 1, 5)
        rec_node.shutdown()
        rec_node._io.join(5)  # the node's I/O thread is gone, as after a launcher's stop
        summary = rec.close()
        rec_node.close()
    assert summary["messages"] == 1
    assert len(list(read_messages(tmp_path / "late.mcap"))) == 1
