"""The bus commands of the CLI against live graphs: topics, echo, nodes, record, replay, demo-bus; how the
tools find the running graph (the registry), and a launched graph leaving nothing behind after SIGTERM."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from loopylab.bus import Image, JointState, Node, registry
from loopylab.bus.cli import register
from loopylab.bus.config import BusConfig
from loopylab.bus.record import read_messages
from tests.bus import helpers
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
app = typer.Typer()


@app.callback()
def _root():
    pass


register(app)
runner = CliRunner()


@pytest.fixture
def runtime(monkeypatch):
    """A registry of running graphs (and ipc run dirs) of our own: graphs that other tests launch meanwhile
    are not ours to find. A short path: ipc socket paths are limited to ~107 bytes."""
    d = tempfile.mkdtemp(prefix="ll")
    monkeypatch.setenv("LOOPYLAB_RUNTIME_DIR", d)
    monkeypatch.delenv("LOOPYLAB_BUS", raising=False)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _streaming(url: str, hz: float = 200.0):
    node = Node("arm", url)
    pub = node.publisher("arm/joint_state", JointState)
    img = node.publisher("camera/front/image", Image)
    node.timer(hz, lambda: pub.publish(helpers.joint_state(1)))
    node.timer(20.0, lambda: img.publish(Image.from_array(helpers.frame(5, 480, 640))))
    node.service("arm/home", lambda r: {"ok": True})
    return node


def test_topics_measures_rate_and_bandwidth(inproc_url):
    with _streaming(inproc_url):
        result = runner.invoke(app, ["topics", "--bus", inproc_url, "--window", "0.6"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    js = re.search(r"([\d.]+) Hz", rows["arm/joint_state"])
    assert js and 10 < float(js.group(1)) < 260, rows["arm/joint_state"]  # a 200 Hz timer, busy machine
    cam = rows["camera/front/image"]
    assert "MB/s" in cam and "921" in cam  # ~18 MB/s of 921.6 KB frames
    assert "heartbeat/" not in result.output


def test_echo_prints_decoded_messages_with_arrays_summarised(inproc_url):
    with _streaming(inproc_url):
        js = runner.invoke(app, ["echo", "arm/joint_state", "--count", "2", "--bus", inproc_url])
        img = runner.invoke(app, ["echo", "camera/front/image", "-n", "1", "--bus", inproc_url])
    assert js.exit_code == 0 and js.output.count("--- arm/joint_state [JointState]") == 2
    assert "name: ['joint1'" in js.output and "position: [1. " in js.output
    assert "data: <array shape=(480, 640, 3) dtype=uint8 min=5 max=5 mean=5>" in img.output


def test_nodes_lists_publishers_and_services(inproc_url):
    with _streaming(inproc_url):
        result = runner.invoke(app, ["nodes", "--bus", inproc_url])
    assert result.exit_code == 0
    assert re.search(r"│ arm +│ \d+ .*│ arm/joint_state +│ arm/home", result.output), result.output


def test_tools_say_when_no_graph_runs():
    url = f"ipc://none{uuid.uuid4().hex[:8]}"
    result = runner.invoke(app, ["topics", "--bus", url])
    assert result.exit_code == 1 and "no graph is running" in result.output
    shutil.rmtree(BusConfig.parse(url).run_dir(), ignore_errors=True)


def test_record_then_replay_commands(inproc_url, tmp_path):
    out = tmp_path / "cli.mcap"
    with _streaming(inproc_url):
        result = runner.invoke(app, ["record", "-o", str(out), "arm/*", "--duration", "0.5", "--bus", inproc_url])
    assert result.exit_code == 0, result.output
    recorded = list(read_messages(out))
    assert len(recorded) > 20 and {t for t, _, _ in recorded} == {"arm/joint_state"}

    url2 = inproc_url + "b"
    from loopylab.bus.directory import stop_local

    try:
        with Node("listener", url2) as listener:
            sub = listener.subscribe("arm/joint_state", JointState, queue_size=1000)
            result = runner.invoke(app, ["replay", str(out), "--rate", "0", "--wait-subscribers", "1", "--bus", url2])
            assert result.exit_code == 0, result.output
            assert f"replayed {len(recorded)} of {len(recorded)} messages" in result.output
            first = sub.get(timeout=5)
            np.testing.assert_array_equal(first.position, recorded[0][2].position)
    finally:
        stop_local(url2)


def test_demo_graph_runs_and_reports_rates():
    """The demo graph's three processes talk: the monitor reports both streams; SIGTERM ends it cleanly."""
    url = f"ipc://demo{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopylab.bus.launch", "graphs/demo.toml", "--bus", url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    report = ""
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # a condition, not a duration: a busy machine starts processes slowly
            rates = [float(x) for x in re.findall(r"([\d.]+) Hz", line)]
            if line.startswith("[monitor] arm/joint_state") and len(rates) == 2 and min(rates) > 0:
                report = line
                break
            if time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        shutil.rmtree(BusConfig.parse(url).run_dir(), ignore_errors=True)
    assert report, err
    assert proc.returncode == 0, err
    rates = [float(x) for x in re.findall(r"([\d.]+) Hz", report)]
    assert rates[0] < 120 and rates[1] < 36, report  # timers never run fast (exact rates: benchmarks)
    assert "921.6 KB/msg" in report
    assert "stopped arm, camera, monitor" in err


# -- finding the running graph ----------------------------------------------------------------------------


def _entry(runtime: Path, name: str, url: str, pid: int) -> None:
    """A registry entry as another launcher would write it."""
    (runtime / "graphs").mkdir(exist_ok=True)
    (runtime / "graphs" / f"{name}.{pid}.json").write_text(
        json.dumps({"name": name, "url": url, "pid": pid, "graph_file": f"graphs/{name}.toml", "started": time.time()})
    )


def test_tools_find_the_one_running_graph_without_bus(runtime, inproc_url):
    entry = registry.register("bench", inproc_url, "graphs/bench.toml")
    try:
        with _streaming(inproc_url):
            topics = runner.invoke(app, ["topics", "--window", "0.3"])
            echo = runner.invoke(app, ["echo", "arm/joint_state", "-n", "1"])
            nodes = runner.invoke(app, ["nodes"])
    finally:
        registry.unregister(entry)
    assert topics.exit_code == 0 and f"topics on {inproc_url}" in topics.output, topics.output
    assert "arm/joint_state" in topics.output
    assert echo.exit_code == 0 and "--- arm/joint_state [JointState]" in echo.output
    assert nodes.exit_code == 0 and re.search(r"│ arm +│", nodes.output), nodes.output


def test_bus_and_the_environment_come_before_the_registry(runtime, inproc_url, monkeypatch):
    _entry(runtime, "other", "ipc://elsewhere", os.getpid())
    with _streaming(inproc_url):
        flag = runner.invoke(app, ["nodes", "--bus", inproc_url])
        monkeypatch.setenv("LOOPYLAB_BUS", inproc_url)
        env = runner.invoke(app, ["nodes"])
    assert flag.exit_code == 0 and f"nodes on {inproc_url}" in flag.output
    assert env.exit_code == 0 and f"nodes on {inproc_url}" in env.output


def test_several_running_graphs_are_listed_and_bus_asked_for(runtime):
    sleeper = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        _entry(runtime, "sim_bench", "ipc://sim_bench", os.getpid())
        _entry(runtime, "koch", "ipc://koch", sleeper.pid)
        result = runner.invoke(app, ["topics"])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == "error: 2 graphs are running; pick one with --bus URL (or $LOOPYLAB_BUS):"
    assert lines[1].startswith("  ipc://sim_bench  (sim_bench from graphs/sim_bench.toml, pid ")
    assert lines[2].startswith("  ipc://koch  (koch from graphs/koch.toml, pid ")


def test_stale_entries_are_ignored_and_deleted(runtime, inproc_url):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _entry(runtime, "crashed", "ipc://crashed", dead.pid)
    (runtime / "graphs" / "torn.1.json").write_text('{"name": "to')  # a launcher killed mid-write
    _entry(runtime, "bench", inproc_url, os.getpid())
    assert [g.url for g in registry.running()] == [inproc_url]
    assert [f.name for f in (runtime / "graphs").iterdir()] == [f"bench.{os.getpid()}.json"]


@pytest.mark.parametrize("verb", [["topics"], ["echo", "arm/joint_state"], ["nodes"], ["record", "-o", "x.mcap"]])
def test_each_tool_says_in_one_line_that_no_graph_runs(runtime, verb, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, verb)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: no graph is running: start one with `loopylab launch GRAPH.toml` (e.g. graphs/sim_bench.toml), "
        "or pass --bus URL"
    ]
    assert not list(tmp_path.iterdir())  # record wrote nothing


def test_record_refuses_an_empty_file_unless_asked(runtime, inproc_url, tmp_path):
    out = tmp_path / "empty.mcap"
    with Node("quiet", inproc_url):
        refused = runner.invoke(app, ["record", "-o", str(out), "nothing/*", "--duration", "0.3", "--bus", inproc_url])
        assert refused.exit_code == 1
        assert (
            f"error: nothing was published on nothing/* at {inproc_url} while recording: {out} not written "
            f"(--allow-empty writes it anyway)"
        ) in refused.output
        assert not list(tmp_path.iterdir())
        allowed = runner.invoke(
            app, ["record", "-o", str(out), "nothing/*", "--duration", "0.3", "--allow-empty", "--bus", inproc_url]
        )
    assert allowed.exit_code == 0, allowed.output
    assert list(read_messages(out)) == [] and [f.name for f in tmp_path.iterdir()] == ["empty.mcap"]


def test_a_launched_graph_stopped_by_sigterm_leaves_no_sockets_and_no_registry_entry(runtime):
    """The launcher registers the graph and says how tools reach it; SIGTERM stops it and removes its entry,
    every node's socket files and its run dir."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopylab.bus.launch", "graphs/demo.toml"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LOOPYLAB_RUNTIME_DIR": str(runtime)},
    )
    try:
        for line in proc.stdout:  # the monitor hears the arm's stream: the graph is up
            if line.startswith("[monitor] arm/joint_state"):
                break
        # every node's sockets are bound by now or soon: on a loaded host a node's heartbeat may bind late
        wait_until(lambda: len(list(runtime.rglob("*.sock"))) >= 8, 120)
        entries = [json.loads(e.read_text()) for e in (runtime / "graphs").glob("*.json")]
        sockets = list(runtime.rglob("*.sock"))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert [(e["url"], e["pid"], e["graph_file"]) for e in entries] == [("ipc://demo", proc.pid, "graphs/demo.toml")]
    assert len(sockets) >= 8, sockets  # the directory's two, and each node's heartbeat and topics
    assert "[launch] graph 'demo' on ipc://demo (3 nodes)" in err
    assert "tools find it by itself" in err and "--bus ipc://demo" in err
    assert proc.returncode == 0, err
    assert list(runtime.rglob("*.sock")) == [] and list((runtime / "graphs").iterdir()) == []
    assert not (runtime / "ipc" / "demo").exists()
