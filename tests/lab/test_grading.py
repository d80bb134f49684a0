"""Honest grading (lab/grading.py, design.regret_vs_random): the stated interval must be the belief's, the
belief is scored by proper scores, regret is measured by the evaluator's own estimates, failed calls count."""

import numpy as np
import pytest

from loopylab.lab.agents import EIGAgent, prior_hypothesis
from loopylab.lab.beliefs import Measurement, Posterior
from loopylab.lab.design import regret_vs_random
from loopylab.lab.evaluation import WorldTask, run_world
from loopylab.lab.experiments import candidate_experiments
from loopylab.lab.forward import Axes, ForwardModel
from loopylab.lab.grading import belief_sample, score_answer, score_summary
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.twin import TwinPool
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed


@pytest.fixture(scope="module")
def mass_posterior():
    scene = scene_from_seed(5, n_objects=1).perceived()
    pool = TwinPool(workers=1)
    fm = ForwardModel(scene, pool, Axes(points=5))
    q = g.Question("mass", ("red_block",), 0.10)
    post = Posterior(q, fm, prior_hypothesis(q), n_particles=600, seed=3)
    yield scene, q, post
    pool.close()


def _conclusion(text):
    return g.parse_body("conclusion", text)


def test_the_belief_engine_answer_is_its_own_interval_and_a_narrower_claim_is_not(mass_posterior):
    _, q, post = mass_posterior
    sample = belief_sample(post, q)
    honest = post.answer(0.9).conclusion
    truth = float(np.average(sample[0], weights=sample[1]))
    s = score_answer(q, honest, sample, truth)
    assert s.interval_is_belief and s.covered and 0.86 <= s.belief_mass <= 0.95
    value = honest.answers[0].value
    # the cheater: the same point, no spread, before any experiment (within the tolerance, so the old
    # grading passed it)
    bold = score_answer(q, _conclusion(f"mass red_block {value:.3f} 0.000"), sample, value * 1.05)
    assert bold.interval_is_belief is False and bold.belief_mass < 0.1
    assert bold.interval_score == pytest.approx(20 * value * 0.05, rel=1e-2)  # all penalty
    timid = score_answer(q, _conclusion(f"mass red_block {value:.3f} 1.000"), sample, truth)
    assert timid.interval_is_belief is False  # claiming less than the belief is not its interval either


def test_scoring_leaves_the_belief_engine_random_state_alone(mass_posterior):
    scene, q, post = mass_posterior
    before = post.rng.bit_generator.state
    belief_sample(post, q)
    cands = candidate_experiments(grammar_scene(scene), q)
    regret_vs_random(post, cands, cands[0], np.random.default_rng(1), n_random=10)
    assert post.rng.bit_generator.state == before


def test_regret_is_against_the_best_random_design_by_the_evaluators_estimate(mass_posterior):
    scene, q, post = mass_posterior
    cands = candidate_experiments(grammar_scene(scene), q)
    weigh = next(c for c in cands if c.skill == "weigh")
    lift = next(c for c in cands if c.skill == "lift")
    eig_w, reg_w = regret_vs_random(post, cands, weigh, np.random.default_rng(2))
    eig_l, reg_l = regret_vs_random(post, cands, lift, np.random.default_rng(2))
    assert eig_w > 0.5 and reg_w == pytest.approx(0.0, abs=0.05)  # weighing is the best design here
    assert eig_l == pytest.approx(0.0, abs=1e-9) and reg_l > 0.5  # lifting learns nothing about mass
    outside = g.parse_body("experiment", "drop red_block 0.15")  # not in the grid: gains nothing
    assert regret_vs_random(post, cands, outside, np.random.default_rng(2))[0] == 0.0


class ZeroWidth(EIGAgent):
    """The expert's experiments, but a conclusion without its spread: the old grading passed it."""

    name = "zero-width"

    def propose(self, view):
        p = super().propose(view)
        if isinstance(p, g.Conclusion):
            e = p.answers[0]
            return g.Conclusion((g.Estimate(e.quantity, e.object, e.value, 0.0),))
        return p


def test_a_conclusion_narrower_than_its_belief_is_not_a_success():
    honest = run_world(WorldTask("eig", "mass", 0, n_particles=300))
    # the agent runs in a process of its own (lab/sealed.py): named by module:factory, it imports there too
    bold = run_world(WorldTask(f"{__name__}:ZeroWidth", "mass", 0, n_particles=300))
    for r in (honest, bold):
        assert not r["crashed"], r.get("traceback")
        assert r["within_tolerance"]
        assert r["executed"] == r["experiments"] >= 1 and r["executed_rate"] == 1.0
        assert r["crps"] is not None and r["crps"] >= 0
    assert honest["success"] and honest["interval_is_belief"]
    assert not bold["success"] and bold["interval_is_belief"] is False


def test_failed_calls_count_as_experiments_and_lower_the_executed_rate():
    rows = [
        {"experiments": 4, "executed": 3, "covered": True, "interval_score": 0.1, "crps": 0.01, "regrets": [0.0]},
        {"experiments": 2, "executed": 2, "covered": False, "interval_score": 0.5, "crps": 0.05, "regrets": [0.2]},
    ]
    s = score_summary(rows)
    assert s["executed_rate"] == pytest.approx(5 / 6)
    assert s["coverage90"] == 0.5 and s["coverage90_n"] == 2
    assert s["interval_score"] == pytest.approx(0.3) and s["regret_vs_random_best"] == pytest.approx(0.1)


def test_a_measurement_outside_the_question_does_not_move_the_score(mass_posterior):
    _, q, post = mass_posterior
    sample = belief_sample(post, q)
    s1 = score_answer(q, post.answer(0.9).conclusion, sample, 0.2)
    post.update(Measurement(g.parse_body("experiment", "weigh red_block"), {"mass_kg": 0.2}, {}))
    sample2 = belief_sample(post, q)
    s2 = score_answer(q, post.answer(0.9).conclusion, sample2, 0.2)
    assert s2.crps < s1.crps  # a weighing at the truth makes the belief better by the CRPS


def test_a_world_the_gate_left_ungradable_is_no_wrong_answer_and_no_miss():
    """A world whose held-out action the safety gate disturbed in every try (lab/held_out.py) is counted apart:
    not in the success rate, the coverage or the executed rate."""
    from loopylab.lab.report import summarise

    graded = dict(
        agent="eig",
        kind="predict",
        crashed=False,
        success=True,
        error=0.002,
        experiments=3,
        executed=3,
        to_tolerance=2,
        wall_s=1.0,
        covered=True,
        interval_score=0.01,
    )
    lost = dict(
        agent="eig",
        kind="predict",
        crashed=False,
        success=False,
        error=None,
        experiments=4,
        ungradable=True,
        ungradable_reason="held-out action disturbed in all 3 tries: protective stop: ...",
    )
    row = summarise([graded, lost])["predict"]["eig"]
    assert row["success_rate"] == 1.0 and row["ungradable"] == 1 and row["worlds"] == 2
    s = score_summary([graded, lost])
    assert s["coverage90"] == 1.0 and s["coverage90_n"] == 1 and s["executed_rate"] == 1.0
