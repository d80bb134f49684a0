"""Questions: what an investigation must answer, how sure it must be, and how an answer is graded.

A question's text and parsed forms are `loopylab.world.notebook.Question`. This module adds the semantics: the
default tolerances and budgets, making a question for a seeded world, the stopping rule's confidence,
and grading a conclusion against the ground truth that only the evaluator may read (`sim/oracle`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopylab.lab.experiments import path_clear, strike_travel
from loopylab.world import notebook as g

KINDS = ("friction", "mass", "restitution", "rank", "predict")
DEFAULT_TOLERANCE = {"friction": 0.05, "mass": 0.10, "restitution": 0.05, "rank": 0.0, "predict": 0.01}
DEFAULT_CONFIDENCE = 0.9  # P(answer within tolerance) required before concluding
PREDICT_SPEEDS = (0.35, 0.40, 0.50)  # held-out strike speeds (never in the experiment grid)
PREDICT_SPEED_ALONG_X = 0.25  # ... along the arm's reach, where it cannot strike faster than 0.30


def parse_question(text: str) -> g.Question:
    """A question from its text form; a clear GrammarError when it is not one."""
    return g.parse_body("question", text.strip())


def make_question(
    kind: str, scene: g.Scene, seed: int = 0, tolerance: float | None = None, budget: int | None = None
) -> g.Question:
    """The question of `kind` for a world: estimates and predictions are about `red_block` (every
    seeded world has one) or the first object; rank is over all objects (needs at least two)."""
    if kind not in KINDS:
        raise ValueError(f"unknown question kind {kind!r} (known: {', '.join(KINDS)})")
    tol = DEFAULT_TOLERANCE[kind] if tolerance is None else tolerance
    subject = "red_block" if "red_block" in scene.names else scene.names[0]
    if kind == "rank":
        if len(scene.objects) < 2:
            raise ValueError("a rank question needs a world with at least two objects")
        return g.Question("rank", tuple(scene.names), 0.0, budget)
    if kind == "predict":
        rng = np.random.default_rng([seed, 0x9E7])
        speed = float(rng.choice(PREDICT_SPEEDS))
        # an arm strikes faster across its reach (y) than along it (x)
        across = [d for d in ("+y", "-y") if path_clear(scene, subject, d, strike_travel(speed))]
        if across:
            act = g.Experiment("strike", subject, str(rng.choice(across)), speed=speed)
        else:
            along = [d for d in ("+x", "-x") if path_clear(scene, subject, d, strike_travel(PREDICT_SPEED_ALONG_X))]
            act = g.Experiment("strike", subject, str(rng.choice(along or ["+x"])), speed=PREDICT_SPEED_ALONG_X)
        return g.Question("predict", (subject,), round(tol, 3), budget, act)
    return g.Question(kind, (subject,), round(tol, 2), budget)


def all_questions(scene: g.Scene, seed: int = 0, kinds=KINDS) -> list[g.Question]:
    return [make_question(k, scene, seed) for k in kinds if k != "rank" or len(scene.objects) >= 2]


@dataclass
class Grade:
    success: bool
    error: float  # absolute error (relative for mass; fraction of wrongly ordered pairs for rank)
    truth: object  # the true value (or order)
    answer: object


def answer_of(question: g.Question, conclusion: g.Conclusion):
    """The value (or ranking) the conclusion gives for the question; None when it does not answer it."""
    for a in conclusion.answers:
        if question.kind == "rank" and isinstance(a, g.Ranking) and a.quantity == "mass":
            return a.objects
        want = "slide" if question.kind == "predict" else question.kind
        if isinstance(a, g.Estimate) and a.quantity == want and a.object == question.object:
            return a.value
    return None


def grade(
    question: g.Question, conclusion: g.Conclusion | None, truth: dict[str, dict], outcome: float | None = None
) -> Grade:
    """Grade a conclusion. `truth` is the oracle's {label: {mass, friction, restitution}}; for a
    predict question `outcome` is the slide measured by running the held-out action on the hidden world."""
    ans = answer_of(question, conclusion) if conclusion is not None else None
    if question.kind == "rank":
        order = tuple(sorted(question.objects, key=lambda o: -truth[o]["mass"]))
        if ans is None or sorted(ans) != sorted(order):
            return Grade(False, 1.0, order, ans)
        pos = {o: i for i, o in enumerate(ans)}
        pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]
        wrong = sum(pos[a] > pos[b] for a, b in pairs)
        return Grade(wrong == 0, wrong / len(pairs), order, ans)
    if question.kind == "predict":
        if outcome is None:
            raise ValueError("grading a predict question needs the outcome of the held-out action")
        true = float(outcome)
    else:
        true = float(truth[question.object][question.kind])
    if ans is None:
        return Grade(False, float("inf"), true, None)
    err = abs(ans - true) / true if question.kind == "mass" else abs(ans - true)
    return Grade(bool(err <= question.tolerance + 1e-9), float(err), true, ans)
