"""Predict where an object stops after a held-out push: the text forms, the held-out push, grading on where the
hidden world left it, the belief's posterior predictive through the real Twin, and `loopylab run` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.lab import kinds
from loopylab.lab.experiments import PUSH_DISTANCES, path_clear
from loopylab.lab.forward import Axes, ForwardModel, InlineTwins
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.predict_stop import TALL, StopPosterior, arm_offset, held_out_push
from loopylab.lab.questions import grade, make_question
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed

ROOT = Path(__file__).resolve().parents[2]
names = st.from_regex(g.NAME_RE, fullmatch=True)
metres = st.integers(-999, 999).map(lambda i: i / 1000)


@settings(max_examples=80, deadline=None)
@given(names, st.sampled_from(g.DIRECTIONS), st.integers(1, 30), st.integers(1, 30), st.integers(1, 50), metres, metres)
def test_stop_questions_and_positions_round_trip_through_text(obj, d, dist, speed, tol, x, y):
    act = g.Experiment("push", obj, d, dist / 100, speed / 100)
    q = g.Question("predict_stop", (obj,), tol / 1000, None, act)
    text = q.render()
    assert text.startswith(f"predict where {obj} stops after push {act.render()[len(f'push {obj} ') :]} within")
    assert g.parse_body("question", text) == q and g.body_complete("question", text)
    pos = g.Position(obj, x + 0.0, y + 0.0, tol / 1000)
    for kind in ("belief", "conclusion"):
        body = g.parse_body(kind, pos.render())
        assert body.render() == pos.render() and g.body_complete(kind, pos.render())
    assert g.parse_body("conclusion", pos.render()).answers[0].value == (x + 0.0, y + 0.0)


@pytest.mark.parametrize(
    "text",
    [
        "position red_block -0.000 0.100 0.010",  # no negative zero
        "position red_block 0.61 0.100 0.010",  # three decimals
        "position red_block 0.610 0.100 -0.010",  # a spread is not negative
    ],
)
def test_positions_that_are_not_canonical_are_refused(text):
    with pytest.raises(g.GrammarError):
        g.parse_body("conclusion", text)


def test_a_stop_is_graded_by_its_distance_from_where_the_hidden_world_left_the_object():
    act = g.Experiment("push", "red_block", "+y", 0.12, 0.05)
    q = g.Question("predict_stop", ("red_block",), 0.010, None, act)
    c = g.parse_body("conclusion", "position red_block 0.550 0.130 0.006")
    assert grade(q, c, {}, outcome=(0.556, 0.137)).success  # 9.2 mm off
    miss = grade(q, c, {}, outcome=(0.558, 0.137))  # 10.6 mm off
    assert not miss.success and miss.error == pytest.approx(0.01063, abs=1e-4) and miss.truth == (0.558, 0.137)
    with pytest.raises(ValueError, match="held-out push"):
        grade(q, c, {})
    assert not grade(q, g.parse_body("conclusion", "slide red_block 0.130 0.010"), {}, outcome=(0.55, 0.13)).success
    # the outcome is the hidden world's own position of the object, whatever the push's reply measured
    before, after = ({"red_block": {"position": [0.556, y, 0.025]}} for y in (0.017, 0.137))

    def outcome(reply, oracle=(before, after)):
        reads = iter(oracle)
        return kinds.held_out_outcome(
            q, lambda act: reply if act == q.action else pytest.fail(act), lambda: next(reads)
        )

    assert outcome({"ok": True, "measurements": {"moved_m": 0.1}}) == (0.556, 0.137)
    # a push whose reading the skill refused after pushing still left the block somewhere; one that never
    # moved it cannot be graded
    refused = {"ok": False, "error": "push: the hand hit something besides red_block"}
    assert outcome(refused) == (0.556, 0.137)
    with pytest.raises(RuntimeError, match="before it moved red_block"):
        outcome(refused, (before, before))
    strike = g.Question("predict", ("red_block",), 0.01, None, g.Experiment("strike", "red_block", "+y", speed=0.4))
    reply = {"ok": True, "measurements": {"slide_m": 0.061}}
    assert kinds.held_out_outcome(strike, lambda act: reply, lambda: pytest.fail("no oracle")) == 0.061
    with pytest.raises(RuntimeError, match="held-out action failed"):
        kinds.held_out_outcome(strike, lambda act: {"ok": False, "error": "x"}, lambda: pytest.fail("no oracle"))


def test_the_held_out_push_is_one_the_grid_never_offers_with_a_clear_path():
    for seed in range(1000000, 1000008):
        scene = grammar_scene(scene_from_seed(seed).perceived())
        q = make_question("predict_stop", scene, seed)
        a = q.action
        assert a.skill == "push" and a.distance not in PUSH_DISTANCES and a.speed <= 0.08
        assert path_clear(scene, q.object, a.direction, a.distance) and q.tolerance == 0.010
        assert make_question("predict_stop", scene, seed) == q  # drawn for the seed: the same every time
        assert g.parse_body("question", q.render()) == q
    assert len({held_out_push(scene, "red_block", s).render() for s in range(12)}) > 2


@pytest.fixture(scope="module")
def belief():
    spec = scene_from_seed(1000002)
    perceived = spec.perceived()
    q = make_question("predict_stop", grammar_scene(perceived), 1000002)
    fm = ForwardModel(perceived, InlineTwins(), Axes(points=5))
    return q, perceived, kinds.make_posterior(q, fm, None, 800, None, 0)


def test_the_prediction_is_the_twins_push_plus_the_arms_scatter(belief):
    q, perceived, post = belief
    assert isinstance(post, StopPosterior)
    start = np.array(perceived.object(q.object).position[:2])
    u = np.array({"+x": (1, 0), "-x": (-1, 0), "+y": (0, 1), "-y": (0, -1)}[q.action.direction], float)
    _, y = post.predictive(q.object)
    centre = y.mean(axis=0)
    # the hand stays on the block to the end: it stops the commanded distance on (the twin's pad: 5.5 mm more along
    # y), and where the arm leaves it about the twin's
    pad = 0.0055 if q.action.direction[1] == "y" else 0.0
    along = arm_offset(q.action.direction, perceived.object(q.object).size)[0]
    assert np.linalg.norm(centre - (start + u * (q.action.distance + pad + along))) < 0.002
    ans = post.answer(0.9)
    (pos,) = ans.conclusion.answers
    assert isinstance(pos, g.Position) and np.hypot(pos.x - centre[0], pos.y - centre[1]) < 0.002
    assert 0.004 < pos.spread < 0.015 and 0.8 < ans.confidence <= 1.0
    text = g.section_text(post.belief())
    assert g.parse(text)[0].body.estimates[-1].object == q.object  # the belief's text parses, with its position


def test_a_block_taller_than_the_gap_under_the_palm_is_carried_further():
    for d in g.DIRECTIONS:
        assert arm_offset(d, TALL + 0.005)[0] - arm_offset(d, TALL - 0.005)[0] > 0.004


def test_an_object_the_twin_pushes_further_is_predicted_further(belief):
    q, perceived, post = belief
    far = g.Question(
        "predict_stop", q.objects, q.tolerance, None, g.Experiment(**{**q.action.__dict__, "distance": 0.14})
    )
    longer = StopPosterior(far, post.forward, None, 800, None, 0)
    d0 = np.linalg.norm(post.predictive(q.object)[1].mean(axis=0) - longer.predictive(q.object)[1].mean(axis=0))
    assert d0 == pytest.approx(abs(0.14 - q.action.distance), abs=0.002)


def test_loopylab_run_predicts_where_a_pushed_block_stops(tmp_path):
    out = tmp_path / "report"
    question = "predict where red_block stops after push +x 0.08 0.05 within 0.010 budget 3"
    cmd = [sys.executable, "-m", "loopylab.lab.cli", "run", "-q", question, "--seed", "1000002", "--run-seed", "3"]
    proc = subprocess.run([*cmd, "--out", str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    sections = g.policy_sections(g.parse((out / "notebook.txt").read_text()))
    assert sections[0].body.render() == question and sections[-1].kind == "conclusion"
    (pos,) = sections[-1].body.answers
    assert isinstance(pos, g.Position) and pos.object == "red_block"
    start = scene_from_seed(1000002).object("red_block").position
    assert abs(pos.x - (start[0] + 0.08)) < 0.008 and abs(pos.y - start[1]) < 0.008
    assert "success" in summary and summary["experiments"] <= 3
