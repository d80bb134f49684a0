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

Experiments differing only by direction have the same level (`loopylab.lab.forward.level_key`) and are scored
once. One decision over the whole grid takes tens of milliseconds once the tables exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loopylab.lab import kinds
from loopylab.lab.beliefs import REPORTED_SIGMA, Posterior, predict_biased
from loopylab.lab.experiments import sliding_levels, workspace
from loopylab.lab.forward import MEASURED, level_key
from loopylab.world import notebook as g


@dataclass
class DesignConfig:
    n_outer: int = 128
    n_inner: int = 512
    cost_per_s: float = 0.005  # nats per second of robot time
    duration_s: dict = field(
        default_factory=lambda: {"push": 3.0, "strike": 2.0, "weigh": 4.0, "drop": 4.0, "lift": 3.0, "place": 6.0}
    )
    risk: dict = field(default_factory=lambda: {"drop": 0.01, "strike": 0.005})  # nats: objects may roll away
    lookahead: bool = True  # also score pairs of experiments (see pair_scores)
    # skills the expert does not count as evidence for a kind of question although the tables say they
    # carry some: a drop's bounce depends on friction only through how an off-centre block tips as it
    # lands (modelled so that restitution reads right), a weak handle on mu that moves the block, often
    # out of reach (friction on seeds 100000-100019: 14/20 with drops counted, 15/20 without)
    not_evidence: dict = field(default_factory=lambda: {"friction": ("drop",), "predict": ("drop",)})

    # the least EIG (nats) a step must promise for the expert to go on past its cost while the belief is short
    # of the confidence asked for and budget is left: robot time is cheap next to a wrong answer, so the cost
    # only stops it where nothing left narrows the belief measurably (0.005 nats: its sd by 0.5 %). With the
    # cost alone as the bar it stopped high-friction blocks at P 0.43-0.67 (dev 1000004, test 2000000, 2000005),
    # whose pushes each gain ~0.01 nats under the push's systematic gain
    min_gain: float = 0.005

    def cost(self, exp: g.Experiment) -> float:
        return self.cost_per_s * self.duration_s.get(exp.skill, 3.0) + self.risk.get(exp.skill, 0.0)


def quantity(post: Posterior, obj: str, theta: np.ndarray) -> tuple[np.ndarray, float, float, np.ndarray | float]:
    """(phi per particle, weight of this object for the question, variance floor, the variance no experiment
    removes per particle) for particles of `obj` (the question kind's own, `loopylab.lab.kinds.QuestionKind.quantity`;
    a kind that gives three has none of the last: 0)."""
    fn = kinds.of(post.question).quantity
    if fn is None:
        raise ValueError(f"question kind {post.question.kind!r} has no design quantity (its belief designs)")
    phi, weight, floor, *rest = fn(post, obj, theta)
    return phi, weight, floor, (rest[0] if rest else 0.0)


class _ObjectScorer:
    """Nested-MC machinery for the experiments on one object: inner particles, the question quantity,
    and for each experiment level the simulated outcomes of the outer particles and their likelihoods."""

    def __init__(self, post: Posterior, obj: str, cfg: DesignConfig, rng: np.random.Generator, last_sigma: dict):
        op = post.objects[obj]
        self.post, self.cfg, self.rng, self.last_sigma = post, cfg, rng, last_sigma
        self.inner = op.theta[op.draw(cfg.n_inner)]
        self.phi, self.weight, self.floor, self.aleatoric = quantity(post, obj, self.inner)
        self.var0 = max(float(np.var(self.phi)), self.floor)
        # an outcome's own scatter (a predict question's held-out slide): the entropy of the outcome, not of its
        # mean, is what an experiment can shrink, so a belief whose mean is known far better than the outcome
        # scatters gains next to nothing (law of total variance: Var y = Var E[y | theta] + E Var[y | theta])
        self.noise_var = float(np.mean(self.aleatoric))
        self.outer = rng.choice(len(self.inner), size=min(cfg.n_outer, len(self.inner)), replace=False)
        self.loglik: dict[tuple, np.ndarray] = {}

    @property
    def useless(self) -> bool:
        return self.weight <= 0 or self.var0 <= self.floor

    def L(self, exp: g.Experiment) -> np.ndarray:
        """(n_outer, n_inner) log p(y_i | theta_j) with y_i simulated from outer particle i."""
        key = level_key(exp)
        if exp.skill in self.cfg.not_evidence.get(self.post.question.kind, ()):
            return np.zeros((len(self.outer), len(self.inner)))  # gains nothing, alone or in a pair
        if key not in self.loglik:
            pred = predict_biased(self.post.forward, exp, self.inner)
            out = np.zeros((len(self.outer), len(self.inner)))
            repeat, seen = self.post.repeats(exp), self.post.com_seen(exp.object)
            for mkey in MEASURED[exp.skill]:
                sig = self.post.noise.sigma(mkey, pred[mkey], self.last_sigma.get(mkey, 0.0), repeat, seen)
                y = self.post.noise.sample(pred[mkey][self.outer], sig[self.outer], self.rng, mkey)
                out += self.post.noise.logpdf(y[:, None], pred[mkey][None, :], sig[None, :], mkey)
            self.loglik[key] = out
        return self.loglik[key]

    def gain(self, loglik: np.ndarray) -> float:
        w = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        m1 = w @ self.phi
        var = np.maximum(w @ (self.phi**2) - m1**2, self.floor)
        var = var + (w @ self.aleatoric if np.ndim(self.aleatoric) else self.aleatoric)
        ratio = (self.var0 + self.noise_var) / var
        return max(self.weight * float(np.mean(0.5 * np.log(ratio))), 0.0)


def _scorers(post, candidates, cfg, rng, last_sigma) -> dict[str, _ObjectScorer]:
    objs = {e.object for e in candidates if e.object in post.objects}
    return {o: _ObjectScorer(post, o, cfg, rng, last_sigma) for o in sorted(objs)}


def eig_scores(
    post: Posterior,
    candidates: list[g.Experiment],
    cfg: DesignConfig | None = None,
    rng: np.random.Generator | None = None,
    last_sigma: dict | None = None,
    scorers: dict | None = None,
) -> np.ndarray:
    """EIG (nats) about the question quantity for each candidate (no cost subtracted)."""
    cfg = cfg or DesignConfig()
    rng = rng or np.random.default_rng(0)
    if hasattr(post, "eig_scores"):  # a belief that designs its own experiments (lab/slides.py)
        return post.eig_scores(candidates, cfg, rng, last_sigma or {})
    scorers = scorers if scorers is not None else _scorers(post, candidates, cfg, rng, last_sigma or {})
    scores = np.zeros(len(candidates))
    by_level: dict[tuple, float] = {}
    for ci, exp in enumerate(candidates):
        key = level_key(exp)
        if key not in by_level:
            sc = scorers.get(exp.object)
            by_level[key] = 0.0 if sc is None or sc.useless else sc.gain(sc.L(exp))
        scores[ci] = by_level[key]
    return scores


def pair_scores(post: Posterior, candidates: list[g.Experiment], scorers: dict) -> dict[tuple[int, int], float]:
    """Two-step lookahead: EIG of doing candidates i and j (same object, any two levels, repeats
    allowed), over one representative candidate per level. Myopic EIG never weighs an object for a
    friction question (the mass alone says nothing about friction), but weigh-then-push pins it down."""
    reps: dict[tuple, int] = {}
    for i, e in enumerate(candidates):
        reps.setdefault(level_key(e), i)
    idx = list(reps.values())
    out = {}
    for a, i in enumerate(idx):
        for j in idx[a:]:
            ei, ej = candidates[i], candidates[j]
            sc = scorers.get(ei.object)
            if ei.object != ej.object or sc is None or sc.useless:
                continue
            out[(i, j)] = sc.gain(sc.L(ei) + sc.L(ej))
    return out


@dataclass
class Decision:
    experiment: g.Experiment
    eig: float
    score: float  # eig - cost (or half the best pair's, when looking ahead pays)
    scores: np.ndarray  # eig of every candidate (same order as the candidates)
    lookahead: bool = False  # chosen as the first half of a two-experiment plan
    # what the choice was made against, for explaining it (`summary`); read-only
    candidates: tuple[g.Experiment, ...] = ()
    costs: np.ndarray | None = None  # cost of every candidate (nats)
    partner: g.Experiment | None = None  # the plan's other half (lookahead)
    plan_eig: float | None = None  # EIG of the whole plan (lookahead)
    unlock_gain: float = 0.0  # the most a place offers per experiment: half its best plan's EIG (`place_value`)

    @property
    def gain(self) -> float:
        """The most information one experiment on offer promises, cost aside (nats): the best single EIG, half
        the chosen plan's, or a place's share of what it makes possible."""
        single = float(np.max(self.scores)) if len(self.scores) else 0.0
        return max(single, (self.plan_eig or 0.0) / 2, self.unlock_gain)

    def worth_nothing(self, min_gain: float) -> bool:
        """Nothing on offer is worth its cost, and none promises even `min_gain` nats (DesignConfig.min_gain):
        the expert's reason to answer before the belief is sure."""
        return self.score <= 0 and self.gain < min_gain

    @property
    def cost(self) -> float:
        """The chosen experiment's cost (nats of robot time and risk)."""
        if self.costs is None or self.experiment not in self.candidates:
            return 0.0
        return float(self.costs[self.candidates.index(self.experiment)])

    def alternatives(self) -> list[tuple[g.Experiment, float, float]]:
        """Every experiment level considered, once each (directions share a level), highest EIG first:
        (experiment, eig, cost)."""
        seen: dict[tuple, tuple[g.Experiment, float, float]] = {}
        for i, e in enumerate(self.candidates):
            cost = float(self.costs[i]) if self.costs is not None else 0.0
            seen.setdefault(level_key(e), (e, float(self.scores[i]), cost))
        return sorted(seen.values(), key=lambda a: -a[1])

    def summary(self) -> dict:
        """The choice and what it was weighed against, as plain data (the notebook records it with the
        experiment; lab/story.py puts it in words)."""
        return {
            "eig": self.eig,
            "cost": self.cost,
            "score": self.score,
            "options": len(self.candidates),
            "plan": None if self.partner is None else {"with": self.partner.render(), "eig": self.plan_eig},
            "alternatives": [[e.render(), eig, cost] for e, eig, cost in self.alternatives()],
        }


def choose(
    post: Posterior,
    candidates: list[g.Experiment],
    cfg: DesignConfig | None = None,
    rng: np.random.Generator | None = None,
    last_sigma: dict | None = None,
) -> Decision:
    """The candidate with the highest EIG minus cost; when some pair of experiments gains more per
    experiment than any single one, the more informative half of that pair (ties: grid order)."""
    cfg = cfg or DesignConfig()
    rng = rng or np.random.default_rng(0)
    if hasattr(post, "choose"):  # a belief that designs its own experiments (competing models: lab/slides.py)
        return post.choose(candidates, cfg, rng, last_sigma or {})
    scorers = _scorers(post, candidates, cfg, rng, last_sigma or {})
    eig = eig_scores(post, candidates, cfg, rng, last_sigma, scorers)
    cost = np.array([cfg.cost(e) for e in candidates])
    net = eig - cost
    unlock = 0.0
    for ci, e in enumerate(candidates):
        if e.skill == "place":
            net[ci], half = place_value(post, e, float(cost[ci]), cfg, rng, last_sigma, scorers)
            unlock = max(unlock, half)
    i = int(np.argmax(net))
    best, lookahead, partner, plan_eig = float(net[i]), False, None, None
    if cfg.lookahead:
        for (a, b), gain in pair_scores(post, candidates, scorers).items():
            per = (gain - cost[a] - cost[b]) / 2
            if per > best + 1e-3 and per > net[i]:
                i, j = (a, b) if net[a] >= net[b] else (b, a)
                best, lookahead, partner, plan_eig = per, True, candidates[j], float(gain)
    return Decision(
        candidates[i], float(eig[i]), best, eig, lookahead, tuple(candidates), cost, partner, plan_eig, unlock
    )


def place_value(
    post: Posterior, place: g.Experiment, cost: float, cfg: DesignConfig, rng, last_sigma, scorers: dict
) -> tuple[float, float]:
    """A place measures nothing; it is worth what it makes possible: as a two-experiment plan (place,
    then the best push or strike from the clear spot), half the plan's gain net of both costs; and half the
    best such plan's gain, cost aside. A neighbour's place is a three-experiment plan (it, the object's own
    place, the push), counted in thirds."""
    ws = workspace(getattr(post.forward.scene, "robot", None))
    if place.object in scorers:
        unlocked, steps = sliding_levels(place.object, ws), 2
    else:  # a neighbour moved out of the way (`clearing_place`): the question's object may then be placed too
        unlocked, steps = [u for o in scorers for u in sliding_levels(o, ws)], 3
    if not unlocked:
        return -cost, 0.0
    gains = eig_scores(post, unlocked, cfg, rng, last_sigma, scorers)
    net = max((gain - (steps - 1) * cost - cfg.cost(u)) / steps for gain, u in zip(gains, unlocked))
    return net, float(max(gains, default=0.0)) / steps


def regret(eig_of_choice: float, scores: np.ndarray, rng: np.random.Generator, n_random: int = 100) -> float:
    """BoxingGym's EIG regret: the best EIG among `n_random` designs drawn uniformly from the candidates
    minus the choice's (negative when the choice beats all of them)."""
    best = float(np.max(scores[rng.integers(0, len(scores), n_random)]))
    return best - eig_of_choice


def regret_vs_random(
    post: Posterior,
    candidates: list[g.Experiment],
    chosen: g.Experiment,
    rng: np.random.Generator,
    n_random: int = 100,
    cfg: DesignConfig | None = None,
) -> tuple[float, float]:
    """(EIG of `chosen`, its regret against the best of `n_random` random candidate designs), both from
    the evaluator's own nested-Monte-Carlo estimate (`rng`: its own), never from the agent's numbers:
    an expert graded on its own estimates has no regret by construction. An experiment outside the
    grid gains nothing. The belief engine's random state is left as it was (its runs replay)."""
    state = post.rng.bit_generator.state
    try:
        scores = eig_scores(post, list(candidates), cfg, rng, sigmas_seen(post))
    finally:
        post.rng.bit_generator.state = state
    eig = float(scores[candidates.index(chosen)]) if chosen in candidates else 0.0
    return eig, regret(eig, scores, rng, n_random)


def sigmas_seen(post: Posterior) -> dict[str, float]:
    """The latest sigma each skill reported, per measurement (design-time noise for simulated outcomes)."""
    out: dict[str, float] = {}
    for op in post.objects.values():
        for m in op.history:
            out.update({k: v for k, v in m.reported_sigma.items() if v})
    return out


__all__ = [
    "REPORTED_SIGMA",
    "Decision",
    "DesignConfig",
    "choose",
    "eig_scores",
    "regret",
    "regret_vs_random",
    "sigmas_seen",
]
