"""An investigation in words a newcomer reads: the question with its units, each experiment and why it was
chosen, what it measured, how the belief narrowed, and why the investigation stopped.

Pure text from the notebook's records (`loopylab.world.notebook` bodies and the data the investigation
stores with them); the demo's console sink (lab/notebook.py) and the stop reasons (lab/investigation.py)
use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loopylab.lab import kinds
from loopylab.world import notebook as g


@dataclass(frozen=True)
class Quantity:
    name: str  # in a sentence: "the friction coefficient μ"
    symbol: str
    unit: str  # "" for a ratio
    meaning: str = ""  # what a unitless number is a ratio of


QUANTITIES = {
    "friction": Quantity(
        "friction coefficient μ",
        "μ",
        "",
        "no unit: the force it takes to slide the block divided by the block's weight",
    ),
    "mass": Quantity("mass", "m", "kg"),
    "restitution": Quantity(
        "coefficient of restitution e",
        "e",
        "",
        "no unit: the speed it bounces back with divided by the speed it hits the table with",
    ),
    "slide": Quantity("slide", "d", "m"),
}


# what the story calls the quantity of a kind whose answer is no single property (a model, a pair of numbers)
ANSWER = Quantity("answer", "the answer", "")


def quantity_of(q: g.Question) -> Quantity:
    return QUANTITIES.get("slide" if q.kind == "predict" else kinds.of(q).ranks or q.kind, ANSWER)


def scalar(value) -> bool:
    """Whether an answer is one number (an estimate, a slide), the case told with its interval and unit."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_text(quantity: str, v: float) -> str:
    """A value with its grammar decimals and its unit: '0.38', '0.092 kg'."""
    unit = QUANTITIES[quantity].unit
    return g.fmt(v, g.DECIMALS[quantity]) + (f" {unit}" if unit else "")


def tolerance_text(q: g.Question) -> str:
    """'±0.05', '±10 %', '±0.010 m'; for a ranking, 'the right order'."""
    if (right := kinds.of(q).right) is not None:  # a kind graded right or wrong (lab/kinds.py)
        return right
    if q.kind == "mass":
        return f"±{q.tolerance:.0%}"
    if kinds.of(q).needs_outcome:  # a held-out action's slide or resting spot
        return f"±{q.tolerance:.3f} m"
    if q.kind == "com":  # signed offsets along both axes (lab/com.py)
        return f"±{q.tolerance * 1000:.1f} mm on each axis"
    if q.kind in g.DECIMALS:
        return f"±{g.fmt(q.tolerance, g.DECIMALS[q.kind])}"
    return f"±{q.tolerance:g}"


def question_text(q: g.Question) -> str:
    """The question as a person would ask it, with its units."""
    if (prop := kinds.of(q).ranks) is not None:
        which = {"mass": "heaviest", "friction": "grippiest"}.get(prop, f"largest in {prop}")
        return f"Which is {which}? Order {', '.join(q.objects)} by {prop}."
    if q.kind == "predict":
        a = q.action
        return (
            f"How far will {q.object} slide when struck toward {a.direction} at {a.speed:.2f} m/s, "
            f"to within {tolerance_text(q)}?"
        )
    if q.kind == "com":
        return f"Where is the centre of mass of {q.object}, along its own x and y, to within {tolerance_text(q)}?"
    if q.kind not in QUANTITIES:  # a kind told by its grammar text (a model, where it stops, is it attached)
        text = g.QUESTION_FORMS[q.kind].render(q)
        return f"{text[0].upper()}{text[1:]}? An answer counts when it is {tolerance_text(q)}."
    qty = QUANTITIES[q.kind]
    unit = f" in {qty.unit}" if qty.unit else ""
    return f"What is the {qty.name} of {q.object}{unit}, to within {tolerance_text(q)}?"


def experiment_text(e: g.Experiment) -> str:
    """What the robot does, with units."""
    if e.skill == "push":
        return (
            f"push {e.object} {e.distance:.2f} m toward {e.direction} at {e.speed:.2f} m/s, reading the force it takes"
        )
    if e.skill == "strike":
        return f"strike {e.object} toward {e.direction} at {e.speed:.2f} m/s and watch how far it slides"
    if e.skill == "weigh":
        return f"weigh {e.object} (lift it and read the wrist's force sensor)"
    if e.skill == "drop":
        return f"drop {e.object} from {e.height:.2f} m and watch how high it bounces"
    if e.skill == "lift":
        return f"lift {e.object} {e.height:.2f} m"
    if e.skill == "place":
        return f"move {e.object} to ({e.position[0]:.2f}, {e.position[1]:.2f}) m on the table"
    return e.render()


def short_text(e: g.Experiment) -> str:
    """An experiment in a few words, for lists of alternatives."""
    return {
        "push": lambda: f"a push at {e.speed:.2f} m/s",
        "strike": lambda: f"a strike at {e.speed:.2f} m/s",
        "weigh": lambda: "weighing",
        "drop": lambda: f"a drop from {e.height:.2f} m",
        "lift": lambda: f"a lift of {e.height:.2f} m",
        "place": lambda: "moving it elsewhere",
    }.get(e.skill, e.render)()


def observation_text(skill: str, obs: g.Observation) -> str:
    """The raw measurement, with units."""
    if obs.error is not None:
        return f"the experiment failed: {obs.error}"
    v = dict(obs.values)
    if skill == "push":
        text = f"it took {v['force']:.2f} N to push it; it moved {v['moved']:.3f} m"
        return text + (f" (the hand also pressed down on it with {obs.load:.2f} N)" if obs.load else "")
    if skill == "strike":
        return f"it slid {v['slide']:.3f} m"
    if skill == "weigh":
        return f"the scale read {v['mass']:.3f} kg"
    if skill == "drop":
        return f"it bounced {v['bounce']:.3f} m high"
    if skill == "lift":
        return f"it was lifted {v['lifted']:.3f} m"
    if skill == "place":
        return f"it moved {v['placed']:.3f} m"
    return obs.render()


def narrowing(eig: float) -> str:
    """An expected information gain (nats) as how much it should shrink the belief's spread: for a
    near-Gaussian belief EIG = log(sd before / sd after) on average, so the spread shrinks by 1 - e^-EIG."""
    return f"{1 - math.exp(-max(eig, 0.0)):.0%}"


def why_text(why: dict, q: g.Question, chosen: g.Experiment, k: int = 3) -> str:
    """Why the expert chose `chosen`: its expected gain against the best alternatives it considered
    (`why` is `lab.design.Decision.summary()`)."""
    sym = quantity_of(q).symbol
    picked: dict[tuple, tuple[g.Experiment, float]] = {}
    for t, eig, _ in why.get("alternatives", []):  # best first: the best other level of each kind
        e = g.parse_body("experiment", t)
        if level(e) != level(chosen):
            picked.setdefault((e.skill, e.object), (e, eig))
    several = len(q.objects) > 1
    versus = ", ".join(
        f"{short_text(e)}{f' of {e.object}' if several else ''} ({narrowing(eig)})"
        for e, eig in sorted(picked.values(), key=lambda a: -a[1])[:k]
    )
    n = why.get("options", 0)
    if chosen.skill == "place" and chosen.object not in q.objects:
        text = (
            f"it measures nothing itself, but moves {chosen.object} out of the way: neither where "
            f"{q.objects[0]} stands nor at any free spot could it be pushed as this question needs"
        )
    elif chosen.skill == "place":
        text = (
            "it measures nothing itself, but from where it puts the block a push or strike can do more "
            "than any experiment possible where the block stands"
        )
    elif why.get("plan"):
        partner = g.parse_body("experiment", why["plan"]["with"])
        text = (
            f"it is the first half of a two-step plan ({short_text(chosen)}, then {short_text(partner)}) "
            f"expected to shrink the spread of the belief about {sym} by {narrowing(why['plan']['eig'])} "
            f"together, more per experiment than any single one (alone: {narrowing(why['eig'])})"
        )
    else:
        text = (
            f"of the {n} experiments it could run, this one promised the most about {sym} for its cost "
            f"in robot time: it should shrink the spread of the belief by {narrowing(why['eig'])} "
            f"(expected information gain {why['eig']:.2f} nats)"
        )
    return text + (f"; next best: {versus}" if versus else "")


def level(e: g.Experiment) -> tuple:
    """Experiments that differ only by direction are one level (as `lab.forward.level_key`)."""
    return (e.object, e.skill, e.distance, e.speed, e.height, e.position)


def belief_text(
    q: g.Question, value, half: float, p_within: float, level_: float, bounds: tuple[float, float] | None = None
) -> str:
    """The belief engine's answer now: estimate ± half-width, what the half-width means (the interval,
    cut to `bounds`, the range the prior allows), and how sure it is of meeting the tolerance."""
    if kinds.of(q).ranks is not None:
        return f"most likely order {' > '.join(value)}, {p_within:.0%} sure of it"
    if not scalar(value):  # a model, none, or a pair of numbers (the answer line tells it in its own words)
        return f"most likely {_plain_answer(q, value)}, {p_within:.0%} sure it is {tolerance_text(q)}"
    qty = "slide" if q.kind == "predict" else q.kind
    lo, hi = interval(value, half, bounds)
    return (
        f"{quantity_of(q).symbol} ≈ {value_text(qty, value)} ± {value_text(qty, half)} ({level_:.0%} of the "
        f"belief lies within {g.fmt(lo, g.DECIMALS[qty])} – {value_text(qty, hi)}); "
        f"{p_within:.0%} sure it is within {tolerance_text(q)}"
    )


def _plain_answer(q: g.Question, value) -> str:
    if value is None:
        return f"none of its hypotheses explains {q.object}"
    if isinstance(value, str):
        words = g.MODEL_WORDS.get(value)
        return f"the {value} model" + (f" ({words})" if words else "")
    return "(" + ", ".join(f"{v:.3f}" for v in value) + ") m"


def answer_text(q: g.Question, clause: g.Clause, p: float) -> str:
    """The belief engine's answer now (an audit answer line's clause) in words, and how sure it is of it."""
    return f"{clause.describe()}; {p:.0%} sure it is {tolerance_text(q)}"


def rejection_text(r: g.Rejection) -> str:
    """A falsified model: which observation refuted it, against the range the model held it to."""
    return r.describe()


def interval(value: float, half: float, bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """value ± half, inside `bounds` (no belief lies outside the prior's range) and never below zero."""
    lo, hi = bounds or (0.0, math.inf)
    return max(value - half, lo, 0.0), min(value + half, hi)


def conclusion_text(
    q: g.Question, c: g.Conclusion, data: dict, level_: float, bounds: tuple[float, float] | None = None
) -> str:
    """The answer with its unit and interval, after how many experiments."""
    n = data.get("experiments")
    after = f" after {n} experiment{'s' if n != 1 else ''}" if n is not None else ""
    a = c.answers[0]
    if isinstance(a, g.Ranking):
        return f"{a.quantity} order {' > '.join(a.objects)}{after}"
    if len(c.answers) > 1 or not isinstance(a, g.Estimate) or a.quantity not in QUANTITIES:
        # a model and its parameters, none of the models, a pair of numbers: each clause in its own words
        text = "; ".join(x.describe() for x in c.answers)
        return f"{text} ({after.strip()})" if after else text
    lo, hi = interval(a.value, a.spread, bounds)
    return (
        f"{QUANTITIES[a.quantity].symbol} = {value_text(a.quantity, a.value)} ± "
        f"{value_text(a.quantity, a.spread)}{after} ({level_:.0%} of the belief lies within "
        f"{g.fmt(lo, g.DECIMALS[a.quantity])} – {value_text(a.quantity, hi)})"
    )


def prior_bounds(h: g.Hypothesis, q: g.Question) -> tuple[float, float] | None:
    """The range the hypothesis allows for the question's quantity (None where it says nothing)."""
    return next(((r.lo, r.hi) for r in h.ranges if r.object == q.objects[0] and r.param == q.kind), None)


def hypothesis_text(h: g.Hypothesis, q: g.Question) -> str:
    """The prior: the range the question's quantity is known to lie in."""
    parts = [
        f"{QUANTITIES[r.param].symbol} between {value_text(r.param, r.lo)} and {value_text(r.param, r.hi)}"
        for r in h.ranges
        if r.object in q.objects[:1] and r.param in ("friction", "mass", "restitution")
    ]
    return "before any experiment, all it knows: " + ", ".join(parts)


__all__ = [
    "ANSWER",
    "QUANTITIES",
    "Quantity",
    "answer_text",
    "belief_text",
    "conclusion_text",
    "experiment_text",
    "hypothesis_text",
    "interval",
    "narrowing",
    "observation_text",
    "prior_bounds",
    "quantity_of",
    "question_text",
    "rejection_text",
    "scalar",
    "short_text",
    "tolerance_text",
    "value_text",
    "why_text",
]
