import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.lab.experiments import candidate_experiments
from loopylab.nanochat.engine import Engine, SampleConfig, TokenTrie
from loopylab.nanochat.gpt import GPT, GPTConfig
from loopylab.nanochat.tokenizer import encode_notebook
from loopylab.world import notebook as grammar
from loopylab.world.notebook import Belief, Estimate, Observation, Section
from tests.nanochat.conftest import random_question, random_scene


@pytest.fixture(scope="module")
def wild_model(tokenizer):
    """Random weights with large scale: peaked, arbitrary preferences, the worst case for a grammar."""
    model = GPT(GPTConfig.from_depth(2, tokenizer.vocab_size, 128)).init_weights(0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def fake_lab(scene):
    """Executes experiments like the lab would at the interface: the call must parse and be in the grid."""
    calls = []

    def execute(exp):
        grammar.parse_body("experiment", exp.render())
        calls.append(exp)
        obs = Observation.from_measurements(
            exp.skill,
            {"force_mean_N": 1.5, "moved_m": 0.04, "slide_m": 0.1, "mass_kg": 0.4, "bounce_m": 0.02, "lifted_m": 0.05},
        )
        belief = Belief(tuple(Estimate("mass", o, 0.4, 0.05) for o in scene.names))
        return obs, belief

    return execute, calls


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.0, 1.0, 3.0]))
def test_random_weights_never_write_an_invalid_notebook(wild_model, tokenizer, seed, temperature):
    rng = random.Random(seed)
    scene = random_scene(rng)
    question = random_question(rng, scene)
    question = grammar.Question(question.kind, question.objects, question.tolerance, 4, question.action)
    engine = Engine(wild_model, tokenizer, SampleConfig(temperature=temperature, top_k=8, seed=seed))
    execute, calls = fake_lab(scene)
    sections = engine.investigate(question, scene, execute)
    text = grammar.render(sections)
    assert grammar.render(grammar.parse(text)) == text  # the whole notebook parses
    assert sections[-1].kind == "conclusion"
    grid = {e.render() for e in candidate_experiments(scene, question)}
    assert all(c.render() in grid for c in calls)
    assert len(calls) <= 4  # the question's budget
    ans = sections[-1].body.answers[0]
    assert set(getattr(ans, "objects", (getattr(ans, "object", None),))) <= set(question.objects)
    for s in sections:
        if s.kind == "hypothesis":
            assert all(r.object in scene.names for r in s.body.ranges)


def test_trie_decoding_follows_the_model_when_it_can(tokenizer, wild_model):
    rng = random.Random(5)
    scene = random_scene(rng)
    question = grammar.Question("mass", (scene.names[0],), 0.1)
    engine = Engine(wild_model, tokenizer)
    sections = [Section("question", question), Section("scene", scene)]
    sec = engine.propose(sections, allowed=["experiment"])
    assert sec.kind == "experiment" and sec.body in candidate_experiments(scene, question)
    trie = TokenTrie([[1, 2, 9], [1, 3, 9]])
    assert set(trie.root[1]) == {2, 3}


def test_kv_cache_reuse_matches_fresh_engine(tokenizer, wild_model):
    rng = random.Random(11)
    scene = random_scene(rng)
    question = random_question(rng, scene)
    engine = Engine(wild_model, tokenizer)
    execute, _ = fake_lab(scene)
    sections = engine.investigate(question, scene, execute)
    # a fresh engine on each prefix makes the same greedy decisions as the cached one did
    for i in range(2, len(sections)):
        if sections[i].kind in ("hypothesis", "experiment", "conclusion"):
            fresh = Engine(wild_model, tokenizer)
            assert fresh.propose(sections[:i]) == sections[i]
            break
    # prefix reuse: each decision feeds only what is new since the last one (plus one token for logits)
    full, _ = encode_notebook(tokenizer, grammar.render(sections))
    assert engine.stats.forced_tokens <= len(full) + engine.stats.decisions


def test_notebook_ending_in_an_experiment_is_refused(tokenizer, wild_model):
    scene = random_scene(random.Random(1))
    q = grammar.Question("friction", (scene.names[0],), 0.05)
    exp = candidate_experiments(scene, q)[0]
    with pytest.raises(ValueError, match="observation must come first"):
        Engine(wild_model, tokenizer).propose(
            [Section("question", q), Section("scene", scene), Section("experiment", exp)]
        )


def test_conclusions_report_what_a_belief_supports(tokenizer, wild_model):
    from loopylab.nanochat.engine import conclusion_candidates

    rng = random.Random(4)
    scene = random_scene(rng)
    for question in (grammar.Question("mass", (scene.names[0],), 0.1), grammar.Question("rank", tuple(scene.names))):
        engine = Engine(wild_model, tokenizer, SampleConfig(temperature=1.0, seed=2))
        execute, _ = fake_lab(scene)
        sections = engine.investigate(question, scene, execute)
        concl = sections[-1].body.render()
        if any(s.kind == "belief" for s in sections):
            assert concl in conclusion_candidates(question, sections[:-1])
    beliefs = [
        Section("belief", Belief((Estimate("mass", "a", 0.2, 0.01), Estimate("mass", "b", 0.3, 0.02)))),
        Section("belief", Belief((Estimate("mass", "a", 0.4, 0.01), Estimate("mass", "b", 0.3, 0.02)))),
    ]
    assert conclusion_candidates(grammar.Question("rank", ("a", "b")), beliefs) == [
        "mass order b > a",
        "mass order a > b",
    ]
    assert conclusion_candidates(grammar.Question("mass", ("a",), 0.1), beliefs) == [
        "mass a 0.200 0.016",
        "mass a 0.400 0.016",
    ]


def test_a_desk_arm_engine_writes_experiments_from_its_own_grid(tokenizer, wild_model):
    """Without candidates from the caller, the engine's bodies come from the arm's grid, not a Panda's: on an
    SO-101 scene (objects 0.14-0.22 m out) the Panda's would offer places 0.4 m out, past the arm's reach."""
    from loopylab.lab.experiments import workspace

    scene = grammar.Scene(
        (
            grammar.SceneObject("red_block", "cube", 0.04, 0.21, 0.0),
            grammar.SceneObject("blue_ball", "sphere", 0.03, 0.18, 0.07),
            grammar.SceneObject("green_block", "cube", 0.04, 0.14, -0.05),
        )
    )
    q = grammar.Question("friction", ("red_block",), 0.05)
    desk = {e.render() for e in candidate_experiments(scene, q, ws=workspace("so101"))}
    for seed in range(3):
        engine = Engine(wild_model, tokenizer, SampleConfig(temperature=3.0, seed=seed), robot="so101")
        sec = engine.propose([Section("question", q), Section("scene", scene)], allowed=["experiment"])
        assert sec.kind == "experiment" and sec.body.render() in desk
