"""Sealed graphs: services refuse the roles their policy leaves out, on every transport, and a process
without the graph's keys cannot join it (bus/access.py)."""

import socket
import subprocess
import sys
import uuid

import pytest

from loopylab.bus import AccessDenied, BusConfig, GraphKeys, Node
from loopylab.bus.access import AccessError, refusals
from loopylab.bus.directory import DirectoryUnavailable, stop_local
from loopylab.bus.launch import GraphError, parse_graph, start_graph
from loopylab.bus.services import ServiceTimeout
from tests.bus.helpers import serve_secret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["inproc", "ipc", "tcp"])
def url(request):
    u = {
        "inproc": f"inproc://a{uuid.uuid4().hex[:10]}",
        "ipc": f"ipc://a{uuid.uuid4().hex[:10]}",
        "tcp": f"tcp://127.0.0.1:{_free_port()}",
    }[request.param]
    yield u
    stop_local(u)


@pytest.fixture
def sealed(url):
    keys = GraphKeys.generate(f"g{uuid.uuid4().hex[:8]}")
    nodes = []

    def node(name, *roles):
        n = Node(name, url, heartbeat_hz=0, keys=keys.only(*roles))
        nodes.append(n)
        return n

    yield keys, node
    for n in reversed(nodes):
        n.close()


def test_a_service_refuses_every_role_its_policy_leaves_out(sealed):
    keys, node = sealed
    serve_secret(node("server", "node"))
    lab, grader = node("lab", "lab"), node("grader", "grader", "lab")
    assert lab.call("test/open", {}, timeout=20) == {"role": "node"}  # an open service: every member
    with pytest.raises(AccessDenied, match="test/secret may be called by grader only; refused to role 'lab'"):
        lab.call("test/secret", {}, timeout=20)
    assert grader.call("test/secret", {}, timeout=20) == {"secret": 42}
    with pytest.raises(AccessDenied):  # the same process, calling as its other role
        grader.call("test/secret", {}, timeout=20, role="lab")
    seen = refusals(keys.domain)
    assert [(r.service, r.role) for r in seen] == [("test/secret", "lab")] * 2  # the graph's owner is told


def test_a_role_whose_key_this_process_lacks_cannot_be_claimed(sealed):
    _, node = sealed
    lab = node("lab", "lab")
    with pytest.raises(AccessError, match="does not hold the 'grader' role"):
        lab.client("test/secret", role="grader")
    k = lab.config.keys
    with pytest.raises(AccessError, match="not the graph's"):  # nor can a key be passed off as another role's
        GraphKeys(k.domain, k.server, k.roles, {"grader": k.held["lab"]}, "grader")


FOREIGN = """
import sys
from loopylab.bus import Node
node = Node("foreign", sys.argv[1], heartbeat_hz=0, start_directory=False)
try:
    print(node.call("test/open", {}, timeout=3))
except Exception as e:
    print(type(e).__name__, e)
    sys.exit(3)
finally:
    node.close()
"""


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_a_process_without_the_graphs_keys_cannot_join(transport):
    url = f"ipc://a{uuid.uuid4().hex[:10]}" if transport == "ipc" else f"tcp://127.0.0.1:{_free_port()}"
    keys = GraphKeys.generate(f"g{uuid.uuid4().hex[:8]}")
    server = Node("server", url, heartbeat_hz=0, keys=keys.only("node"))
    try:
        serve_secret(server)
        member = Node("member", url, heartbeat_hz=0, keys=keys.only("lab"), start_directory=False)
        assert member.call("test/open", {}, timeout=20) == {"role": "node"}
        member.close()
        r = subprocess.run([sys.executable, "-c", FOREIGN, url], capture_output=True, text=True, timeout=60)
        assert r.returncode == 3, r.stdout + r.stderr
        assert "sealed graph answers only processes that hold its keys" in r.stdout
        # another graph's keys do not open it either
        stranger = Node(
            "stranger", BusConfig.parse(url).with_keys(GraphKeys.generate("x")), heartbeat_hz=0, start_directory=False
        )
        with pytest.raises((ServiceTimeout, DirectoryUnavailable)):
            stranger.call("test/open", {}, timeout=2)
        stranger.close()
    finally:
        server.close()
        stop_local(url)


def _sealed_graph(transport: str = "ipc", process: bool = True):
    return parse_graph(
        {
            "graph": {"name": f"s{uuid.uuid4().hex[:8]}", "transport": transport},
            "access": {"test/secret": ["evaluator"]},  # overrides the node's own declaration (grader)
            "nodes": {"server": {"run": "tests.bus.helpers:serve_secret", "process": process}},
        }
    )


def test_a_launched_graph_is_sealed_and_each_process_node_gets_its_own_role():
    spec = _sealed_graph()
    assert spec.sealed and spec.nodes[0].process
    with start_graph(spec, wait_for=["test/secret"], timeout=60) as graph:
        # the child process got the keys of role "node" only (through a pipe), and serves the file's policy
        assert graph.call("test/open", {}) == {"role": "node"}
        assert graph.call("test/secret", {}) == {"secret": 42}  # the owner calls as the role [access] names
        with pytest.raises(AccessDenied, match="test/secret may be called by evaluator only; refused to role 'grader'"):
            graph.call("test/secret", {}, role="grader")
        r = subprocess.run([sys.executable, "-c", FOREIGN, spec.url], capture_output=True, text=True, timeout=60)
        assert r.returncode == 3, r.stdout + r.stderr


@pytest.mark.parametrize(
    "access, message",
    [
        ({"test/secret": "grader"}, "must be a list of role names"),
        ({"test/secret": [1]}, "must be a list of role names"),
        (["x"], r"\[access\] must be a table"),
    ],
)
def test_bad_access_tables_get_clear_errors(access, message):
    doc = {"graph": {"name": "x"}, "access": access, "nodes": {"a": {"run": "m:f"}}}
    with pytest.raises(GraphError, match=message):
        parse_graph(doc)


def test_a_member_cannot_pose_as_another_roles_service(ipc_url):
    """A service is offered by nodes of one role: an agent's node (role lab) that offers sim/oracle too is not
    listed, so the grader's calls never reach it; the directory records the attempt."""
    keys = GraphKeys.generate(f"g{uuid.uuid4().hex[:8]}")
    server = Node("server", ipc_url, heartbeat_hz=0, keys=keys.only("node"))
    lab = Node("lab", ipc_url, heartbeat_hz=0, keys=keys.only("lab"))
    grader = Node("grader", ipc_url, heartbeat_hz=0, keys=keys.only("grader"))
    try:
        serve_secret(server)
        lab.service("test/secret", lambda req: {"secret": "forged"})
        assert all(grader.call("test/secret", {}, timeout=20) == {"secret": 42} for _ in range(6))
        assert grader.lookup("service", "test/secret") == [server._services[0].endpoint]
        assert any(r.service == "offer of test/secret" and r.role == "lab" for r in refusals(keys.domain))
    finally:
        for n in (grader, lab, server):
            n.close()
