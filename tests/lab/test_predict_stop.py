"""Predict where an object stops after a held-out strike (or push): the text forms, the held-out strike, grading on
where the hidden world left it, the belief's posterior predictive through the real Twin (friction moves it: an
investigation), and `loopylab run` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.lab import kinds
from loopylab.lab.beliefs import predict_biased
from loopylab.lab.experiments import SMALL_ARMS, STRIKE_SPEEDS, path_clear, strike_travel, workspace
from loopylab.lab.forward import Axes, ForwardModel, InlineTwins
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.predict_stop import (
    STOP_SPEEDS,
    STRIKE_ARM,
    TALL,
    StopPosterior,
    arm_offset,
    held_out_strike_for,
    strike_carry,
)
from loopylab.lab.questions import PREDICT_SPEED_ALONG_X, grade, grade_answer, make_question
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
    strike = g.Question("predict_stop", (obj,), tol / 1000, None, g.Experiment("strike", obj, d, speed=speed / 50))
    text = strike.render()
    assert text.startswith(f"predict where {obj} stops after strike {d} ") and g.parse_body("question", text) == strike


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
    # a step's answer as the agent's process sends it back (text), graded as the conclusion's
    assert grade_answer(q, ("0.550", "0.130"), {}, (0.556, 0.137)).error == pytest.approx(0.0092, abs=1e-4)
    with pytest.raises(ValueError, match="held-out action"):
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
        outcome(refused, (before, before, before, before))  # refused twice, the block untouched: no grade


def test_a_held_out_action_refused_before_it_touched_anything_runs_again():
    act = g.Experiment("strike", "red_block", "+y", speed=0.5)
    q = g.Question("predict_stop", ("red_block",), 0.015, None, act)
    at = lambda y: {"red_block": {"position": [0.55, y, 0.025]}}  # noqa: E731
    late = {"ok": False, "error": "strike: no sim/scene of the requested world within 10 s"}
    replies, reads = iter([late, {"ok": True, "measurements": {"slide_m": 0.03}}]), iter([at(0.0), at(0.0), at(0.09)])
    assert kinds.held_out_outcome(q, lambda a: next(replies), lambda: next(reads)) == (0.55, 0.09)
    # one that failed after it moved the block (1 cm of 6 carried) is not run again from a spot the question never saw
    replies, reads = iter([late, late]), iter([at(0.0), at(0.01)])
    with pytest.raises(RuntimeError, match="held-out strike failed"):
        kinds.held_out_outcome(q, lambda a: next(replies), lambda: next(reads))
    strike = g.Question("predict", ("red_block",), 0.01, None, g.Experiment("strike", "red_block", "+y", speed=0.4))
    reply = {"ok": True, "measurements": {"slide_m": 0.061}}
    assert kinds.held_out_outcome(strike, lambda act: reply, lambda: pytest.fail("no oracle")) == 0.061
    with pytest.raises(RuntimeError, match="held-out action failed"):
        kinds.held_out_outcome(strike, lambda act: {"ok": False, "error": "x"}, lambda: pytest.fail("no oracle"))


def test_the_held_out_strike_is_fast_one_the_grid_never_offers_with_a_clear_path_in_the_arms_reach():
    speeds = set()
    for seed in range(1000000, 1000008):
        scene = grammar_scene(scene_from_seed(seed).perceived())
        q = make_question("predict_stop", scene, seed)
        a = q.action
        assert a.skill == "strike" and a.speed not in STRIKE_SPEEDS and q.tolerance == 0.015
        assert a.speed in STOP_SPEEDS if a.direction[1] == "y" else a.speed == PREDICT_SPEED_ALONG_X
        assert path_clear(scene, q.object, a.direction, strike_travel(a.speed))
        assert make_question("predict_stop", scene, seed) == q  # drawn for the seed: the same every time
        assert g.parse_body("question", q.render()) == q
        speeds.add(a.speed)
    assert len(speeds) > 1


def test_an_arm_that_cannot_strike_says_so_and_a_held_out_strike_fits_the_arms_own_reach():
    scene = grammar_scene(scene_from_seed(1000003).perceived())
    for robot in SMALL_ARMS:
        with pytest.raises(ValueError, match="does not strike.*predict_stop"):
            make_question("predict_stop", scene, 1000003, robot=robot)
    # an arm with a smaller reach than the Panda's (the old code checked the path against the Panda's table)
    near = g.Scene((g.SceneObject("red_block", "cube", 0.05, 0.40, 0.0),))
    q = make_question("predict_stop", near, 5)
    assert q.action.direction in ("+y", "-y")
    small = replace(workspace("panda"), y=(-0.05, 0.05))
    act = held_out_strike_for(near, "red_block", 5, small)
    assert act.direction in ("+x", "-x") and path_clear(
        near, "red_block", act.direction, strike_travel(act.speed), small
    )


@pytest.fixture(scope="module")
def belief():
    spec = scene_from_seed(1000002)
    perceived = spec.perceived()
    q = make_question("predict_stop", grammar_scene(perceived), 1000002)
    fm = ForwardModel(perceived, InlineTwins(), Axes(points=5))
    return q, perceived, kinds.make_posterior(q, fm, None, 800, None, 0)


def _unit(direction: str) -> np.ndarray:
    return np.array({"+x": (1, 0), "-x": (-1, 0), "+y": (0, 1), "-y": (0, -1)}[direction], float)


def _at_friction(post: StopPosterior, mu: float) -> np.ndarray:
    """The predictive's centre were the object's friction `mu` (every particle)."""
    obj = post.objects[post.question.object]
    saved = obj.theta.copy()
    try:
        obj.theta[:, 0] = np.log(mu)
        return post.predictive(post.question.object)[1].mean(axis=0)
    finally:
        obj.theta = saved


def test_a_struck_block_rests_where_the_hand_carried_it_plus_its_slide(belief):
    q, perceived, post = belief
    assert isinstance(post, StopPosterior) and q.action.skill == "strike"
    start = np.array(perceived.object(q.object).position[:2])
    u = _unit(q.action.direction)
    _, y = post.predictive(q.object)
    slide = predict_biased(post.forward, q.action, post.objects[q.object].theta)["slide_m"]
    along = (
        strike_carry(q.action.speed) + STRIKE_ARM[0] + float(np.average(slide, weights=post.objects[q.object].weights))
    )
    assert np.linalg.norm(y.mean(axis=0) - (start + u * along)) < 0.002
    # the hand carries the block from contact to the brake: 4 cm at 0.25 m/s, 6 cm at 0.50 (the plan's own)
    assert strike_carry(0.25) == pytest.approx(0.0397, abs=5e-4) and strike_carry(0.50) == pytest.approx(
        0.0631, abs=5e-4
    )
    ans = post.answer(0.9)
    (pos,) = ans.conclusion.answers
    assert isinstance(pos, g.Position) and pos.spread > 0.004
    text = g.section_text(post.belief())
    assert g.parse(text)[0].body.estimates[-1].object == q.object  # the belief's text parses, with its position


def test_the_hidden_friction_moves_the_answer_so_the_prior_alone_cannot_conclude(belief):
    """What makes the question an investigation (a push's resting spot moved by under 1 mm, and the lab
    concluded with no experiment): the resting spot of a slippery block is centimetres past a grippy one's."""
    q, perceived, post = belief
    u = _unit(q.action.direction)
    assert (_at_friction(post, 0.25) - _at_friction(post, 0.8)) @ u > 2 * q.tolerance
    assert post.answer(0.9).confidence < 0.8  # the prior is not enough to conclude


def test_a_push_question_still_predicts_where_the_hand_leaves_the_block(belief):
    q, perceived, post = belief
    push = g.Question("predict_stop", q.objects, q.tolerance, None, g.Experiment("push", q.object, "+x", 0.08, 0.05))
    stop = StopPosterior(push, post.forward, None, 800, None, 0)
    start = np.array(perceived.object(q.object).position[:2])
    along = arm_offset("+x", perceived.object(q.object).size)[0]
    assert np.linalg.norm(stop.predictive(q.object)[1].mean(axis=0) - (start + (0.08 + along, 0.0))) < 0.002


def test_a_block_taller_than_the_gap_under_the_palm_is_carried_further():
    for d in g.DIRECTIONS:
        assert arm_offset(d, TALL + 0.005)[0] - arm_offset(d, TALL - 0.005)[0] > 0.004


def test_loopylab_run_predicts_where_a_pushed_block_stops(tmp_path):
    out = tmp_path / "report"
    question = "predict where red_block stops after strike +y 0.50 within 0.015 budget 3"
    cmd = [sys.executable, "-m", "loopylab.lab.cli", "run", "-q", question, "--seed", "1000002", "--run-seed", "3"]
    proc = subprocess.run([*cmd, "--out", str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    sections = g.policy_sections(g.parse((out / "notebook.txt").read_text()))
    assert sections[0].body.render() == question and sections[-1].kind == "conclusion"
    (pos,) = sections[-1].body.answers
    assert isinstance(pos, g.Position) and pos.object == "red_block"
    start = scene_from_seed(1000002).object("red_block").position
    along = pos.y - start[1]  # carried 6.3 cm, then a slide of a few centimetres
    assert abs(pos.x - start[0]) < 0.008 and strike_carry(0.50) < along < strike_carry(0.50) + 0.06
    assert "success" in summary and 1 <= summary["experiments"] <= 3


def test_a_block_with_a_clear_path_across_is_asked_about_rather_than_a_strike_along_the_reach():
    """Dev world 1000008: the red block is boxed in across the reach, the blue block is not. Along the reach a
    strike is capped at 0.25 m/s and slides a few millimetres (the prior alone answers it): ask about the blue one."""
    scene = grammar_scene(scene_from_seed(1000008).perceived())
    assert not any(path_clear(scene, "red_block", d, strike_travel(max(STOP_SPEEDS))) for d in ("+y", "-y"))
    q = make_question("predict_stop", scene, 1000008)
    assert q.object == "blue_block" and q.action.object == "blue_block"
    assert q.action.direction in ("+y", "-y") and q.action.speed in STOP_SPEEDS
    assert path_clear(scene, q.object, q.action.direction, strike_travel(q.action.speed))
    # a world whose red block has a clear path across keeps asking about it
    assert make_question("predict_stop", grammar_scene(scene_from_seed(1000002).perceived()), 1000002).object == (
        "red_block"
    )
