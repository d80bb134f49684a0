"""The question kinds, registered in one place: what the lab needs to know about a kind besides its text.

A kind's text form is its entry in `loopylab.world.notebook.QUESTION_FORMS` (the one grammar); everything else is a
`QuestionKind` here: its default tolerance, how to ask it of a seeded world, how a conclusion answers it and how that
answer is graded, the belief's quantity that experiment design targets, the belief it needs (the default particle
posterior, or one over competing models), and the hidden structure its worlds draw (`world.scene.with_structure`).

    from loopylab.lab import kinds
    kinds.get("friction").tolerance      # 0.05
    kinds.names()                        # every registered kind, built-ins first

The built-in kinds register themselves in their modules (`BUILTIN`); other packages add theirs through the
`loopylab.kinds` entry points (NAME = "module:KIND", a QuestionKind). CONTRIBUTING.md shows adding one.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopylab.lab.plugins import load, plugins
from loopylab.world import notebook as g

KIND_GROUP = "loopylab.kinds"
# modules whose import registers their kinds (one a line: a new kind appends its own)
BUILTIN = (
    "loopylab.lab.questions",
    "loopylab.lab.slides",
    "loopylab.lab.predict_stop",
    "loopylab.lab.bounces",
    "loopylab.lab.com",
    "loopylab.lab.attached",
)


@dataclass
class Grade:
    success: bool
    error: float  # absolute error (relative for mass; fraction of wrongly ordered pairs for rank; 0/1 for a model)
    truth: object  # the true value (or order, or model)
    answer: object


def _seeded_objects(seed: int) -> int | None:
    return None  # the seed's own number of objects


@dataclass(frozen=True)
class QuestionKind:
    """One question kind. The callables take plain values, so that a kind can be graded where its belief is not."""

    name: str
    tolerance: float  # default; absolute, or relative where the kind says so (mass)
    make: Callable[[g.Scene, int, float, int | None], g.Question]  # (scene, seed, tolerance, budget) -> question
    answer_of: Callable[[g.Question, g.Conclusion], Any]  # the conclusion's answer to it (None: none)
    grade: Callable[[g.Question, Any, dict, float | None], Grade]  # (question, answer, truth, held-out outcome)
    # experiment design's target: (posterior, object, particles) -> (phi per particle, weight, variance floor[,
    # the outcome's variance about phi per particle, which no experiment removes: a predict question's noise]);
    # None for kinds whose belief designs its own experiments (a posterior with `choose`)
    quantity: Callable | None = None
    # (question, forward, hypothesis, n_particles, noise, seed) -> the belief; None: `beliefs.Posterior`
    posterior: Callable | None = None
    structure: str | None = None  # the hidden structure its worlds draw (world.scene.STRUCTURES)
    n_objects: Callable[[int], int | None] = _seeded_objects  # how many objects the world of a seed gets
    needs_outcome: bool = False  # graded on a held-out action run on the hidden world (`question.action`)
    # the skills its experiments may use (None: all); e.g. a drop tumbles a block onto another face and turns the
    # axes a direction-dependent friction is along
    skills: tuple[str, ...] | None = None
    # what a right answer is, for kinds graded right or wrong rather than within a tolerance ("the right model");
    # None: the tolerance says it
    right: str | None = None
    # its answer needs the object slid along both table axes: a block that can slide along one only is offered
    # `place` too (otherwise only a block with no sliding path at all is)
    both_axes: bool = False
    # the kind's own figures for an evaluation row: (question, grade, policy notebook text, world) -> {name: value};
    # `world` is the evaluator's: {"scene": the perceived SceneSpec, "seed": int, "run": experiment -> measurements
    # or None (run on the hidden world, reset first)}
    row: Callable[[g.Question, Grade, str, dict], dict] | None = None
    # a rank kind: the property it orders the objects by, largest first (lab/rank.py); None for the others
    ranks: str | None = None
    # a needs_outcome kind's outcome of its held-out action: (question, the action's reply, the hidden world's
    # truth before it and after it, as the oracle reads them) -> what its grade compares (a RuntimeError: the
    # action cannot be graded); None: a strike's slide, from a reply that succeeded
    outcome: Callable[[g.Question, dict, dict, dict], Any] | None = None
    # for a kind whose held-out action must fit the arm: (scene, seed, tolerance, budget, the arm's workspace,
    # lab/experiments.Workspace) -> question, used instead of `make` when the arm is known (a ValueError: the arm
    # cannot be asked it)
    make_on: Callable[..., g.Question] | None = None
    # the heights its drops may fall from on the large arms (None: the arm's workspace's own; the desk arms keep
    # theirs, their hands reach no higher)
    drop_heights: tuple[float, ...] | None = None


_KINDS: dict[str, QuestionKind] = {}
_loaded = False


def register(kind: QuestionKind) -> QuestionKind:
    """Add a kind (its text form must be in the grammar's QUESTION_FORMS); the same name twice is an error."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"question kind {kind.name!r} is registered twice")
    if kind.name not in g.QUESTION_FORMS:
        raise ValueError(f"question kind {kind.name!r} has no text form in loopylab.world.notebook.QUESTION_FORMS")
    _KINDS[kind.name] = kind
    return kind


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BUILTIN:
        importlib.import_module(mod)
    for ep in plugins(KIND_GROUP).values():
        kind = load(ep)
        if isinstance(kind, QuestionKind):
            register(kind)


def names() -> tuple[str, ...]:
    """Every registered kind, in registration order (the built-ins first)."""
    _load()
    return tuple(_KINDS)


def get(name: str) -> QuestionKind:
    """The kind `name`; a ValueError that lists the known kinds otherwise."""
    _load()
    if name not in _KINDS:
        raise ValueError(f"unknown question kind {name!r} (known: {', '.join(_KINDS)})")
    return _KINDS[name]


def of(question: g.Question) -> QuestionKind:
    return get(question.kind)


def held_out_outcome(question: g.Question, execute: Callable[[g.Experiment], dict], oracle: Callable[[], dict]) -> Any:
    """Run a needs_outcome question's held-out action on the hidden world (reset for it) and read what the
    question is graded on (`oracle`: the evaluator's privileged read of the truth, called only where the kind
    needs it). A RuntimeError says why the action cannot be graded."""
    kind = of(question)
    if kind.outcome is None:
        reply = execute(question.action)
        if not reply.get("ok"):
            raise RuntimeError(f"held-out action failed: {reply.get('error')}")
        return float(reply["measurements"]["slide_m"])
    before = oracle()
    for attempt in range(HELD_OUT_TRIES):
        reply = execute(question.action)
        after = oracle()
        try:
            return kind.outcome(question, reply, before, after)
        except RuntimeError:
            # refused before it touched anything (a world's scene late on a starved host, the gate's check of a
            # stream that lagged): the world is as it was, so the same action may run again
            if attempt + 1 == HELD_OUT_TRIES or _moved(question, before, after):
                raise
    raise AssertionError("unreachable")


HELD_OUT_TRIES = 2
STILL_M = 0.002  # m: an object of the question moved less than this is where it was


def _moved(question: g.Question, before: dict, after: dict) -> bool:
    """Whether any object of the question moved between two oracle reads (no positions read: assume it did)."""
    for o in question.objects:
        try:
            a, b = before[o]["position"], after[o]["position"]
        except (KeyError, TypeError):
            return True
        if math.hypot(float(a[0]) - float(b[0]), float(a[1]) - float(b[1])) >= STILL_M:
            return True
    return False


def make_posterior(question: g.Question, forward, hypothesis=None, n_particles: int = 1500, noise=None, seed: int = 0):
    """The belief a question needs (see QuestionKind.posterior)."""
    kind = of(question)
    if kind.posterior is not None:
        return kind.posterior(question, forward, hypothesis, n_particles, noise, seed)
    from loopylab.lab.beliefs import Posterior

    return Posterior(question, forward, hypothesis, n_particles, noise, seed)


__all__ = [
    "BUILTIN",
    "KIND_GROUP",
    "Grade",
    "QuestionKind",
    "get",
    "held_out_outcome",
    "make_posterior",
    "names",
    "of",
    "register",
]
