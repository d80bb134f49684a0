"""The bus commands of the CLI against live graphs: topics, echo, nodes, record, replay, demo-bus."""
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import typer
from typer.testing import CliRunner

from loopylab.bus import Image, JointState, Node
from loopylab.bus.cli import register
from loopylab.bus.config import BusConfig
from loopylab.bus.record import read_messages
from tests.bus import helpers

REPO = Path(__file__).resolve().parents[2]
app = typer.Typer()


@app.callback()
def _root():
    pass


register(app)
runner = CliRunner()


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
    import shutil
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
            result = runner.invoke(app, ["replay", str(out), "--rate", "0", "--wait-subscribers", "1",
                                         "--bus", url2])
            assert result.exit_code == 0, result.output
            assert f"replayed {len(recorded)} of {len(recorded)} messages" in result.output
            first = sub.get(timeout=5)
            np.testing.assert_array_equal(first.position, recorded[0][2].position)
    finally:
        stop_local(url2)


def test_demo_graph_runs_and_reports_rates():
    """The demo graph's three processes talk: the monitor reports both streams; SIGTERM ends it cleanly."""
    import shutil
    import signal
    import time
    url = f"ipc://demo{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-m", "loopylab.bus.launch", "graphs/demo.toml", "--bus", url], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
