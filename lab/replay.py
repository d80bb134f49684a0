"""Replay a notebook: recompute every belief from its recorded observations and say where it disagrees.

A notebook the lab wrote carries what a replay needs in its audit lines (`loopylab.world.audit`): the run's
seed and the belief engine's settings (provenance), the exact scene the twin simulated (twin) and each
measurement unrounded (raw). The belief engine is a function of (seed, hypotheses, measurements)
(`lab.beliefs.Posterior`), so the same particles come out and every belief, answer and the stopping
decision must match the recorded lines exactly at their printed precision. A difference names the line.

    report = replay_file("reports/run-.../notebook.txt")     # or notebook.jsonl
    print(report.summary()); report.ok

A notebook without raw lines (written by hand, or by an older lab) replays from its rounded observations;
the report says so, and its beliefs will differ in the last digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loopylab.lab import audit, kinds
from loopylab.lab.beliefs import Measurement, Posterior
from loopylab.lab.experiments import candidate_experiments, workspace
from loopylab.lab.forward import ForwardModel, InlineTwins
from loopylab.lab.notebook import load_jsonl
from loopylab.world import audit as a
from loopylab.world import notebook as g
from loopylab.world.source import Source


class ReplayError(ValueError):
    """A notebook that cannot be replayed at all (not notebook text, or without the lines a replay needs)."""


@dataclass(frozen=True)
class Difference:
    line: int  # 1-based line of the file (a JSONL file: its record's line)
    kind: str
    recorded: str
    replayed: str

    def __str__(self) -> str:
        return f"line {self.line} ({self.kind}): recorded {self.recorded!r}, replayed {self.replayed!r}"


@dataclass
class ReplayReport:
    path: str
    lines: int = 0
    checked: int = 0  # lines whose content was recomputed and compared
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        head = (
            f"{self.path}: {self.checked} lines recomputed of {self.lines}, "
            f"{len(self.differences)} difference{'s' if len(self.differences) != 1 else ''}"
        )
        return "\n".join([head, *(f"  {d}" for d in self.differences), *(f"  note: {n}" for n in self.notes)])


def read_sections(path: str | Path) -> list[tuple[int, g.Section]]:
    """(line number, section) of a notebook file: grammar text (notebook.txt) or records (notebook.jsonl)."""
    path = Path(path)
    if not path.exists():
        raise ReplayError(f"no notebook at {path}")
    if path.suffix == ".jsonl":
        try:
            entries = load_jsonl(path)
        except ValueError as e:
            raise ReplayError(str(e)) from None
        return [(i + 1, _one(e.text, i + 1, path)) for i, e in enumerate(entries)]
    return parse_numbered(path.read_text(), str(path))


def parse_numbered(text: str, where: str = "notebook") -> list[tuple[int, g.Section]]:
    try:
        return list(enumerate(g.parse(text), start=1))
    except g.GrammarError as e:
        raise ReplayError(f"{where}: {e}") from None


def _one(line: str, n: int, path: Path) -> g.Section:
    try:
        (section,) = g.parse(line)
    except (g.GrammarError, ValueError) as e:
        raise ReplayError(f"{path}:{n}: {e}") from None
    return section


def _first(sections: list[tuple[int, g.Section]], kind: str):
    return next((s.body for _, s in sections if s.kind == kind), None)


def header(sections: list[tuple[int, g.Section]]) -> tuple[g.Question, a.Provenance, a.Twin]:
    """The question, the provenance and the twin's scene: what a replay needs before the first experiment."""
    question, prov, twin = (_first(sections, k) for k in ("question", "provenance", "twin"))
    if not isinstance(question, g.Question):
        raise ReplayError("the notebook has no question")
    if not isinstance(prov, a.Provenance) or not isinstance(twin, a.Twin):
        raise ReplayError(
            "the notebook has no provenance or twin line (the run's seed and the twin's scene): it was not "
            "written by a lab that records them, and cannot be replayed"
        )
    return question, prov, twin


def setup(sections: list[tuple[int, g.Section]], twins=None) -> tuple[g.Question, a.Provenance, Posterior]:
    """The question, provenance and a fresh belief engine as the notebook's run made it."""
    question, prov, twin = header(sections)
    forward = ForwardModel(audit.scene_of(twin), twins if twins is not None else InlineTwins())
    return question, prov, kinds.make_posterior(question, forward, None, prov.particles, None, prov.run_seed)


class _Replayer:
    """Walks a notebook's lines in order, feeding the belief engine as the investigation did."""

    def __init__(self, sections: list[tuple[int, g.Section]], report: ReplayReport, twins=None):
        self.sections, self.report = sections, report
        self.question, self.prov, self.post = setup(sections, twins)
        self.scene = _first(sections, "scene")
        # the grid of the notebook's own arm (its twin line names it): an SO-101's is not the Panda's
        self.ws = workspace(header(sections)[2].robot)
        self.failed: set[g.Experiment] = set()
        self.experiment: g.Experiment | None = None
        self.pending: tuple[int, g.Observation] | None = None  # an observation waiting for its raw line
        self.outcome: g.Observation | None = None  # the same, for a belief that reads every outcome (failures too)
        self.experiments = 0
        self.source: Source | None = None  # the current experiment's, when it was bought (world/source.py)

    def compare(self, line: int, section: g.Section, replayed: str) -> None:
        self.report.checked += 1
        recorded = section.body.render()
        if recorded != replayed:
            self.report.differences.append(Difference(line, section.kind, recorded, replayed))

    def run(self) -> None:
        for i, (line, s) in enumerate(self.sections):
            if s.kind == "experiment":
                self.source = _source_of(self.sections, i)
            if s.kind != "raw":
                self.flush()
            handler = getattr(self, f"on_{s.kind}", None)
            if handler is not None:
                handler(line, s)
        self.flush()

    def on_scene(self, line: int, s: g.Section) -> None:
        self.scene = s.body
        self.failed.clear()  # where the objects are now, what failed before may work

    def on_hypothesis(self, line: int, s: g.Section) -> None:
        assert isinstance(s.body, g.Hypothesis)
        self.post.reset(s.body)

    def on_experiment(self, line: int, s: g.Section) -> None:
        assert isinstance(s.body, g.Experiment)
        self.experiment, self.experiments = s.body, self.experiments + 1

    def on_observation(self, line: int, s: g.Section) -> None:
        assert isinstance(s.body, g.Observation) and self.experiment is not None
        if hasattr(self.post, "observe_outcome"):
            self.outcome = s.body
        if s.body.error is not None:
            self.failed.add(self.experiment)
        else:
            self.pending = (line, s.body)

    def on_raw(self, line: int, s: g.Section) -> None:
        assert isinstance(s.body, a.Raw)
        self.take_outcome(s.body.as_dict())
        if self.pending is None or self.experiment is None:
            return  # the raw measurements of a failed experiment: nothing was learnt from them
        obs_line, obs = self.pending
        self.pending = None
        values = s.body.as_dict()
        self.report.checked += 1
        try:
            rounded = g.Observation.from_measurements(self.experiment.skill, values)
            m = Measurement.from_reply(self.experiment, values)
        except KeyError as e:
            self.report.differences.append(Difference(line, "raw", s.body.render(), f"missing measurement {e}"))
            return
        if rounded.render() != obs.render():
            self.report.differences.append(Difference(obs_line, "observation", obs.render(), rounded.render()))
        self.take(m)

    def take(self, m: Measurement) -> None:
        """A measurement into the belief: a bought one with its rig's noise factor, a flagged one not at all."""
        if self.source is not None:
            if not self.source.used:
                return
            m.noise = self.source.noise
        self.post.update(m)

    def take_outcome(self, values: dict) -> None:
        """An experiment's outcome, failed or not, into a belief that reads them (lab/attached.py)."""
        if self.outcome is not None and self.experiment is not None:
            self.post.observe_outcome(self.experiment, self.outcome.error, values)  # type: ignore[attr-defined]
        self.outcome = None

    def flush(self) -> None:
        """An observation without a raw line: replay it from its rounded values (approximately)."""
        if self.outcome is not None:  # its rounded values, by measurement key
            keys = {k: mk for fs in g.OBS_FIELDS.values() for k, mk, _ in fs}
            self.take_outcome({keys[k]: v for k, v in self.outcome.values})
        if self.pending is None or self.experiment is None:
            return
        line, obs = self.pending
        self.pending = None
        if self.source is None:
            self.report.notes.append(f"line {line}: no raw line; replayed from the rounded observation")
        self.take(Measurement.from_observation(self.experiment, obs))

    def on_belief(self, line: int, s: g.Section) -> None:
        self.compare(line, s, self.post.belief().render())

    def on_answer(self, line: int, s: g.Section) -> None:
        self.compare(line, s, audit.answer_now(self.post.answer(self.prov.confidence)).render())

    def on_stop(self, line: int, s: g.Section) -> None:
        stop = s.body
        assert isinstance(stop, a.StopLine)
        ans = self.post.answer(self.prov.confidence)
        code = self.expected_stop(stop.code, ans.confidence)
        best = stop.best if code == "not_worth" else None
        met = ans.confidence >= self.prov.confidence
        again = a.StopLine(
            code, ans.confidence, self.prov.confidence, self.experiments, self.question.max_experiments, met, best
        )
        self.compare(line, s, again.render())

    def expected_stop(self, recorded: str, p: float) -> str:
        """The stopping rule (lab.stopping.stop_reason) on the replayed state; which of `not_worth` and `agent`
        is the agent's own judgement (its EIG), so the recorded one of those stands when the rest agrees."""
        if p >= self.prov.confidence:
            return "confident"
        if recorded == "max_steps":
            return recorded
        if self.experiments >= self.question.max_experiments:
            return "budget"
        scene = self.scene if isinstance(self.scene, g.Scene) else None
        if scene is not None and not candidate_experiments(scene, self.question, exclude=self.failed, ws=self.ws):
            return "no_candidates"
        return recorded if recorded in ("not_worth", "agent") else "not_worth"


def _source_of(sections: list[tuple[int, g.Section]], i: int) -> Source | None:
    """The source line of the experiment at `i` (before the next experiment), if it was bought."""
    for _, s in sections[i + 1 :]:
        if s.kind == "experiment":
            return None
        if s.kind == "source":
            assert isinstance(s.body, Source)
            return s.body
    return None


def replay_sections(sections: list[tuple[int, g.Section]], where: str = "notebook", twins=None) -> ReplayReport:
    report = ReplayReport(where, lines=len(sections))
    replayer = _Replayer(sections, report, twins)
    code, git = audit.code_version()
    if (replayer.prov.code, replayer.prov.git) != (code, git):
        report.notes.append(
            f"recorded with code {replayer.prov.code} {replayer.prov.git or ''}".rstrip()
            + f", replayed with {code} {git or ''}".rstrip()
        )
    replayer.run()
    return report


def belief_at_end(sections: list[tuple[int, g.Section]], twins=None) -> tuple[g.Question, a.Provenance, Posterior]:
    """The question, provenance and the belief engine as it stood at the end of a notebook (every measurement
    replayed): where an investigation goes on from (lab/collect.py, with the data it bought)."""
    replayer = _Replayer(sections, ReplayReport("notebook", lines=len(sections)), twins)
    replayer.run()
    return replayer.question, replayer.prov, replayer.post


def replay_text(text: str, where: str = "notebook", twins=None) -> ReplayReport:
    return replay_sections(parse_numbered(text, where), where, twins)


def mismatches(text: str) -> int:
    """How many lines of a notebook's text differ on replay (a notebook that cannot be replayed: 1)."""
    try:
        return len(replay_text(text).differences)
    except ReplayError:
        return 1


def replay_file(path: str | Path, twins=None) -> ReplayReport:
    return replay_sections(read_sections(path), str(path), twins)


__all__ = [
    "Difference",
    "ReplayError",
    "ReplayReport",
    "belief_at_end",
    "header",
    "mismatches",
    "read_sections",
    "replay_file",
    "replay_text",
    "setup",
]
