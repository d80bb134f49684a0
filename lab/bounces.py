"""The `bounces` question kind: "which model explains how OBJ bounces" (elastic or sticky contact).

Its worlds draw the subject's contact (`world.scene.with_structure(..., "bounce_model")`): elastic, one
restitution at every impact speed, or sticky, restitution falling with the impact speed v as
e(v) = e0 (v / 1 m/s)^-k (sim/sticky.py, after Johnson's elastic-plastic impacts). The competing models:

    elastic   (log mu, log m, log e, the systematic latents): the drop tables as they are
    sticky    the same with log e0 in place of log e, then k (uniform on `STICKY_PRIOR`, away from 0 so that the
              models predict differently). A drop from height h hits at v = sqrt(2 g h) and reads the tables at
              log e0 - k log v: the twin's restitution is constant, and a constant one at e(v) bounces like the
              sticky block (tests/sim/test_sticky.py)

A drop's height is the lever: one drop says nothing about the law (either model fits any one bounce), drops from
two heights do. The kind offers four (`HEIGHTS`), and the belief (`slides.ModelPosterior`'s design: expected
information about the model, alone and for pairs) picks the pair. The conclusion is the model and its
parameters, the explanation another agent predicts a held-out drop from:

    model red_block sticky 0.96; restitution red_block 0.55 0.06; stickiness red_block 0.45 0.10
    model red_block elastic 0.93; restitution red_block 0.48 0.04
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from loopylab.lab import kinds
from loopylab.lab.beliefs import (
    DEFAULT_PRIOR,
    Answer,
    Measurement,
    NoiseModel,
    ObjectPosterior,
    box_from_hypothesis,
    interval_halfwidth,
    predict_biased,
)
from loopylab.lab.models import (
    PPC_LEVEL,
    PRIOR_DRAWS,
    TEXT_KEY,
    ExtraColumnPosterior,
    ModelSet,
    held_out_error,
    model_row,
    prior_unit,
    twin_prediction,
)
from loopylab.lab.questions import subject_of
from loopylab.lab.slides import ModelPosterior, _answer
from loopylab.sim.sticky import E_RANGE, V_REF, impact_speed, restitution_at
from loopylab.world import notebook as g
from loopylab.world.scene import COM_SHARE, STICKY_E0, STICKY_RANGE

HEIGHTS = (0.04, 0.10, 0.20, 0.28)  # m: impacts at 0.9-2.3 m/s (a Panda lifts a block 28 cm and clears it)
HELD_OUT_HEIGHTS = (0.07, 0.15, 0.24)  # the explanation's test: heights the grid never offers
# the sticky model's prior: k and e0 as the worlds draw them (world.scene: a model is a structure with its prior,
# and hidden worlds draw from the same set); k away from 0, so the two models predict differently
STICKY_PRIOR = STICKY_RANGE
STICKY_TRUTH = 0.05  # a world whose k is above this is sticky
# m: the floor of a bounce reading's noise for this kind. The design drops a block from the lowest height and the
# highest, and repeats the lowest; a low-restitution block's 4 cm bounces read 1-10 mm, scattered about their own
# mean by 2.5 mm (pooled sd, 13 dof, of the repeated 4 cm drops of dev worlds 1000012, 1000016, 1000018; the
# default floor, 1.5 mm, is the restitution kind's), so that five of them made dev world 1000012's elastic block
# (e 0.28) sticky 0.96
BOUNCE_FLOOR = 0.0025
LOG_E = np.log(E_RANGE)


class ElasticPosterior(ObjectPosterior):
    def predict(self, exp: g.Experiment, theta: np.ndarray) -> dict[str, np.ndarray]:
        return predict_biased(self.forward, exp, theta)

    def restitution(self, height: float | None = None) -> np.ndarray:
        """Each particle's restitution (the same at every height)."""
        return np.exp(self.theta[:, 2])

    def targets(self, theta: np.ndarray) -> np.ndarray:
        """What the explanation says of a drop, per particle: the restitution (the same from every height)."""
        return np.exp(theta[:, 2:3])


class StickyPosterior(ExtraColumnPosterior):
    """Particles of the sticky model: the elastic columns with log e the restitution at 1 m/s, then k."""

    EXTRA_JITTER = 0.002 * (STICKY_PRIOR[1] - STICKY_PRIOR[0])

    def __init__(self, name, box, forward, noise, n, rng, draw_rng=None):
        box = np.array(box, float)  # e0 in the hypothesis's range and the sticky worlds' (where they meet)
        lo, hi = max(box[2, 0], STICKY_E0[0]), min(box[2, 1], STICKY_E0[1])
        if lo < hi:
            box[2] = (lo, hi)
        super().__init__(name, box, forward, noise, n, rng, draw_rng)
        self.theta = np.hstack([self.theta, rng.uniform(*STICKY_PRIOR, (n, 1))])

    def log_prior(self, theta: np.ndarray) -> np.ndarray:
        k = theta[:, -1]
        inside = (k >= STICKY_PRIOR[0]) & (k <= STICKY_PRIOR[1])
        return np.where(inside, super().log_prior(theta[:, :-1]), -np.inf)

    def effective(self, exp: g.Experiment, theta: np.ndarray) -> np.ndarray:
        """The elastic particles the twin's tables take for `exp`: a drop's restitution at its impact speed."""
        out = theta[:, :-1].copy()
        if exp.skill == "drop" and exp.height is not None:
            out[:, 2] = np.clip(out[:, 2] - theta[:, -1] * math.log(impact_speed(exp.height) / V_REF), *LOG_E)
        return out

    def restitution(self, height: float | None = None) -> np.ndarray:
        """Each particle's restitution at 1 m/s, or of a drop from `height`."""
        e0 = np.exp(self.theta[:, 2])
        return e0 if height is None else restitution_at(e0, self.theta[:, -1], impact_speed(height))

    def targets(self, theta: np.ndarray) -> np.ndarray:
        """What the explanation says of a drop, per particle: the restitution from each held-out height (e0 and k
        may each stay broad along the curve the drops pin down; the bounces they predict may not)."""
        e0, k = np.exp(theta[:, 2]), theta[:, -1]
        return np.stack([restitution_at(e0, k, impact_speed(h)) for h in HELD_OUT_HEIGHTS], axis=1)


BOUNCE_MODELS: dict[str, type[ObjectPosterior]] = {"elastic": ElasticPosterior, "sticky": StickyPosterior}


class BounceModelSet(ModelSet):
    """The bounce models of one object; their posterior predictive check reads drops (what they predict)."""

    def check(self, model: str, m: Measurement, k: int = 2000) -> g.Rejection | None:
        if m.experiment.skill != "drop":
            return None
        op = self.models[model]
        idx = op.draw(k, self._ppc_rng)
        pred = op.predict(m.experiment, op.theta[idx])
        tail = (1 - PPC_LEVEL) / 2
        for key, y in m.values.items():
            # as if the centre of mass were unseen: the tables are keyed by this drop's measured offset, whose
            # few millimetres of noise move the twin's bounce by up to 2x (dev world 1000000: an elastic block's
            # 0.023 m from 20 cm refuted both models at 0.022, its tables read at a com_z 8 mm off the truth)
            sig = self.noise.sigma(key, pred[key], m.reported_sigma.get(key, 0.0), m.repeat, False)
            lo, hi = np.quantile(self.noise.sample(pred[key], sig, self._ppc_rng, key), [tail, 1 - tail])
            if not lo <= y <= hi:
                v, a, b = (float(g.fmt(max(float(x), 0.0), 3)) for x in (y, lo, hi))  # as the notebook writes them
                return g.Rejection(self.name, model, TEXT_KEY[key], v, a, b)
        return None


class BouncePosterior(ModelPosterior):
    """The belief of a bounces question: the design and notebook of `slides.ModelPosterior`, the bounce models."""

    # sure as its model alone: drops pin the restitution at the held-out heights slowly (+-0.13, 0.10, 0.09, 0.08
    # after 1, 2, 4, 6 drops on the sim twin: tests/lab/test_bounces.py), so waiting for +-0.05 spent all ten drops,
    # each with new tables (a `loopylab run` past 5 minutes), for an explanation whose held-out error is mostly the
    # tumbling block's and the centre of mass's (docs/lab.md)
    explanation_stops = False

    def reset(self, hypothesis: g.Hypothesis | None) -> None:
        boxes = box_from_hypothesis(hypothesis, list(self.question.objects), self.forward.axes)
        self.resets += 1
        self.sets = {
            o: BounceModelSet(
                o, boxes[o], self.forward, self.noise, self.n, self.seed + i, self.resets, self.rng, BOUNCE_MODELS
            )
            for i, o in enumerate(self.question.objects)
        }
        self.hypothesis = hypothesis
        for m in self.measurements:
            self.sets[m.experiment.object].update(m)
        self._sync()

    def update(self, m: Measurement) -> None:
        """As `ModelPosterior.update`, with a drop's centre of mass taken as what the reading says under the worlds'
        prior (`com_estimate`) rather than the reading itself: the tables are read at it, and a light block's
        reading is off by 5 mm (dev world 1000000: a 59 g block at (1.6, 1.7) mm read (1, 11) and (-6, 6); the
        twin at (-6, 6) bounced it a third lower, and the drop refuted both models)."""
        if m.com is not None and m.experiment.object in self.sets:
            size = self.forward.scene.object(m.experiment.object).size
            m = replace(m, com=com_estimate(m.com, size, self._reading_sd(m.experiment.object)))
        super().update(m)

    def _reading_sd(self, obj: str) -> float:
        """A com reading's sd under the belief's masses (rms over the particles: light blocks read worst)."""
        from loopylab.lab.com import reading_sd

        op = self.objects[obj]
        return float(np.sqrt(np.sum(op.weights * reading_sd(np.exp(op.theta[:, 1])) ** 2)))

    def explanation(self, obj: str, model: str, level: float) -> tuple[g.Estimate, ...]:
        """The model's parameters that say how `obj` bounces: (value, half-width at `level`, or sd)."""
        op = self.sets[obj].models[model]
        qty = [("restitution", op.restitution())]  # type: ignore[attr-defined]
        if model == "sticky":
            qty.append(("stickiness", op.theta[:, -1]))
        out = []
        for name, v in qty:
            centre = float(np.sum(op.weights * v))
            half = interval_halfwidth(v, op.weights, centre, level) if level else float(op.mean_sd(v)[1])
            out.append(g.Estimate(name, obj, *(float(g.fmt(max(x, 0.0), 2)) for x in (centre, half))))
        return tuple(out)

    def answer(self, confidence: float = 0.9) -> Answer:
        """The model and its parameters, and the centre of mass the drops read (`com_clause`): the tables the
        model predicted with were read at it, and a block's bounce depends on it as much as on its restitution
        (an off-centre block lands on an edge), so an explanation without it would not say how the block bounces."""
        ans = super().answer(confidence)
        com = self.com_clause(self.question.object)
        if com is None or isinstance(ans.conclusion.answers[0], g.Unexplained):
            return ans
        return Answer(g.Conclusion((*ans.conclusion.answers, com)), ans.confidence)

    def com_clause(self, obj: str) -> g.ComOffset | None:
        """`com OBJ x X S y Y S mm`: the first drop's reading (the frame the block stands in before any drop turns it;
        later drops may read in a turned frame) with a 90 % half-width of a reading (com.reading_sd at the belief's
        mass)."""
        first = next((m.com for m in self.measurements if m.experiment.object == obj and m.com is not None), None)
        if first is None:
            return None
        from loopylab.lab.com import reading_sd

        op = self.objects[obj]
        mass = float(np.sum(op.weights * np.exp(op.theta[:, 1])))
        half = 1.645 * float(reading_sd(np.array(mass))) * 1000
        x, y = (float(g.fmt(v * 1000, g.COM_DECIMALS)) for v in first[:2])
        return g.ComOffset(obj, x, float(g.fmt(half, g.COM_DECIMALS)), y, float(g.fmt(half, g.COM_DECIMALS)))


def com_estimate(reading: tuple[float, ...], size: float, sd: float) -> tuple[float, ...]:
    """The posterior mean of a centre-of-mass offset (m) given one reading with Gaussian noise `sd` per axis, under
    the seeded worlds' prior: uniform within +-COM_SHARE of the size along x and y, half that along z (a normal
    truncated to the box: its mean). A reading past the box is pulled inside it, a noisy one toward the centre."""
    out = []
    for i, r in enumerate(reading):
        a = COM_SHARE * size * (0.5 if i == 2 else 1.0)
        lo, hi = (-a - r) / sd, (a - r) / sd
        mass = _phi_cdf(hi) - _phi_cdf(lo)
        c = r + sd * (_phi(lo) - _phi(hi)) / mass if mass > 1e-12 else math.copysign(a, r)
        out.append(float(min(max(c, -a), a)))
    return tuple(out)


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _phi_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


# -- the kind -----------------------------------------------------------------------------------------------


def _make(scene: g.Scene, seed: int, tol: float, budget: int | None) -> g.Question:
    return g.Question("bounces", (subject_of(scene),), 0.0, budget)


def true_model(truth: dict, obj: str) -> str:
    """The contact of `obj` in the oracle's truth: sticky when its restitution falls with the impact speed."""
    k = truth[obj].get("sticky")
    return "sticky" if k is not None and k > STICKY_TRUTH else "elastic"


def _grade(question: g.Question, ans, truth: dict, outcome) -> kinds.Grade:
    true = true_model(truth, question.object)
    return kinds.Grade(ans == true, 0.0 if ans == true else 1.0, true, ans)


def explained_restitution(conclusion: g.Conclusion, obj: str, height: float) -> float | None:
    """The restitution of a drop from `height` that a conclusion's explanation states (None: it explains none)."""
    model = next((a.model for a in conclusion.answers if isinstance(a, g.ModelProb) and a.object == obj), None)
    est = {a.quantity: a.value for a in conclusion.answers if isinstance(a, g.Estimate) and a.object == obj}
    if model is None or "restitution" not in est:
        return None
    k = est.get("stickiness", 0.0) if model == "sticky" else 0.0
    return float(restitution_at(est["restitution"], k, impact_speed(height)))


def held_out_drop(subject: str, seed: int) -> g.Experiment:
    """A drop of `subject` from a height the grid never offers (HELD_OUT_HEIGHTS), drawn for the world of `seed`."""
    rng = np.random.default_rng([seed, 0xB0D])
    return g.Experiment("drop", subject, height=float(rng.choice(HELD_OUT_HEIGHTS)))


def explanation_check(question: g.Question, notebook_text: str, world: dict) -> dict:
    """BoxingGym's communication measure: another agent, holding a twin of the perceived scene and the
    conclusion's explanation alone (the model's restitution at the drop's impact speed and the centre of mass it
    states; the rest at the twin's defaults), predicts the bounce of a drop from a height the grid never offers; the
    hidden world runs it. The error's unit is the bounce's sd under the prior (`models.prior_unit`, `bounce_prior`)."""
    from loopylab.lab.com import stated_offset

    conclusion = next((s.body for s in reversed(g.parse(notebook_text)) if s.kind == "conclusion"), None)
    act = held_out_drop(question.object, int(world.get("seed", 0)))
    e = explained_restitution(conclusion, question.object, float(act.height or 0.0)) if conclusion else None
    out: dict = {"held_out": act.render(), "explanation_pred": None, "held_out_bounce": None}
    out["explanation_pred_error"] = None
    if e is None:
        return out
    params: dict = {"restitution": e}
    com = stated_offset(conclusion, question.object) if isinstance(conclusion, g.Conclusion) else None
    if com is not None:
        params["com_offset"] = (*com, 0.0)
    pred = twin_prediction(world["scene"], act, {question.object: params}, "bounce_m")
    size = world["scene"].object(question.object).size
    prior = bounce_prior(question.object, size, float(act.height or 0.0), int(world.get("seed", 0)))
    unit = prior_unit(world["scene"], act, prior, "bounce_m")
    out.update(held_out_error(world, act, pred, "bounce_m", "held_out_bounce", unit))
    return out


def bounce_prior(obj: str, size: float, height: float, seed: int, n: int = PRIOR_DRAWS) -> list[dict]:
    """Draws of what the explanation states, before any experiment: a model a half each (elastic: e on the prior
    box; sticky: e0 and k as the worlds draw them, e at the drop's impact speed) and the centre of mass anywhere
    the seeded worlds put it (+-15 % of the size along x and y)."""
    rng = np.random.default_rng([seed, 0xB0B])
    v = impact_speed(height)
    out = []
    for i in range(n):
        if i % 2:
            e = float(restitution_at(rng.uniform(*STICKY_E0), rng.uniform(*STICKY_PRIOR), v))
        else:
            e = float(rng.uniform(*DEFAULT_PRIOR["restitution"]))
        cx, cy = rng.uniform(-COM_SHARE, COM_SHARE, 2) * size
        out.append({obj: {"restitution": e, "com_offset": (float(cx), float(cy), 0.0)}})
    return out


def bounce_noise(noise: NoiseModel | None) -> NoiseModel:
    """The noise model with a bounce's floor at least `BOUNCE_FLOOR`."""
    noise = noise or NoiseModel()
    floor = max(noise.floor["bounce_m"], BOUNCE_FLOOR)
    return replace(noise, floor={**noise.floor, "bounce_m": floor})


def _posterior(question, forward, hypothesis, n, noise, seed) -> BouncePosterior:
    return BouncePosterior(question, forward, hypothesis, n, bounce_noise(noise), seed)


BOUNCES = kinds.register(
    kinds.QuestionKind(
        "bounces",
        0.0,
        _make,
        _answer,
        _grade,
        posterior=_posterior,
        structure="bounce_model",
        skills=("drop",),  # the only experiment whose outcome the contact law shapes
        right="the right model",  # drops from two heights tell the models apart; from one nothing can
        row=model_row(explanation_check),
        drop_heights=HEIGHTS,
    )
)

__all__ = [
    "BOUNCES",
    "BOUNCE_FLOOR",
    "BOUNCE_MODELS",
    "HEIGHTS",
    "BouncePosterior",
    "ElasticPosterior",
    "StickyPosterior",
    "bounce_noise",
    "bounce_prior",
    "explanation_check",
    "held_out_drop",
    "true_model",
]
