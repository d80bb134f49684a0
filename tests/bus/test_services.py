"""Request/reply services: answers, errors, timeouts and recovery after a timeout."""

import threading

import numpy as np
import pytest

from loopylab.bus import Node, ServiceError, ServiceTimeout


def test_call_roundtrip_with_arrays(inproc_url):
    with Node("srv", inproc_url) as a, Node("cli", inproc_url) as b:
        a.service("math/scale", lambda r: {"y": r["x"] * r["k"], "n": len(r["x"])})
        reply = b.call("math/scale", {"x": np.arange(2000, dtype=np.float32), "k": 2.0}, timeout=5)
    assert reply["n"] == 2000 and reply["y"].dtype == np.float32
    np.testing.assert_array_equal(reply["y"], np.arange(2000, dtype=np.float32) * 2)


def test_handler_exception_becomes_service_error(inproc_url):
    def handler(req):
        raise ValueError(f"no skill named {req['skill']!r}")

    with Node("srv", inproc_url) as a, Node("cli", inproc_url) as b:
        a.service("skills/execute", handler)
        with pytest.raises(ServiceError, match="ValueError: no skill named 'fly'"):
            b.call("skills/execute", {"skill": "fly"}, timeout=5)
        with pytest.raises(ServiceError):  # and the client is still fine afterwards
            b.call("skills/execute", {"skill": "swim"}, timeout=5)


def test_missing_service_times_out_clearly(inproc_url):
    with Node("cli", inproc_url) as b:
        with pytest.raises(ServiceTimeout, match="not offered by any node"):
            b.call("nobody/home", {}, timeout=0.3)


def test_timeout_then_recovery(inproc_url):
    release = threading.Event()
    calls = []

    def handler(req):
        calls.append(req["i"])
        if req["i"] == 0:
            release.wait(5)  # the first request hangs past the caller's deadline
        return {"i": req["i"]}

    with Node("srv", inproc_url) as a, Node("cli", inproc_url) as b:
        a.service("slow", handler)
        with pytest.raises(ServiceTimeout, match="did not answer within"):
            b.call("slow", {"i": 0}, timeout=0.3)
        release.set()
        # The late answer to call 0 must never be taken for the answer to a later call.
        assert b.call("slow", {"i": 1}, timeout=5) == {"i": 1}
        assert b.call("slow", {"i": 2}, timeout=5) == {"i": 2}
    assert calls == [0, 1, 2]


def test_service_survives_garbage_requests(inproc_url):
    import zmq

    with Node("srv", inproc_url) as a, Node("cli", inproc_url) as b:
        srv = a.service("echo", lambda r: r)
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(srv.endpoint)
        raw.send_multipart([b"", b"id", b"\xc1\xc1 not msgpack"])
        assert raw.poll(5000)
        reply = raw.recv_multipart()
        assert reply[2] == b"error" and b"DecodeError" in reply[3]
        raw.send(b"lonely frame")
        assert raw.poll(5000)
        assert raw.recv_multipart()[2] == b"error"
        raw.close()
        assert b.call("echo", {"still": "alive"}, timeout=5) == {"still": "alive"}


def test_call_without_any_directory_is_a_service_timeout():
    import shutil
    import uuid

    from loopylab.bus.config import BusConfig

    url = f"ipc://nodir{uuid.uuid4().hex[:8]}"
    node = Node("lonely", url, heartbeat_hz=0, start_directory=False)
    try:
        with pytest.raises(ServiceTimeout, match="cannot be looked up: no directory"):
            node.call("skills/execute", {}, timeout=0.3)
    finally:
        node.close()
        shutil.rmtree(BusConfig.parse(url).run_dir(), ignore_errors=True)
