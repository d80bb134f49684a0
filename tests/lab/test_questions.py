"""Questions: making them for seeded worlds, and grading conclusions against the truth."""

import pytest

from loopylab.lab.experiments import path_clear, strike_travel
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.questions import KINDS, all_questions, grade, make_question, parse_question
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed

TRUTH = {
    "red_block": {"mass": 0.30, "friction": 0.40, "restitution": 0.5},
    "blue_ball": {"mass": 0.10, "friction": 0.70, "restitution": 0.2},
}


def _c(text):
    return g.parse_body("conclusion", text)


def test_every_kind_for_seeded_worlds_round_trips_through_text():
    for seed in range(5):
        scene = grammar_scene(scene_from_seed(seed, n_objects=2).perceived())
        qs = all_questions(scene, seed)
        assert [q.kind for q in qs] == list(KINDS)
        for q in qs:
            assert parse_question(q.render()) == q
        pred = qs[-1]
        assert path_clear(scene, pred.object, pred.action.direction, strike_travel(pred.action.speed))


def test_rank_needs_two_objects():
    scene = grammar_scene(scene_from_seed(0, n_objects=1).perceived())
    with pytest.raises(ValueError, match="two objects"):
        make_question("rank", scene)


def test_grading_estimates_uses_absolute_or_relative_tolerance():
    fq = g.Question("friction", ("red_block",), 0.05)
    assert grade(fq, _c("friction red_block 0.44 0.02"), TRUTH).success
    assert not grade(fq, _c("friction red_block 0.46 0.02"), TRUTH).success
    mq = g.Question("mass", ("red_block",), 0.10)
    assert grade(mq, _c("mass red_block 0.325 0.010"), TRUTH).success  # 8 % off
    r = grade(mq, _c("mass red_block 0.340 0.010"), TRUTH)  # 13 % off
    assert not r.success and r.error == pytest.approx(0.1333, abs=1e-3)
    assert not grade(mq, _c("friction red_block 0.40 0.01"), TRUTH).success  # answers another question


def test_grading_rank_and_predict():
    rq = g.Question("rank", ("red_block", "blue_ball"))
    assert grade(rq, _c("mass order red_block > blue_ball"), TRUTH).success
    bad = grade(rq, _c("mass order blue_ball > red_block"), TRUTH)
    assert not bad.success and bad.error == 1.0
    pq = g.Question("predict", ("red_block",), 0.02, None, g.Experiment("strike", "red_block", "+x", speed=0.4))
    assert grade(pq, _c("slide red_block 0.050 0.010"), TRUTH, outcome=0.065).success
    assert not grade(pq, _c("slide red_block 0.050 0.010"), TRUTH, outcome=0.075).success
    with pytest.raises(ValueError, match="outcome"):
        grade(pq, _c("slide red_block 0.050 0.010"), TRUTH)


def test_a_predict_question_needs_an_arm_that_strikes():
    # the desk arms' grids have no strike levels: a held-out strike on them is refused, plainly, instead of being
    # drawn along a Panda's table (where an SO-101's objects, 0.14-0.22 m out, are off it in every direction)
    desk = grammar_scene(scene_from_seed(2000002, robot="so101"))
    for robot in ("so101", "koch"):
        with pytest.raises(ValueError, match="does not strike"):
            make_question("predict", desk, 2000002, robot=robot)
    panda = grammar_scene(scene_from_seed(1000003))
    for robot in (None, "panda", "xarm6"):  # the large arms share the Panda's workspace: the same question
        assert make_question("predict", panda, 1000003, robot=robot) == make_question("predict", panda, 1000003)
