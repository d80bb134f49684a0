"""Nodes opened and closed, many times in one process, while publishers stream, subscribers read multipart
messages with array frames, services are called and latched topics replay: the process must never abort.

Before the fix this aborted within seconds (`Assertion failed: !_more (src/fq.cpp:80)`, in the I/O thread's
`recv_multipart`): a subscription disconnected a departed publisher from a SUB socket that went on reading
the others' multipart messages (see loopylab.bus.receiver). The churn runs in a child process, so an abort
fails this test (exit code -6, with faulthandler's thread stacks in the output) instead of killing pytest.
"""

from __future__ import annotations

import faulthandler
import itertools
import os
import random
import sys
import threading
import time

import numpy as np
import zmq

from loopylab.bus import Image, JointState, Node
from loopylab.bus.directory import stop_local
from tests.bus import helpers
from tests.waiting import wait_until

SECONDS = 6.0  # of churn per transport (bounded: the whole test stays well under a minute under load)
STREAMERS = 4  # publishers of one topic at a time, each in a node that comes and goes
_stats_lock = threading.Lock()


def _add(stats: dict, key: str, n: int = 1) -> None:
    with _stats_lock:  # `+=` on a dict item is not atomic between threads
        stats[key] += n


def _streamer(url: str, i: int, stop: threading.Event, stats: dict) -> None:
    """Open a node that publishes joint states and images and serves a service, stream for a moment, close it;
    again and again."""
    rng = random.Random(i)
    for cycle in itertools.count():
        if stop.is_set():
            return
        with Node(f"streamer{i}", url, heartbeat_hz=50) as node:
            arm = node.publisher("stress/arm", JointState)
            cam = node.publisher("stress/camera", Image)
            node.publisher("stress/state", JointState, latched=True).publish(helpers.joint_state(cycle))
            node.service(f"stress/echo{i}", lambda req: req)
            until = time.monotonic() + rng.uniform(0.05, 0.3)
            n = 0
            while time.monotonic() < until and not stop.is_set():
                arm.publish(helpers.joint_state(n))
                if n % 5 == 0:
                    cam.publish(Image.from_array(helpers.frame(n, 24, 32)))
                n += 1
                time.sleep(0.0005)  # pacing: a stream at ~2 kHz, not a wait for anything
            _add(stats, "sent", n)
            _add(stats, "cycles")


def _visitor(url: str, i: int, stop: threading.Event, stats: dict) -> None:
    """Open a node that subscribes (gets the latched value replayed), calls a service, closes; again and again."""
    for _ in itertools.count():
        if stop.is_set():
            return
        with Node(f"visitor{i}", url, heartbeat_hz=0) as node:
            state = node.subscribe("stress/state", JointState, mode="latest")
            arm = node.subscribe("stress/arm", JointState, queue_size=50)
            try:
                state.wait_for(timeout=2)
                _add(stats, "latched")
            except TimeoutError:  # the streamers were all between two nodes
                pass
            try:
                arm.get(timeout=0.5)
                _add(stats, "visits")
            except TimeoutError:
                pass
            for name in [s for s in node.graph()["services"] if s.startswith("stress/echo")][:1]:
                try:
                    if node.call(name, {"x": np.arange(3.0)}, timeout=1.0)["x"].tolist() == [0.0, 1.0, 2.0]:
                        _add(stats, "calls")
                except (TimeoutError, RuntimeError):  # the service's node closed meanwhile: expected here
                    pass


def churn(url: str, seconds: float = SECONDS) -> None:
    """Run in a child process: a long-lived listener reads everything while streamers and visitors churn."""
    faulthandler.enable()
    stats = {"sent": 0, "cycles": 0, "latched": 0, "visits": 0, "calls": 0}
    stop = threading.Event()
    with Node("listener", url) as listener:
        arm = listener.subscribe("stress/arm", JointState, queue_size=10_000)
        cam = listener.subscribe("stress/camera", Image, callback=lambda m: None)
        threads = [threading.Thread(target=_streamer, args=(url, i, stop, stats)) for i in range(STREAMERS)]
        threads += [threading.Thread(target=_visitor, args=(url, i, stop, stats)) for i in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                msg = arm.get(timeout=0.2)
                assert len(msg.position) == 7
            except TimeoutError:
                pass
        stop.set()
        for t in threads:
            t.join(30)
        if any(t.is_alive() for t in threads):  # stuck: show where, and end (a thread left would hold exit)
            faulthandler.dump_traceback(all_threads=True)
            os._exit(3)
        got, malformed = arm.count, listener.stats["malformed"]
    stop_local(url)
    print(f"churn {url}: {stats}, listener got {got} joint states and {cam.count} images", flush=True)
    if any(t.is_alive() for t in threads) or stats["cycles"] < STREAMERS or got == 0 or malformed:
        sys.exit(f"churn did not run as expected: {stats}, got {got}, malformed {malformed}")


def check_churn_survives(spawn, url: str) -> None:
    child = spawn(churn, url)
    child.join(SECONDS + 90)
    assert child.exitcode == 0, (
        f"the churning process ended with {child.exitcode} (-6: libzmq aborted; "
        f"3: a thread was stuck; None: still running)"
    )


def test_nodes_open_and_close_while_publishers_stream_inproc(spawn, inproc_url):
    check_churn_survives(spawn, inproc_url)


def test_nodes_open_and_close_while_publishers_stream_ipc(spawn, ipc_url):
    check_churn_survives(spawn, ipc_url)


def test_a_call_whose_servers_have_gone_times_out_instead_of_blocking(inproc_url):
    """The churn above once hung a visitor: its client's DEALER had lost every server, and a blocking send
    has nowhere to queue a request, so it waited forever, past the call's timeout."""
    from loopylab.bus import ServiceTimeout

    with Node("caller", inproc_url) as caller:
        server = Node("server", inproc_url)
        server.service("stress/echo", lambda req: req)
        assert caller.call("stress/echo", {"x": 1}, timeout=10) == {"x": 1}
        server.close()
        client = caller.client("stress/echo")

        def nowhere_to_send() -> bool:  # the server's end of the pipe is gone (libzmq tells it asynchronously)
            with client._lock:
                return client._sock is not None and not client._sock.poll(0, zmq.POLLOUT)

        assert wait_until(nowhere_to_send, 10)
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                caller.call("stress/echo", {"x": 2}, timeout=1.0)
            except BaseException as e:  # handed to the test's thread
                outcome.append(e)

        t = threading.Thread(target=call, daemon=True)
        t.start()
        t.join(30)
        assert not t.is_alive(), "the call blocked past its timeout"
        assert len(outcome) == 1 and isinstance(outcome[0], ServiceTimeout), outcome
