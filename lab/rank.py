"""Rank questions: "rank A B C by PROPERTY", the objects ordered by one hidden property, largest first.

One machinery for every ranked property (`rank_kind(name, property)`): the belief is the particle posterior of
lab/beliefs.py, summarised as the most probable order of the property's draws; experiment design targets the
object whose pairs are most ambiguous (the probability of ordering each of its pairs wrongly); the grade is the
fraction of wrongly ordered pairs (success: none). lab/questions.py registers "rank" (by mass) and
"rank_friction" (by friction):

    rank red_block blue_cylinder green_ball by friction     ->   friction order green_ball > red_block > ...

Ranking by friction: a strike's slide reads mu alone (v^2 / 2 mu g), a push mu times the mass (so weighing helps
it); a drop's bounce barely depends on mu, so the kind offers no drops. A ball rolls: no push or strike shows its
friction (the twin's strike slides a ball 0.18 m and pushes it with 0.10 N at mu 0.2, 0.4 and 0.8 alike), so a
seeded world's question ranks the objects that slide, and its worlds have 3-4 objects of which two at least slide
(their "sliders" structure, world/scene.py, turns balls into cylinders where the seed drew fewer).
"""

from __future__ import annotations

import itertools

import numpy as np

from loopylab.lab import kinds
from loopylab.lab.beliefs import Answer, Posterior, _canon
from loopylab.lab.forward import PARAM_INDEX
from loopylab.lab.kinds import Grade, QuestionKind
from loopylab.world import notebook as g

# below this relative gap a pair of objects is "closer than the measurement can tell" (the report's figure):
# a strike's slide has a 10 % twin-vs-world sd and a 20 % per-object gain, so a few strikes tell mu to ~5-8 %
CLOSE_PAIR = 0.10


def ranked(question: g.Question) -> str | None:
    """The property a rank question orders by (None: the question is no ranking)."""
    return kinds.of(question).ranks


class RankPosterior(Posterior):
    """The particle posterior of every object in question, summarised as an order by the ranked property."""

    @property
    def prop(self) -> str:
        return kinds.of(self.question).ranks or "mass"

    def draws(self, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """(k, objects) draws of the property, one column per object in question order."""
        cols = [op.natural(self.prop)[op.draw(k, rng)] for op in self.objects.values()]
        return np.stack(cols, axis=1)

    def belief(self) -> g.Belief:
        ests = [g.Estimate(self.prop, o, *op.mean_sd(op.natural(self.prop))) for o, op in self.objects.items()]
        return g.Belief(tuple(_canon(e) for e in ests))

    def answer(self, confidence: float = 0.9, k: int = 2000) -> Answer:
        """The most probable order and the posterior probability that it is right (up to the question's
        resolution: a pair closer than it may come either way)."""
        names, d = list(self.objects), self.draws(k, self.state_rng(2))
        orders, counts = np.unique(np.argsort(-d, axis=1), axis=0, return_counts=True)
        best = orders[np.argmax(counts)]
        right = np.ones(k, bool)
        for i, a in enumerate(best):  # each pair in the answer's order: wrong where the draw reverses it clearly
            for b in best[i + 1 :]:
                right &= ~_clearly_above(d[:, b], d[:, a], self.question.tolerance)
        return Answer(g.Conclusion((g.Ranking(self.prop, tuple(names[i] for i in best)),)), float(np.mean(right)))

    def pairwise_ambiguity(self, k: int = 1000) -> dict[str, float]:
        """Per object, the summed probability of getting each of its pairs wrong (the less probable of the two
        clear orders; a pair closer than the question's resolution is right either way)."""
        names, d, tol = list(self.objects), self.draws(k), self.question.tolerance
        amb = dict.fromkeys(names, 0.0)
        for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
            p = min(
                float(np.mean(_clearly_above(d[:, i], d[:, j], tol))),
                float(np.mean(_clearly_above(d[:, j], d[:, i], tol))),
            )
            amb[a] += p
            amb[b] += p
        return amb


def _clearly_above(x, y, tol: float):
    """x above y by more than the resolution `tol` (relative to the smaller)."""
    return np.asarray(x) > np.asarray(y) * (1 + tol)


def true_order(question: g.Question, truth: dict, prop: str) -> tuple[str, ...]:
    return tuple(sorted(question.objects, key=lambda o: -float(truth[o][prop])))


def close_pairs(question: g.Question, truth: dict, prop: str, gap: float = CLOSE_PAIR) -> tuple[int, int]:
    """(pairs whose property differs by less than `gap` relative to the smaller, all pairs)."""
    vals = [float(truth[o][prop]) for o in question.objects]
    pairs = list(itertools.combinations(vals, 2))
    return sum(abs(a - b) < gap * min(a, b) for a, b in pairs), len(pairs)


def rank_kind(
    name: str,
    prop: str,
    tolerance: float = 0.0,
    skills: tuple[str, ...] | None = None,
    shows: tuple[str, ...] | None = None,
    n_objects=lambda seed: 2 + seed % 3,
    structure: str | None = None,
) -> QuestionKind:
    """The kind "rank OBJ OBJ... by PROP" (its text form: world/notebook.py `_rank_form(name, prop)`). `shows`:
    the shapes whose PROP the experiments can show (None: all); a seeded world's question names those objects
    (all of them where fewer than two are)."""

    def make(scene: g.Scene, seed: int, tol: float, budget: int | None) -> g.Question:
        if len(scene.objects) < 2:
            raise ValueError("a rank question needs a world with at least two objects")
        named = [o.name for o in scene.objects if shows is None or o.shape in shows]
        return g.Question(name, tuple(named if len(named) >= 2 else scene.names), round(tol, 2), budget)

    def answer_of(question: g.Question, conclusion: g.Conclusion):
        for a in conclusion.answers:
            if isinstance(a, g.Ranking) and a.quantity == prop:
                return a.objects
        return None

    def grade(question: g.Question, ans, truth: dict, outcome) -> Grade:
        """The share of wrongly ordered pairs (a pair closer than the question's resolution is right either way)."""
        order = true_order(question, truth, prop)
        if ans is None or sorted(ans) != sorted(order):
            return Grade(False, 1.0, order, ans)
        pos, v = {o: i for i, o in enumerate(ans)}, {o: float(truth[o][prop]) for o in order}
        pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]
        wrong = sum(bool(pos[a] > pos[b] and _clearly_above(v[a], v[b], question.tolerance)) for a, b in pairs)
        return Grade(wrong == 0, wrong / len(pairs), order, ans)

    def quantity(post: RankPosterior, obj: str, theta: np.ndarray):
        """Design's target: the object's log property, weighted by its share of the ambiguous pairs."""
        amb = post.pairwise_ambiguity()
        total = sum(amb.values()) or 1.0
        return theta[:, PARAM_INDEX[prop]], amb.get(obj, 0.0) / total, (0.02) ** 2

    return QuestionKind(
        name,
        tolerance,
        make,
        answer_of,
        grade,
        quantity,
        posterior=RankPosterior,
        n_objects=n_objects,
        structure=structure,
        skills=skills,
        right="the right order",
        ranks=prop,
    )


__all__ = ["CLOSE_PAIR", "RankPosterior", "close_pairs", "rank_kind", "ranked", "true_order"]
