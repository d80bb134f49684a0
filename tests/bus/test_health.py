"""Heartbeats, staleness of dead nodes, timers and clean shutdown."""

import os
import signal
import time

from loopylab.bus import JointState, Node
from tests.bus import helpers
from tests.waiting import wait_until


def test_killed_node_is_stale_within_three_heartbeats(ipc_url, spawn):
    period = 0.05  # 20 Hz heartbeats
    with Node("monitor", ipc_url) as node:
        child = spawn(helpers.publish_forever, ipc_url, 200.0, 1 / period)
        hb = node.watch("streamer")
        data = node.subscribe("arm/joint_state", JointState, mode="latest")
        first = hb.wait_for(timeout=20)
        assert first.pid == child.pid and abs(first.period_s - period) < 1e-9
        data.wait_for(timeout=5)
        assert wait_until(lambda: hb.count >= 5, 5)  # streaming steadily
        hb.wait_for(timeout=5)  # a fresh heartbeat: the node is alive right now
        os.kill(child.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert not hb.is_stale(3 * period) or time.monotonic() - killed > 2 * period
        child.join(5)
        # staleness is judged from the newest arrival, which came before the kill: it turns stale
        # three periods later, well inside the deadline even on a busy machine
        assert wait_until(lambda: hb.is_stale(3 * period), 1)
        assert hb.age() > 3 * period and data.age() > 2 * period  # "how old is the newest joint_state?"
        # the directory forgets the dead process (pid check), and subscribers let go of it
        assert wait_until(lambda: "streamer" not in node.graph()["nodes"], 5)
        assert wait_until(lambda: data.publisher_count() == 0, 5)


def test_timer_runs_at_its_rate_and_stops_on_close(inproc_url):
    ticks = []
    node = Node("ticker", inproc_url)
    t = node.timer(100.0, lambda: ticks.append(time.monotonic()))
    assert wait_until(lambda: len(ticks) >= 30, 5)
    node.close()
    n = len(ticks)
    span = ticks[29] - ticks[0]
    assert 0.27 < span < 5, span  # 29 periods of 10 ms: never faster (no catch-up bursts); slower if busy
    assert not t._thread.is_alive()
    assert len(ticks) == n


def test_timer_exception_is_logged_not_fatal(inproc_url, caplog):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first tick fails")

    with Node("flaky", inproc_url) as node:
        node.timer(200.0, flaky)
        assert wait_until(lambda: len(calls) >= 3, 5)
    assert "timer callback failed" in caplog.text


def test_sigterm_closes_a_spinning_node(ipc_url, spawn):
    with Node("observer", ipc_url) as node:
        child = spawn(helpers.spin_until_signal, ipc_url)
        node.subscribe("sleeper/alive", JointState).wait_for(timeout=20)  # it is up and handles signals
        os.kill(child.pid, signal.SIGINT)
        child.join(10)
        assert child.exitcode == 0
        assert "sleeper" not in node.graph()["nodes"]
