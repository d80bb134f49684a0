"""Garbage on the wire: counted, logged, never fatal. A raw ZeroMQ publisher registers itself in the
directory like a node would, then sends broken frames to a real subscriber."""

import logging
import os
import socket

import msgpack
import zmq

from loopylab.bus import Image, JointState, Node, codec
from loopylab.bus.config import BusConfig
from loopylab.bus.directory import request
from tests.bus import helpers

TOPIC = "arm/joint_state"


def _rogue_publisher(url: str, topic: str = TOPIC, type_name: str = "JointState"):
    config = BusConfig.parse(url)
    sock = zmq.Context.instance().socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    endpoint = config.new_endpoint("p")
    sock.bind(endpoint)
    request(
        config,
        {
            "op": "announce",
            "node": "rogue",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "entries": [{"kind": "topic", "name": topic, "endpoint": endpoint, "type": type_name}],
        },
    )
    return sock


def test_malformed_truncated_and_unknown_frames_are_counted(inproc_url, caplog):
    caplog.set_level(logging.WARNING)
    with Node("victim", inproc_url) as node:
        sub = node.subscribe(TOPIC, JointState, queue_size=100)
        rogue = _rogue_publisher(inproc_url)
        assert rogue.poll(5000)  # the victim's subscription reached us: a condition, not a sleep
        assert rogue.recv().startswith(b"\x01" + TOPIC.encode())
        prefix = f"{TOPIC}\0rogue".encode()
        good_header, _ = codec.encode(helpers.joint_state(3))
        img_header, img_bufs = codec.encode(Image.from_array(helpers.frame(0, 100, 100)))
        malformed = [
            [prefix],  # no header at all
            [prefix, b"\xc1"],  # invalid msgpack byte
            [prefix, good_header[: len(good_header) // 2]],  # truncated header
            [prefix, b"\x93\x01\x02"],  # truncated array
            [prefix, msgpack.packb({"__m__": "JointState", "position": {"__nd__": ["<f8", [7], 0]}})],  # missing frame
            [prefix, img_header, bytes(img_bufs[0])[:1000]],  # truncated image buffer
            [prefix, msgpack.packb({"__m__": "JointState", "position": {"__nd__": ["|O", [1], b"x"]}})],  # object dtype
            [prefix, msgpack.packb({"__m__": "JointState", "position": "not numbers"})],
        ]
        for frames in malformed:
            rogue.send_multipart(frames)
        rogue.send_multipart([prefix, msgpack.packb({"__m__": "WarpDrive", "seq": 1})])  # unknown type
        rogue.send_multipart([prefix, img_header, *img_bufs])  # wrong type
        rogue.send_multipart([prefix, good_header])  # and a good one
        msg = sub.get(timeout=5)
        rogue.close()
    assert msg.seq == 0 and msg.position[0] == 3.0
    assert node.stats["malformed"] == len(malformed)
    assert node.stats["unknown_type"] == 1
    assert node.stats["wrong_type"] == 1
    assert sub.count == 1
    assert "malformed" in caplog.text and "unknown message type 'WarpDrive'" in caplog.text


def test_raw_subscription_hands_frames_through(inproc_url):
    got = []
    with Node("a", inproc_url) as a, Node("tool", inproc_url) as b:
        pub = a.publisher("camera/x/image", Image)
        b.subscribe("camera/x/image", raw=True, callback=lambda topic, frames, t: got.append((topic, frames)))
        assert pub.wait_for_subscribers(1, 5)
        pub.publish(Image.from_array(helpers.frame(9, 480, 640)))
        b._subs[0].wait_for(timeout=5)  # the first message, even if it came before this call
    topic, frames = got[0]
    assert topic == "camera/x/image" and len(frames) == 3
    _, img = codec.from_frames(frames)
    assert int(img.data[0, 0, 0]) == 9
