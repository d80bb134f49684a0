"""The notebook's text format: the exact text the policy reads and writes (docs/lab.md, "The notebook grammar").

A notebook is a sequence of sections, one per line, each wrapped in its special tokens:

    <|question_start|>estimate friction of red_block within 0.05<|question_end|>
    <|scene_start|>red_block cube 0.05 at 0.55 0.00; blue_block cube 0.05 at 0.45 0.12<|scene_end|>
    <|hypothesis_start|>friction red_block in 0.10 1.00<|hypothesis_end|>
    <|experiment_start|>push red_block +x 0.10 0.05<|experiment_end|>
    <|observation_start|>force 1.83 moved 0.099<|observation_end|>
    <|belief_start|>friction red_block 0.41 0.09; mass red_block 0.450 0.100<|belief_end|>
    <|conclusion_start|>friction red_block 0.38 0.03<|conclusion_end|>

Every number has a fixed number of decimals, so each text has exactly one spelling:
`render(parse(text)) == text` for every text `parse` accepts, and `parse` rejects the rest with a
`GrammarError` that says where. Section bodies:

    question     estimate friction|restitution of OBJ within T.TT [budget N]
                 estimate mass of OBJ within P% [budget N]              (relative tolerance)
                 rank OBJ OBJ [OBJ ...] by mass [budget N]
                 predict slide of OBJ after strike DIR S.SS within T.TTT [budget N]
                 which model explains how OBJ slides [budget N]         (model identification)
                 rank OBJ OBJ [OBJ ...] by friction [within P%] [budget N]   (closer pairs: either order)
                 predict where OBJ stops after strike DIR S.SS within T.TTT [budget N]   (table x y, m; or push DIR D.DD S.SS)
                 which model explains how OBJ bounces [budget N]        (elastic or sticky contact)
                 where is the centre of mass of OBJ within T.T mm [budget N]   (signed offsets, per axis)
                 which model explains how OBJ sits [budget N]           (centre of mass centred or offset)
                 is OBJ attached to OBJ [budget N]         (free, welded to the table, or welded to the other)
    scene        OBJ SHAPE SIZE at X Y (; ...)                           SHAPE cube|cylinder|sphere
    hypothesis   PARAM OBJ in LO HI (; ...)
    experiment   push OBJ DIR DIST SPEED | strike OBJ DIR SPEED | weigh OBJ | drop OBJ HEIGHT | lift OBJ HEIGHT
                 | place OBJ X Y                                         (move it to X Y on the table)
    observation  force F.FF moved M.MMM [load L.LL] | slide S.SSS | mass M.MMM
                 | bounce B.BBB [com X.XXX Y.YYY [Z.ZZZ]] | lifted L.LLL | placed D.DDD | failed WORDS
                                                      (com: the held object's centre-of-mass offset, m;
                                                       load: the hand's vertical push on the object, N;
                                                       placed: how far the object moved, m)
    belief       CLAUSE (; ...)   CLAUSE: QTY OBJ MEAN SD                QTY friction|mass|restitution|slide
                                          | model OBJ MODEL P.PP         (the posterior over explanatory models)
                                          | rejected OBJ MODEL by KEY V.VVV outside LO.LLL HI.HHH
                                                        (a posterior predictive check refuted MODEL: the
                                                         observation's KEY fell outside its 99.8 % range)
    conclusion   QTY OBJ VALUE HALFWIDTH (; ...) | mass order OBJ > OBJ [> OBJ ...]   (heaviest first)
                 | model OBJ MODEL P.PP (; QTY OBJ VALUE HALFWIDTH)*     (the model and its parameters)
                 | none of my hypotheses explains OBJ                    (every model was rejected)
                 | friction order OBJ > OBJ [> OBJ ...]                  (grippiest first)
                 | position OBJ X.XXX Y.YYY R.RRR        (where OBJ rests, signed table x y, m; R: the
                                                          radius holding the answer's confidence; in a
                                                          belief the radial sd)
                                          MODEL isotropic|anisotropic; QTY also friction_x|friction_y
                                          MODEL elastic|sticky; QTY also stickiness (sticky: restitution
                                          at 1 m/s falls as (v / 1 m/s)^-stickiness)
                                          MODEL centred|offset (the centre of mass)
                 CLAUSE also: com OBJ x X.X S.S y Y.Y S.S mm   (centre-of-mass offset in the object's own frame,
                              signed, mm: value and SD in beliefs, value and half-width in conclusions)
                                          MODEL free|table|welded (is A attached to B)

Belief and conclusion clauses are registered forms (`CLAUSE_FORMS`, `register_clause`): each its regex, its parser,
where it stands; each clause dataclass follows the `Clause` protocol (render, value, half_width, describe), which is
all the lab reads of it.

For constrained decoding a decoder asks `prefix_ok(kind, partial_body, scene)` (can this still
become a valid body?) and `body_complete(...)` (may the end token come now?), with object names taken
from the scene. Which experiments are sensible where the objects stand (the finite experiment grid) is
not part of the text format; the lab narrows experiment bodies to it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import regex  # the `regex` module: partial matching for prefix checks (re has none)

KINDS = ("question", "scene", "hypothesis", "experiment", "observation", "belief", "conclusion")
# lines for the scientist who audits and replays a notebook (loopylab.world.audit): parsed and rendered here,
# never shown to or written by the policy (`policy_sections`), and no tokenizer's special tokens
AUDIT_KINDS = ("provenance", "twin", "reason", "raw", "answer", "stop", "source")  # source: world/source.py
ALL_KINDS = KINDS + AUDIT_KINDS
PARAMS = ("friction", "mass", "restitution")  # hidden object properties
QUANTITIES: tuple[str, ...] = PARAMS + ("slide", "friction_x", "friction_y")  # what beliefs and conclusions talk about
# explanatory models a question may tell apart (loopylab.lab.models): friction the same in every direction,
# or different along the object's own x and y axes
MODELS: tuple[str, ...] = ("isotropic", "anisotropic")
# how an object bounces (loopylab.lab.bounces): elastic, the same restitution at every impact speed, or sticky,
# restitution falling with the speed as (v / 1 m/s)^-stickiness
MODELS += ("elastic", "sticky")
MODELS += ("centred", "offset")  # where the centre of mass sits (loopylab.lab.com)
# how A sits (lab/attached.py): free, welded to the table, or welded to the other object a question names
ATTACH_MODELS = ("free", "table", "welded")
MODELS += ATTACH_MODELS
SKILLS = ("push", "strike", "weigh", "drop", "lift", "place")  # the experiments the lab may run
DIRECTIONS = ("+x", "-x", "+y", "-y")
SHAPES = ("cube", "cylinder", "sphere")
DECIMALS = {"friction": 2, "mass": 3, "restitution": 2, "slide": 3, "friction_x": 2, "friction_y": 2}
QUANTITIES += ("stickiness",)  # a sticky object's exponent (restitution is then its value at 1 m/s)
DECIMALS["stickiness"] = 2
PROB_DECIMALS = 2  # a model's posterior probability
OBS_FIELDS = {  # skill -> ((text key, measurement key, decimals), ...) in text order
    "push": (("force", "force_mean_N", 2), ("moved", "moved_m", 3)),
    "strike": (("slide", "slide_m", 3),),
    "weigh": (("mass", "mass_kg", 3),),
    "drop": (("bounce", "bounce_m", 3),),
    "lift": (("lifted", "lifted_m", 3),),
    "place": (("placed", "placed_m", 3),),
}
# optional trailing fields, reported when the arm has a wrist F/T sensor: a drop the centre-of-mass offset
# (object frame, x y, and z when the arm could tilt the object) that the wrist torque showed while the
# object was held; a push the vertical force the hand put on the object while pushing it (down > 0), which
# adds mu x load to the friction (a tall block meets the palm of a hand pushing it low).
# skill -> (word, measurement keys, decimals, how many of the keys at least)
OBS_OPTIONAL = {"drop": ("com", ("com_x_m", "com_y_m", "com_z_m"), 3, 2), "push": ("load", ("load_N",), 2, 1)}
_OBS_KEYS = tuple(k for fs in OBS_FIELDS.values() for k, _, _ in fs)  # an observation's text keys
REJECT_KEYS = _OBS_KEYS + ("com",)  # what may refute a model: an observation's key, or a drop's |com| (m)
DEFAULT_BUDGET = 10


def start_token(kind: str) -> str:
    return f"<|{kind}_start|>"


def end_token(kind: str) -> str:
    return f"<|{kind}_end|>"


SPECIAL_TOKENS = [t for k in KINDS for t in (start_token(k), end_token(k))]


class GrammarError(ValueError):
    """Text that is not in the notebook grammar (the message says which part and why)."""


# ---------------------------------------------------------------------------------------------
# numbers: one spelling each


def fmt(x: float, decimals: int) -> str:
    """Fixed-decimal spelling without '-0.00' (so that every number has exactly one text)."""
    s = f"{x:.{decimals}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def num_re(decimals: int, signed: bool = False) -> str:
    """Regex of fmt()'s output: no leading zeros, at most 3 integer digits, never '-0.00'."""
    unsigned = rf"(?:0|[1-9]\d{{0,2}})\.\d{{{decimals}}}"
    if not signed:
        return unsigned
    nonzero = rf"(?:0\.(?!0{{{decimals}}})\d{{{decimals}}}|[1-9]\d{{0,2}}\.\d{{{decimals}}})"
    return rf"(?:-{nonzero}|{unsigned})"


NAME_RE = r"[a-z][a-z0-9_]{0,23}"
# a failure's words: lower case, numbers keep their signs and units their slashes (-0.1797 m, 0.45 m/s, 12%)
WORD_CHARS = "a-z0-9_.%/+-"
WORDS_RE = rf"[{WORD_CHARS}]+(?: [{WORD_CHARS}]+){{0,15}}"


def _alt(words: Iterable[str]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w))) + ")"


T = TypeVar("T")


def _given(value: T | None, what: str) -> T:
    """A field the section needs (a push's distance, a prediction's action): an object without it has no text."""
    if value is None:
        raise GrammarError(f"{what} is missing")
    return value


def _num(text: str, decimals: int, what: str) -> float:
    if re.fullmatch(num_re(decimals), text) is None:
        raise GrammarError(f"{what}: {text!r} is not a number with {decimals} decimals")
    value = float(text)
    if fmt(value, decimals) != text:
        raise GrammarError(f"{what}: {text!r} is not written canonically (want {fmt(value, decimals)!r})")
    return value


def _signed(text: str, decimals: int, what: str) -> float:
    """A signed number (no '-0.000'), canonical as `_num`."""
    if re.fullmatch(num_re(decimals, signed=True), text) is None:
        raise GrammarError(f"{what}: {text!r} is not a signed number with {decimals} decimals")
    return -_num(text[1:], decimals, what) if text.startswith("-") else _num(text, decimals, what)


# ---------------------------------------------------------------------------------------------
# section bodies


@dataclass(frozen=True)
class SceneObject:
    name: str
    shape: str = "cube"
    size: float = 0.05  # edge / diameter, metres
    x: float = 0.0  # position on the table, robot base frame, metres
    y: float = 0.0

    def render(self) -> str:
        return f"{self.name} {self.shape} {fmt(self.size, 2)} at {fmt(self.x, 2)} {fmt(self.y, 2)}"


@dataclass(frozen=True)
class Scene:
    """What the lab may know about a world: names, shapes, sizes, positions; no hidden properties."""

    objects: tuple[SceneObject, ...]
    kind = "scene"

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    def get(self, name: str) -> SceneObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"no object {name!r} in the scene (have {self.names})")

    def render(self) -> str:
        return "; ".join(o.render() for o in self.objects)


@dataclass(frozen=True)
class Experiment:
    skill: str
    object: str
    direction: str | None = None  # push, strike
    distance: float | None = None  # push, metres
    speed: float | None = None  # push, strike; m/s
    height: float | None = None  # drop, lift; metres
    position: tuple[float, float] | None = None  # place: where on the table (base frame x, y; metres)
    kind = "experiment"

    def render(self) -> str:
        parts = [self.skill, self.object]
        if self.skill == "push":
            parts += [
                _given(self.direction, "push direction"),
                fmt(_given(self.distance, "push distance"), 2),
                fmt(_given(self.speed, "push speed"), 2),
            ]
        elif self.skill == "strike":
            parts += [_given(self.direction, "strike direction"), fmt(_given(self.speed, "strike speed"), 2)]
        elif self.skill in ("drop", "lift"):
            parts += [fmt(_given(self.height, f"{self.skill} height"), 2)]
        elif self.skill == "place":
            x, y = _given(self.position, "place position")
            parts += [fmt(x, 2), fmt(y, 2)]
        return " ".join(parts)

    def args(self) -> dict:
        """The `skills/execute` args of this experiment (docs/contracts.md, "Skills")."""
        a: dict = {"object": self.object}
        for k in ("direction", "distance", "speed", "height"):
            if getattr(self, k) is not None:
                a[k] = getattr(self, k)
        if self.position is not None:
            a["position"] = list(self.position)
        return a

    def request(self) -> dict:
        return {"skill": self.skill, "args": self.args()}


@dataclass(frozen=True)
class Question:
    """`kind` is friction|mass|restitution (estimate), rank (by mass) or predict (a held-out strike).
    `tolerance` is absolute (friction, restitution, predicted slide in metres) or relative (mass)."""

    kind: str
    objects: tuple[str, ...]
    tolerance: float = 0.0
    budget: int | None = None  # None: DEFAULT_BUDGET, and not written in the text
    action: Experiment | None = None  # predict: the held-out action
    section = "question"

    @property
    def max_experiments(self) -> int:
        return DEFAULT_BUDGET if self.budget is None else self.budget

    @property
    def object(self) -> str:
        return self.objects[0]

    def render(self) -> str:
        form = QUESTION_FORMS.get(self.kind)
        if form is None:
            raise GrammarError(f"unknown question kind {self.kind!r}")
        s = form.render(self)
        return s if self.budget is None else f"{s} budget {self.budget}"


@dataclass(frozen=True)
class QuestionForm:
    """One question kind's text: its regex (object names `n`, directions `d`, for constrained decoding), the
    same with groups for parsing (`parse` makes the Question from the match and the budget), and `render`.
    Adding a kind adds one entry to QUESTION_FORMS; the lab's side is `loopylab.lab.kinds`."""

    pattern: Callable[[str, str], str]
    parse: Callable[[re.Match, int | None], Question]
    render: Callable[[Question], str]
    usage: str  # for the error that lists what a question may be


def _predict_question(m: re.Match, budget: int | None) -> Question:
    act = Experiment("strike", m[1], direction=m[2], speed=_num(m[3], 2, "speed"))
    return Question("predict", (m[1],), _num(m[4], 3, "tolerance"), budget, act)


def _rank_form(kind: str, quantity: str, resolution: bool = False) -> QuestionForm:
    """`rank OBJ OBJ... by QUANTITY`: the objects ordered by a hidden property, largest first; with `resolution`,
    optionally `within P%`: a pair whose values differ by less than P % (of the smaller) may come in either order."""
    within = r"(?: within ([1-9]\d?)%)?" if resolution else ""

    def parse(m: re.Match, budget: int | None) -> Question:
        objs = (m[1], *m[2].split())
        if len(set(objs)) != len(objs):
            raise GrammarError(f"question: an object is named twice in {m[0]!r}")
        return Question(kind, objs, int(m[3]) / 100 if resolution and m[3] else 0.0, budget)

    def render(q: Question) -> str:
        tol = f" within {round(q.tolerance * 100)}%" if q.tolerance else ""
        return f"rank {' '.join(q.objects)} by {quantity}{tol}"

    return QuestionForm(
        lambda n, d: rf"rank {n}(?: {n})+ by {quantity}{within}",
        parse,
        render,
        f"rank OBJ OBJ... by {quantity}" + (" [within P%]" if resolution else ""),
    )


def _stop_question(m: re.Match, budget: int | None) -> Question:
    if m[5] is not None:  # a strike: the block slides free of the hand
        act = Experiment("strike", m[1], direction=m[5], speed=_num(m[6], 2, "speed"))
    else:
        act = Experiment("push", m[1], m[2], _num(m[3], 2, "distance"), _num(m[4], 2, "speed"))
    return Question("predict_stop", (m[1],), _num(m[7], 3, "tolerance"), budget, act)


def _stop_text(q: Question) -> str:
    a = _given(q.action, "predict action")
    if a.skill == "strike":
        how = f"strike {a.direction} {fmt(_given(a.speed, 'strike speed'), 2)}"
    else:
        dist, speed = fmt(_given(a.distance, "push distance"), 2), fmt(_given(a.speed, "push speed"), 2)
        how = f"push {a.direction} {dist} {speed}"
    return f"predict where {q.object} stops after {how} within {fmt(q.tolerance, 3)}"


def _attached_question(m: re.Match, budget: int | None) -> Question:
    if m[1] == m[2]:
        raise GrammarError(f"question: an object is attached to another, not to itself, in {m[0]!r}")
    return Question("attached", (m[1], m[2]), 0.0, budget)


def _predict_text(q: Question) -> str:
    a = _given(q.action, "predict action")
    speed = fmt(_given(a.speed, "strike speed"), 2)
    return f"predict slide of {q.object} after strike {a.direction} {speed} within {fmt(q.tolerance, 3)}"


def _estimate_form(kind: str) -> QuestionForm:
    return QuestionForm(
        lambda n, d: rf"estimate {kind} of {n} within ({num_re(2)})",
        lambda m, b: Question(kind, (m[1],), _num(m[2], 2, "tolerance"), b),
        lambda q: f"estimate {kind} of {q.object} within {fmt(q.tolerance, 2)}",
        f"estimate {kind} of OBJ within TOL",
    )


COM_DECIMALS = 1  # centre-of-mass offsets and their tolerance, in mm


def _com_question(m: re.Match, budget: int | None) -> Question:
    tol = _num(m[2], COM_DECIMALS, "tolerance")
    if tol <= 0:
        raise GrammarError(f"question: a tolerance of {m[2]} mm holds nothing")
    return Question("com", (m[1],), tol / 1000, budget)  # the tolerance in metres, as the other kinds'


def _model_form(verb: str) -> QuestionForm:
    """A model-identification question, "which model explains how OBJ VERB"; the kind is named by its verb."""
    return QuestionForm(
        lambda n, d: rf"which model explains how {n} {verb}",
        lambda m, b: Question(verb, (m[1],), 0.0, b),
        lambda q: f"which model explains how {q.object} {verb}",
        f"which model explains how OBJ {verb}",
    )


QUESTION_FORMS: dict[str, QuestionForm] = {
    "friction": _estimate_form("friction"),
    "mass": QuestionForm(
        lambda n, d: rf"estimate mass of {n} within ([1-9]\d?)%",
        lambda m, b: Question("mass", (m[1],), int(m[2]) / 100, b),
        lambda q: f"estimate mass of {q.object} within {round(q.tolerance * 100)}%",
        "estimate mass of OBJ within P%",
    ),
    "restitution": _estimate_form("restitution"),
    "rank": _rank_form("rank", "mass"),
    "predict": QuestionForm(
        lambda n, d: rf"predict slide of {n} after strike {d} ({num_re(2)}) within ({num_re(3)})",
        _predict_question,
        _predict_text,
        "predict slide of OBJ after strike DIR SPEED within TOL",
    ),
    "slides": _model_form("slides"),
    "rank_friction": _rank_form("rank_friction", "friction", resolution=True),
    "predict_stop": QuestionForm(  # where a held-out strike (or push) leaves the object (table x y, metres)
        lambda n, d: (
            rf"predict where {n} stops after (?:push {d} ({num_re(2)}) ({num_re(2)})|strike {d} ({num_re(2)}))"
            rf" within ({num_re(3)})"
        ),
        _stop_question,
        _stop_text,
        "predict where OBJ stops after strike DIR SPEED (or push DIR DIST SPEED) within TOL",
    ),
    "bounces": _model_form("bounces"),
    "com": QuestionForm(
        lambda n, d: rf"where is the centre of mass of {n} within ({num_re(COM_DECIMALS)}) mm",
        _com_question,
        lambda q: f"where is the centre of mass of {q.object} within {fmt(q.tolerance * 1000, COM_DECIMALS)} mm",
        "where is the centre of mass of OBJ within TOL mm",
    ),
    "sits": _model_form("sits"),
    "attached": QuestionForm(
        lambda n, d: rf"is {n} attached to {n}",
        _attached_question,
        lambda q: f"is {q.objects[0]} attached to {q.objects[1]}",
        "is OBJ attached to OBJ",
    ),
}


@dataclass(frozen=True)
class Range:
    param: str
    object: str
    lo: float
    hi: float

    def render(self) -> str:
        d = DECIMALS[self.param]
        return f"{self.param} {self.object} in {fmt(self.lo, d)} {fmt(self.hi, d)}"


@dataclass(frozen=True)
class Hypothesis:
    ranges: tuple[Range, ...]
    kind = "hypothesis"

    def render(self) -> str:
        return "; ".join(r.render() for r in self.ranges)


@dataclass(frozen=True)
class Observation:
    """What an experiment measured: (text key, value) pairs in grammar order, or why it failed."""

    values: tuple[tuple[str, float], ...] = ()
    error: str | None = None
    com: tuple[float, ...] | None = None  # a drop's centre-of-mass offset x y [z] (OBS_OPTIONAL), m
    load: float | None = None  # a push's vertical load on the object (OBS_OPTIONAL), N
    kind = "observation"

    def render(self) -> str:
        if self.error is not None:
            return f"failed {self.error}"
        dec = {k: d for fields_ in OBS_FIELDS.values() for k, _, d in fields_}
        text = " ".join(f"{k} {fmt(v, dec[k])}" for k, v in self.values)
        if self.com is not None:
            d = OBS_OPTIONAL["drop"][2]
            text += " com " + " ".join(fmt(v, d) for v in self.com)
        if self.load is not None:
            text += f" load {fmt(self.load, OBS_OPTIONAL['push'][2])}"
        return text

    def get(self, key: str) -> float:
        return dict(self.values)[key]

    @classmethod
    def from_measurements(cls, skill: str, measurements: dict) -> Observation:
        vals = []
        for key, mkey, d in OBS_FIELDS[skill]:
            v = float(measurements[mkey])
            if not math.isfinite(v):
                return cls.failure(f"{mkey} not finite")
            vals.append((key, float(fmt(abs(v) if key != "moved" else max(v, 0.0), d))))
        extra = None
        if skill in OBS_OPTIONAL:
            _, keys, d, least = OBS_OPTIONAL[skill]
            xs: list[Any] = [measurements.get(k) for k in keys]
            n = next((i for i, v in enumerate(xs) if v is None or not math.isfinite(float(v))), len(xs))
            if n >= least:  # the leading keys that are there (a drop without a tilt has no z)
                extra = tuple(float(fmt(float(v), d)) for v in xs[:n])
        return cls._with_optional(tuple(vals), skill, extra)

    @classmethod
    def _with_optional(cls, values: tuple, skill: str, extra: tuple | None) -> Observation:
        if extra is None:
            return cls(values)
        word = OBS_OPTIONAL[skill][0]
        return cls(values, com=extra) if word == "com" else cls(values, load=extra[0])

    @classmethod
    def failure(cls, reason: str) -> Observation:
        text = reason.lower().replace("\u2212", "-")  # a typographic minus is still a minus
        words = re.sub(rf"[^{WORD_CHARS}]+", " ", text).split()[:16] or ["unknown"]
        return cls(error=" ".join(w[:40] for w in words))


@dataclass(frozen=True)
class Estimate:
    """`quantity object value spread`: spread is the SD in beliefs and the half-width in conclusions."""

    quantity: str
    object: str
    value: float
    spread: float

    def render(self) -> str:
        d = DECIMALS[self.quantity]
        return f"{self.quantity} {self.object} {fmt(self.value, d)} {fmt(self.spread, d)}"

    @property
    def half_width(self) -> float:
        return self.spread

    def describe(self) -> str:
        d = DECIMALS[self.quantity]
        return f"{self.quantity} of {self.object} {fmt(self.value, d)} ± {fmt(self.spread, d)}"


@dataclass(frozen=True)
class Ranking:
    """Objects ordered by a quantity, largest first (`mass order a > b > c`)."""

    quantity: str
    objects: tuple[str, ...]

    def render(self) -> str:
        return f"{self.quantity} order {' > '.join(self.objects)}"

    @property
    def object(self) -> str:
        return self.objects[0]

    @property
    def value(self) -> tuple[str, ...]:
        return self.objects

    half_width = None

    def describe(self) -> str:
        return f"by {self.quantity}, largest first: {' > '.join(self.objects)}"


# what each explanatory model says, for a person (lab/story.py)
MODEL_WORDS = {
    "isotropic": "friction the same in every direction",
    "anisotropic": "friction different along the object's own x and y",
    "elastic": "the same bounce at every impact speed",
    "sticky": "a bounce that falls off at higher impact speeds",
    "centred": "the centre of mass at the geometric centre",
    "offset": "the centre of mass off the geometric centre",
    "free": "it stands free",
    "table": "it is fixed to the table",
    "welded": "it is fixed to the other object",
}


@dataclass(frozen=True)
class ModelProb:
    """`model OBJ MODEL P`: the posterior probability that MODEL explains OBJ (0 once rejected)."""

    object: str
    model: str
    p: float

    def render(self) -> str:
        return f"model {self.object} {self.model} {fmt(self.p, PROB_DECIMALS)}"

    @property
    def value(self) -> str:
        return self.model

    half_width = None

    def describe(self) -> str:
        words = MODEL_WORDS.get(self.model)
        return f"the {self.model} model{f' ({words})' if words else ''} explains {self.object}, p {self.p:.2f}"


@dataclass(frozen=True)
class Rejection:
    """`rejected OBJ MODEL by KEY V outside LO HI`: the observation that refuted MODEL (its KEY fell outside the
    range the model's posterior predictive held it to). A belief's clause, never an answer."""

    object: str
    model: str
    key: str  # an observation's text key (force, slide, ...)
    value: float
    lo: float
    hi: float

    def render(self) -> str:
        v, lo, hi = (fmt(x, 3) for x in (self.value, self.lo, self.hi))
        return f"rejected {self.object} {self.model} by {self.key} {v} outside {lo} {hi}"

    half_width = None

    def describe(self) -> str:
        v, lo, hi = (fmt(x, 3) for x in (self.value, self.lo, self.hi))
        return (
            f"the {self.model} model of {self.object} is rejected: it expected {self.key} between {lo} and {hi}, "
            f"and the robot measured {v}"
        )


@dataclass(frozen=True)
class ComOffset:
    """`com OBJ x X S y Y S mm`: the centre of mass's signed offset from the geometric centre along the object's
    own x and y (mm), each with its SD (beliefs) or half-width (conclusions)."""

    object: str
    x: float  # mm
    x_spread: float
    y: float
    y_spread: float

    def render(self) -> str:
        x, xs, y, ys = (fmt(v, COM_DECIMALS) for v in (self.x, self.x_spread, self.y, self.y_spread))
        return f"com {self.object} x {x} {xs} y {y} {ys} mm"

    @property
    def value(self) -> tuple[float, float]:
        return (self.x / 1000, self.y / 1000)  # m, as the other kinds' answers

    @property
    def half_width(self) -> float:
        return max(self.x_spread, self.y_spread) / 1000  # the wider axis's, m

    def describe(self) -> str:
        return (
            f"the centre of mass of {self.object} sits {self.x:+.1f} ± {self.x_spread:.1f} mm along its own x "
            f"and {self.y:+.1f} ± {self.y_spread:.1f} mm along its own y"
        )


@dataclass(frozen=True)
class Unexplained:
    """`none of my hypotheses explains OBJ`: every model was rejected, so the lab answers nothing."""

    object: str

    def render(self) -> str:
        return f"none of my hypotheses explains {self.object}"

    value = None
    half_width = None

    def describe(self) -> str:
        return f"none of my hypotheses explains {self.object}: an observation refuted every model it held"


@dataclass(frozen=True)
class Position:
    """`position OBJ X Y R`: where an object rests on the table (signed x y, m); R is the spread (the radial sd
    in beliefs, the radius holding the answer's confidence in conclusions)."""

    object: str
    x: float
    y: float
    spread: float
    quantity = "position"

    @property
    def value(self) -> tuple[float, float]:
        return (self.x, self.y)

    @property
    def half_width(self) -> float:
        return self.spread

    def render(self) -> str:
        return f"position {self.object} {fmt(self.x, 3)} {fmt(self.y, 3)} {fmt(self.spread, 3)}"

    def describe(self) -> str:
        return f"{self.object} comes to rest at x {self.x:.3f} m, y {self.y:.3f} m, within {self.spread:.3f} m"


RANKED = ("mass", "friction")  # the properties a conclusion may order objects by (`QTY order a > b`)


class Clause(Protocol):
    """What the lab reads of a belief's or conclusion's clause, whatever its type: the sealed channel carries it as
    its text (`render`, parsed back by its ClauseForm), the audit's answer line writes it, the investigation records
    its `value` (the answer it states, in SI units: a number, a pair, names or a model; None: no answer) and
    `half_width` (SI; None where it has none), and the story tells it (`describe`)."""

    @property
    def object(self) -> str: ...

    @property
    def value(self) -> Any: ...

    @property
    def half_width(self) -> float | None: ...

    def render(self) -> str: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ClauseForm:
    """One clause type's text in beliefs and conclusions: its regex (object names `n`, for constrained decoding) and
    `parse`, which makes the clause from its text (None: the text is not of this type; a GrammarError: it is, and
    is malformed; `section` is "belief" or "conclusion"); where it may stand (`sections`); and `place` in a
    conclusion: "any" (in a list of clauses), "first" (leads it, at most once: a model, then its parameters) or
    "alone" (a conclusion of itself). Adding a clause type is one `register_clause`; nothing else branches on it.

    A clause travels out of the sealed agent's process as its text, unless its form gives `exact`: (clause -> JSON
    list, JSON list -> clause), for an answer whose numbers must reach the grader as the agent stated them (an
    estimate: full precision, or a value outside the grammar that is graded wrong rather than refused)."""

    name: str
    pattern: Callable[[str], str]
    parse: Callable[[str, str], Any]
    sections: tuple[str, ...] = ("belief", "conclusion")
    place: str = "any"
    cls: type | None = None  # the dataclass it parses to (how a clause finds its form: `form_of`)
    exact: tuple[Callable[[Any], list], Callable[[list], Any]] | None = None


def _estimate_clause(text: str, section: str) -> Estimate | None:
    m = re.fullmatch(rf"({'|'.join(QUANTITIES)}) ({NAME_RE}) (\S+) (\S+)", text)
    if m is None:
        return None
    dd = DECIMALS[m[1]]
    e = Estimate(m[1], m[2], _num(m[3], dd, "value"), _num(m[4], dd, "spread"))
    if e.value < 0 or e.spread < 0:
        raise GrammarError(f"{section}: negative number in {text!r}")
    return e


def _model_clause(text: str, section: str) -> ModelProb | None:
    if (m := re.fullmatch(rf"model ({NAME_RE}) ({_alt(MODELS)}) (\S+)", text)) is None:
        return None
    c = ModelProb(m[1], m[2], _num(m[3], PROB_DECIMALS, "probability"))
    if c.p > 1:
        raise GrammarError(f"{section}: probability above 1 in {text!r}")
    return c


def _rejected_clause(text: str, section: str) -> Rejection | None:
    m = re.fullmatch(rf"rejected ({NAME_RE}) ({_alt(MODELS)}) by ({_alt(REJECT_KEYS)}) (\S+) outside (\S+) (\S+)", text)
    return None if m is None else Rejection(m[1], m[2], m[3], *(_num(m[k], 3, "value") for k in (4, 5, 6)))


def _position_clause(text: str, section: str) -> Position | None:
    if (m := re.fullmatch(rf"position ({NAME_RE}) (\S+) (\S+) (\S+)", text)) is None:
        return None
    x, y = (_signed(m[k], 3, "position") for k in (2, 3))
    return Position(m[1], x, y, _num(m[4], 3, "spread"))


def _com_clause(text: str, section: str) -> ComOffset | None:
    if (m := re.fullmatch(rf"com ({NAME_RE}) x (\S+) (\S+) y (\S+) (\S+) mm", text)) is None:
        return None
    vals = []
    for v, what, signed in zip(m.groups()[1:], ("x", "x spread", "y", "y spread"), (True, False, True, False)):
        if re.fullmatch(num_re(COM_DECIMALS, signed), v) is None:
            raise GrammarError(
                f"{section}: com {what} {v!r} is not a{'' if signed else ' non-negative'} number "
                f"with {COM_DECIMALS} decimal(s) of a mm"
            )
        vals.append(float(v))
    return ComOffset(m[1], *vals)


def _com_re(n: str) -> str:
    v, s = num_re(COM_DECIMALS, True), num_re(COM_DECIMALS)
    return rf"com {n} x {v} {s} y {v} {s} mm"


def _ranking_clause(text: str, section: str) -> Ranking | None:
    if (m := re.fullmatch(rf"({_alt(RANKED)}) order ({NAME_RE})((?: > {NAME_RE})+)", text)) is None:
        return None
    objs = (m[2], *m[3].split(" > ")[1:])
    if len(set(objs)) != len(objs):
        raise GrammarError(f"{section}: an object is ranked twice in {text!r}")
    return Ranking(m[1], objs)


def _unexplained_clause(text: str, section: str) -> Unexplained | None:
    m = re.fullmatch(rf"none of my hypotheses explains ({NAME_RE})", text)
    return None if m is None else Unexplained(m[1])


def _d(q: str) -> str:
    return num_re(DECIMALS[q])


# in the order parsing tries them
CLAUSE_FORMS: dict[str, ClauseForm] = {
    "model": ClauseForm(
        "model", lambda n: rf"model {n} {_alt(MODELS)} {num_re(PROB_DECIMALS)}", _model_clause, place="first"
    ),
    "rejected": ClauseForm(
        "rejected",
        lambda n: rf"rejected {n} {_alt(MODELS)} by {_alt(REJECT_KEYS)} {num_re(3)} outside {num_re(3)} {num_re(3)}",
        _rejected_clause,
        sections=("belief",),
    ),
    "position": ClauseForm(
        "position", lambda n: rf"position {n} {num_re(3, True)} {num_re(3, True)} {num_re(3)}", _position_clause
    ),
    "com": ClauseForm("com", _com_re, _com_clause),  # a centre-of-mass offset is an estimate too
    "order": ClauseForm(
        "order", lambda n: rf"{_alt(RANKED)} order {n}(?: > {n})+", _ranking_clause, ("conclusion",), "alone"
    ),
    "unexplained": ClauseForm(
        "unexplained", lambda n: rf"none of my hypotheses explains {n}", _unexplained_clause, ("conclusion",), "alone"
    ),
    "estimate": ClauseForm(
        "estimate",
        lambda n: "(?:" + "|".join(rf"{q} {n} {_d(q)} {_d(q)}" for q in QUANTITIES) + ")",
        _estimate_clause,
        cls=Estimate,
        exact=(
            lambda e: [e.quantity, e.object, float(e.value), float(e.spread)],
            lambda v: Estimate(str(v[0]), str(v[1]), float(v[2]), float(v[3])),
        ),
    ),
}
for _name, _cls in (
    ("model", ModelProb),
    ("rejected", Rejection),
    ("position", Position),
    ("com", ComOffset),
    ("order", Ranking),
    ("unexplained", Unexplained),
):
    CLAUSE_FORMS[_name] = dataclasses.replace(CLAUSE_FORMS[_name], cls=_cls)


def form_of(clause: Any) -> ClauseForm | None:
    """The registered form of a clause (by its dataclass); None for a type no form names."""
    return next((f for f in CLAUSE_FORMS.values() if f.cls is not None and isinstance(clause, f.cls)), None)


def register_clause(form: ClauseForm) -> ClauseForm:
    """Add a clause type to beliefs and conclusions (tried before the estimate, whose words are open-ended)."""
    if form.name in CLAUSE_FORMS and CLAUSE_FORMS[form.name] is not form:
        raise ValueError(f"clause type {form.name!r} is registered twice")
    if form.place not in ("any", "first", "alone"):
        raise ValueError(f"clause type {form.name!r}: place {form.place!r} is none of any, first, alone")
    rest = {k: v for k, v in CLAUSE_FORMS.items() if k != "estimate"}
    CLAUSE_FORMS.clear()
    CLAUSE_FORMS.update({**rest, form.name: form, "estimate": rest.get("estimate") or _ESTIMATE_FORM})
    _COMPILED.clear()
    return form


def unregister_clause(name: str) -> None:
    """Take a clause type out again (a test's own)."""
    CLAUSE_FORMS.pop(name, None)
    _COMPILED.clear()


_ESTIMATE_FORM = CLAUSE_FORMS["estimate"]


@dataclass(frozen=True)
class Belief:
    estimates: tuple[Clause, ...]  # Estimate, ModelProb, Rejection, Position, ComOffset, or a registered type
    kind = "belief"

    def render(self) -> str:
        return "; ".join(e.render() for e in self.estimates)

    def get(self, quantity: str, obj: str) -> Estimate:
        return next(e for e in self.estimates if isinstance(e, Estimate) and e.quantity == quantity and e.object == obj)


@dataclass(frozen=True)
class Conclusion:
    answers: tuple[Clause, ...]  # Estimate, Ranking, ModelProb, Unexplained, Position, ComOffset, or registered
    kind = "conclusion"

    def render(self) -> str:
        return "; ".join(a.render() for a in self.answers)


Body = Question | Scene | Hypothesis | Experiment | Observation | Belief | Conclusion
if TYPE_CHECKING:
    from loopylab.world.audit import AuditBody


# ---------------------------------------------------------------------------------------------
# body regexes (names from the scene when given, for constrained decoding)


def _names(scene: Scene | None, objects: Iterable[str] | None = None) -> str:
    if objects is not None:
        return _alt(objects)
    return _alt(scene.names) if scene is not None and scene.objects else NAME_RE


def _list(clause: str) -> str:
    return rf"{clause}(?:; {clause})*"


def _budget() -> str:
    return r"(?: budget [1-9]\d{0,2})?"


def _optional_re(skill: str) -> str:
    """The optional trailing fields of a skill's observation (OBS_OPTIONAL), as a non-capturing group."""
    if skill not in OBS_OPTIONAL:
        return ""
    word, keys, d, least = OBS_OPTIONAL[skill]
    more = f"(?: {num_re(d, True)}" * (len(keys) - least) + ")?" * (len(keys) - least)
    return f"(?: {word}" + f" {num_re(d, True)}" * least + more + ")?"


def body_regex(kind: str, scene: Scene | None = None) -> str:
    """The regular expression (module `regex` / `re` syntax) of one section body."""
    n = _names(scene)
    d = _alt(DIRECTIONS)
    if kind == "question":
        return "(?:" + "|".join(f.pattern(n, d) for f in QUESTION_FORMS.values()) + f"){_budget()}"
    if kind == "scene":
        return _list(rf"{n} {_alt(SHAPES)} {num_re(2)} at {num_re(2, True)} {num_re(2, True)}")
    if kind == "hypothesis":
        return _list("(?:" + "|".join(rf"{p} {n} in {num_re(DECIMALS[p])} {num_re(DECIMALS[p])}" for p in PARAMS) + ")")
    if kind == "experiment":
        return (
            rf"(?:push {n} {d} {num_re(2)} {num_re(2)}|strike {n} {d} {num_re(2)}|weigh {n}"
            rf"|drop {n} {num_re(2)}|lift {n} {num_re(2)}|place {n} {num_re(2, True)} {num_re(2, True)})"
        )
    if kind == "observation":
        alts = [" ".join(f"{k} {num_re(dd)}" for k, _, dd in fs) + _optional_re(sk) for sk, fs in OBS_FIELDS.items()]
        return "(?:" + "|".join(alts) + rf"|failed {WORDS_RE})"
    if kind in ("belief", "conclusion"):
        return _clauses_regex(kind, n)
    raise GrammarError(f"unknown section kind {kind!r} (want one of {', '.join(KINDS)})")


def _clauses_regex(kind: str, n: str) -> str:
    """A belief: a list of its clause types; a conclusion: a list of "any" clauses, optionally led by a "first"
    one (a model, then its parameters), or one "alone" clause (an order, "none of my hypotheses ...")."""
    forms = [f for f in CLAUSE_FORMS.values() if kind in f.sections]

    def alt(place: str) -> str:
        return "(?:" + "|".join(f.pattern(n) for f in forms if f.place == place) + ")"

    if kind == "belief":
        return _list("(?:" + "|".join(f.pattern(n) for f in forms) + ")")
    alts = [_list(alt("any"))]
    if any(f.place == "first" for f in forms):
        alts.append(rf"{alt('first')}(?:; {alt('any')})*")
    if any(f.place == "alone" for f in forms):
        alts.append(alt("alone"))
    return "(?:" + "|".join(alts) + ")"


_COMPILED: dict[str, regex.Pattern] = {}


def _compiled(kind: str, scene: Scene | None) -> regex.Pattern:
    key = kind if scene is None else f"{kind}|{scene.render()}"
    if key not in _COMPILED:
        if len(_COMPILED) > 512:
            _COMPILED.clear()
        _COMPILED[key] = regex.compile(body_regex(kind, scene))
    return _COMPILED[key]


# ---------------------------------------------------------------------------------------------
# parsing


def _split(body: str) -> list[str]:
    parts = body.split("; ")
    if any(not p for p in parts):
        raise GrammarError(f"empty clause in {body!r}")
    return parts


def _check(what: str, pattern: str, text: str) -> re.Match:
    m = re.fullmatch(pattern, text)
    if m is None:
        raise GrammarError(f"{what}: {text!r} does not match the grammar")
    return m


def parse_body(kind: str, body: str) -> Body | AuditBody:
    """Parse one section body into its dataclass; GrammarError if it is not canonical grammar."""
    parsed = _parse_body(kind, body)
    if parsed.render() != body:  # belt and braces: the grammar has one spelling per value
        raise GrammarError(f"{kind}: {body!r} is not canonical (canonical: {parsed.render()!r})")
    return parsed


_N, _D = f"({NAME_RE})", f"({_alt(DIRECTIONS)})"  # an object name and a push/strike direction, as groups


def _parse_question(body: str) -> Question:
    budget = None
    mb = re.fullmatch(r"(.*) budget ([1-9]\d{0,2})", body)
    if mb:
        body, budget = mb.group(1), int(mb.group(2))
    for form in QUESTION_FORMS.values():
        # the same pattern with the names and directions as groups
        if m := re.fullmatch(form.pattern(_N, _D).replace(f"(?: {_N})+", f"((?: {NAME_RE})+)"), body):
            return form.parse(m, budget)
    raise GrammarError(f"question: {body!r} is none of: " + ", ".join(f.usage for f in QUESTION_FORMS.values()))


def _parse_scene(body: str) -> Scene:
    placed = []
    for c in _split(body):
        m = _check("scene", rf"{_N} ({_alt(SHAPES)}) ({num_re(2)}) at ({num_re(2, True)}) ({num_re(2, True)})", c)
        placed.append(SceneObject(m[1], m[2], float(m[3]), float(m[4]), float(m[5])))
    if len({o.name for o in placed}) != len(placed):
        raise GrammarError(f"scene: an object is named twice in {body!r}")
    return Scene(tuple(placed))


def _parse_hypothesis(body: str) -> Hypothesis:
    out = []
    for c in _split(body):
        m = _check("hypothesis", rf"({'|'.join(PARAMS)}) {_N} in (\S+) (\S+)", c)
        dd = DECIMALS[m[1]]
        lo, hi = _num(m[3], dd, "lower bound"), _num(m[4], dd, "upper bound")
        if lo > hi:
            raise GrammarError(f"hypothesis: empty range {lo} > {hi} in {c!r}")
        out.append(Range(m[1], m[2], lo, hi))
    return Hypothesis(tuple(out))


def _parse_experiment(body: str) -> Experiment:
    n, d = _N, _D
    if m := re.fullmatch(rf"push {n} {d} ({num_re(2)}) ({num_re(2)})", body):
        return Experiment("push", m[1], direction=m[2], distance=float(m[3]), speed=float(m[4]))
    if m := re.fullmatch(rf"strike {n} {d} ({num_re(2)})", body):
        return Experiment("strike", m[1], direction=m[2], speed=float(m[3]))
    if m := re.fullmatch(rf"weigh {n}", body):
        return Experiment("weigh", m[1])
    if m := re.fullmatch(rf"(drop|lift) {n} ({num_re(2)})", body):
        return Experiment(m[1], m[2], height=float(m[3]))
    if m := re.fullmatch(rf"place {n} ({num_re(2, True)}) ({num_re(2, True)})", body):
        return Experiment("place", m[1], position=(float(m[2]), float(m[3])))
    raise GrammarError(
        f"experiment: {body!r} is none of: push OBJ DIR DIST SPEED, strike OBJ DIR SPEED, "
        f"weigh OBJ, drop OBJ HEIGHT, lift OBJ HEIGHT, place OBJ X Y"
    )


def _parse_observation(body: str) -> Observation:
    if m := re.fullmatch(rf"failed ({WORDS_RE})", body):
        return Observation(error=m[1])
    for sk, fs in OBS_FIELDS.items():
        pat = " ".join(f"{k} ({num_re(dd)})" for k, _, dd in fs)
        if m := re.fullmatch(pat + f"({_optional_re(sk)})", body):
            extra = tuple(float(v) for v in m[len(fs) + 1].split()[1:]) if m[len(fs) + 1] else None
            return Observation._with_optional(tuple((k, float(m[i + 1])) for i, (k, _, _) in enumerate(fs)), sk, extra)
    raise GrammarError(f"observation: {body!r} does not match the grammar")


def _parse_estimates(kind: str, body: str) -> Belief | Conclusion:
    forms = [f for f in CLAUSE_FORMS.values() if kind in f.sections]
    if kind == "conclusion":
        for f in forms:
            if f.place == "alone" and (alone := f.parse(body, kind)) is not None:
                return Conclusion((alone,))
    ests: list = []
    for i, c in enumerate(_split(body)):
        form, clause = next(
            ((f, x) for f in forms if f.place != "alone" and (x := f.parse(c, kind)) is not None), (None, None)
        )
        if form is None:
            raise GrammarError(f"{kind}: {c!r} does not match the grammar")
        if kind == "conclusion" and form.place == "first" and i > 0:
            raise GrammarError(f"conclusion: one {form.name} per conclusion, first, in {body!r}")
        ests.append(clause)
    return Belief(tuple(ests)) if kind == "belief" else Conclusion(tuple(ests))


_PARSERS: dict[str, Callable[[str], Body]] = {
    "question": _parse_question,
    "scene": _parse_scene,
    "hypothesis": _parse_hypothesis,
    "experiment": _parse_experiment,
    "observation": _parse_observation,
    "belief": lambda body: _parse_estimates("belief", body),
    "conclusion": lambda body: _parse_estimates("conclusion", body),
}


def _parse_body(kind: str, body: str) -> Body | AuditBody:
    parser = _PARSERS.get(kind)
    if parser is not None:
        return parser(body)
    if kind in AUDIT_KINDS:
        from loopylab.world.audit import PARSERS  # the audit lines' module builds on this one

        return PARSERS[kind](body)
    raise GrammarError(f"unknown section kind {kind!r} (want one of {', '.join(ALL_KINDS)})")


@dataclass(frozen=True)
class Section:
    kind: str
    body: Body | AuditBody

    @property
    def audit(self) -> bool:
        """Whether this is an audit line (for the scientist, never the policy's)."""
        return self.kind in AUDIT_KINDS

    def render(self) -> str:
        return f"{start_token(self.kind)}{self.body.render()}{end_token(self.kind)}"


_SECTION_RE = re.compile(r"<\|([a-z]+)_start\|>(.*?)<\|([a-z]+)_end\|>")


def parse(text: str) -> list[Section]:
    """Parse a whole notebook (one section per line) into sections."""
    out = []
    for i, line in enumerate(text.split("\n")):
        if i == len(text.split("\n")) - 1 and line == "":
            break  # a final newline
        m = _SECTION_RE.fullmatch(line)
        if m is None or m[1] != m[3] or m[1] not in ALL_KINDS:
            raise GrammarError(f"line {i + 1}: {line[:80]!r} is not <|kind_start|>body<|kind_end|>")
        try:
            out.append(Section(m[1], parse_body(m[1], m[2])))
        except GrammarError as e:
            raise GrammarError(f"line {i + 1}: {e}") from None
    return out


def render(sections: Iterable[Section | Body | AuditBody]) -> str:
    """Notebook text: one section per line, each line ending in a newline."""
    lines = []
    for s in sections:
        if not isinstance(s, Section):
            s = Section(kind_of(s), s)
        lines.append(s.render() + "\n")
    return "".join(lines)


def policy_sections(sections: Iterable[Section]) -> list[Section]:
    """The sections the policy reads and writes: the notebook without its audit lines."""
    return [s for s in sections if not s.audit]


def policy_text(text: str) -> str:
    """A notebook's text as the policy sees it (audit lines dropped)."""
    return render(policy_sections(parse(text)))


def kind_of(body: Body | AuditBody) -> str:
    return "question" if isinstance(body, Question) else body.kind


def section_text(body: Body | AuditBody) -> str:
    return Section(kind_of(body), body).render()


# ---------------------------------------------------------------------------------------------
# constrained decoding: is a partial body still grammatical, is a body whole?


def prefix_ok(kind: str, partial: str, scene: Scene | None = None) -> bool:
    """Can `partial` still be extended into a valid body of `kind` (names from `scene` when given)?
    Numbers may be half written."""
    return _compiled(kind, scene).fullmatch(partial, partial=True) is not None


def body_complete(kind: str, text: str, scene: Scene | None = None) -> bool:
    """Is `text` a whole valid body (may the end token follow)?"""
    if _compiled(kind, scene).fullmatch(text) is None:
        return False
    try:
        parse_body(kind, text)
    except GrammarError:
        return False
    return True
