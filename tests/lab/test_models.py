"""Competing friction models on the real sim Twin: evidence, falsification, and experiments that tell them apart.

The measurements come from a Twin of a world whose block really has direction-dependent friction (Bullet's
anisotropic friction, as the sim applies it), or isotropic friction, plus the skills' noise; the belief's own
tables are the isotropic twin's, as in a real investigation.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from loopylab.lab import kinds
from loopylab.lab.beliefs import BIAS_COL, Measurement
from loopylab.lab.design import DesignConfig, choose
from loopylab.lab.forward import Axes, ForwardModel, InlineTwins
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.models import ModelSet, falsified, logmeanexp, p_known, twin_friction
from loopylab.lab.slides import ModelPosterior, explanation_check, slide_prior, true_model
from loopylab.lab.twin import Twin
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed

TRUE = {"friction": 0.7, "mass": 0.25, "restitution": 0.4}
PUSHES = {d: g.Experiment("push", "red_block", d, 0.10, 0.05) for d in ("+x", "-x", "+y", "-y")}


@pytest.fixture(scope="module")
def world():
    spec = scene_from_seed(5, n_objects=1)
    perceived = spec.perceived()
    aniso = copy.deepcopy(perceived)
    aniso.objects[0].friction_axes = (1.0, 0.45)  # y is the slippery axis
    twins = {"iso": Twin(perceived), "aniso": Twin(aniso)}
    fm = ForwardModel(perceived, InlineTwins(), Axes(points=7))
    yield perceived, twins, fm
    for t in twins.values():
        t.close()


def _measure(world, which: str, exp: g.Experiment, rng) -> Measurement:
    """What the push skill would report in that world: the twin at the truth plus the skill's noise."""
    _, twins, _ = world
    m = dict(twins[which].predict(exp.skill, exp.args(), {"red_block": TRUE}))
    m["force_mean_N"] = float(m["force_mean_N"]) + 0.03 * rng.standard_normal()
    return Measurement.from_reply(exp, m)


def _belief(world, which: str, directions, seed: int = 0) -> ModelPosterior:
    _, _, fm = world
    q = g.Question("slides", ("red_block",))
    post = kinds.make_posterior(q, fm, None, 1000, None, seed)
    rng = np.random.default_rng(seed)
    for d in directions:
        post.update(_measure(world, which, PUSHES[d], rng))
    return post


def test_the_sim_applies_direction_dependent_friction(world):
    _, twins, _ = world
    force = {
        (w, d): twins[w].predict("push", PUSHES[d].args(), {"red_block": TRUE})["force_mean_N"]
        for w in twins
        for d in ("+x", "+y")
    }
    assert force[("iso", "+x")] == pytest.approx(force[("iso", "+y")], rel=0.1)
    assert force[("aniso", "+x")] == pytest.approx(force[("iso", "+x")], rel=0.1)
    assert force[("aniso", "+y")] == pytest.approx(0.45 * force[("aniso", "+x")], rel=0.15)


def test_pushes_along_both_axes_identify_direction_dependent_friction(world):
    post = _belief(world, "aniso", ["+x", "+y", "-x", "-y"])
    probs = post.sets["red_block"].probabilities()
    assert probs["anisotropic"] > 0.95
    ans = post.answer(0.9)
    head = ans.conclusion.answers[0]
    assert isinstance(head, g.ModelProb) and head.model == "anisotropic"
    est = {e.quantity: e for e in ans.conclusion.answers[1:]}
    assert abs(est["friction_x"].value - 0.7) <= est["friction_x"].spread + 0.02
    assert abs(est["friction_y"].value - 0.7 * 0.45) <= est["friction_y"].spread + 0.02


def test_the_isotropic_model_is_refuted_by_the_observation_that_contradicts_it(world):
    once = _belief(world, "aniso", ["+x", "-x", "+y"])
    assert once.sets["red_block"].outside["isotropic"] == 1  # one reading outside: it may be nonsense
    assert "isotropic" in once.sets["red_block"].live
    post = _belief(world, "aniso", ["+x", "-x", "+y", "+x", "-y"])  # a second one refutes it
    rej = post.sets["red_block"].rejected.get("isotropic")
    assert rej is not None and rej.key == "force"
    assert not rej.lo <= rej.value <= rej.hi  # the refuting force lies outside the range the model allowed
    text = g.render([post.belief()])
    assert "rejected red_block isotropic by force" in text or "model red_block isotropic 0.00" in text
    assert g.parse(text)[0].body == post.belief()  # the one grammar carries it


def test_an_isotropic_block_keeps_its_true_model(world):
    for seed in range(3):
        post = _belief(world, "iso", ["+x", "+y", "-x", "-y"], seed)
        ms = post.sets["red_block"]
        assert "isotropic" not in ms.rejected
        assert ms.probabilities()["isotropic"] > 0.9


def test_one_push_cannot_tell_the_models_apart(world):
    post = _belief(world, "aniso", ["+x"])
    probs = post.sets["red_block"].probabilities()
    assert 0.2 < probs["isotropic"] < 0.8
    assert not post.sets["red_block"].rejected


def test_when_every_model_is_refuted_the_lab_says_none_explains_it(world):
    _, _, fm = world
    post = _belief(world, "iso", ["+x"])
    # hostile readings: ten times the force a block of the prior's heaviest and grippiest could need
    liar = Measurement(PUSHES["+y"], {"force_mean_N": 60.0}, {})
    post.update(liar)
    assert post.sets["red_block"].live == ["isotropic", "anisotropic"]  # one may be nonsense: not yet refuted
    post.update(Measurement(PUSHES["-y"], {"force_mean_N": 55.0}, {}))
    assert not post.sets["red_block"].live
    ans = post.answer(0.9)
    assert ans.conclusion.answers == (g.Unexplained("red_block"),)
    assert ans.conclusion.render() == "none of my hypotheses explains red_block"


def test_the_expert_plans_pushes_along_both_axes(world):
    perceived, _, fm = world
    post = _belief(world, "aniso", [])
    q = post.question
    cands = [PUSHES["+x"], PUSHES["+y"], g.Experiment("push", "red_block", "+x", 0.10, 0.10)]
    dec = choose(post, cands, DesignConfig(n_outer=64, n_inner=256), np.random.default_rng(0))
    assert dec.lookahead and dec.partner is not None
    axes = {e.direction[1] for e in (dec.experiment, dec.partner)}
    assert axes == {"x", "y"}  # a plan along one axis only cannot tell the models apart
    assert q.kind == "slides" and grammar_scene(perceived).names == ["red_block"]


def test_evidence_is_the_weighted_mean_likelihood():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=50) * 30, rng.random(50)
    w /= w.sum()
    assert float(logmeanexp(x, w)) == pytest.approx(np.log(np.sum(w * np.exp(x - x.max()))) + x.max())
    assert float(logmeanexp(np.full(4, -np.inf))) == -np.inf


def test_grading_reads_the_structure_of_the_hidden_world():
    iso = {"red_block": {"friction": 0.5, "friction_xy": [0.5, 0.5]}}
    aniso = {"red_block": {"friction": 0.8, "friction_xy": [0.8, 0.4]}}
    assert true_model(iso, "red_block") == "isotropic" and true_model(aniso, "red_block") == "anisotropic"
    q = g.Question("slides", ("red_block",))
    con = g.parse_body(
        "conclusion", "model red_block anisotropic 0.93; friction_x red_block 0.80 0.05; friction_y red_block 0.40 0.03"
    )
    from loopylab.lab.questions import grade

    assert grade(q, con, aniso).success and not grade(q, con, iso).success
    assert not grade(q, g.Conclusion((g.Unexplained("red_block"),)), aniso).success


def test_a_notebook_says_whether_it_rejected_a_model():
    text = g.render(
        [
            g.Belief(
                (
                    g.ModelProb("red_block", "isotropic", 0.0),
                    g.Rejection("red_block", "isotropic", "force", 1.2, 0.3, 0.9),
                )
            ),
        ]
    )
    assert falsified(text, "isotropic") and not falsified(text, "anisotropic")


def test_model_sets_replay_to_the_same_numbers(world):
    a = _belief(world, "aniso", ["+x", "+y"], seed=4)
    b = _belief(world, "aniso", ["+x", "+y"], seed=4)
    assert a.belief() == b.belief()
    assert isinstance(a.sets["red_block"], ModelSet)


def test_another_agent_predicts_a_held_out_strike_from_the_explanation_alone(world):
    perceived, twins, _ = world
    q = g.Question("slides", ("red_block",))
    hidden = {"scene": perceived, "seed": 5}
    hidden["run"] = lambda act: twins["aniso"].predict(act.skill, act.args(), {"red_block": TRUE})

    def check(conclusion: str) -> dict:
        text = g.render([q, g.parse_body("conclusion", conclusion)])
        return explanation_check(q, text, hidden)

    right = check("model red_block anisotropic 0.95; friction_x red_block 0.70 0.05; friction_y red_block 0.32 0.03")
    wrong = check("model red_block isotropic 0.95; friction red_block 0.70 0.05")
    assert right["held_out"].startswith("strike red_block") and right["held_out"] == wrong["held_out"]
    # in units of the slide's spread under the prior (BoxingGym's): the right explanation leaves little of it
    if right["held_out"].split()[2] in ("+y", "-y"):  # along the slippery axis the wrong model is far off
        assert right["explanation_pred_error"] < 0.3 < 1.0 < wrong["explanation_pred_error"]
    else:
        assert right["explanation_pred_error"] < 0.3
    none = check("none of my hypotheses explains red_block")
    assert none["explanation_pred_error"] is None and none["explanation_pred"] is None


def test_a_boxed_in_block_is_placed_first_for_what_it_unlocks(world):
    post = _belief(world, "aniso", [])
    place = g.Experiment("place", "red_block", position=(0.52, 0.0))
    dec = choose(post, [place], DesignConfig(n_outer=64, n_inner=256), np.random.default_rng(0))
    assert dec.experiment == place and dec.score > 0  # worth its cost: a pair along both axes follows


def test_the_slide_prior_draws_each_model_a_half_inside_the_box():
    along_x, along_y = slide_prior("red_block", "+x", 3, 64), slide_prior("red_block", "-y", 3, 64)
    mus = np.array([[d["red_block"]["friction"] for d in draws] for draws in (along_x, along_y)])
    assert mus.shape == (2, 64) and ((mus >= 0.2) & (mus <= 0.9)).all()
    assert np.array_equal(mus[0, 0::2], mus[1, 0::2])  # isotropic draws: the same friction either way
    assert not np.allclose(mus[0, 1::2], mus[1, 1::2])  # anisotropic ones: a strike along y reads the y friction
    assert slide_prior("red_block", "+x", 3, 64) == along_x  # the world's seed fixes the draws


def test_a_known_model_with_its_friction_still_broad_is_not_a_sure_answer(world):
    """Pushes along both axes tell the models apart but not the friction (mu m g, the mass unknown): the answer is
    sure only when its explanation is too, and the design then seeks the friction (strikes) instead of stopping."""
    post = _belief(world, "aniso", ["+x", "+y", "-x", "-y"])
    top, p = post.sets["red_block"].best()
    assert top == "anisotropic" and p > 0.95
    ans = post.answer(0.9)
    assert ans.conclusion.answers[0].model == "anisotropic"
    assert ans.confidence == pytest.approx(p * post.known("red_block", top)) and ans.confidence < 0.5
    cands = [*PUSHES.values(), *(g.Experiment("strike", "red_block", d, speed=0.6) for d in ("+y", "-x"))]
    cfg = DesignConfig(n_outer=64, n_inner=256)
    dec = choose(post, cands, cfg, np.random.default_rng(0))
    assert dec.experiment.skill == "strike" and not dec.worth_nothing(cfg.min_gain)


def test_the_explanation_is_known_when_its_frictions_are_within_the_tolerance():
    w = np.full(4, 0.25)
    narrow = np.array([[0.50, 0.30], [0.52, 0.31], [0.49, 0.29], [0.51, 0.30]])
    assert p_known(narrow, w) == 1.0
    broad = narrow.copy()
    broad[0, 1] = 0.45  # one particle's y friction is 0.11 off the stated mean (0.34): its weight is not known
    assert p_known(broad, w) == pytest.approx(0.75)
    assert p_known(broad, w, tol=0.2) == 1.0


def test_the_explanation_states_the_friction_a_bare_twin_needs():
    """A particle whose strikes slide 30 % past the twin's (its strike gain) explains them with mu / 1.3: the other
    agent predicts on a twin without the belief's latents (the twin's free slide goes as 1 / mu)."""
    theta = np.zeros((2, 8))
    theta[:, 0] = np.log(0.4)
    theta[1, BIAS_COL["slide_m"]] = np.log(1.3)
    assert twin_friction(theta, theta[:, 0]) == pytest.approx([0.4, 0.4 / 1.3])
    assert twin_friction(theta[:, :3], theta[:, 0]) == pytest.approx([0.4, 0.4])  # no latents: mu itself


def test_the_stated_friction_is_the_twins_one(world):
    post = _belief(world, "iso", ["+x", "+y"])
    op = post.sets["red_block"].models["isotropic"]
    stated = post.explanation("red_block", "isotropic", 0.0)[0]
    assert stated.value == pytest.approx(float(np.sum(op.weights * twin_friction(op.theta, op.theta[:, 0]))), abs=0.006)


def test_a_block_pushed_along_one_axis_only_is_worth_moving_a_neighbour_for(world):
    """Where the block can be pushed along x only (a crowded desk: `experiments.clearing_place`), the expert
    chooses to move the neighbour out of the way over a further x push, which cannot tell the models apart; the
    old valuation counted a neighbour's place as worth nothing and pushed along x until it stopped on a coin flip."""
    clear = g.Experiment("place", "blue_block", position=(0.5, -0.2))
    along_x = [g.Experiment("push", "red_block", d, 0.10, sp) for d in ("+x", "-x") for sp in (0.05, 0.1)]
    for which in ("aniso", "iso"):
        post = _belief(world, which, ["+x"])
        decision = choose(post, [*along_x, clear], DesignConfig(), np.random.default_rng(0))
        assert decision.experiment == clear
