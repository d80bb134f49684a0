"""`loopylab launch`: a real launcher process running real node processes and threads."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from loopylab.bus.launch import GraphError, Launcher, apply_overrides, parse_graph, start_graph

REPO = Path(__file__).resolve().parents[2]


def _graph(tmp_path: Path, body: str, transport: str = "ipc") -> Path:
    p = tmp_path / "graph.toml"
    p.write_text(f'[graph]\nname = "t{uuid.uuid4().hex[:10]}"\ntransport = "{transport}"\n\n{body}')
    return p


def _launch(graph: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "loopylab.bus.launch", str(graph), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as dead
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_crashing_node_fails_the_graph_and_names_it(tmp_path):
    pidfile = tmp_path / "talker.pid"
    graph = _graph(
        tmp_path,
        f'''
[nodes.talker]
run = "tests.bus.helpers:write_pid"
params = {{ path = "{pidfile}" }}

[nodes.crasher]
run = "tests.bus.helpers:crash"
restart = "never"
params = {{ message = "gripper on fire", after_file = "{pidfile}" }}
''',
    )
    proc = _launch(graph, "--duration", "30")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "node 'crasher' failed (exit code 1)" in err
    assert "[crasher] RuntimeError: gripper on fire" in err  # the child's traceback, prefixed
    assert "[talker] ready" in out
    talker = int(pidfile.read_text())
    assert not _alive(talker)  # the rest of the graph was stopped with it


def test_on_failure_restarts_until_healthy_and_sigterm_stops_cleanly(tmp_path):
    counter = tmp_path / "starts"
    graph = _graph(
        tmp_path,
        f'''
[nodes.flaky]
run = "tests.bus.helpers:crash_first"
restart = "on-failure"
params = {{ counter = "{counter}", failures = 2 }}
''',
    )
    proc = _launch(graph)
    try:
        deadline = time.monotonic() + 30
        for line in proc.stdout:  # wait for the condition: the third start reports healthy
            if "[flaky] start 3 ok" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert counter.read_text() == "3"
    assert err.count("restart = on-failure") == 2
    assert "stopped flaky" in err


def test_thread_nodes_in_process_graph(tmp_path, capsys):
    spec = parse_graph(
        {
            "graph": {"name": f"t{uuid.uuid4().hex[:8]}", "transport": "inproc"},
            "nodes": {
                "steady": {"run": "tests.bus.helpers:steady", "params": {"hz": 100}},
                "crasher": {
                    "run": "tests.bus.helpers:crash",
                    "restart": "never",
                    "params": {"after_topic": "test/steady"},
                },
            },
        }
    )
    assert [n.process for n in spec.nodes] == [False, False]
    launcher = Launcher(spec, duration=20)
    assert launcher.run() == 1
    assert launcher.failed_node == "crasher"
    err = capsys.readouterr().err
    assert "[crasher] RuntimeError: boom" in err


def test_duration_stops_a_healthy_graph_with_success(tmp_path):
    spec = parse_graph(
        {
            "graph": {"name": f"t{uuid.uuid4().hex[:8]}", "transport": "inproc"},
            "nodes": {"steady": {"run": "tests.bus.helpers:steady"}},
        }
    )
    t0 = time.monotonic()
    assert Launcher(spec, duration=0.3).run() == 0
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"graph": {"transport": "carrier-pigeon"}, "nodes": {"a": {"run": "x:y"}}}, "transport must be"),
        ({"graph": {}, "nodes": {}}, "no [nodes.NAME]"),
        ({"graph": {}, "nodes": {"a": {"run": "no_colon"}}}, "package.module:function"),
        ({"graph": {}, "nodes": {"a": {"run": "x:y", "restart": "sometimes"}}}, "restart must be one of"),
        ({"graph": {}, "nodes": {"a": {"run": "x:y", "prams": {}}}}, "unknown keys ['prams']"),
        (
            {"graph": {"transport": "inproc"}, "nodes": {"a": {"run": "x:y", "process": True}}},
            "inproc graphs run nodes as threads",
        ),
    ],
)
def test_bad_graph_files_get_clear_errors(doc, message):
    with pytest.raises(GraphError) as e:
        parse_graph(doc, "bad.toml")
    assert message in str(e.value)


def test_set_overrides_node_params():
    spec = parse_graph({"graph": {}, "nodes": {"arm": {"run": "x:y", "params": {"port": "/dev/null", "hz": 10}}}})
    apply_overrides(spec, ["arm.port=/dev/ttyUSB0", "arm.hz=200", "arm.ids=[1, 2]", "arm.sim=true"])
    assert spec.nodes[0].params == {"port": "/dev/ttyUSB0", "hz": 200, "ids": [1, 2], "sim": True}
    with pytest.raises(GraphError, match="no node named 'gripper'"):
        apply_overrides(spec, ["gripper.port=x"])
    with pytest.raises(GraphError, match="NODE.PARAM=VALUE"):
        apply_overrides(spec, ["arm=3"])


def test_same_graph_on_another_transport():
    spec = parse_graph(
        {
            "graph": {"name": "bench", "transport": "ipc"},
            "nodes": {"a": {"run": "x:y"}, "b": {"run": "x:z", "process": False}},
        }
    )
    assert spec.url == "ipc://bench" and [n.process for n in spec.nodes] == [True, False]
    threads = spec.with_bus("inproc://t1")
    assert threads.url == "inproc://t1" and [n.process for n in threads.nodes] == [False, False]
    tcp = spec.with_bus("tcp://10.0.0.5:7500")
    assert tcp.url == "tcp://10.0.0.5:7500" and [n.process for n in tcp.nodes] == [True, False]


class Echo:
    """A thread node's object: serves test/echo; the launcher closes it at shutdown."""

    def __init__(self, node):
        self.closed = False
        node.service("test/echo", lambda req: {"echo": req})
        print("echo ready", flush=True)

    def close(self):
        self.closed = True


def test_start_graph_runs_a_graph_in_this_process_and_leaves_stdout_and_env_alone(capsys, monkeypatch):
    spec = parse_graph(
        {
            "graph": {"name": f"t{uuid.uuid4().hex[:8]}", "transport": "inproc"},
            "nodes": {"echo": {"run": "tests.bus.test_launch:Echo"}, "steady": {"run": "tests.bus.helpers:steady"}},
        }
    )
    monkeypatch.setenv("LOOPYLAB_BUS", "ipc://elsewhere")
    stdout = sys.stdout
    with start_graph(spec, wait_for=["test/echo"]) as graph:
        assert sys.stdout is stdout and os.environ["LOOPYLAB_BUS"] == "ipc://elsewhere"
        assert graph.call("test/echo", {"x": 1}) == {"echo": {"x": 1}}
        echo = graph.result("echo")
        assert isinstance(echo, Echo) and not echo.closed and graph.failure == ""
        assert graph.node.subscribe("test/steady").wait_for(timeout=10) is not None
    assert echo.closed  # stopped with the graph
    out, err = capsys.readouterr()
    assert "echo ready" in out and "[echo]" not in out  # the node's own line, unprefixed
    assert "[launch]" not in err  # a quiet launcher says nothing


def test_start_graph_raises_with_the_failing_node_and_its_error():
    spec = parse_graph(
        {
            "graph": {"name": f"t{uuid.uuid4().hex[:8]}", "transport": "inproc"},
            "nodes": {
                "steady": {"run": "tests.bus.helpers:steady"},
                "crasher": {"run": "tests.bus.helpers:crash", "params": {"message": "no arm"}, "restart": "never"},
            },
        }
    )
    with pytest.raises(RuntimeError, match=r"node 'crasher' failed.*RuntimeError: no arm"):
        start_graph(spec, wait_for=["test/never"], timeout=30)
