"""An investigation told in words: why it stopped, the experiments' reasons, units, the belief's meaning,
the demo's console story and its belief plot."""

import io
import re

import pytest
from rich.console import Console

from loopylab.lab import story
from loopylab.lab.agents import prior_hypothesis
from loopylab.lab.beliefs import Posterior
from loopylab.lab.design import choose
from loopylab.lab.experiments import candidate_experiments
from loopylab.lab.forward import Axes, ForwardModel, InlineTwins
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.notebook import Notebook, story_sink
from loopylab.lab.report import belief_trace, plot_belief
from loopylab.lab.stopping import stop_reason
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed

FRICTION = g.Question("friction", ("red_block",), 0.05)
PUSH = g.parse_body("experiment", "push red_block +y 0.10 0.05")


def test_every_stop_says_why_and_how_sure_the_belief_is():
    s = stop_reason(FRICTION, 0.95, 0.9, 3, 12)
    assert (s.code, s.met) == ("confident", True)
    assert "95% sure its answer is within ±0.05" in s.text and "needs 90%" in s.text
    s = stop_reason(FRICTION, 0.56, 0.9, 10, 12)
    assert (s.code, s.met) == ("budget", False)
    assert "budget of 10 experiments is spent" in s.text and "56% sure" in s.text and "short of the 90%" in s.text
    s = stop_reason(g.Question("friction", ("red_block",), 0.05, budget=3), 0.5, 0.9, 3, 12)
    assert s.code == "budget" and "budget of 3 experiments" in s.text
    s = stop_reason(FRICTION, 0.5, 0.9, 4, 0)
    assert s.code == "no_candidates" and "no experiment is left to run" in s.text
    s = stop_reason(FRICTION, 0.5, 0.9, 4, 12)
    assert s.code == "agent" and "the agent chose to conclude" in s.text
    s = stop_reason(FRICTION, 0.5, 0.9, 40, 12, max_steps_hit=True)
    assert s.code == "max_steps" and "did not conclude within 40 steps" in s.text


def test_a_stop_with_budget_left_names_the_best_experiment_its_gain_its_cost_and_the_systematic_error():
    """The `run --seed 3` case: the expert concluded at P(within ±0.05) 0.56 with budget left because the
    best experiment's gain was below its cost; the belief's spread was tied to the push force's latent gain."""
    s = stop_reason(FRICTION, 0.56, 0.9, 7, 12, best=(PUSH, 0.010, 0.015), systematic=("force_mean_N", 0.10))
    assert (s.code, s.met) == ("not_worth", False)
    assert s.text.startswith("no experiment left is worth running: the most promising, a push at 0.05 m/s")
    assert "only 1%" in s.text and "0.010 nats of information for 0.015 nats" in s.text
    assert "3 of its 10 experiments unspent" in s.text and "56% sure its answer is within ±0.05" in s.text
    assert "push force's systematic error" in s.text and "about 10%" in s.text and "repeating pushes" in s.text
    plain = stop_reason(FRICTION, 0.56, 0.9, 7, 12, best=(PUSH, 0.010, 0.015))
    assert "systematic" not in plain.text and plain.code == "not_worth"


def test_tolerances_in_stop_reasons_carry_the_questions_units():
    mass = g.Question("mass", ("red_block",), 0.10)
    assert "within ±10%" in stop_reason(mass, 0.4, 0.9, 10, 5).text
    rank = g.Question("rank", ("red_block", "blue_ball"), 0.0)
    assert "sure its answer is right" in stop_reason(rank, 0.4, 0.9, 10, 5).text


def test_questions_observations_and_beliefs_in_words_with_units():
    assert (
        story.question_text(g.Question("friction", ("red_block",), 0.10))
        == "What is the friction coefficient μ of red_block, to within ±0.10?"
    )
    assert (
        story.question_text(g.Question("mass", ("red_block",), 0.10))
        == "What is the mass of red_block in kg, to within ±10%?"
    )
    strike = g.Experiment("strike", "red_block", "+y", speed=0.4)
    assert "0.40 m/s" in story.question_text(g.Question("predict", ("red_block",), 0.01, action=strike))
    assert "±0.010 m" in story.question_text(g.Question("predict", ("red_block",), 0.01, action=strike))
    assert story.experiment_text(PUSH).startswith("push red_block 0.10 m toward +y at 0.05 m/s")
    push_obs = g.Observation.from_measurements("push", {"force_mean_N": 1.104, "moved_m": 0.1092, "load_N": 0.29})
    assert (
        story.observation_text("push", push_obs)
        == "it took 1.10 N to push it; it moved 0.109 m (the hand also pressed down on it with 0.29 N)"
    )
    assert (
        story.observation_text("weigh", g.Observation.from_measurements("weigh", {"mass_kg": 0.2821}))
        == "the scale read 0.282 kg"
    )
    assert story.observation_text("strike", g.Observation.failure("lost contact")).startswith("the experiment failed")
    text = story.belief_text(FRICTION, 0.38, 0.08, 0.96, 0.9)
    assert text == "μ ≈ 0.38 ± 0.08 (90% of the belief lies within 0.30 – 0.46); 96% sure it is within ±0.05"
    # the interval never leaves the range the prior allows
    assert "0.28 – 0.90" in story.belief_text(FRICTION, 0.73, 0.45, 0.3, 0.9, bounds=(0.2, 0.9))
    mass_text = story.belief_text(g.Question("mass", ("red_block",), 0.10), 0.281, 0.015, 0.99, 0.9)
    assert "0.281 kg ± 0.015 kg" in mass_text and "0.266 – 0.296 kg" in mass_text


def test_why_names_the_expected_gain_against_the_alternatives():
    why = {
        "eig": 0.548,
        "options": 20,
        "plan": None,
        "alternatives": [
            ["strike red_block -y 0.60", 0.548, 0.015],
            ["strike red_block -y 0.45", 0.371, 0.015],
            ["push red_block -y 0.10 0.05", 0.188, 0.015],
            ["weigh red_block", 0.02, 0.02],
        ],
    }
    chosen = g.parse_body("experiment", "strike red_block +y 0.60")  # same level as -y
    text = story.why_text(why, FRICTION, chosen)
    assert "of the 20 experiments it could run" in text and "by 42%" in text and "0.55 nats" in text
    assert "next best: a strike at 0.45 m/s (31%), a push at 0.05 m/s (17%), weighing (2%)" in text
    plan = {**why, "eig": 0.054, "plan": {"with": "weigh red_block", "eig": 0.9}}
    text = story.why_text(plan, FRICTION, PUSH)
    assert "two-step plan (a push at 0.05 m/s, then weighing)" in text and "by 59% together" in text
    assert "alone: 5%" in text


def test_the_experts_decision_lists_every_level_it_weighed_once_best_first():
    spec = scene_from_seed(5, n_objects=1).perceived()
    post = Posterior(
        FRICTION, ForwardModel(spec, InlineTwins(), Axes(points=5)), prior_hypothesis(FRICTION), n_particles=300
    )
    cands = candidate_experiments(grammar_scene(spec), FRICTION)
    d = choose(post, cands)
    s = d.summary()
    alts = s["alternatives"]
    levels = {(e.skill, e.distance, e.speed, e.height) for e in cands}
    assert s["options"] == len(cands) and len(alts) == len(levels)
    assert [a[1] for a in alts] == sorted((a[1] for a in alts), reverse=True)
    assert s["eig"] == pytest.approx(d.eig) and s["cost"] > 0 and all(a[2] > 0 for a in alts)
    if s["plan"] is None:
        assert g.parse_body("experiment", alts[0][0]).skill == d.experiment.skill
    assert "of the" in story.why_text(s, FRICTION, d.experiment) or s["plan"] is not None


BODIES = [
    FRICTION,
    g.Scene((g.SceneObject("red_block", "cube", 0.06, 0.58, -0.02),)),
    prior_hypothesis(FRICTION),
    g.parse_body("experiment", "strike red_block +y 0.60"),
    g.Observation.from_measurements("strike", {"slide_m": 0.038}),
    g.Belief((g.Estimate("friction", "red_block", 0.41, 0.12),)),
    PUSH,
    g.Observation.from_measurements("push", {"force_mean_N": 1.10, "moved_m": 0.109}),
    g.Belief((g.Estimate("friction", "red_block", 0.39, 0.03),)),
    g.Conclusion((g.Estimate("friction", "red_block", 0.38, 0.04),)),
]
DATA = [
    None,
    None,
    {"answer": 0.73, "half_width": 0.45, "p_within": 0.16},
    {"why": {"eig": 0.548, "options": 20, "plan": None, "alternatives": [["weigh red_block", 0.0, 0.02]]}},
    None,
    {"answer": 0.41, "half_width": 0.20, "p_within": 0.40},
    {"eig": 0.1},
    None,
    {"answer": 0.38, "half_width": 0.04, "p_within": 0.93},
    {"experiments": 2, "p_within": 0.93, "stop": "confident", "stop_text": "the belief is 93% sure"},
]


def _notebook(sinks=()):
    nb = Notebook(FRICTION, sinks=list(sinks))
    for body, data in zip(BODIES, DATA):
        nb.add(body, data)
    return nb


def test_the_story_sink_tells_question_experiments_reasons_beliefs_and_conclusion():
    buf = io.StringIO()
    _notebook([story_sink(Console(file=buf, width=300), 0.9)])
    out = buf.getvalue()
    assert "Question: What is the friction coefficient μ of red_block, to within ±0.05?" in out
    assert "no unit" in out and "up to 10 experiments" in out
    assert "0.06 m cube at (0.58, -0.02) m" in out
    assert "μ between 0.20 and 0.90" in out and "0.28 – 0.90" in out  # the prior's interval stays in its range
    assert re.search(r"Experiment 1: strike red_block toward \+y at 0.60 m/s", out)
    assert "why       of the 20 experiments" in out and "by 42%" in out
    assert "Experiment 2: push red_block 0.10 m" in out  # no decision recorded: no reason made up
    assert out.count("why ") == 1
    assert "saw       it slid 0.038 m" in out and "saw       it took 1.10 N to push it; it moved 0.109 m" in out
    assert "μ ≈ 0.41 ± 0.20 (90% of the belief lies within 0.21 – 0.61); 40% sure it is within ±0.05" in out
    assert "Conclusion: μ = 0.38 ± 0.04 after 2 experiments" in out
    assert "stopped   because the belief is 93% sure." in out


def test_the_belief_plot_follows_the_answer_from_the_prior_through_each_experiment(tmp_path):
    nb = _notebook()
    trace = belief_trace(nb.entries)
    assert [t["label"] for t in trace] == ["prior", "strike", "push"]
    assert [t["half_width"] for t in trace] == [0.45, 0.20, 0.04]
    path = plot_belief(nb.entries, FRICTION, tmp_path / "belief.png", truth_value=0.389)
    assert path.stat().st_size > 10_000
    rank = g.Question("rank", ("red_block", "blue_ball"), 0.0)
    assert plot_belief(nb.entries, rank, tmp_path / "rank.png") is None


def test_the_expert_moves_a_neighbour_out_of_the_way_of_a_block_it_cannot_push_and_says_why():
    """A friction question whose block has no push, here or at any free spot, is offered a neighbour's place
    (`experiments.clearing_place`): the expert chooses it over weighing, which says little of friction, and the
    story says whose way it clears (the old valuation gave a neighbour's place nothing, and the block was weighed)."""
    spec = scene_from_seed(5, n_objects=1).perceived()
    post = Posterior(
        FRICTION, ForwardModel(spec, InlineTwins(), Axes(points=5)), prior_hypothesis(FRICTION), n_particles=300
    )
    clear = g.Experiment("place", "blue_block", position=(0.5, -0.2))
    d = choose(post, [g.Experiment("weigh", "red_block"), clear])
    assert d.experiment == clear
    text = story.why_text(d.summary(), FRICTION, d.experiment)
    assert "moves blue_block out of the way" in text and "red_block" in text and "next best: weighing" in text
