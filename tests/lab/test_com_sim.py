"""The centre-of-mass kinds on the simulated bench: the sealed evaluation of a seeded world (the wrist F/T sensor
with its datasheet noise reads the offset while a drop holds the block), graded on the hidden world; and
`loopylab run` asking where the centre of mass is."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from loopylab.lab.evaluation import EvalConfig, run_eval
from loopylab.world import notebook as g

ROOT = Path(__file__).resolve().parents[2]


# the sealed worlds (graphs/world.secret) that `loopylab eval` and `run` build:
SEED = 26  # a 0.59 kg block (a reading good to ~0.7 mm), centred for `sits`
OFFSET_SEED = 23  # a 0.16 kg block whose com_model world puts its centre of mass at (-13.7, -7.1) mm


@pytest.fixture(scope="module")
def rows():
    """The worlds of the train split above, sealed as `loopylab eval` runs them."""
    out = run_eval(EvalConfig(agents=["eig"], kinds=["com", "sits"], seeds=[SEED], workers=1))
    out += run_eval(EvalConfig(agents=["eig"], kinds=["sits"], seeds=[OFFSET_SEED], workers=1))
    return {(r["kind"], r["seed"]): r for r in out}


def test_the_expert_locates_the_centre_of_mass_with_signed_offsets(rows):
    row = rows[("com", SEED)]
    assert not row["crashed"], row.get("traceback")
    assert row["question"] == "where is the centre of mass of red_block within 3.0 mm"
    assert row["success"], (row["conclusion"], row["truth_value"])
    sections = g.parse(row["notebook"])
    assert {s.body.skill for s in sections if s.kind == "experiment"} <= {"drop", "weigh"}
    (clause,) = next(s.body for s in sections if s.kind == "conclusion").answers
    assert isinstance(clause, g.ComOffset)
    truth = row["truth_value"]
    assert all(abs(v / 1000 - t) <= 0.003 for v, t in zip((clause.x, clause.y), truth))


def test_the_expert_tells_how_the_block_sits_and_explains_it(rows):
    row = rows[("sits", SEED)]
    assert not row["crashed"], row.get("traceback")
    assert row["model_truth"] == "centred" and row["model_answer"] == "centred", row["notebook"]
    assert row["model_correct"] and not row["falsified_true_model"]
    beliefs = [s.body for s in g.parse(row["notebook"]) if s.kind == "belief"]
    # the offset model is ruled out: refuted by a reading's check, or outweighed. Which one depends on the
    # notebook's rounding: a first reading of (0, 0) mm falls outside the offset model's 99.8 % range, one of
    # (-1, 1) mm (3 runs in 14 under load) does not, as a 50 g block's could read that, but leaves it 0.01
    refuted = any(isinstance(c, g.Rejection) and c.model == "offset" for b in beliefs for c in b.estimates)
    last = {c.model: c.p for c in beliefs[-1].estimates if isinstance(c, g.ModelProb)}
    assert refuted or last["offset"] <= 0.05, beliefs[-1].render()
    assert row["held_out"] == "drop red_block 0.15" and math.isfinite(row["explanation_pred_error"])


def test_the_expert_finds_an_offset_centre_of_mass_and_states_it(rows):
    row = rows[("sits", OFFSET_SEED)]
    assert not row["crashed"], row.get("traceback")
    assert row["model_truth"] == "offset" and row["model_correct"] and not row["falsified_true_model"]
    head, offset = g.parse_body("conclusion", row["conclusion"]).answers
    assert head.model == "offset" and isinstance(offset, g.ComOffset)
    assert offset.x < 0 and offset.y < 0  # both signs right: (-13.7, -7.1) mm


def test_loopylab_run_answers_where_the_centre_of_mass_is(tmp_path):
    out = tmp_path / "report"
    q = "where is the centre of mass of red_block within 3.0 mm budget 2"  # two drops at most: the CLI is the point
    cmd = [sys.executable, "-m", "loopylab.lab.cli", "run", "-q", q, "--seed", str(SEED), "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 1 <= summary["experiments"] <= 2 and len(summary["answer"]) == 2  # signed x and y, m
    sections = g.parse((out / "notebook.txt").read_text())
    assert sections[0].body.render() == q
    conclusion = next(s.body for s in reversed(sections) if s.kind == "conclusion")
    assert isinstance(conclusion.answers[0], g.ComOffset)
