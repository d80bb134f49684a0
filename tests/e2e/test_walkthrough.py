"""The README's walkthrough, verb by verb, as a user types it: no --bus anywhere.

    loopylab launch graphs/sim_bench.toml        (in the background)
    loopylab topics / echo / record / replay / skill push red_block -x 0.05

Real processes on a real ipc graph, each step bounded in time; the graph is stopped with SIGTERM at the end
and must leave no registry entry and no socket files. The registry and run dirs are this test's own
($LOOPYLAB_RUNTIME_DIR), so graphs that other tests launch meanwhile are not found instead.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.waiting import wait_for_value, wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def env():
    runtime = tempfile.mkdtemp(prefix="ll")  # short: ipc socket paths are limited to ~107 bytes
    env = {k: v for k, v in os.environ.items() if k != "LOOPYLAB_BUS"}
    yield {**env, "LOOPYLAB_RUNTIME_DIR": runtime}
    shutil.rmtree(runtime, ignore_errors=True)


def loopylab(env: dict, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loopylab.lab.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_readme_walkthrough_works_without_bus(env, tmp_path):
    runtime = Path(env["LOOPYLAB_RUNTIME_DIR"])
    with open(tmp_path / "launch.log", "w+") as log:
        graph = subprocess.Popen(
            [sys.executable, "-m", "loopylab.lab.cli", "launch", "graphs/sim_bench.toml"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # topics, until the arm publishes (a busy machine starts three PyBullet processes slowly); not before the
            # arm's process has imported PyBullet (its first line in the launch log): each `topics` is a whole CLI
            # start-up, seconds of CPU on a loaded machine, that would only slow the graph's own start
            started = tmp_path / "launch.log"
            wait_until(lambda: "[sim_arm] pybullet" in started.read_text() or graph.poll() is not None, 180, 0.2)
            seen = []  # every `topics` answer: the last one explains a failure
            wait_for_value(
                lambda: seen.append(loopylab(env, "topics")) or seen[-1],
                lambda t: "arm/joint_state" in t.stdout or graph.poll() is not None,
                180,
                interval=1.0,
            )
            topics = seen[-1]
            assert topics.returncode == 0 and "topics on ipc://sim_bench" in topics.stdout, _said(topics, log)
            assert "arm/joint_state" in topics.stdout, _said(topics, log)

            echo = loopylab(env, "echo", "arm/joint_state", "-n", "1")
            assert echo.returncode == 0 and "--- arm/joint_state [JointState]" in echo.stdout, _said(echo, log)

            mcap = tmp_path / "run.mcap"
            record = loopylab(env, "record", "-o", str(mcap), "--duration", "3", "arm/joint_state")
            assert record.returncode == 0 and mcap.stat().st_size > 0, _said(record, log)
            recorded = int(record.stdout.split(f"{mcap}: ")[1].split(" messages")[0])
            assert recorded > 0

            replay = loopylab(env, "replay", str(mcap), "--rate", "0")
            assert replay.returncode == 0, _said(replay, log)
            assert f"replayed {recorded} of {recorded} messages" in replay.stdout

            skill = loopylab(env, "skill", "push", "red_block", "-x", "0.05", "--json", timeout=240)
            assert skill.returncode == 0, _said(skill, log)
            reply = json.loads(skill.stdout.strip().splitlines()[-1])
            assert reply["ok"] and reply["measurements"]["displacement_m"][0] < -0.02  # it went the -x way

            entries = [json.loads(f.read_text()) for f in (runtime / "graphs").glob("*.json")]
            assert [(e["url"], e["pid"]) for e in entries] == [("ipc://sim_bench", graph.pid)]
            graph.send_signal(signal.SIGTERM)
            assert graph.wait(60) == 0, _said(None, log)
        finally:
            if graph.poll() is None:
                os.killpg(graph.pid, signal.SIGKILL)
                graph.wait()
        log.seek(0)
        text = log.read()
        assert "[launch] graph 'sim_bench' on ipc://sim_bench (3 nodes)" in text
        assert "--bus ipc://sim_bench" in text  # the launcher says where it runs
        assert list(runtime.rglob("*.sock")) == [] and list((runtime / "graphs").iterdir()) == []


def _said(proc: subprocess.CompletedProcess | None, log) -> str:
    log.seek(0)
    launched = log.read()[-3000:]
    return (
        f"{proc.args}\n--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-2000:]}\n" if proc else ""
    ) + f"--- launch\n{launched}"
