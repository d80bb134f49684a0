"""Experiment design: score each candidate experiment by its expected information gain about the
question's quantity, minus a cost, and pick the best one.

EIG by nested Monte Carlo over the particles (BoxingGym's template): draw inner particles theta_j from
the posterior; for each outer particle theta_i simulate a measurement y_i ~ p(y | theta_i) through the
forward-model tables and the noise model; reweight the inner particles by p(y_i | theta_j); the gain
is the expected drop in entropy of the question quantity phi, which for a near-Gaussian phi is
0.5 * log(Var[phi] / Var[phi | y_i]), averaged over i. Targeting phi rather than all parameters is
what makes the expert combine experiments: a friction question values strikes (slide reveals mu), a
mass question values weighing, or a push (mu*m) together with a strike, a restitution question drops.
Gains below the question's tolerance are worth nothing (the posterior variance is floored at
(tol/4)^2), so the expert stops chasing precision nobody asked for.

Experiments differing only by direction have the same level (`lab.forward.level_key`) and are scored
once. One decision over the whole grid takes tens of milliseconds once the tables exist.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lab import grammar as g
from lab.beliefs import REPORTED_SIGMA, Posterior
from lab.forward import MEASURED, level_key


@dataclass
class DesignConfig:
    n_outer: int = 128
    n_inner: int = 512
    cost_per_s: float = 0.005      # nats per second of robot time
    duration_s: dict = field(default_factory=lambda: {"push": 3.0, "strike": 2.0, "weigh": 4.0, "drop": 4.0,
                                                     "lift": 3.0})
    risk: dict = field(default_factory=lambda: {"drop": 0.01, "strike": 0.005})  # nats: objects may roll away

    def cost(self, exp: g.Experiment) -> float:
        return self.cost_per_s * self.duration_s.get(exp.skill, 3.0) + self.risk.get(exp.skill, 0.0)


def quantity(post: Posterior, obj: str, theta: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(phi per particle, weight of this object for the question, variance floor) for particles of `obj`."""
    q = post.question
    if q.kind == "rank":
        amb = post.pairwise_ambiguity()
        total = sum(amb.values()) or 1.0
        return theta[:, 1], amb.get(obj, 0.0) / total, (0.02) ** 2
    if obj != q.object:
        return np.zeros(len(theta)), 0.0, 1.0
    if q.kind == "predict":
        return post.forward.predict(q.action, theta)["slide_m"], 1.0, (q.tolerance / 4) ** 2
    if q.kind == "mass":
        return theta[:, 1], 1.0, (q.tolerance / 4) ** 2        # log mass: relative tolerance
    col = {"friction": 0, "restitution": 2}[q.kind]
    return np.exp(theta[:, col]), 1.0, (q.tolerance / 4) ** 2


def eig_scores(post: Posterior, candidates: list[g.Experiment], cfg: DesignConfig | None = None,
               rng: np.random.Generator | None = None, last_sigma: dict | None = None) -> np.ndarray:
    """EIG (nats) about the question quantity for each candidate (no cost subtracted)."""
    cfg = cfg or DesignConfig()
    rng = rng or np.random.default_rng(0)
    last_sigma = last_sigma or {}
    scores = np.zeros(len(candidates))
    by_level: dict[tuple, float] = {}
    per_object: dict[str, tuple] = {}
    for ci, exp in enumerate(candidates):
        key = level_key(exp)
        if key in by_level:
            scores[ci] = by_level[key]
            continue
        if exp.object not in post.objects:
            by_level[key] = 0.0
            continue
        if exp.object not in per_object:
            op = post.objects[exp.object]
            inner = op.theta[op.draw(cfg.n_inner)]
            phi, weight, floor = quantity(post, exp.object, inner)
            per_object[exp.object] = (inner, phi, weight, floor, max(float(np.var(phi)), floor))
        inner, phi, weight, floor, var0 = per_object[exp.object]
        if weight <= 0 or var0 <= floor:
            by_level[key] = scores[ci] = 0.0
            continue
        pred = post.forward.predict(exp, inner)
        outer = rng.choice(len(inner), size=min(cfg.n_outer, len(inner)), replace=False)
        loglik = np.zeros((len(outer), len(inner)))
        for mkey in MEASURED[exp.skill]:
            sig = post.noise.sigma(mkey, pred[mkey], last_sigma.get(mkey, 0.0))
            y = post.noise.sample(pred[mkey][outer], sig[outer], rng)
            loglik += post.noise.logpdf(y[:, None], pred[mkey][None, :], sig[None, :])
        w = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        m1 = w @ phi
        var = np.maximum(w @ (phi ** 2) - m1 ** 2, floor)
        gain = weight * float(np.mean(0.5 * np.log(var0 / var)))
        by_level[key] = scores[ci] = max(gain, 0.0)
    return scores


@dataclass
class Decision:
    experiment: g.Experiment
    eig: float
    score: float                 # eig - cost
    scores: np.ndarray           # eig of every candidate (same order as the candidates)


def choose(post: Posterior, candidates: list[g.Experiment], cfg: DesignConfig | None = None,
           rng: np.random.Generator | None = None, last_sigma: dict | None = None) -> Decision:
    """The candidate with the highest EIG minus cost (ties: the first in grid order)."""
    cfg = cfg or DesignConfig()
    eig = eig_scores(post, candidates, cfg, rng, last_sigma)
    net = eig - np.array([cfg.cost(e) for e in candidates])
    i = int(np.argmax(net))
    return Decision(candidates[i], float(eig[i]), float(net[i]), eig)


def regret(eig_of_choice: float, scores: np.ndarray, rng: np.random.Generator, n_random: int = 100) -> float:
    """BoxingGym's EIG regret: the best EIG among `n_random` uniformly drawn candidates minus the choice's."""
    best = float(np.max(scores[rng.integers(0, len(scores), n_random)]))
    return max(best - eig_of_choice, 0.0)


def sigmas_seen(post: Posterior) -> dict[str, float]:
    """The latest sigma each skill reported, per measurement (design-time noise for simulated outcomes)."""
    out: dict[str, float] = {}
    for op in post.objects.values():
        for m in op.history:
            out.update({k: v for k, v in m.reported_sigma.items() if v})
    return out


__all__ = ["DesignConfig", "Decision", "choose", "eig_scores", "regret", "sigmas_seen", "REPORTED_SIGMA"]
