"""The `slides` question kind: "which model explains how OBJ slides" (model identification).

Its worlds draw the subject's friction structure (`world.scene.with_structure(..., "friction_model")`):
isotropic, or direction-dependent along the object's own axes. The belief is `ModelPosterior`: the competing
models of lab/models.py with their evidence and rejections. It designs its own experiments (`choose`): the
expected information about *which model* holds, by nested Monte Carlo over the same twin tables, alone and for
pairs of experiments (one push tells nothing about direction; a push along x and one along y can).

The conclusion is the model and its parameters, the explanation another agent can predict from:

    model red_block anisotropic 0.97; friction_x red_block 0.80 0.05; friction_y red_block 0.40 0.03
    model red_block isotropic 0.95; friction red_block 0.41 0.04
    none of my hypotheses explains red_block           (every model was rejected)
"""

from __future__ import annotations

import numpy as np

from loopylab.lab import kinds
from loopylab.lab.beliefs import Answer, Measurement, Posterior, box_from_hypothesis, interval_halfwidth
from loopylab.lab.design import Decision, DesignConfig
from loopylab.lab.experiments import sliding_levels, workspace
from loopylab.lab.forward import MEASURED, level_key
from loopylab.lab.models import (
    ANISO_GAP,
    EXPLAIN_TOL,
    FRICTION_BOX,
    MODEL_KNOWN,
    PRIOR_DRAWS,
    ModelSet,
    axis_of,
    held_out_error,
    logmeanexp,
    model_row,
    p_known,
    prior_unit,
    twin_prediction,
)
from loopylab.lab.questions import subject_of
from loopylab.world import notebook as g

ANISO_TRUTH = 1.05  # a world whose axes' frictions differ by more than this factor is anisotropic


class ModelPosterior(Posterior):
    """The belief of a model-identification question: a `ModelSet` per object in question."""

    def reset(self, hypothesis: g.Hypothesis | None) -> None:
        boxes = box_from_hypothesis(hypothesis, list(self.question.objects), self.forward.axes)
        self.resets += 1
        self.sets = {
            o: ModelSet(o, boxes[o], self.forward, self.noise, self.n, self.seed + i, self.resets, self.rng)
            for i, o in enumerate(self.question.objects)
        }
        self.hypothesis = hypothesis
        for m in self.measurements:
            self.sets[m.experiment.object].update(m)
        self._sync()

    def _sync(self) -> None:
        """`objects`: each object's most probable live model's particles (what generic readers look at)."""
        self.objects = {}
        for o, ms in self.sets.items():
            top, _ = ms.best()
            self.objects[o] = ms.models[top or next(iter(ms.models))]

    def update(self, m: Measurement) -> None:
        if m.com is not None:
            self.forward.note_com(m.experiment.object, m.com)
        if m.load is not None:
            self.forward.note_load(m.experiment.object, m.load)
        if m.experiment.object not in self.sets:
            return
        m.repeat = self.repeats(m.experiment)
        self.measurements.append(m)
        self.sets[m.experiment.object].update(m)
        self._sync()

    # -- what the notebook says -----------------------------------------------------------------------
    def explanation(self, obj: str, model: str, level: float) -> tuple[g.Estimate, ...]:
        """The model's parameters that answer how `obj` slides: (value, half-width at `level`)."""
        op = self.sets[obj].models[model]
        mu_x, mu_y = op.friction_xy()
        qty = (("friction", mu_x),) if model == "isotropic" else (("friction_x", mu_x), ("friction_y", mu_y))
        out = []
        for name, v in qty:
            centre = float(np.sum(op.weights * v))
            half = interval_halfwidth(v, op.weights, centre, level) if level else float(op.mean_sd(v)[1])
            out.append(g.Estimate(name, obj, *(float(g.fmt(max(x, 0.0), 2)) for x in (centre, half))))
        return tuple(out)

    def belief(self) -> g.Belief:
        clauses: list = []
        for o, ms in self.sets.items():
            probs = ms.probabilities()
            clauses += [g.ModelProb(o, k, float(g.fmt(p, 2))) for k, p in probs.items()]
            clauses += ms.new_rejections
            for k in ms.live:
                clauses += self.explanation(o, k, 0.0)  # mean and sd
        return g.Belief(tuple(clauses))

    # whether the answer waits for its explanation's parameters (`known`) as well as the model
    explanation_stops = True

    def known(self, obj: str, model: str) -> float:
        """P(the model's explanation is within `EXPLAIN_TOL` of what it states) under that model's particles."""
        op = self.sets[obj].models[model]
        return p_known(op.targets(op.theta), op.weights)  # type: ignore[attr-defined]

    def answer(self, confidence: float = 0.9) -> Answer:
        """The top model and its explanation; sure as the model times its explanation's parameters (a model
        known with its parameters still broad explains little: stopping there left eig vaguer than random)."""
        obj = self.question.object
        top, p = self.sets[obj].best()
        if top is None:  # every model was rejected: nothing to answer, and sure of that
            return Answer(g.Conclusion((g.Unexplained(obj),)), 1.0)
        head = g.ModelProb(obj, top, float(g.fmt(p, 2)))
        sure = p * self.known(obj, top) if self.explanation_stops else p
        return Answer(g.Conclusion((head, *self.explanation(obj, top, confidence))), sure)

    # -- experiment design --------------------------------------------------------------------------------
    def eig_scores(self, candidates: list[g.Experiment], cfg: DesignConfig, rng, last_sigma: dict, scorer=None):
        """Each candidate's expected information about the model (nats; one experiment alone)."""
        scorer = scorer or _ModelScorer(self, self.question.object, cfg, rng, last_sigma or {})
        return np.array([scorer.gain([e]) if e.object == self.question.object else 0.0 for e in candidates])

    def choose(self, candidates: list[g.Experiment], cfg: DesignConfig, rng: np.random.Generator, last_sigma: dict):
        """The candidate worth most information about the model net of its cost, or the first of the pair
        worth most per experiment (see the module docstring)."""
        scorer = _ModelScorer(self, self.question.object, cfg, rng, last_sigma or {})
        eig = self.eig_scores(candidates, cfg, rng, last_sigma, scorer)
        cost = np.array([cfg.cost(e) for e in candidates])
        net = eig - cost
        unlocked = None  # what a place makes possible: the best pair from a clear spot, the same for every place
        for ci, e in enumerate(candidates):
            if e.skill == "place":  # measures nothing: worth what it unlocks (then a pair from the clear spot)
                if unlocked is None:
                    ws = workspace(getattr(self.forward.scene, "robot", None))  # the arm's own levels, not a Panda's
                    unlocked = _best_pair(scorer, sliding_levels(scorer.obj, ws), cfg)
                gain, c, _ = unlocked
                # a neighbour's place (`clearing_place`) makes room: the block's own place may follow it
                places = 1 if e.object == scorer.obj else 2
                net[ci] = (gain - c - places * cost[ci]) / (2 + places) if gain > 0 else -cost[ci]
        i = int(np.argmax(net))
        best, partner, plan_eig = float(net[i]), None, None
        gain, c, pair = _best_pair(scorer, candidates, cfg)
        if pair is not None and (gain - c) / 2 > best + 1e-3:
            ia, ib = pair
            i, best, partner, plan_eig = (ia, (gain - c) / 2, candidates[ib], gain)
            if net[ib] > net[ia]:
                i, partner = ib, candidates[ia]
        return Decision(
            candidates[i], float(eig[i]), best, eig, partner is not None, tuple(candidates), cost, partner, plan_eig
        )


def _best_pair(scorer: _ModelScorer, exps: list[g.Experiment], cfg: DesignConfig):
    """(gain, summed cost, (i, j)) of the pair of `exps` (one per level and axis) worth most net of its cost."""
    reps: dict[tuple, int] = {}
    for ci, e in enumerate(exps):
        if e.object == scorer.obj and e.skill != "place":
            reps.setdefault(scorer.key(e), ci)
    idx = list(reps.values())
    best: tuple[float, float, tuple[int, int] | None] = (0.0, 0.0, None)
    for a, ia in enumerate(idx):
        for ib in idx[a + 1 :]:
            gain, c = scorer.gain([exps[ia], exps[ib]]), cfg.cost(exps[ia]) + cfg.cost(exps[ib])
            if best[2] is None or gain - c > best[0] - best[1]:
                best = (gain, c, (ia, ib))
    return best


class _ModelScorer:
    """Nested Monte Carlo over the live models: inner particles of each, outer draws that simulate outcomes."""

    def __init__(self, post: ModelPosterior, obj: str, cfg: DesignConfig, rng, last_sigma: dict):
        ms = post.sets[obj]
        self.post, self.obj, self.rng, self.last_sigma = post, obj, rng, last_sigma
        probs = ms.probabilities()
        self.live = [k for k in ms.live if probs[k] > 1e-6]
        self.prior = np.array([probs[k] for k in self.live])
        self.prior = self.prior / self.prior.sum() if self.prior.sum() > 0 else self.prior
        n_in, n_out = cfg.n_inner // 2, max(cfg.n_outer // max(len(self.live), 1), 8)
        self.ops = [ms.models[k] for k in self.live]
        self.inner = [op.theta[op.draw(n_in, rng)] for op in self.ops]
        self.outer = [rng.choice(n_in, n_out, replace=False) for _ in self.ops]
        self.cache: dict[tuple, list[list[np.ndarray]]] = {}
        # once a model holds MODEL_KNOWN, what is left to learn is its explanation's parameters (`param_gain`)
        top = int(np.argmax(self.prior)) if self.live else -1
        self.known = top if top >= 0 and self.prior[top] >= MODEL_KNOWN else None

    @staticmethod
    def key(exp: g.Experiment) -> tuple:
        return (*level_key(exp), axis_of(exp))

    def L(self, exp: g.Experiment) -> list[list[np.ndarray]]:
        """[a][b]: (outer draws of model a, inner particles of model b) log p(y | theta) for `exp`."""
        key = self.key(exp)
        if key not in self.cache:
            preds = [op.predict(exp, th) for op, th in zip(self.ops, self.inner)]
            noise, rep, seen = self.post.noise, self.post.repeats(exp), self.post.com_seen(exp.object)
            out = []
            for a, outer in enumerate(self.outer):
                row = [np.zeros((len(outer), len(th))) for th in self.inner]
                for mk in MEASURED[exp.skill]:
                    sa = noise.sigma(mk, preds[a][mk], self.last_sigma.get(mk, 0.0), rep, seen)
                    y = noise.sample(preds[a][mk][outer], sa[outer], self.rng, mk)
                    for b in range(len(self.inner)):
                        sb = noise.sigma(mk, preds[b][mk], self.last_sigma.get(mk, 0.0), rep, seen)
                        row[b] += noise.logpdf(y[:, None], preds[b][mk][None, :], sb[None, :], mk)
                out.append(row)
            self.cache[key] = out
        return self.cache[key]

    def gain(self, exps: list[g.Experiment]) -> float:
        """Expected drop in the entropy of the model posterior (nats) after all of `exps`; once the model is known,
        of its explanation's parameters instead."""
        if self.known is not None:
            return self.param_gain(exps, self.known)
        if len(self.live) < 2:
            return 0.0
        h0 = -float(np.sum(self.prior * np.log(self.prior)))
        total = 0.0
        for a in range(len(self.live)):
            ll = self._joint(exps, a)
            lp = ll + np.log(self.prior)[None, :]
            lp -= lp.max(axis=1, keepdims=True)
            post = np.exp(lp)
            post /= post.sum(axis=1, keepdims=True)
            h = -np.sum(np.where(post > 0, post * np.log(np.maximum(post, 1e-300)), 0.0), axis=1)
            total += self.prior[a] * float(np.mean(h))
        return max(h0 - total, 0.0)

    def param_gain(self, exps: list[g.Experiment], a: int) -> float:
        """Expected information (nats, Gaussian) about model `a`'s explanation targets after all of `exps`, each
        target's variance floored at (EXPLAIN_TOL / 4)^2: precision past the tolerance is worth nothing (as
        design.py floors a parameter question's)."""
        ll = sum(self.L(e)[a][a] for e in exps)
        if not isinstance(ll, np.ndarray):
            return 0.0
        t = self.ops[a].targets(self.inner[a])  # type: ignore[attr-defined]
        floor = (EXPLAIN_TOL / 4) ** 2
        w = np.exp(ll - ll.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        m1 = w @ t
        var = np.maximum(w @ t**2 - m1**2, floor)
        var0 = np.maximum(np.var(t, axis=0), floor)
        return max(float(np.mean(np.sum(0.5 * np.log(var0[None, :] / var), axis=1))), 0.0)

    def _joint(self, exps: list[g.Experiment], a: int) -> np.ndarray:
        """log p(y_1..y_k | model b) for outer draws of model a: the same inner particle explains all of them."""
        return np.stack([logmeanexp(sum(self.L(e)[a][b] for e in exps), axis=1) for b in range(len(self.live))], axis=1)


# -- the kind -----------------------------------------------------------------------------------------------


def _make(scene: g.Scene, seed: int, tol: float, budget: int | None) -> g.Question:
    return g.Question("slides", (subject_of(scene),), 0.0, budget)


def _answer(question: g.Question, conclusion: g.Conclusion):
    for a in conclusion.answers:
        if isinstance(a, g.ModelProb) and a.object == question.object:
            return a.model
    return None


def true_model(truth: dict, obj: str) -> str:
    """The structure of `obj` in the oracle's truth: anisotropic when its axes' frictions differ."""
    fx, fy = truth[obj].get("friction_xy") or (truth[obj]["friction"],) * 2
    return "anisotropic" if max(fx, fy) / min(fx, fy) > ANISO_TRUTH else "isotropic"


def _grade(question: g.Question, ans, truth: dict, outcome) -> kinds.Grade:
    true = true_model(truth, question.object)
    return kinds.Grade(ans == true, 0.0 if ans == true else 1.0, true, ans)


def explanation_friction(conclusion: g.Conclusion, obj: str, direction: str) -> float | None:
    """The friction along `direction` that a conclusion's explanation states (None: it explains nothing)."""
    est = {a.quantity: a.value for a in conclusion.answers if isinstance(a, g.Estimate) and a.object == obj}
    if "friction" in est:
        return est["friction"]
    return est.get("friction_y" if direction in ("+y", "-y") else "friction_x")


def explanation_check(question: g.Question, notebook_text: str, world: dict) -> dict:
    """BoxingGym's communication measure on our worlds: another agent, holding a twin of the perceived scene and
    the conclusion's explanation alone, predicts a held-out strike (a speed the grid never offers); the hidden
    world runs it. The error's unit is the slide's sd under the prior (`models.prior_unit`, `slide_prior`)."""
    from loopylab.lab.investigation import grammar_scene
    from loopylab.lab.questions import held_out_strike

    conclusion = next((s.body for s in reversed(g.parse(notebook_text)) if s.kind == "conclusion"), None)
    act = held_out_strike(grammar_scene(world["scene"]), question.object, int(world.get("seed", 0)))
    mu = explanation_friction(conclusion, question.object, str(act.direction)) if conclusion else None
    out: dict = {
        "held_out": act.render(),
        "explanation_pred": None,
        "held_out_slide": None,
        "explanation_pred_error": None,
    }
    if mu is None:
        return out
    pred = twin_prediction(world["scene"], act, {question.object: {"friction": mu}}, "slide_m")
    prior = slide_prior(question.object, str(act.direction), int(world.get("seed", 0)))
    unit = prior_unit(world["scene"], act, prior, "slide_m")
    out.update(held_out_error(world, act, pred, "slide_m", "held_out_slide", unit))
    return out


def slide_prior(obj: str, direction: str, seed: int, n: int = PRIOR_DRAWS) -> list[dict]:
    """Draws of what the explanation states, before any experiment: a model a half each, and the friction along
    `direction` from its prior (isotropic: mu on the box; anisotropic: the x friction on the box, the ratio r as
    `AnisotropicPosterior` draws it, the y friction on the box too)."""
    rng = np.random.default_rng([seed, 0x5D1])
    along_y = direction in ("+y", "-y")
    lo, hi = np.log(ANISO_GAP)
    out = []
    while len(out) < n:
        mu = float(rng.uniform(*FRICTION_BOX))
        if len(out) % 2:  # anisotropic: r on either side of the gap, mu_y inside the box (rejection)
            mu_y = mu * float(np.exp(rng.choice((-1.0, 1.0)) * rng.uniform(lo, hi)))
            if not FRICTION_BOX[0] <= mu_y <= FRICTION_BOX[1]:
                continue
            mu = mu_y if along_y else mu
        out.append({obj: {"friction": mu}})
    return out


def _posterior(question, forward, hypothesis, n, noise, seed) -> ModelPosterior:
    return ModelPosterior(question, forward, hypothesis, n, noise, seed)


SLIDES = kinds.register(
    kinds.QuestionKind(
        "slides",
        0.0,
        _make,
        _answer,
        _grade,
        posterior=_posterior,
        structure="friction_model",
        # the experiments that slide it, and `place` to free it; a drop, a lift or a weigh picks the block up and
        # may put it down turned, with its friction's axes turned too (dev world 1000002: a push along x read
        # the y friction after a drop)
        skills=("push", "strike", "place"),
        both_axes=True,
        right="the right model",  # one push along each axis tells the models apart; along one axis nothing can
        row=model_row(explanation_check),
    )
)


__all__ = ["SLIDES", "ModelPosterior", "slide_prior", "true_model"]
