"""Publish/subscribe between threads (inproc), processes (ipc) and over tcp, with real sockets."""

import socket
import threading
import time

import numpy as np
import pytest

from loopylab.bus import Image, JointState, Node
from tests.bus import helpers
from tests.waiting import wait_until


def _free_port() -> int:
    # the directory uses PORT and PORT + 1: find two free neighbours
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def _receive_series(url: str, spawn, n: int, image: bool = False, timeout: float = 20):
    with Node("listener", url) as node:
        topic = "camera/front/image" if image else "arm/joint_state"
        sub = node.subscribe(topic, Image if image else JointState, queue_size=n)
        done = node.publisher("test/done", JointState, latched=True)
        child = spawn(helpers.publish_series, url, n, topic, image)
        got = [sub.get(timeout=timeout) for _ in range(n)]
        done.publish(JointState())
        child.join(10)
        assert child.exitcode == 0
        return got, sub


def test_inproc_threads_every_message_in_order(inproc_url):
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("arm/joint_state", JointState)
        sub = b.subscribe("arm/joint_state", JointState, queue_size=500)
        assert pub.wait_for_subscribers(1, timeout=5)
        sender = threading.Thread(target=lambda: [pub.publish(helpers.joint_state(i)) for i in range(300)])
        sender.start()
        got = [sub.get(timeout=5) for _ in range(300)]
        sender.join()
    assert [m.seq for m in got] == list(range(1, 301))
    np.testing.assert_array_equal(got[42].position, helpers.joint_state(42).position)
    assert got[0].name == helpers.JOINTS
    assert not got[0].position.flags.writeable  # received arrays are read-only views
    assert sub.dropped == 0 and b.stats["malformed"] == 0


def test_topic_prefixes_do_not_leak(inproc_url):
    """'arm/joint' subscribers must not receive 'arm/joint_state' (ZeroMQ filters by prefix)."""
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        long_pub = a.publisher("arm/joint_state", JointState)
        short_pub = a.publisher("arm/joint", JointState)
        short = b.subscribe("arm/joint", JointState)
        assert short_pub.wait_for_subscribers(1, 5)
        long_pub.publish(helpers.joint_state(1))
        short_pub.publish(helpers.joint_state(2))
        m = short.get(timeout=5)
        assert m.position[0] == pytest.approx(2.0)
        assert long_pub.subscribers == 0


def test_ipc_between_processes(ipc_url, spawn):
    got, sub = _receive_series(ipc_url, spawn, 200)
    assert [m.seq for m in got] == list(range(1, 201))
    np.testing.assert_array_equal(got[-1].velocity, np.full(7, 199 * 0.5))
    assert sub.dropped == 0


def test_ipc_frames_arrive_zero_copy_and_read_only(ipc_url, spawn):
    got, _ = _receive_series(ipc_url, spawn, 5, image=True)
    for i, img in enumerate(got):
        assert (img.height, img.width, img.encoding) == (480, 640, "rgb8")
        assert img.data.shape == (480, 640, 3) and img.data.dtype == np.uint8
        assert int(img.data[100, 100, 0]) == i
        assert not img.data.flags.writeable and not img.data.flags.owndata


def test_tcp_between_processes(spawn, monkeypatch):
    url = f"tcp://127.0.0.1:{_free_port()}"
    from loopylab.bus.directory import stop_local

    try:
        got, _ = _receive_series(url, spawn, 100)
    finally:
        stop_local(url)
    assert [m.seq for m in got] == list(range(1, 101))


def test_latest_mode_drains_to_newest_under_a_fast_publisher(inproc_url):
    """A slow consumer in latest mode sees fresh data, not a growing backlog."""
    ages_ms, seqs = [], []

    def slow(msg):
        ages_ms.append((time.time_ns() - msg.stamp_ns) / 1e6)
        seqs.append(msg.seq)
        time.sleep(0.01)  # simulated work: 10 ms per message, while data comes at ~2 kHz

    with Node("fast", inproc_url) as a, Node("slow", inproc_url) as b:
        pub = a.publisher("arm/joint_state", JointState)
        sub = b.subscribe("arm/joint_state", JointState, callback=slow, mode="latest")
        assert pub.wait_for_subscribers(1, 5)
        fast = a.timer(2000.0, lambda: pub.publish(helpers.joint_state(0)))  # ~2 kHz, busy machines skip ticks
        assert wait_until(lambda: len(seqs) >= 40, 20)  # 40 slow handlings: ~0.4 s of a backlog-building stream
        fast.cancel()
        fast._thread.join(5)
        last = pub.sent
        sub.wait_for(lambda m: m.seq == last, timeout=5)  # the final value is never lost
    assert sub.skipped > len(seqs)  # most were superseded before the slow consumer looked
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert np.median(ages_ms) < 50, ages_ms  # fresh: a queue would lag by seconds (~800 x 10 ms)


def test_queue_mode_without_callback_bounds_memory(inproc_url):
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("t", JointState)
        sub = b.subscribe("t", JointState, queue_size=10)
        assert pub.wait_for_subscribers(1, 5)
        for i in range(50):
            pub.publish(helpers.joint_state(i))
        sub.wait_for(lambda m: m.seq == 50, timeout=5)
        got = [sub.get(timeout=1) for _ in range(10)]
    assert [m.seq for m in got] == list(range(41, 51))  # the oldest were dropped, and counted
    assert sub.dropped == 40


def test_latched_topic_reaches_late_joiners(inproc_url):
    with Node("gate", inproc_url) as a:
        pub = a.publisher("safety/state", JointState, latched=True)
        pub.publish(helpers.joint_state(7))
        with Node("late", inproc_url) as b:  # joins after the only publish: no sleep, no retry
            m = b.subscribe("safety/state", JointState).wait_for(timeout=5)
            assert m.position[0] == pytest.approx(7.0)
            later = b.subscribe("safety/state", JointState)  # a second late joiner on the same node
            assert later.wait_for(timeout=5).seq == m.seq
        with Node("later", inproc_url) as c:
            sub = c.subscribe("safety/state", JointState, queue_size=10)
            assert sub.get(timeout=5).seq == 1
            pub.publish(helpers.joint_state(8))
            assert sub.get(timeout=5).seq == 2
            with pytest.raises(TimeoutError):  # the latched replay to others is not a duplicate here
                sub.get(timeout=0.2)


def test_latched_topic_across_processes(ipc_url, spawn):
    with Node("observer", ipc_url) as node:
        child = spawn(helpers.spin_until_signal, ipc_url)
        m = node.subscribe("sleeper/alive", JointState).wait_for(timeout=20)
        assert m.name == helpers.JOINTS
        child.terminate()
        child.join(10)
        assert child.exitcode == 0  # SIGTERM is a clean shutdown
        assert "sleeper" not in node.graph()["nodes"]  # it said bye to the directory


def test_forwarded_messages_keep_their_seq_and_all_arrive(inproc_url):
    """A node may republish messages with their original (non-monotonic) seq: none may be lost,
    and republishing the same object again is a new message."""
    with Node("fwd", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("arm/joint_command", JointState, latched=True)
        sub = b.subscribe("arm/joint_command", JointState, queue_size=10)
        assert pub.wait_for_subscribers(1, 5)
        for seq in (5, 3, 9, 1):
            pub.publish(JointState(seq=seq, name=["j"], position=[float(seq)]))
        same = JointState(name=["j"], position=[7.0])
        pub.publish(same)
        pub.publish(same)
        got = [sub.get(timeout=5).seq for _ in range(6)]
    assert got[:4] == [5, 3, 9, 1] and got[4] == got[5] == 1


def test_publishing_the_wrong_type_is_refused_at_the_source(inproc_url):
    with Node("a", inproc_url) as a:
        pub = a.publisher("arm/joint_state", JointState)
        with pytest.raises(TypeError, match="arm/joint_state carries JointState, not Image"):
            pub.publish(Image.from_array(helpers.frame(0)))
        assert pub.sent == 0


def test_publish_fields_delivers_the_message_publish_would(inproc_url):
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("arm/joint_state", JointState)
        sub = b.subscribe("arm/joint_state", JointState)
        assert pub.wait_for_subscribers(1, 5)
        pub.publish_fields(name=["j0", "j1"], position=(0.5, -1.0), velocity=[0, 2], stamp_ns=42)
        pub.publish(JointState(name=["j0", "j1"], position=np.array([0.5, -1.0]), velocity=np.array([0.0, 2.0])))
        first, second = sub.get(timeout=5), sub.get(timeout=5)
        assert (first.seq, second.seq) == (1, 2) and first.stamp_ns == 42 and second.stamp_ns > 0
        assert first.name == ["j0", "j1"] and first.position.tolist() == [0.5, -1.0]
        assert first.velocity.tolist() == [0.0, 2.0] and first.effort.shape == (0,)
        with pytest.raises(TypeError, match="no field 'torque'"):
            pub.publish_fields(torque=(1.0,))
        assert pub.sent == 2
        untyped = a.publisher("misc/blob", None)
        with pytest.raises(TypeError, match="no message type"):
            untyped.publish_fields(x=1)


def test_unsubscribe_stops_delivery_and_leaves_other_subscriptions(inproc_url):
    """The I/O thread closes an unsubscribed topic's socket; a second subscription of the topic carries on."""
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("arm/joint_state", JointState)
        gone = b.subscribe("arm/joint_state", JointState)
        kept = b.subscribe("arm/joint_state", JointState)
        assert pub.wait_for_subscribers(2, timeout=5)
        pub.publish(helpers.joint_state(1))
        assert gone.get(timeout=5).seq == 1 and kept.get(timeout=5).seq == 1
        b.unsubscribe(gone)
        assert wait_until(lambda: gone.sock is None, 5)  # closed by the thread that owns it
        pub.publish(helpers.joint_state(2))
        assert kept.get(timeout=5).seq == 2
        with pytest.raises(TimeoutError):
            gone.get(timeout=0.2)
        assert gone.count == 1 and gone not in b._subs
