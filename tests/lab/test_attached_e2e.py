""" "is A attached to B" end to end on the simulated bench: the sealed evaluation on a world of each model (free,
welded to the table, welded to B), and `loopylab run` on the command line."""

import json
import subprocess
import sys
from pathlib import Path

from loopylab.lab.evaluation import EvalConfig, run_eval
from loopylab.lab.replay import replay_text
from loopylab.world import notebook as g

ROOT = Path(__file__).resolve().parents[2]
WORLDS = {1000002: "free", 1000001: "welded", 1000006: "table"}  # sealed dev worlds (graphs/world.secret)


def test_the_expert_tells_how_a_block_sits_in_a_world_of_each_model():
    rows = run_eval(EvalConfig(agents=["eig"], kinds=["attached"], seeds=list(WORLDS), workers=1))
    for row in rows:
        assert not row["crashed"], row.get("traceback")
        assert row["model_truth"] == WORLDS[row["seed"]]
        assert row["model_correct"] and row["success"] and not row["falsified_true_model"], row["notebook"]
        sections = g.parse(row["notebook"])
        assert sections[0].body.kind == "attached"
        beliefs = [s.body for s in sections if s.kind == "belief"]
        assert beliefs  # the posterior over the three models after each experiment
        for b in beliefs:
            assert {c.model for c in b.estimates if isinstance(c, g.ModelProb)} == set(g.ATTACH_MODELS)
        assert row["experiments"] <= 4  # one push that moves (or not) tells a lot
        # what moved is in the raw lines, failures in the observations: the notebook replays to the same beliefs
        report = replay_text(row["notebook_audit"])
        assert report.ok, report.summary()
    by = {r["seed"]: r for r in rows}
    assert by[1000006]["explanation_pred_error"] < 2.0  # "fixed to the table": a strike slides nil, as it does


def test_loopylab_run_asks_whether_a_block_is_attached(tmp_path):
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "loopylab.lab.cli", "run", "-q", "is red_block attached to blue_block"]
    cmd += ["--seed", "1000010", "--out", str(out), "--quiet", "--run-seed", "5"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["success"] is True and summary["answer"] == "welded"  # dev world 1000010: welded to B
    sections = g.parse((out / "notebook.txt").read_text())
    assert sections[-2].kind == "conclusion" and sections[-2].body.answers[0].model == "welded"


def test_a_lift_reads_how_far_every_other_object_rose_with_it():
    """What the attached kind's lift evidence reads: dev world 1000000 on the SO-101, its block welded to a ball
    (no push reaches the pair), with a free block beside. The welded ball goes up with the block; the free one
    does not."""
    from loopylab.lab import kinds
    from loopylab.lab.bench import sim_bench

    with sim_bench(robot="so101", seed=1000000, n_objects=3) as bench:
        bench.reset(1000000, 3, structure=kinds.get("attached").structure)
        truth = bench.oracle()
        assert truth["red_block"]["attached_to"] == "blue_ball" and truth["green_block"]["attached_to"] is None
        r = bench.execute("lift", {"object": "red_block", "height": 0.05})
        assert r["ok"], r["error"]
        m = r["measurements"]
        assert m["lifted_m"] > 0.025 and abs(m["rose_blue_ball_m"] - m["lifted_m"]) < 0.01, m
        assert abs(m["rose_green_block_m"]) < 0.005, m
