"""The notebook's audit lines: what a scientist needs to check and replay an investigation, in the same text
grammar as the rest of the notebook (`loopylab.world.notebook` parses and renders them), but never part of what
the policy reads or writes (`notebook.policy_sections` leaves them out; their markers are no tokenizer's).

    provenance  code VERSION [git DESCRIBE] agent NAME graph NAME run_seed N particles N confidence RAW
    twin        OBJ SHAPE RAW at RAW RAW RAW turn RAW RAW RAW RAW (; ...); robot NAME dt RAW gravity RAW table RAW RAW
                                       (the perceived scene the belief engine's twin simulated, exactly)
    reason      by AGENT of N [eig E cost C] [plan EXPERIMENT eig E] (; vs EXPERIMENT eig E cost C)*
                                       (why the experiment above was chosen, against the best alternatives)
    raw         KEY RAW (KEY RAW)*     (the skill's measurements, unrounded, keys with their units: force_mean_N)
    answer      CLAUSE p P.PPP         (the belief engine's answer now, any one conclusion clause: QTY OBJ VALUE
                                        HALFWIDTH, mass order OBJ > OBJ ..., model OBJ MODEL P, position ...;
                                        and P(within tolerance), or P(right))
    stop        CODE p P.PPP >=|< C.CCC after N of B [best EXPERIMENT eig E cost C]
                                       (why the investigation stopped: confident, budget, no_candidates, not_worth,
                                        max_steps, agent)

RAW is Python's shortest round-trip spelling of a float (`repr`): exact, and one spelling per value. EIG and
cost are in nats, three decimals, signed (a Monte Carlo EIG may come out a hair below zero).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from loopylab.world import notebook as g
from loopylab.world.source import Source, parse_source

AUDIT_KINDS = g.AUDIT_KINDS
STOP_CODES = ("confident", "budget", "no_candidates", "not_worth", "max_steps", "agent")
TOKEN_RE = r"[A-Za-z0-9_.:/+=@~-]+"  # a version, agent or graph name: no spaces, no markers
KEY_RE = r"[A-Za-z][A-Za-z0-9_]{0,47}"  # a measurement key (force_mean_N)
RAW_RE = r"-?(?:\d+\.\d+(?:e[+-]\d+)?|\d+e[+-]\d+|inf)|nan"
EIG_DECIMALS = 3


def raw(x: float) -> str:
    """A float's exact text: Python's shortest spelling that reads back to the same float."""
    return repr(float(x))


def token(text: str) -> str:
    """`text` as one TOKEN (a graph path with spaces keeps its other characters)."""
    return re.sub(r"[^A-Za-z0-9_.:/+=@~-]+", "_", str(text)) or "_"


def _raw(text: str, what: str) -> float:
    if re.fullmatch(RAW_RE, text) is None:
        raise g.GrammarError(f"{what}: {text!r} is not a number")
    value = float(text)
    if raw(value) != text:
        raise g.GrammarError(f"{what}: {text!r} is not written canonically (want {raw(value)!r})")
    return value


def _int(text: str, what: str) -> int:
    if re.fullmatch(r"0|[1-9]\d{0,19}", text) is None:
        raise g.GrammarError(f"{what}: {text!r} is not a whole number")
    return int(text)


def _eig(text: str, what: str) -> float:
    if re.fullmatch(g.num_re(EIG_DECIMALS, True), text) is None:
        raise g.GrammarError(f"{what}: {text!r} is not a number with {EIG_DECIMALS} decimals")
    return float(text)


def _f3(x: float) -> str:
    return g.fmt(x, EIG_DECIMALS)


_EIG = g.num_re(EIG_DECIMALS, True)


@dataclass(frozen=True)
class Provenance:
    """Where a notebook came from: the code, the agent, the bench graph and the run's own seed (the belief
    engine's particles; never the world's), and the belief engine's settings a replay needs."""

    code: str
    agent: str
    graph: str
    run_seed: int
    particles: int
    confidence: float
    git: str | None = None  # `git describe` of the checkout, when the code runs from one
    kind = "provenance"

    def render(self) -> str:
        git = f" git {self.git}" if self.git else ""
        return (
            f"code {self.code}{git} agent {self.agent} graph {self.graph} run_seed {self.run_seed} "
            f"particles {self.particles} confidence {raw(self.confidence)}"
        )


@dataclass(frozen=True)
class TwinObject:
    name: str
    shape: str
    size: float
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)  # xyzw

    def render(self) -> str:
        return (
            f"{self.name} {self.shape} {raw(self.size)} at {' '.join(map(raw, self.position))} "
            f"turn {' '.join(map(raw, self.orientation))}"
        )


@dataclass(frozen=True)
class Twin:
    """The perceived scene the belief engine's twin simulated, to the last bit (a replay builds the same)."""

    objects: tuple[TwinObject, ...]
    robot: str = "panda"
    dt: float = 1.0 / 240.0
    gravity: float = -9.81
    table: tuple[float, float] = (1.0, 1.0)  # friction, restitution
    kind = "twin"

    def render(self) -> str:
        setting = (
            f"robot {self.robot} dt {raw(self.dt)} gravity {raw(self.gravity)} "
            f"table {raw(self.table[0])} {raw(self.table[1])}"
        )
        return "; ".join([*(o.render() for o in self.objects), setting])


@dataclass(frozen=True)
class Alternative:
    experiment: g.Experiment
    eig: float
    cost: float

    def render(self) -> str:
        return f"{self.experiment.render()} eig {_f3(self.eig)} cost {_f3(self.cost)}"


@dataclass(frozen=True)
class Reason:
    """Why the experiment above it was chosen: by which agent among how many options, its expected
    information gain and cost (nats), the plan it opens (lookahead), and the best alternatives."""

    agent: str
    options: int
    eig: float | None = None
    cost: float | None = None
    plan: g.Experiment | None = None
    plan_eig: float | None = None
    versus: tuple[Alternative, ...] = ()
    kind = "reason"

    def render(self) -> str:
        s = f"by {self.agent} of {self.options}"
        if self.eig is not None:
            s += f" eig {_f3(self.eig)}"
        if self.cost is not None:
            s += f" cost {_f3(self.cost)}"
        if self.plan is not None:
            s += f" plan {self.plan.render()} eig {_f3(g._given(self.plan_eig, 'plan eig'))}"
        return "; ".join([s, *(f"vs {a.render()}" for a in self.versus)])


@dataclass(frozen=True)
class Raw:
    """A skill's measurements as it replied them: (key, value) in reply order, unrounded, signs kept."""

    values: tuple[tuple[str, float], ...]
    kind = "raw"

    def render(self) -> str:
        if not self.values:
            raise g.GrammarError("a raw line needs at least one measurement")
        return " ".join(f"{k} {raw(v)}" for k, v in self.values)

    def as_dict(self) -> dict[str, float]:
        return dict(self.values)

    @classmethod
    def from_measurements(cls, measurements: dict) -> Raw | None:
        """The reply's numeric scalars (profiles, flags and words left out); None when there are none."""
        vals = tuple(
            (str(k), float(v))
            for k, v in measurements.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and re.fullmatch(KEY_RE, str(k))
        )
        return cls(vals) if vals else None


@dataclass(frozen=True)
class AnswerNow:
    """The belief engine's answer at this point and the probability it is within tolerance (or right)."""

    answer: g.Clause  # any conclusion clause (world/notebook.py CLAUSE_FORMS)
    p: float
    kind = "answer"

    def render(self) -> str:
        return f"{self.answer.render()} p {g.fmt(self.p, 3)}"


@dataclass(frozen=True)
class StopLine:
    """Why the investigation stopped, with the numbers the rule compared."""

    code: str
    p: float
    confidence: float
    experiments: int
    budget: int
    met: bool
    best: Alternative | None = None  # not_worth: the most promising experiment left
    kind = "stop"

    def render(self) -> str:
        if self.code not in STOP_CODES:
            raise g.GrammarError(f"stop: unknown code {self.code!r} (want one of {', '.join(STOP_CODES)})")
        s = (
            f"{self.code} p {g.fmt(self.p, 3)} {'>=' if self.met else '<'} {g.fmt(self.confidence, 3)} "
            f"after {self.experiments} of {self.budget}"
        )
        return s + (f" best {self.best.render()}" if self.best is not None else "")


AuditBody = Provenance | Twin | Reason | Raw | AnswerNow | StopLine | Source


# ---------------------------------------------------------------------------------------------
# parsing


def _parse_provenance(body: str) -> Provenance:
    t = TOKEN_RE
    m = re.fullmatch(
        rf"code ({t})(?: git ({t}))? agent ({t}) graph ({t}) run_seed (\S+) particles (\S+) confidence (\S+)", body
    )
    if m is None:
        raise g.GrammarError(
            f"provenance: {body!r} is not: code VERSION [git DESCRIBE] agent NAME graph NAME run_seed N "
            "particles N confidence X"
        )
    return Provenance(m[1], m[3], m[4], _int(m[5], "run_seed"), _int(m[6], "particles"), _raw(m[7], "confidence"), m[2])


def _parse_twin(body: str) -> Twin:
    clauses = body.split("; ")
    m = re.fullmatch(rf"robot ({g.NAME_RE}) dt (\S+) gravity (\S+) table (\S+) (\S+)", clauses[-1])
    if m is None:
        raise g.GrammarError(f"twin: {clauses[-1]!r} is not: robot NAME dt X gravity X table X X")
    objs = []
    for c in clauses[:-1]:
        o = re.fullmatch(
            rf"({g.NAME_RE}) ({'|'.join(g.SHAPES)}) (\S+) at (\S+) (\S+) (\S+) turn (\S+) (\S+) (\S+) (\S+)", c
        )
        if o is None:
            raise g.GrammarError(f"twin: {c!r} is not: OBJ SHAPE SIZE at X Y Z turn QX QY QZ QW")
        n = [_raw(v, "twin") for v in o.groups()[2:]]
        objs.append(TwinObject(o[1], o[2], n[0], (n[1], n[2], n[3]), (n[4], n[5], n[6], n[7])))
    if not objs or len({o.name for o in objs}) != len(objs):
        raise g.GrammarError(f"twin: no objects, or an object named twice, in {body!r}")
    return Twin(tuple(objs), m[1], _raw(m[2], "dt"), _raw(m[3], "gravity"), (_raw(m[4], "table"), _raw(m[5], "table")))


def _parse_alternative(text: str, what: str) -> Alternative:
    m = re.fullmatch(rf"(.+) eig ({_EIG}) cost ({_EIG})", text)
    if m is None:
        raise g.GrammarError(f"{what}: {text!r} is not: EXPERIMENT eig E cost C")
    return Alternative(g._parse_experiment(m[1]), _eig(m[2], what), _eig(m[3], what))


def _parse_reason(body: str) -> Reason:
    head, *rest = body.split("; ")
    m = re.fullmatch(
        rf"by ({TOKEN_RE}) of (0|[1-9]\d{{0,5}})(?: eig ({_EIG}))?(?: cost ({_EIG}))?(?: plan (.+) eig ({_EIG}))?", head
    )
    if m is None:
        raise g.GrammarError(f"reason: {head!r} is not: by AGENT of N [eig E] [cost C] [plan EXPERIMENT eig E]")
    versus = []
    for c in rest:
        if not c.startswith("vs "):
            raise g.GrammarError(f"reason: {c!r} is not: vs EXPERIMENT eig E cost C")
        versus.append(_parse_alternative(c[3:], "reason"))
    return Reason(
        m[1],
        int(m[2]),
        None if m[3] is None else float(m[3]),
        None if m[4] is None else float(m[4]),
        None if m[5] is None else g._parse_experiment(m[5]),
        None if m[6] is None else float(m[6]),
        tuple(versus),
    )


def _parse_raw(body: str) -> Raw:
    words = body.split(" ")
    if len(words) % 2 or not words or not body:
        raise g.GrammarError(f"raw: {body!r} is not: KEY VALUE (KEY VALUE)*")
    pairs = []
    for k, v in zip(words[::2], words[1::2]):
        if re.fullmatch(KEY_RE, k) is None:
            raise g.GrammarError(f"raw: {k!r} is not a measurement key")
        pairs.append((k, _raw(v, f"raw {k}")))
    return Raw(tuple(pairs))


def _parse_answer(body: str) -> AnswerNow:
    m = re.fullmatch(rf"(.+) p ({g.num_re(3)})", body)
    if m is None:
        raise g.GrammarError(f"answer: {body!r} is not: CLAUSE p P (one conclusion clause, then its probability)")
    con = g._parse_estimates("conclusion", m[1])
    if not isinstance(con, g.Conclusion) or len(con.answers) != 1:
        raise g.GrammarError(f"answer: {body!r} holds more than one answer")
    p = g._num(m[2], 3, "p")
    if p > 1:
        raise g.GrammarError(f"answer: probability {p} above 1")
    return AnswerNow(con.answers[0], p)


def _parse_stop(body: str) -> StopLine:
    p3 = g.num_re(3)
    m = re.fullmatch(
        rf"({'|'.join(STOP_CODES)}) p ({p3}) (>=|<) ({p3}) after (0|[1-9]\d{{0,3}}) of ([1-9]\d{{0,3}})(?: best (.+))?",
        body,
    )
    if m is None:
        raise g.GrammarError(f"stop: {body!r} is not: CODE p P >=|< C after N of B [best EXPERIMENT eig E cost C]")
    best = None if m[7] is None else _parse_alternative(m[7], "stop")
    return StopLine(m[1], float(m[2]), float(m[4]), int(m[5]), int(m[6]), m[3] == ">=", best)


PARSERS: dict[str, Callable[[str], AuditBody]] = {
    "provenance": _parse_provenance,
    "twin": _parse_twin,
    "reason": _parse_reason,
    "raw": _parse_raw,
    "answer": _parse_answer,
    "stop": _parse_stop,
    "source": parse_source,  # a bought observation's origin (world/source.py)
}
