"""Honest grading of one answer, beyond the tolerance check (`lab.questions.grade`).

The evaluator scores what the conclusion states and what the belief engine believed:

- the conclusion's interval [value - half, value + half] (stated at the question's confidence, 90 %) by the
  interval score and whether it covers the truth (coverage over many worlds should be ~90 %);
- the belief itself (the final particles, or the predictive draws of a predict question) by the CRPS;
- whether the stated interval is the belief's: the belief must put the question's confidence on it, within
  the grammar's rounding (value and half-width each by up to half a unit of the last decimal) and Monte Carlo slack. A conclusion
  that claims more (a zero-width interval after no experiment) or less than the belief is flagged, and is
  not a success.

`belief_sample` runs where the belief engine is; `score_answer` needs only plain data (the sample, the
conclusion, the truth), so a grader in another process can run it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from loopylab.lab.scoring import binomial_ci, central_interval, crps, interval_score, mass_inside
from loopylab.world import notebook as g

BELIEF_SLACK = 0.04  # probability: Monte Carlo error of a predictive sample, and resampling noise


def belief_sample(post, question: g.Question) -> tuple[np.ndarray, np.ndarray] | None:
    """(values, weights) of the belief about the question's quantity (None for rank questions). `post`:
    a `loopylab.lab.beliefs.Posterior`. Its random state is left as it was (a graded run replays)."""
    if question.kind not in g.PARAMS and question.kind != "predict":
        return None
    state = post.rng.bit_generator.state
    try:
        if question.kind == "predict":
            _, values = post.predictive(question.object)
            return np.asarray(values, float), np.full(len(values), 1.0 / len(values))
        op = post.objects[question.object]
        return op.natural(question.kind).copy(), op.weights.copy()
    finally:
        post.rng.bit_generator.state = state


@dataclass
class AnswerScore:
    interval: tuple[float, float] | None  # the conclusion's stated interval
    covered: bool | None  # it holds the truth
    interval_score: float | None  # Gneiting & Raftery, alpha = 1 - confidence
    crps: float | None  # of the belief sample
    belief_mass: float | None  # the belief's probability of the stated interval
    interval_is_belief: bool | None  # the stated interval is the belief's (see module docstring)
    belief_interval: tuple[float, float] | None  # the belief's own central interval at the confidence

    def row(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def stated_estimate(question: g.Question, conclusion: g.Conclusion | None) -> g.Estimate | None:
    want = "slide" if question.kind == "predict" else question.kind
    for a in conclusion.answers if conclusion is not None else ():
        if isinstance(a, g.Estimate) and a.quantity == want and a.object == question.object:
            return a
    return None


def score_answer(
    question: g.Question,
    conclusion: g.Conclusion | None,
    sample: tuple[np.ndarray, np.ndarray] | None,
    truth: float | None,
    confidence: float = 0.9,
) -> AnswerScore:
    """Score a conclusion and the belief behind it against the true value (None where not gradable)."""
    none = AnswerScore(None, None, None, None, None, None, None)
    if not isinstance(truth, (int, float)):  # a ranking, a model, a position: no interval to score
        return none
    est = stated_estimate(question, conclusion)
    score = AnswerScore(None, None, None, None, None, None, None)
    if sample is not None:
        values, w = sample
        score.crps = crps(values, truth, w)
        score.belief_interval = central_interval(values, confidence, w)
    if est is None:
        return score
    lo, hi = est.value - est.spread, est.value + est.spread
    score.interval = (lo, hi)
    score.covered = bool(lo - 1e-12 <= truth <= hi + 1e-12)
    score.interval_score = interval_score(lo, hi, truth, 1 - confidence)
    if sample is not None:
        values, w = sample
        unit = 10.0 ** -g.DECIMALS[est.quantity]  # value and half-width each rounded by up to half of it
        score.belief_mass = mass_inside(values, lo, hi, w)
        wide = mass_inside(values, lo - unit, hi + unit, w)  # the most the stated numbers may have meant
        narrow = mass_inside(values, lo + unit, hi - unit, w) if hi - lo > 2 * unit else 0.0
        score.interval_is_belief = bool(wide >= confidence - BELIEF_SLACK and narrow <= confidence + BELIEF_SLACK)
    return score


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def score_summary(rows: list[dict]) -> dict:
    """Evaluation rows of one (agent, kind) -> the honest-grading figures: 90 % coverage with its 95 %
    Wilson interval and n, mean interval score and CRPS, conclusions whose interval is not the belief's,
    the share of experiment calls that executed, and the mean regret against the best random design."""
    ok = [r for r in rows if not r.get("crashed") and not r.get("ungradable")]
    cov = [bool(r["covered"]) for r in ok if r.get("covered") is not None]
    calls = sum(r.get("experiments", 0) for r in ok)
    done = sum(r.get("executed", 0) for r in ok)
    regrets = [x for r in ok for x in r.get("regrets") or ()]
    k = sum(cov)
    return {
        "coverage90": k / len(cov) if cov else None,
        "coverage90_n": len(cov),
        "coverage90_ci95": list(binomial_ci(k, len(cov))) if cov else None,
        "interval_score": _mean(r.get("interval_score") for r in ok),
        "crps": _mean(r.get("crps") for r in ok),
        "interval_not_belief": sum(r.get("interval_is_belief") is False for r in ok),
        "executed_rate": done / calls if calls else None,
        "regret_vs_random_best": float(np.mean(regrets)) if regrets else None,
    }


__all__ = ["AnswerScore", "belief_sample", "score_answer", "score_summary", "stated_estimate"]
