"""An idle node sleeps: its background threads wait on their sockets and the stop flag, not on poll
timeouts, and closing it wakes them at once."""

import os
import threading

import zmq

from loopylab.bus import JointState, Node
from loopylab.bus.stopflag import StopFlag
from tests.waiting import wait_until


def _switches(thread: threading.Thread) -> int:
    """Voluntary context switches of a thread so far (each is one wake-up after a wait)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


def test_a_stop_flag_wakes_a_poll_that_has_no_timeout():
    flag, woke = StopFlag(), threading.Event()
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.bind(f"inproc://stopflag-{os.getpid()}")

    def wait():
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(flag.fd, zmq.POLLIN)
        if flag.fd in dict(poller.poll(-1)):
            woke.set()

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    assert not woke.wait(0.2)  # nothing happened: it sleeps
    flag.set()
    assert woke.wait(5) and flag.is_set() and flag.wait(0)
    t.join(5)
    flag.close()
    flag.set()  # after close: still set, and no write to a descriptor that may belong to a new file
    assert flag.is_set()
    sock.close(0)


def test_an_idle_node_does_not_wake_its_service_and_io_threads(inproc_url):
    with Node("idle", inproc_url) as node, Node("watcher", inproc_url) as watcher:
        node.service("idle/a", lambda r: r)
        node.service("idle/b", lambda r: r)
        node.subscribe("idle/topic")
        # start-up chatter (announces, subscription set-up) is over once the directory knows the services
        assert wait_until(lambda: all(node.lookup("service", s) for s in ("idle/a", "idle/b")), 10)
        beats = watcher.watch("idle")
        first = beats.wait_for(lambda m: True, timeout=10).seq
        watched = [t for t in threading.enumerate() if t.name in ("idle:idle/a", "idle:idle/b", "idle:io")]
        assert len(watched) == 3
        before = [_switches(t) for t in watched]
        beats.wait_for(lambda m: m.seq >= first + 16, timeout=20)  # 15 heartbeat periods (1.5 s) of idling
        woke = [_switches(t) - b for t, b in zip(watched, before)]
        # a 50 ms poll timeout woke each of them ~30 times here; waiting on the stop flag, at most a
        # safety-net timeout a second (plus a GIL hand-off or two each time)
        assert max(woke) <= 8, woke
        assert node.call("idle/a", {"x": 1}, timeout=5) == {"x": 1}  # and they still answer at once
    assert not any(t.is_alive() for t in watched)  # close() woke and ended them


def test_a_latched_publisher_wakes_housekeeping_only_for_a_new_subscriber(inproc_url):
    """The housekeeping thread waits on a latched publisher's socket events, not on a 20 ms poll of it (~75
    wake-ups in 1.5 s), and a late joiner still gets the last value at once."""
    with Node("quiet", inproc_url, heartbeat_hz=0) as node, Node("late", inproc_url, heartbeat_hz=0) as late:
        pub = node.publisher("quiet/state", JointState, latched=True)
        pub.publish(JointState(name=["a"], position=[1.0]))
        assert wait_until(lambda: node.lookup("topic", "quiet/state"), 10)
        before = _switches(node._hk)
        threading.Event().wait(1.5)  # idling (nothing to wait for: this is what is measured)
        woke = _switches(node._hk) - before
        assert woke <= 10, woke
        sub = late.subscribe("quiet/state", JointState)
        assert sub.get(timeout=10).position.tolist() == [1.0]
