"""Buying data (lab/bounty_request.py, buying.py, rig_noise.py, collect.py): the request as a bounty's task_spec,
when a draft is worth posting, how a rig earns or loses trust, and what a bought notebook gives the belief.

The belief runs on the real sim Twin (weigh tables are cheap: mass is what the scale reads)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopylab.lab.agents import prior_hypothesis
from loopylab.lab.beliefs import Measurement, Posterior
from loopylab.lab.bounty_request import ExperimentRequest, ObjectDescription, RequestError, match_object
from loopylab.lab.buying import GRIPPER_SKILLS, BuyConfig, draft_bounty
from loopylab.lab.collect import CollectError, bought_measurements
from loopylab.lab.experiments import candidate_experiments
from loopylab.lab.forward import Axes, ForwardModel, InlineTwins
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.rig_noise import OUTLIER_Z, PRIOR_FACTOR, RigNoise, weigh_in
from loopylab.world import audit as a
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed

SCENE = g.Scene(
    (g.SceneObject("red_block", "cube", 0.05, 0.55, 0.0), g.SceneObject("blue_ball", "sphere", 0.06, 0.45, 0.15))
)
WEIGH = g.Experiment("weigh", "red_block")
HONEST, LIAR = "0x" + "1" * 40, "0x" + "2" * 40
TRUE_MASS = 0.30


# ---------------------------------------------------------------------------------------------- the request


@given(
    exp=st.sampled_from(candidate_experiments(SCENE)),
    reps=st.integers(1, 20),
    topics=st.lists(st.sampled_from(["arm/joint_state", "arm/joint_command", "wrist/wrench"]), min_size=1),
)
def test_a_request_round_trips_through_its_task_spec(exp, reps, topics):
    req = ExperimentRequest(exp, ObjectDescription.of(SCENE, exp.object), reps, tuple(topics))
    spec = req.task_spec()
    assert spec["protocol"] == "loopylab/experiment-v1" and spec["experiment"] == exp.render()
    assert ExperimentRequest.from_task_spec(spec) == req
    assert all(c["check"] in ("notebook_range", "min_messages", "monotonic") for c in req.acceptance())


GOOD = ExperimentRequest(WEIGH, ObjectDescription.of(SCENE, "red_block")).task_spec()


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"protocol": "push +x 0.10 m"}, "protocol"),  # a person's free-form spec is not a lab's request
        ({"experiment": "weigh the red block"}, "task_spec.experiment"),
        ({"experiment": "weigh blue_ball"}, "label is not the experiment's object"),
        ({"object": {"label": "red_block", "shape": "cube"}}, "task_spec.object"),
        ({"object": {"label": "red_block", "shape": "cube", "size": float("nan")}}, "size"),
        ({"object": {"label": "red_block", "shape": "cube", "size": 50}}, "size"),
        ({"repetitions": 0}, "repetitions"),
        ({"repetitions": True}, "repetitions"),
        ({"repetitions": 10**6}, "repetitions"),
        ({"topics": "arm/joint_state"}, "topics"),
        ({"notebook": False}, "notebook"),
        ({"reward": 5}, "unknown keys"),
    ],
)
def test_a_bad_task_spec_is_one_line_naming_the_key(change, fragment):
    with pytest.raises(RequestError, match=fragment) as e:
        ExperimentRequest.from_task_spec({**GOOD, **change})
    assert "\n" not in str(e.value)


def test_the_contributor_finds_the_object_by_label_else_by_shape_and_size():
    want = ObjectDescription("red_block", "cube", 0.05)
    assert match_object(want, SCENE) == "red_block"
    theirs = g.Scene((g.SceneObject("cube_7", "cube", 0.055, 0.5, 0.0), g.SceneObject("b", "sphere", 0.05, 0.4, 0.1)))
    assert match_object(want, theirs) == "cube_7"  # their own label, the same object
    with pytest.raises(ValueError, match="no cube of 0.05 m"):
        match_object(want, g.Scene((g.SceneObject("b", "sphere", 0.05, 0.4, 0.1),)))
    twins = g.Scene((g.SceneObject("c1", "cube", 0.05, 0.5, 0.0), g.SceneObject("c2", "cube", 0.05, 0.4, 0.1)))
    with pytest.raises(ValueError, match="2 objects match"):
        match_object(want, twins)  # never a guess between two


# ---------------------------------------------------------------------------------------------- the belief


@pytest.fixture(scope="module")
def forward():
    spec = scene_from_seed(5, n_objects=1).perceived()
    return spec, ForwardModel(spec, InlineTwins(), Axes(points=5))


def fresh(forward, kind="mass") -> Posterior:
    spec, fm = forward
    q = g.Question(kind, (spec.objects[0].label,), 0.10 if kind == "mass" else 0.05, budget=3)
    return Posterior(q, fm, prior_hypothesis(q), n_particles=600, seed=1)


def weighed(obj: str, kg: float) -> Measurement:
    return Measurement.from_reply(g.Experiment("weigh", obj), {"mass_kg": kg, "mass_sigma_kg": 0.002})


def test_a_lab_without_a_gripper_drafts_a_weighing_for_a_mass_question(forward):
    spec, _ = forward
    post = fresh(forward)
    scene = grammar_scene(spec)
    # before any experiment its own pushes are worth more per unit cost (0.67 nats for 0.015) than six bought
    # weighings at the market's price: it runs its own first
    assert draft_bounty(post, scene, GRIPPER_SKILLS, BuyConfig(budget_eth=0.01, slots=2)) is None
    cheap = BuyConfig(budget_eth=0.01, slots=2, price_eth=0.0002)  # a market five times cheaper: buying wins
    draft = draft_bounty(post, scene, GRIPPER_SKILLS, cheap)
    assert draft is not None and draft.request.experiment.skill == "weigh"
    assert draft.why["rate"] > draft.why["own_rate"]  # weighing beats its best push or strike per unit cost
    reward = int(draft.terms["reward_wei"])
    assert 0 < reward * draft.terms["slots"] <= 0.01 * 10**18  # within the budget
    assert ExperimentRequest.from_task_spec(draft.terms["task_spec"]) == draft.request
    # a rig that can weigh buys nothing, and nor does a lab whose information is worth less than the price
    assert draft_bounty(post, scene, (), cheap) is None
    assert draft_bounty(post, scene, GRIPPER_SKILLS, BuyConfig(price_eth=0.0002, eth_per_nat=1e-6)) is None


def test_an_honest_rig_earns_trust_and_a_liar_is_flagged_not_used(forward):
    obj = forward[0].objects[0].label
    book = RigNoise()
    assert book.factor(HONEST) == pytest.approx(PRIOR_FACTOR)
    post = fresh(forward)
    rng = np.random.default_rng(0)
    for _ in range(6):
        factor, z = weigh_in(post, weighed(obj, TRUE_MASS + 0.002 * rng.standard_normal()), HONEST, book)
        assert z is None
    assert book.factor(HONEST) < PRIOR_FACTOR  # agreement with the belief lowered its noise factor
    mean_before = post.belief().get("mass", obj).value
    n_before = len(post.measurements)
    factor, z = weigh_in(post, weighed(obj, TRUE_MASS * 0.6), LIAR, book)
    assert z is not None and abs(z) > OUTLIER_Z  # 40 % light, against a belief 1 % wide
    assert len(post.measurements) == n_before and post.belief().get("mass", obj).value == mean_before
    assert book.factor(LIAR) > PRIOR_FACTOR and book.rigs[LIAR][3] == 1  # it counts against the liar
    assert abs(post.belief().get("mass", obj).value - TRUE_MASS) < 0.01


def test_the_book_survives_a_round_trip_and_refuses_garbage(tmp_path):
    book = RigNoise({HONEST: [3.0, 2.0, 4, 0]})
    path = book.save(tmp_path / "rigs.json")
    assert RigNoise.load(path).factor(HONEST) == book.factor(HONEST)
    path.write_text('{"0xabc": "trusted"}')
    with pytest.raises(ValueError, match="not a rig noise book"):
        RigNoise.load(path)


# ---------------------------------------------------------------------------------------------- a bought notebook


def test_only_the_requested_experiment_is_taken_from_a_bought_notebook():
    raw = a.Raw((("mass_kg", 0.30012), ("mass_sigma_kg", 0.002)))
    text = g.render(
        [
            WEIGH, g.Observation((("mass", 0.300),)), raw,                                   # taken, exactly
            g.Experiment("weigh", "blue_ball"), g.Observation((("mass", 0.100),)),            # another object
            WEIGH, g.Observation(error="gripper slipped"),                                    # failed
            WEIGH, g.Observation((("mass", 0.310),)), a.Raw((("mass_kg", 0.9),)),             # raw disagrees
            g.Experiment("strike", "red_block", "+x", speed=0.30), g.Observation((("slide", 0.05),)),
        ]
    )  # fmt: skip
    got, ignored = bought_measurements(text, WEIGH)
    assert [m.values["mass_kg"] for m in got] == [0.30012, 0.310]  # a raw line that disagrees is not used
    assert got[0].reported_sigma["mass_kg"] == 0.002 and ignored == 3
    with pytest.raises(CollectError, match="does not parse"):
        bought_measurements("mass 0.300 trust me\n", WEIGH)


def test_a_desk_arm_weighs_its_own_pushes_against_the_market():
    """On an SO-101 the lab's own experiments are its grid's (6 cm pushes 0.1-0.2 m out), not a Panda's, whose
    table starts 0.3 m out and would leave it nothing of its own to compare a bounty with."""
    from loopylab.lab.experiments import workspace

    spec = scene_from_seed(1000001, n_objects=1, robot="so101").perceived()
    q = g.Question("mass", ("red_block",), 0.10, budget=3)
    post = Posterior(q, ForwardModel(spec, InlineTwins(), Axes(points=5)), prior_hypothesis(q), n_particles=600, seed=1)
    scene = grammar_scene(spec)
    desk = {e.render() for e in candidate_experiments(scene, q, ws=workspace("so101"))}
    draft = draft_bounty(post, scene, GRIPPER_SKILLS, BuyConfig(budget_eth=0.01, slots=2, price_eth=0.0002))
    assert draft is not None and draft.request.experiment.render() in desk
    assert draft.why["own_best"] in desk and draft.why["own_best"].startswith("push")
    assert draft.why["rate"] > draft.why["own_rate"] > 0
