"""Shared fixtures: grammar-valid notebooks written from the lab's grammar dataclasses, a tokenizer
trained on them, and a small random-weight model."""

from __future__ import annotations

import random

import pytest

from loopylab.lab.experiments import candidate_experiments
from loopylab.world import notebook as grammar
from loopylab.world.notebook import (
    Belief,
    Conclusion,
    Estimate,
    Experiment,
    Hypothesis,
    Observation,
    Question,
    Range,
    Ranking,
    Scene,
    SceneObject,
    Section,
)

NAMES = ["red_block", "blue_block", "green_puck", "steel_ball", "cork_cube"]


def random_scene(rng: random.Random) -> Scene:
    names = rng.sample(NAMES, rng.randint(2, 3))
    objs = [
        SceneObject(
            n, rng.choice(grammar.SHAPES), rng.choice([0.04, 0.05, 0.06]), 0.40 + 0.15 * i, rng.choice([-0.1, 0.0, 0.1])
        )
        for i, n in enumerate(names)
    ]
    return Scene(tuple(objs))


def random_question(rng: random.Random, scene: Scene) -> Question:
    kind = rng.choice(["friction", "mass", "restitution", "rank", "predict"])
    if kind == "rank":
        return Question("rank", tuple(scene.names))
    obj = rng.choice(scene.names)
    if kind == "predict":
        return Question("predict", (obj,), 0.02, None, Experiment("strike", obj, "+x", speed=0.3))
    return Question(kind, (obj,), 0.1 if kind == "mass" else 0.05)


def random_notebook(rng: random.Random) -> list[Section]:
    scene = random_scene(rng)
    q = random_question(rng, scene)
    secs = [Section("question", q), Section("scene", scene)]
    grid = candidate_experiments(scene, q)
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            secs.append(Section("hypothesis", Hypothesis((Range("friction", q.object, 0.1, rng.choice([0.5, 1.0])),))))
        e = rng.choice(grid)
        secs.append(Section("experiment", e))
        meas = {
            "force_mean_N": rng.uniform(0, 5),
            "moved_m": rng.uniform(0, 0.1),
            "slide_m": rng.uniform(0, 0.3),
            "mass_kg": rng.uniform(0.05, 2),
            "bounce_m": rng.uniform(0, 0.1),
            "lifted_m": rng.uniform(0, 0.1),
        }
        secs.append(Section("observation", Observation.from_measurements(e.skill, meas)))
        secs.append(
            Section(
                "belief",
                Belief(
                    tuple(
                        Estimate(p, o, rng.uniform(0, 1), rng.uniform(0, 0.3))
                        for o in q.objects
                        for p in ("friction", "mass")
                    )
                ),
            )
        )
    if q.kind == "rank":
        ans = Ranking("mass", tuple(rng.sample(q.objects, len(q.objects))))
    else:
        qty = "slide" if q.kind == "predict" else q.kind
        ans = Estimate(qty, q.object, rng.uniform(0, 1), rng.uniform(0, 0.1))
    secs.append(Section("conclusion", Conclusion((ans,))))
    return secs


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Small models gain nothing from threads, and on a loaded 2-core machine OpenMP spinning makes
    them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def notebooks() -> list[str]:
    rng = random.Random(0)
    return [grammar.render(random_notebook(rng)) for _ in range(150)]


@pytest.fixture(scope="session")
def tokenizer(notebooks):
    from loopylab.nanochat.tokenizer import Tokenizer

    return Tokenizer.train(notebooks, vocab_size=400)
