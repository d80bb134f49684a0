"""Feasible calls only: the skills' own planners mask what the arm cannot carry out where the objects
stand, and an exact repeat is masked once the belief has settled what it measures."""

from __future__ import annotations

import pytest

from loopylab.lab.experiments import candidate_experiments
from loopylab.lab.notebook import NotebookView
from loopylab.nanochat.feasible import Feasibility, feasible_candidates, uninformative
from loopylab.world import notebook as g
from loopylab.world.notebook import Belief, Estimate, Experiment, Hypothesis, Question, Range, Scene, SceneObject
from loopylab.world.notebook import Section as S


@pytest.fixture(scope="module")
def feasibility():
    f = Feasibility("panda")
    yield f
    f.close()


def scene_at(x: float, y: float) -> Scene:
    return Scene((SceneObject("red_block", "cube", 0.05, x, y), SceneObject("blue_block", "cube", 0.05, 0.5, -0.15)))


def test_out_of_reach_object_is_masked_and_a_reachable_one_kept(feasibility):
    far, near = scene_at(0.90, 0.05), scene_at(0.55, 0.10)
    for skill in ("weigh", "drop"):
        e = Experiment(skill, "red_block", height=0.1) if skill == "drop" else Experiment(skill, "red_block")
        assert "cannot reach" in feasibility.refusal(far, e)
        assert feasibility.refusal(near, e) is None
    assert "not in the scene" in feasibility.refusal(near, Experiment("weigh", "green_puck"))
    assert feasibility.refusal(far, Experiment("weigh", "red_block")) is not None  # cached, same answer


def test_the_policy_is_offered_only_a_conclusion_when_nothing_is_reachable(feasibility):
    """The old agent handed the engine the whole grid: with the block dropped out of reach it kept
    writing calls that all failed on the arm."""
    from loopylab.nanochat.agent import NanochatAgent

    scene = Scene((SceneObject("red_block", "cube", 0.05, 0.92, 0.0),))
    q = Question("mass", ("red_block",), 0.1)
    grid = tuple(c for c in candidate_experiments(scene, q) if c.skill in ("weigh", "drop", "lift"))
    assert grid  # the lab's grid offers them: it checks paths, not the arm's reach
    hyp = Hypothesis((Range("mass", "red_block", 0.05, 0.6),))
    sections = (S("question", q), S("scene", scene), S("hypothesis", hyp))
    agent = NanochatAgent(seed=0, robot="panda")
    out = agent.propose(NotebookView(q, scene, grid, sections, posterior=None))
    assert isinstance(out, g.Conclusion) and agent.masked == len(grid)


def _notebook(question: Question, belief: Belief, done: Experiment) -> list[S]:
    scene = scene_at(0.55, 0.0)
    return [S("question", question), S("scene", scene), S("experiment", done), S("belief", belief)]


def test_a_repeat_is_masked_only_when_the_belief_has_settled_it():
    q = Question("mass", ("red_block",), 0.1)  # within 10 %
    weigh = Experiment("weigh", "red_block")
    sharp = Belief((Estimate("mass", "red_block", 0.300, 0.002),))  # 90 % half-width 1 % of the mass
    vague = Belief((Estimate("mass", "red_block", 0.300, 0.030),))
    assert uninformative(_notebook(q, sharp, weigh), q, weigh)
    assert not uninformative(_notebook(q, vague, weigh), q, weigh)
    assert not uninformative(_notebook(q, sharp, weigh), q, Experiment("weigh", "blue_block"))  # not done yet
    push = Experiment("push", "red_block", "+x", 0.1, 0.05)
    assert not uninformative(_notebook(q, sharp, push), q, push)  # friction: not what the question asks
    kept = feasible_candidates(_notebook(q, sharp, weigh), q, scene_at(0.55, 0.0), [weigh, push], None)
    assert kept == [push]


def test_ranking_repeat_rule_uses_the_gap_to_the_other_objects():
    q = Question("rank", ("red_block", "blue_block"))
    weigh = Experiment("weigh", "red_block")
    apart = Belief((Estimate("mass", "red_block", 0.30, 0.002), Estimate("mass", "blue_block", 0.60, 0.05)))
    close = Belief((Estimate("mass", "red_block", 0.30, 0.002), Estimate("mass", "blue_block", 0.31, 0.05)))
    assert uninformative(_notebook(q, apart, weigh), q, weigh)
    assert not uninformative(_notebook(q, close, weigh), q, weigh)
