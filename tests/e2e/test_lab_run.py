"""`loopylab run` end to end: the CLI joins a served sim bench (lockstep; `--attach`, lab.bench.serve_bench),
loads its question's world, runs one investigation over the bus, and writes a report whose notebook parses and
whose conclusion is graded against the oracle. (A run that starts its own bench: test_demo, tests/lab.)"""

import json
import subprocess
import sys
from pathlib import Path

from loopylab.world import notebook as g

ROOT = Path(__file__).resolve().parents[2]


def test_loopylab_run_answers_a_question_end_to_end(tmp_path, served_bench):
    out = tmp_path / "report"
    assert served_bench.bench.oracle()["red_block"]["mass"] != 0.197  # the bench serves seed 0's world
    cmd = [
        sys.executable,
        "-m",
        "loopylab.lab.cli",
        "run",
        "-q",
        "estimate mass of red_block within 10%",
        "--seed",
        "2",
        "--out",
        str(out),
        "--quiet",
        "--run-seed",
        "77",
        *served_bench.cli_args(),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["success"] is True and summary["experiments"] >= 1
    assert summary["run_seed"] == 77  # the agent's own seed (in its own process), recorded
    assert {p.name for p in out.iterdir()} >= {"notebook.jsonl", "notebook.txt", "posterior.png", "result.json"}
    sections = g.parse((out / "notebook.txt").read_text())
    kinds = [s.kind for s in g.policy_sections(sections)]  # audit lines (provenance, reasons, raw, stop) aside
    assert "provenance" in [s.kind for s in sections] and sections[-1].kind == "stop"
    assert kinds[:3] == ["question", "scene", "hypothesis"] and kinds[-1] == "conclusion"
    assert kinds.count("experiment") == kinds.count("observation") == summary["experiments"]
    records = [json.loads(line) for line in (out / "notebook.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == [s.render() for s in sections]
    truth = summary["truth"]["red_block"]["mass"]
    assert abs(summary["answer"] - truth) / truth <= 0.10
    # the run loaded seed 2's world (its red block: 0.197 kg), and the bench runs on after it
    assert truth == 0.197 and served_bench.bench.oracle()["red_block"]["mass"] == 0.197
    assert served_bench.bench.graph.failure == ""


def test_attach_needs_its_keys_and_keeps_them_private(tmp_path):
    import typer
    from typer.testing import CliRunner

    from loopylab.lab.commands import register

    app = typer.Typer()
    register(app)
    q = ["run", "-q", "estimate mass of red_block within 10%"]
    res = CliRunner().invoke(app, [*q, "--attach", "ipc://nobench"])
    assert res.exit_code == 2 and "--bench-keys" in res.output
    keys = tmp_path / "bench.keys"
    keys.write_bytes(b"not keys")
    keys.chmod(0o644)
    res = CliRunner().invoke(
        app, [*q, "--attach", "ipc://nobench", "--bench-keys", str(keys), "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2 and "chmod 600" in res.output, res.output
    res = CliRunner().invoke(app, [*q, "--attach", "ipc://nobench", "--bench-keys", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no bench keys file" in res.output, res.output


def test_loopylab_run_rejects_a_bad_question_clearly():
    import typer
    from typer.testing import CliRunner

    from loopylab.lab.commands import register

    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["run", "-q", "how heavy is it?"])
    assert res.exit_code == 2
    assert "question" in res.output and "estimate" in res.output


def test_a_world_for_another_arm_is_refused_on_a_running_bench(served_bench):
    from loopylab.lab.evaluation import WorldTask, run_world

    row = run_world(WorldTask("eig", "mass", 2, robot="kuka_iiwa"), bench=served_bench.bench)
    assert row["crashed"] and "the bench has a panda, the task asks for a kuka_iiwa" in row["exception"], row
    assert served_bench.bench.graph.failure == ""  # and the bench runs on
