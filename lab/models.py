"""Hypotheses that compete: explanatory models of one object, their evidence, and their falsification.

A model is a structure plus its own prior over parameters. Each holds a particle set (`ObjectPosterior`, or a
subclass that adds the structure's parameters); every experiment multiplies each model's evidence by its
marginal likelihood, estimated as the weighted mean of the particles' likelihoods (sequential Monte Carlo's
evidence: log sum_i w_i p(y | theta_i), weights normalised before the update). The posterior over models is the
prior (uniform) times the evidence, with rejected models at zero.

Falsification: before a measurement updates a model, the model's posterior predictive (particles drawn by weight,
the noise model's own sampler) gives each measured quantity a central range holding `PPC_LEVEL` of it; the
`REFUTING_READINGS`-th measurement outside that range refutes the model (one may be a nonsense reading, which the
likelihood's outlier term allows), which is rejected for good and written down with the observation that refuted
it. When every model is rejected the belief says "none of my hypotheses explains this".

The friction models (the `slides` question kind, lab/slides.py):

    isotropic     friction mu the same in every direction: (log mu, log m, log e, the systematic latents)
    anisotropic   friction mu along the object's own x, r mu along its y, with r at least `ANISO_GAP` away from
                  1 either way: one more column, log r. The twin's tables are isotropic: an experiment along y
                  reads them at log mu + log r (a push's force and a strike's slide depend on the friction along
                  the motion only)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from loopylab.lab.beliefs import BIAS_COL, Measurement, NoiseModel, ObjectPosterior, predict_biased
from loopylab.lab.forward import ForwardModel
from loopylab.world import notebook as g

DIRECTIONAL = ("push", "strike")  # the skills whose measurements depend on the friction along their direction
PPC_LEVEL = 0.998  # central predictive range a measurement must fall in (dev worlds: see docs/lab.md)
# readings outside a model's predictive range that refute it: one may be nonsense (the noise model's own outlier
# share, 3 %, makes one likely in a ten-experiment run), two are the model's failure. Dev world 1000001: a strike
# that slid 0.112 m after five of 0.052-0.061 m had refuted both models, and the lab explained nothing
REFUTING_READINGS = 2
ANISO_GAP = (1.6, 2.5)  # |the friction ratio between the axes| of the anisotropic model, as the worlds draw it
FRICTION_BOX = (0.2, 0.9)  # each axis's friction, both models (the seeded worlds' range)
# an explanation's parameters are known when each is within this of what it states, with the confidence asked for
# (the friction and restitution kinds' tolerance); until then a model kind goes on, though it knows the model (dev
# slides: eig stopped once the model was sure, its friction still broad, and explained worse than random)
EXPLAIN_TOL = 0.05
# the design targets the model until one holds this much of the belief, then that model's explanation
MODEL_KNOWN = 0.9
TEXT_KEY = {mk: k for fs in g.OBS_FIELDS.values() for k, mk, _ in fs}  # measurement key -> observation's word


def axis_of(exp: g.Experiment) -> float:
    """How much of the y friction an experiment feels: 0 along x, 1 along y, a half for a drop (it tumbles
    either way), 0 for the rest (their measurements do not depend on friction)."""
    if exp.direction is not None:
        return 1.0 if exp.direction in ("+y", "-y") else 0.0
    return 0.5 if exp.skill == "drop" else 0.0


def twin_friction(theta: np.ndarray, log_mu: np.ndarray) -> np.ndarray:
    """The friction a bare twin needs to slide the block as the particle says the world does: mu over the particle's
    strike gain (the twin's free slide goes as 1 / mu). The explanation states this one: another agent predicts
    from it on a twin without the belief's latents, and strikes pin mu / gain where mu and the gain alone stay broad
    (dev world 1000001: friction_y 0.30 read from 0.45 m/s strikes that slid 25 % past the twin's at 0.30; the
    held-out strike, predicted at 0.30, missed by 0.9 of the prior's spread)."""
    col = BIAS_COL["slide_m"]
    return np.exp(log_mu - theta[:, col]) if theta.shape[1] > col else np.exp(log_mu)


class ExtraColumnPosterior(ObjectPosterior, ABC):
    """A model with one parameter past the default columns (the last one): its particles reach the twin's tables
    through `effective`, the default columns that parameter makes of them for an experiment."""

    EXTRA_JITTER = 0.0  # the extra column's rejuvenation step

    @abstractmethod
    def effective(self, exp: g.Experiment, theta: np.ndarray) -> np.ndarray:
        """The default columns this model's particles are for `exp` (each model says how)."""

    def loglik(self, m: Measurement, theta: np.ndarray) -> np.ndarray:
        return super().loglik(m, self.effective(m.experiment, theta))

    def predict(self, exp: g.Experiment, theta: np.ndarray) -> dict[str, np.ndarray]:
        return predict_biased(self.forward, exp, self.effective(exp, theta))

    def jitter(self) -> np.ndarray:
        return np.append(super().jitter(), self.EXTRA_JITTER)


class AnisotropicPosterior(ExtraColumnPosterior):
    """Particles of the anisotropic model: the isotropic columns with log mu the friction along x, then log r."""

    EXTRA_JITTER = 0.002 * math.log(ANISO_GAP[1] / ANISO_GAP[0])

    def __init__(self, name, box, forward, noise, n, rng, draw_rng=None):
        super().__init__(name, box, forward, noise, n, rng, draw_rng)
        self.theta = np.hstack([self.theta, np.zeros((n, 1))])
        lo, hi = np.log(ANISO_GAP)
        # prior: log r uniform on both sides of the gap, the y friction inside the box too (rejection per particle)
        for _ in range(200):
            bad = ~self._inside(self.theta)
            if not bad.any():
                break
            k = int(bad.sum())
            self.theta[bad, 0] = np.log(rng.uniform(*FRICTION_BOX, k))
            self.theta[bad, -1] = rng.choice((-1.0, 1.0), k) * rng.uniform(lo, hi, k)

    @staticmethod
    def _inside(theta: np.ndarray) -> np.ndarray:
        lo, hi = np.log(ANISO_GAP)
        mu_y = theta[:, 0] + theta[:, -1]
        gap = (np.abs(theta[:, -1]) >= lo) & (np.abs(theta[:, -1]) <= hi)
        return gap & (mu_y >= math.log(FRICTION_BOX[0])) & (mu_y <= math.log(FRICTION_BOX[1]))

    def log_prior(self, theta: np.ndarray) -> np.ndarray:
        base = super().log_prior(theta[:, :-1])
        return np.where(self._inside(theta), base, -np.inf)

    def effective(self, exp: g.Experiment, theta: np.ndarray) -> np.ndarray:
        """The isotropic particles the twin's tables take for `exp`: friction along its axis."""
        out = theta[:, :-1].copy()
        out[:, 0] += axis_of(exp) * theta[:, -1]
        return out

    def friction_xy(self, theta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each particle's frictions along x and y as the explanation states them (`twin_friction`)."""
        theta = self.theta if theta is None else theta
        return twin_friction(theta, theta[:, 0]), twin_friction(theta, theta[:, 0] + theta[:, -1])

    def targets(self, theta: np.ndarray) -> np.ndarray:
        """What the explanation states, per particle: (friction_x, friction_y)."""
        return np.stack(self.friction_xy(theta), axis=1)


class IsotropicPosterior(ObjectPosterior):
    def predict(self, exp: g.Experiment, theta: np.ndarray) -> dict[str, np.ndarray]:
        return predict_biased(self.forward, exp, theta)

    def friction_xy(self, theta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each particle's friction as the explanation states it (`twin_friction`), along x and y alike."""
        theta = self.theta if theta is None else theta
        mu = twin_friction(theta, theta[:, 0])
        return mu, mu

    def targets(self, theta: np.ndarray) -> np.ndarray:
        """What the explanation states, per particle: (friction,)."""
        return self.friction_xy(theta)[0][:, None]


FRICTION_MODELS = {"isotropic": IsotropicPosterior, "anisotropic": AnisotropicPosterior}


def logmeanexp(x: np.ndarray, w: np.ndarray | None = None, axis: int = -1) -> np.ndarray:
    """log sum_i w_i exp(x_i) (w: normalised weights; None: uniform), stable."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    s = np.sum(e * w, axis=axis, keepdims=True) if w is not None else np.mean(e, axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(s) + m, axis=axis)


class ModelSet:
    """The competing models of one object: their particles, log evidence, and rejections."""

    def __init__(
        self,
        name: str,
        box: np.ndarray,
        forward: ForwardModel,
        noise: NoiseModel,
        n: int,
        seed: int,
        resets: int,
        draw_rng: np.random.Generator,
        models: dict[str, type[ObjectPosterior]] = FRICTION_MODELS,
    ):
        self.name, self.noise = name, noise
        self.models = {
            k: cls(name, box, forward, noise, n, np.random.default_rng([seed, 0x40DE1, resets, i]), draw_rng)
            for i, (k, cls) in enumerate(models.items())
        }
        self.log_evidence = dict.fromkeys(self.models, 0.0)
        self.rejected: dict[str, g.Rejection] = {}
        self.new_rejections: list[g.Rejection] = []  # by the latest measurement
        self.outside = dict.fromkeys(self.models, 0)  # readings each model's predictive check failed so far
        self._ppc_rng = np.random.default_rng([seed, 0x99C, resets])

    @property
    def live(self) -> list[str]:
        return [k for k in self.models if k not in self.rejected]

    def probabilities(self) -> dict[str, float]:
        """The posterior over models (uniform prior x evidence; rejected models 0; all 0 when all are rejected)."""
        live = self.live
        if not live:
            return dict.fromkeys(self.models, 0.0)
        le = np.array([self.log_evidence[k] for k in live])
        p = np.exp(le - le.max())
        p /= p.sum()
        out = dict.fromkeys(self.models, 0.0)
        out.update(zip(live, map(float, p)))
        return out

    def check(self, model: str, m: Measurement, k: int = 2000) -> g.Rejection | None:
        """The posterior predictive check of `m` under `model` (before it learns from `m`): only measurements the
        friction models predict (DIRECTIONAL); the others' predictions are the twin's plan, not a model's."""
        if m.experiment.skill not in DIRECTIONAL:
            return None
        op = self.models[model]
        idx = op.draw(k, self._ppc_rng)
        pred = op.predict(m.experiment, op.theta[idx])
        tail = (1 - PPC_LEVEL) / 2
        for key, y in m.values.items():
            sig = self.noise.sigma(key, pred[key], m.reported_sigma.get(key, 0.0), m.repeat, m.com_seen)
            rep = self.noise.sample(pred[key], sig, self._ppc_rng, key)
            lo, hi = np.quantile(rep, [tail, 1 - tail])
            if not lo <= y <= hi:
                v, a, b = (float(g.fmt(max(float(x), 0.0), 3)) for x in (y, lo, hi))  # as the notebook writes them
                return g.Rejection(self.name, model, TEXT_KEY[key], v, a, b)
        return None

    def update(self, m: Measurement) -> None:
        self.new_rejections = []
        for k in self.live:
            op = self.models[k]
            rejection = self.check(k, m)
            ll = op.loglik(m, op.theta)
            self.log_evidence[k] += float(logmeanexp(ll, op.weights))
            op.update(m)
            if rejection is not None:
                self.outside[k] += 1
                if self.outside[k] >= REFUTING_READINGS:
                    self.rejected[k] = rejection
                    self.new_rejections.append(rejection)

    def best(self) -> tuple[str | None, float]:
        probs = self.probabilities()
        if not self.live:
            return None, 0.0
        top = max(self.live, key=lambda k: probs[k])
        return top, probs[top]


def p_known(targets: np.ndarray, w: np.ndarray, tol: float = EXPLAIN_TOL) -> float:
    """P(every target within `tol` of its weighted mean, what the explanation states): (n, k) targets per particle."""
    centre = w @ targets
    return float(np.sum(w[np.all(np.abs(targets - centre) <= tol, axis=1)]))


def falsified(notebook_text: str, model: str) -> bool:
    """Whether a notebook rejected `model` (a `rejected ... MODEL by ...` clause in any belief)."""
    return any(
        isinstance(c, g.Rejection) and c.model == model
        for s in g.parse(notebook_text)
        if s.kind == "belief"
        for c in s.body.estimates  # type: ignore[union-attr]
    )


def model_row(explanation_check: Callable[[g.Question, str, dict], dict]) -> Callable[..., dict]:
    """A model kind's figures of one world for the evaluator (`QuestionKind.row`; benchmarks/lab_eval.py:
    model_id_accuracy, falsified_true_model, explanation_pred_error): the model found against the world's, whether
    the true one was rejected, and, where the evaluator can run the hidden world, the kind's explanation check
    (another agent predicting a held-out outcome from the conclusion alone)."""

    def row(question: g.Question, gr, notebook_text: str, world: dict) -> dict:
        out = {
            "model_truth": gr.truth,
            "model_answer": gr.answer,
            "model_correct": gr.answer == gr.truth,  # the very model (a right yes/no may come from another)
            "falsified_true_model": falsified(notebook_text, str(gr.truth)),
            "unexplained": gr.answer is None,
        }
        if "run" in world and "scene" in world:
            out.update(explanation_check(question, notebook_text, world))
        return out

    return row


def twin_prediction(scene, act: g.Experiment, params: dict | None, key: str) -> float:
    """What a twin of `scene` with `params` (an explanation's values) predicts for `act`'s measurement `key`."""
    from loopylab.lab.twin import Twin

    twin = Twin(scene)
    try:
        return float(twin.predict(act.skill, act.args(), params)[key])
    finally:
        twin.close()


def twin_predictions(scene, act: g.Experiment, params: list[dict], key: str) -> np.ndarray:
    """What one twin of `scene` predicts for `act`'s measurement `key` with each of `params`."""
    from loopylab.lab.twin import Twin

    twin = Twin(scene)
    try:
        return np.array([float(twin.predict(act.skill, act.args(), prm)[key]) for prm in params])
    finally:
        twin.close()


def held_out_error(
    world: dict, act: g.Experiment, pred: float, key: str, label: str, unit: float | None = None
) -> dict:
    """An explanation check's figures: the hidden world runs the held-out `act` (`world["run"]`), and the prediction
    made from the explanation alone is scored in `unit` (`prior_unit`: BoxingGym's standardisation), or where none
    is given in sd of the measurement's noise at the outcome."""
    out: dict = {"explanation_pred": pred, label: None, "explanation_pred_error": None}
    if unit is not None:
        out["explanation_pred_unit"] = unit
    measured = world["run"](act)
    if measured is not None and key in measured:
        y = abs(float(measured[key]))
        out[label] = y
        sd = unit if unit is not None else float(NoiseModel().sigma(key, np.array(y)))
        out["explanation_pred_error"] = abs(pred - y) / sd
    return out


# draws of the models' prior per held-out prediction: a spread from n draws is off by ~1/sqrt(2n) (12 % at 32; on two
# dev scenes 16 draws read the unit 15-30 % below 64), each a twin prediction (0.1-0.2 s)
PRIOR_DRAWS = 32


def prior_unit(scene, act: g.Experiment, prior: list[dict], key: str) -> float:
    """The unit of an explanation's prediction error, as BoxingGym standardises it: the sd of the held-out
    measurement under the prior (the models' prior draws `prior`, each through the twin the other agent holds, plus
    the measurement's noise at their mean). An error of 1 is what a guess knowing nothing the explanation says makes
    on average; a world whose outcome the explanation misses cannot read 50 (the noise-sd unit did: a 2 mm
    bounce's sd is 1.6 mm)."""
    return spread_unit(twin_predictions(scene, act, prior, key), key)


def spread_unit(preds: np.ndarray, key: str) -> float:
    """`prior_unit` from the prior draws' predictions themselves (a kind whose models need more than one twin):
    their sd, plus the measurement's noise at their mean."""
    noise = float(NoiseModel().sigma(key, np.array(abs(float(np.mean(preds))))))
    return float(math.sqrt(float(np.var(preds)) + noise**2))


__all__ = [
    "ANISO_GAP",
    "EXPLAIN_TOL",
    "FRICTION_MODELS",
    "MODEL_KNOWN",
    "PPC_LEVEL",
    "PRIOR_DRAWS",
    "REFUTING_READINGS",
    "AnisotropicPosterior",
    "IsotropicPosterior",
    "ModelSet",
    "axis_of",
    "falsified",
    "held_out_error",
    "logmeanexp",
    "model_row",
    "p_known",
    "prior_unit",
    "spread_unit",
    "twin_friction",
    "twin_prediction",
    "twin_predictions",
]
