"""Discovery: the directory survives the death of its process, and same-named nodes coexist."""

import os
import signal
import threading

import msgpack
import pytest
import zmq

from loopylab.bus import JointState, Node
from loopylab.bus.config import BusConfig
from loopylab.bus.directory import DirectoryClient, DirectoryUnavailable, request
from tests.bus import helpers
from tests.waiting import wait_until


def _answers(url) -> bool:
    try:
        request(BusConfig.parse(url), {"op": "ping"}, 0.2)
        return True
    except DirectoryUnavailable:
        return False


def test_graph_heals_when_the_directory_process_dies(ipc_url, spawn):
    founder = spawn(helpers.own_directory_and_publish, ipc_url, "a/state")
    assert wait_until(lambda: _answers(ipc_url), 20)  # the child serves the directory, not us
    with Node("survivor", ipc_url) as node:
        assert node._owned_directory is None
        assert node.subscribe("a/state", JointState).wait_for(timeout=10).seq == 1
        os.kill(founder.pid, signal.SIGKILL)
        founder.join(5)
        # a surviving node takes the directory over, and discovery works again for newcomers
        assert wait_until(lambda: node._owned_directory is not None, 10)
        assert _answers(ipc_url)
        newcomer = spawn(helpers.own_directory_and_publish, ipc_url, "b/state")
        assert node.subscribe("b/state", JointState).wait_for(timeout=15).seq == 1
        assert "survivor" in node.graph()["nodes"]
        newcomer.terminate()
        newcomer.join(5)


def test_nodes_that_share_a_name_do_not_evict_each_other(inproc_url):
    with Node("twin", inproc_url) as a, Node("twin", inproc_url) as b, Node("reader", inproc_url) as r:
        pa, pb = a.publisher("t", JointState), b.publisher("t", JointState)
        sub = r.subscribe("t", JointState, queue_size=10)
        assert sub.wait_for_publishers(2, 5)
        assert pa.wait_for_subscribers(1, 5) and pb.wait_for_subscribers(1, 5)
        pa.publish(helpers.joint_state(1))
        pb.publish(helpers.joint_state(2))
        got = sorted(sub.get(timeout=5).position[0] for _ in range(2))
        assert got == [1.0, 2.0]
        names = r.graph()["nodes"]
        assert "twin" in names and sum(n.startswith("twin") for n in names) == 2
        a.close()
        assert wait_until(lambda: len(r.lookup("topic", "t")) == 1, 5)  # b's publisher is still listed
        assert sub.wait_for_publishers(1, 1)


def test_many_short_inproc_graphs_leave_nothing_behind():
    """An evaluation worker runs graph after graph in one process: directories, threads and sockets
    of closed graphs must go away (piled up, they exhaust file descriptors and libzmq aborts)."""
    import threading
    import uuid

    from loopylab.bus import directory

    threads_before = threading.active_count()
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        url = f"inproc://short{uuid.uuid4().hex[:8]}"
        with Node("a", url) as a, Node("b", url) as b:
            a.service("s", lambda r: r)
            b.subscribe("t", JointState)
            a.publisher("t", JointState).wait_for_subscribers(1, 5)
            assert b.call("s", {"x": 1}, timeout=5) == {"x": 1}
        assert url not in directory._local
    # closed sockets' descriptors go when libzmq's reaper gets to them: on a loaded host, seconds later
    assert wait_until(lambda: threading.active_count() <= threads_before + 2, 60), threading.enumerate()
    assert wait_until(lambda: len(os.listdir("/proc/self/fd")) < fds_before + 20, 60), os.listdir("/proc/self/fd")


def test_a_nodes_directory_client_takes_only_its_own_answer_and_recovers_from_a_timeout(inproc_url):
    """One DEALER for all of a node's requests: an answer that comes after its request timed out is never
    taken for the next request's, and the client works again once the directory answers."""
    config = BusConfig.parse(inproc_url)
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.bind(config.directory_endpoints()[0])
    done, gave_up, late_sent = threading.Event(), threading.Event(), threading.Event()

    def late_then_prompt():  # answers the first request after the client gave up, the rest at once
        first = True
        while not done.is_set():
            if not router.poll(50):
                continue
            *envelope, body = router.recv_multipart()
            if first:  # late: only once the client has given up on it
                gave_up.wait(10)
            router.send_multipart([*envelope, msgpack.packb({"ok": True, "echo": msgpack.unpackb(body)["n"]})])
            if first:
                first = False
                late_sent.set()

    server = threading.Thread(target=late_then_prompt, daemon=True)
    server.start()
    client = DirectoryClient(config)
    try:
        with pytest.raises(DirectoryUnavailable):
            client.request({"op": "ping", "n": 1}, timeout=0.1)
        gave_up.set()
        assert late_sent.wait(10)
        assert [client.request({"op": "ping", "n": n}, timeout=2)["echo"] for n in (2, 3)] == [2, 3]
    finally:
        done.set()
        server.join(2)
        client.close()
        router.close()
    with pytest.raises(DirectoryUnavailable, match="closed"):
        client.request({"op": "ping", "n": 4})
