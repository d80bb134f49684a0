"""`loopylab run --question "which model explains how red_block bounces"` end to end on the simulated bench: the
arm drops the block from heights it chooses, and the conclusion, graded against the world's hidden contact, names
the model with its parameters."""

import json
import subprocess
import sys
from pathlib import Path

from loopylab.world import notebook as g

ROOT = Path(__file__).resolve().parents[2]


def test_loopylab_run_tells_a_sticky_block_by_its_drops(tmp_path):
    out = tmp_path / "report"
    question = "which model explains how red_block bounces"
    cmd = [sys.executable, "-m", "loopylab.lab.cli", "run", "-q", question, "--seed", "1000007", "--out", str(out)]
    proc = subprocess.run([*cmd, "--quiet", "--run-seed", "3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["success"] is True  # dev world 1000007: sticky, k 0.57, 0.61 at 1 m/s
    sections = g.parse((out / "notebook.txt").read_text())
    heights = {s.body.height for s in sections if s.kind == "experiment"}
    assert len(heights) >= 2  # drops from more than one height: one cannot tell the models apart
    (con,) = [s.body for s in sections if s.kind == "conclusion"]
    assert con.answers[0].model == "sticky"
    assert [a.quantity for a in con.answers[1:] if isinstance(a, g.Estimate)] == ["restitution", "stickiness"]
    assert [a.object for a in con.answers if isinstance(a, g.ComOffset)] == ["red_block"]  # where its tables dropped it
