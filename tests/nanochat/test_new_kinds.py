"""The policy's data and grammar follow the kind registry: every registered kind (slides, bounces, sits, com,
attached, rank by friction, predict where it stops, and whatever registers next) is in its data generation, and the
engine writes grammatical notebooks for it that conclude with an answer the notebook supports."""

import random

import pytest
import torch

from loopylab.lab import kinds
from loopylab.nanochat.checkpoint import SHIPPED_DIR, load_cached
from loopylab.nanochat.data import generate, policy_kinds
from loopylab.nanochat.engine import (
    Engine,
    SampleConfig,
    answers_question,
    conclusion_candidates,
    default_conclusion,
)
from loopylab.nanochat.feasible import uninformative
from loopylab.nanochat.gpt import GPT, GPTConfig
from loopylab.world import notebook as g
from tests.nanochat.conftest import random_scene
from tests.nanochat.test_engine import fake_lab


@pytest.fixture(scope="module")
def wild_model(tokenizer):
    """Random weights with large scale (as test_engine's): arbitrary preferences, the worst case for a grammar."""
    model = GPT(GPTConfig.from_depth(2, tokenizer.vocab_size, 128)).init_weights(0)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


NEW = ("slides", "bounces", "sits", "com", "attached", "rank_friction", "predict_stop")


def test_the_policy_covers_every_registered_kind():
    assert policy_kinds() == kinds.names() and set(NEW) <= set(policy_kinds())
    with pytest.raises(ValueError, match="predict_stop"):  # the known kinds named from the registry
        generate([1], "/nonexistent/never-written", kinds=["no_such_kind"], progress=False)


def rich_belief(scene: g.Scene, subject: str) -> g.Belief:
    """A belief holding a clause of every type the registered kinds conclude with."""
    ests = tuple(g.Estimate(q, o, 0.3 + 0.1 * i, 0.02) for i, o in enumerate(scene.names) for q in g.PARAMS)
    return g.Belief(
        (
            *ests,
            g.Estimate("slide", subject, 0.12, 0.01),
            g.ModelProb(subject, "centred", 0.6),
            g.ModelProb(subject, "isotropic", 0.4),
            g.ModelProb(subject, "anisotropic", 0.0),  # refuted: supports nothing
            g.Rejection(subject, "anisotropic", "force", 1.83, 0.5, 1.2),
            g.ComOffset(subject, 4.0, 1.0, -2.0, 1.0),
            g.Position(subject, 0.512, -0.031, 0.012),
        )
    )


def rich_lab(scene: g.Scene, subject: str):
    execute, calls = fake_lab(scene)

    def run(exp):
        obs, _ = execute(exp)
        return obs, rich_belief(scene, subject)

    return run, calls


@pytest.mark.parametrize("kind", kinds.names())
def test_random_weights_write_a_valid_notebook_that_answers_every_kind(wild_model, tokenizer, kind):
    rng = random.Random(sum(map(ord, kind)))
    for temperature, seed in ((0.0, 1), (3.0, 2)):
        scene = random_scene(rng)
        k = kinds.get(kind)
        question = k.make(scene, seed, k.tolerance, 3)
        engine = Engine(wild_model, tokenizer, SampleConfig(temperature=temperature, top_k=8, seed=seed))
        run, calls = rich_lab(scene, question.object)
        sections = engine.investigate(question, scene, run)
        text = g.render(sections)
        assert g.render(g.parse(text)) == text and sections[-1].kind == "conclusion"
        assert len(calls) <= 3
        if any(s.kind == "belief" for s in sections):  # a belief to go on: the conclusion answers the question
            assert answers_question(question, sections[-1].body), (kind, sections[-1].body.render())
            assert sections[-1].body.render() in conclusion_candidates(question, sections[:-1])


def test_conclusions_of_the_new_kinds_come_from_the_beliefs_or_the_belief_engine():
    scene = g.Scene((g.SceneObject("red_block", x=0.55), g.SceneObject("blue_block", x=0.45, y=0.1)))
    beliefs = [g.Section("belief", rich_belief(scene, "red_block"))]

    def cands(kind, offered=()):
        return conclusion_candidates(
            g.Question(kind, ("red_block", "blue_block")[: 2 if kind == "attached" else 1], 0.003), beliefs, offered
        )

    assert cands("slides") == ["model red_block centred 0.60", "model red_block isotropic 0.40"]  # not p 0
    assert cands("com") == ["model red_block centred 0.60", "com red_block x 4.0 1.0 y -2.0 1.0 mm"]
    assert cands("predict_stop") == ["position red_block 0.512 -0.031 0.012"]
    explained = "model red_block anisotropic 0.97; friction_x red_block 0.80 0.05; friction_y red_block 0.40 0.03"
    assert cands("slides", [explained])[-1] == explained  # the belief engine's answer, its parameters with it
    assert cands("slides", ["model red_block iso"]) == cands("slides")  # nothing outside the grammar is offered
    q = g.Question("bounces", ("red_block",))
    assert default_conclusion(q, []) == g.Conclusion((g.Unexplained("red_block"),))  # nothing to go on yet
    assert default_conclusion(q, beliefs).render() == "model red_block centred 0.60"  # the most probable
    assert default_conclusion(q, beliefs, [explained]).render() == explained
    # the old kinds keep their estimates' conclusions (mean, 90 % half-width)
    assert conclusion_candidates(g.Question("mass", ("red_block",), 0.1), beliefs) == ["mass red_block 0.300 0.033"]


def test_rank_by_friction_masks_a_repeat_once_the_friction_gap_is_settled():
    q = g.Question("rank_friction", ("red_block", "blue_block"))
    push = g.Experiment("push", "red_block", "+x", 0.1, 0.05)
    scene = g.Scene((g.SceneObject("red_block", x=0.55), g.SceneObject("blue_block", x=0.45, y=0.1)))

    def nb(blue: float):
        belief = g.Belief(
            (g.Estimate("friction", "red_block", 0.30, 0.002), g.Estimate("friction", "blue_block", blue, 0.05))
        )
        return [g.Section(b.kind if not isinstance(b, g.Question) else "question", b) for b in (q, scene, push, belief)]

    assert uninformative(nb(0.60), q, push)
    assert not uninformative(nb(0.31), q, push)


@pytest.mark.parametrize("kind", ["friction", "slides", "com", "predict_stop"])
def test_the_shipped_checkpoint_still_loads_and_runs_old_and_new_kinds(kind):
    model, tok, _ = load_cached(SHIPPED_DIR)
    rng = random.Random(7)
    scene = random_scene(rng)
    k = kinds.get(kind)
    question = k.make(scene, 7, k.tolerance, 2)
    run, _ = rich_lab(scene, question.object)
    sections = Engine(model, tok, SampleConfig(seed=0)).investigate(question, scene, run)
    text = g.render(sections)
    assert g.render(g.parse(text)) == text and sections[-1].kind == "conclusion"
    if any(s.kind == "belief" for s in sections):
        assert answers_question(question, sections[-1].body)
