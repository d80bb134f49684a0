"""Questions: what an investigation must answer, how sure it must be, and how an answer is graded.

A question's text and parsed forms are `loopylab.world.notebook.Question`. This module adds the semantics: the
default tolerances and budgets, making a question for a seeded world, the stopping rule's confidence,
and grading a conclusion against the ground truth that only the evaluator may read (`sim/oracle`), each
through the kind's entry in the registry (`loopylab.lab.kinds`), where the five built-in kinds register here.
"""

from __future__ import annotations

import numpy as np

from loopylab.lab import kinds, rank
from loopylab.lab.beliefs import predict_biased
from loopylab.lab.experiments import PANDA, Workspace, path_clear, strike_travel, workspace
from loopylab.lab.kinds import Grade, QuestionKind
from loopylab.world import notebook as g

KINDS = ("friction", "mass", "restitution", "rank", "predict")  # the kinds this module registers
DEFAULT_TOLERANCE = {"friction": 0.05, "mass": 0.10, "restitution": 0.05, "rank": 0.0, "predict": 0.01}
DEFAULT_CONFIDENCE = 0.9  # P(answer within tolerance) required before concluding
# held-out strike speeds (never in the experiment grid). At 0.35-0.40 m/s most frictions slide a block 0.7-3 cm, so
# the belief's answer is within the 1 cm tolerance after any first experiment (often before): `to_tolerance` is 1
# for every agent there (dev 1000000-1000004: eig and random alike), and only the experiments used tell them apart
PREDICT_SPEEDS = (0.35, 0.40, 0.50)
PREDICT_SPEED_ALONG_X = 0.25  # ... along the arm's reach, where it cannot strike faster than 0.30


def parse_question(text: str) -> g.Question:
    """A question from its text form; a clear GrammarError when it is not one."""
    return g.parse_body("question", text.strip())


def subject_of(scene: g.Scene) -> str:
    """Whom single-object questions are about: `red_block` (every seeded world has one), else the first object."""
    return "red_block" if "red_block" in scene.names else scene.names[0]


def make_question(
    kind: str,
    scene: g.Scene,
    seed: int = 0,
    tolerance: float | None = None,
    budget: int | None = None,
    robot: str | None = None,
) -> g.Question:
    """The question of `kind` for a world (see each kind's `make` in lab/kinds.py) on the arm `robot` (None: a
    Panda's workspace, which the large arms share; a held-out strike must fit the arm's own: `QuestionKind.make_on`)."""
    k = kinds.get(kind)
    tol = k.tolerance if tolerance is None else tolerance
    if k.make_on is not None:
        return k.make_on(scene, seed, tol, budget, workspace(robot))
    return k.make(scene, seed, tol, budget)


def all_questions(scene: g.Scene, seed: int = 0, kinds=KINDS) -> list[g.Question]:
    return [make_question(k, scene, seed) for k in kinds if k != "rank" or len(scene.objects) >= 2]


def answer_of(question: g.Question, conclusion: g.Conclusion):
    """The value (or ranking, or model) the conclusion gives for the question; None when it does not answer it."""
    return kinds.of(question).answer_of(question, conclusion)


def grade(
    question: g.Question, conclusion: g.Conclusion | None, truth: dict[str, dict], outcome: float | None = None
) -> Grade:
    """Grade a conclusion. `truth` is the oracle's {label: {mass, friction, restitution, ...}}; for a
    predict question `outcome` is the slide measured by running the held-out action on the hidden world."""
    return grade_answer(question, answer_of(question, conclusion) if conclusion is not None else None, truth, outcome)


def grade_answer(question: g.Question, answer, truth: dict[str, dict], outcome: float | None = None) -> Grade:
    """Grade an answer (a value, order or model; None: no answer) as `grade` grades the conclusion giving it."""
    return kinds.of(question).grade(question, answer, truth, outcome)


# -- the built-in kinds ---------------------------------------------------------------------------------------


def _estimate(quantity: str):
    def answer(question: g.Question, conclusion: g.Conclusion):
        for a in conclusion.answers:
            if isinstance(a, g.Estimate) and a.quantity == quantity and a.object == question.object:
                return a.value
        return None

    return answer


def _grade_value(question: g.Question, ans, true: float) -> Grade:
    if ans is None:
        return Grade(False, float("inf"), true, None)
    err = abs(ans - true) / true if question.kind == "mass" else abs(ans - true)
    return Grade(bool(err <= question.tolerance + 1e-9), float(err), true, ans)


def _grade_param(question: g.Question, ans, truth: dict, outcome) -> Grade:
    return _grade_value(question, ans, float(truth[question.object][question.kind]))


def _grade_predict(question: g.Question, ans, truth: dict, outcome) -> Grade:
    if outcome is None:
        raise ValueError("grading a predict question needs the outcome of the held-out action")
    return _grade_value(question, ans, float(outcome))


def _make_single(kind: str):
    def make(scene: g.Scene, seed: int, tol: float, budget: int | None) -> g.Question:
        return g.Question(kind, (subject_of(scene),), round(tol, 2), budget)

    return make


def _make_predict(scene: g.Scene, seed: int, tol: float, budget: int | None) -> g.Question:
    return _predict_question(scene, seed, tol, budget, PANDA)


def _predict_question(scene: g.Scene, seed: int, tol: float, budget: int | None, ws: Workspace) -> g.Question:
    subject = subject_of(scene)
    return g.Question("predict", (subject,), round(tol, 3), budget, held_out_strike(scene, subject, seed, ws))


def held_out_strike(
    scene: g.Scene, subject: str, seed: int, ws: Workspace = PANDA, speeds: tuple[float, ...] = PREDICT_SPEEDS
) -> g.Experiment:
    """A strike of `subject` at a speed the grid never offers (`speeds` across the arm's reach), drawn for the
    world of `seed`, along a path clear in the workspace `ws`. An arm that does not strike (the desk arms) cannot
    be asked."""
    if not ws.strike_speeds:
        raise ValueError(
            "this arm does not strike (its grid has no strike levels: lab/experiments.SMALL_ARMS), "
            "so a predict question, about a held-out strike, cannot be asked on it"
        )
    rng = np.random.default_rng([seed, 0x9E7])
    speed = float(rng.choice(speeds))
    # an arm strikes faster across its reach (y) than along it (x)
    across = [d for d in ("+y", "-y") if path_clear(scene, subject, d, strike_travel(speed), ws)]
    if across:
        act = g.Experiment("strike", subject, str(rng.choice(across)), speed=speed)
    else:
        along = [d for d in ("+x", "-x") if path_clear(scene, subject, d, strike_travel(PREDICT_SPEED_ALONG_X), ws)]
        act = g.Experiment("strike", subject, str(rng.choice(along or ["+x"])), speed=PREDICT_SPEED_ALONG_X)
    return act


# design's target per kind: (phi per particle, this object's weight, variance floor)
def _param_quantity(post, obj: str, theta: np.ndarray):
    q = post.question
    if obj != q.object:
        return np.zeros(len(theta)), 0.0, 1.0
    if q.kind == "mass":
        return theta[:, 1], 1.0, (q.tolerance / 4) ** 2  # log mass: relative tolerance
    col = {"friction": 0, "restitution": 2}[q.kind]
    return np.exp(theta[:, col]), 1.0, (q.tolerance / 4) ** 2


def _predict_quantity(post, obj: str, theta: np.ndarray):
    """The held-out slide's mean per particle, and its scatter about that mean, which no experiment removes: the
    measurement noise of the held-out strike (the variance of the Student-t the predictive draws). Experiments are
    worth what they shrink of the outcome's spread, so the expert stops once the mean is known far better than the
    outcome scatters (the slide's own noise holds most of its spread), where P(within the tolerance) may never
    reach the confidence asked for: before, it chased the mean to the budget's end (as many experiments as random)."""
    q = post.question
    if obj != q.object:
        return np.zeros(len(theta)), 0.0, 1.0
    mean = predict_biased(post.forward, q.action, theta)["slide_m"]
    nu = post.noise.dof
    noise_var = post.noise.sigma("slide_m", mean) ** 2 * nu / (nu - 2)
    return mean, 1.0, (q.tolerance / 4) ** 2, noise_var


for _name in ("friction", "mass", "restitution"):
    kinds.register(
        QuestionKind(
            _name, DEFAULT_TOLERANCE[_name], _make_single(_name), _estimate(_name), _grade_param, _param_quantity
        )
    )
kinds.register(rank.rank_kind("rank", "mass"))
kinds.register(
    QuestionKind(
        "predict",
        DEFAULT_TOLERANCE["predict"],
        _make_predict,
        _estimate("slide"),
        _grade_predict,
        _predict_quantity,
        needs_outcome=True,
        make_on=_predict_question,
    )
)
# rank by friction: the rank machinery over another property (lab/rank.py); a drop's bounce barely reads mu, and
# no experiment reads a rolling ball's; pairs closer than 10 % may come either way (a few experiments tell an
# object's mu to ~10 %, and 16 % of the pairs the seeds draw are closer: docs/lab.md)
kinds.register(
    rank.rank_kind(
        "rank_friction",
        "friction",
        0.10,
        skills=("push", "strike", "weigh", "place"),
        shows=("cube", "cylinder"),
        n_objects=lambda seed: 3 + seed % 2,
        structure="sliders",  # two of them at least slide (world.scene._sliders)
    )
)
