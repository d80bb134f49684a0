"""The notebook: every step of an investigation as a structured record (`loopylab.bus.NotebookEntry`) and as
grammar text. Sinks receive each entry as it is written: the bus (`lab/notebook`), the live console
(rich) and files (JSONL of the records, and the plain notebook text).

A notebook holds the policy's lines and the audit lines (`loopylab.world.audit`: provenance, the twin's scene,
the reason for each experiment, raw measurements, answers, the stopping reason). `text()` is what the policy
reads (no audit lines); `full_text()` is the whole record, saved as notebook.txt and replayable
(`loopylab notebook replay`).

`Notebook` belongs to the investigation. Agents get a `NotebookView`: the question, scene, sections,
text and the belief engine, and nothing that reaches the bus (see lab/agents.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from loopylab.bus import NotebookEntry
from loopylab.world import notebook as g
from loopylab.world.audit import AnswerNow, AuditBody

Sink = Callable[[NotebookEntry], None]


def _plain(x):
    """JSON-safe copy (numpy scalars/arrays to Python)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


class Notebook:
    def __init__(self, question: g.Question, investigation: str | None = None, sinks: list[Sink] | None = None):
        self.question = question
        self.investigation = investigation or uuid.uuid4().hex[:12]
        self.sinks: list[Sink] = list(sinks or [])
        self.entries: list[NotebookEntry] = []
        self.sections: list[g.Section] = []

    def add(self, body: g.Body | AuditBody, data: dict | None = None) -> NotebookEntry:
        section = g.Section(g.kind_of(body), body)
        entry = NotebookEntry(
            investigation=self.investigation,
            step=len(self.entries),
            kind=section.kind,
            text=section.render(),
            data=_plain(data or {}),
            stamp_ns=time.time_ns(),
        )
        self.entries.append(entry)
        self.sections.append(section)
        for sink in self.sinks:
            sink(entry)
        return entry

    def text(self) -> str:
        """The notebook as the policy reads it (audit lines left out)."""
        return g.render(self.policy_sections)

    def full_text(self) -> str:
        """Every line, the audit lines included (notebook.txt; what `loopylab notebook replay` reads)."""
        return g.render(self.sections)

    @property
    def policy_sections(self) -> list[g.Section]:
        return g.policy_sections(self.sections)

    def last(self, kind: str) -> g.Body | AuditBody | None:
        return next((s.body for s in reversed(self.sections) if s.kind == kind), None)

    @property
    def experiments_used(self) -> int:
        return sum(s.kind == "experiment" for s in self.sections)

    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write notebook.jsonl (records) and notebook.txt (grammar text, audit lines included)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        jl, txt = folder / "notebook.jsonl", folder / "notebook.txt"
        jl.write_text("".join(json.dumps(entry_to_dict(e)) + "\n" for e in self.entries))
        txt.write_text(self.full_text())
        return jl, txt


def entry_to_dict(e: NotebookEntry) -> dict:
    return _plain(asdict(e))


def load_jsonl(path: str | Path) -> list[NotebookEntry]:
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        if line.strip():
            try:
                out.append(NotebookEntry(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{path}:{i + 1}: not a notebook record ({e})") from None
    return out


@dataclass(frozen=True)
class NotebookView:
    """What an agent may see: the question, the perceived scene, the candidate grid, the notebook so
    far (sections and text), the belief engine, and the budget. No bus, no ground truth."""

    question: g.Question
    scene: g.Scene
    candidates: tuple[g.Experiment, ...]
    sections: tuple[g.Section, ...]
    posterior: object = field(repr=False)  # lab.beliefs.Posterior (the agent's calculator)
    confidence: float = 0.9

    @property
    def text(self) -> str:
        return g.render(self.sections)

    @property
    def experiments_used(self) -> int:
        return sum(s.kind == "experiment" for s in self.sections)

    @property
    def budget_left(self) -> int:
        return self.question.max_experiments - self.experiments_used

    def last(self, kind: str) -> g.Body | None:
        return next((s.body for s in reversed(self.sections) if s.kind == kind), None)


# ------------------------------------------------------------------------------------------------
# sinks


def bus_sink(publisher) -> Sink:
    """Publish every entry on `lab/notebook` (publisher of NotebookEntry)."""
    return publisher.publish


def jsonl_sink(path: str | Path) -> Sink:
    """Append every entry to a JSONL file as it happens (survives a crash mid-investigation)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(entry: NotebookEntry) -> None:
        with path.open("a") as f:
            f.write(json.dumps(entry_to_dict(entry)) + "\n")

    return write


STYLE = {
    "question": "bold magenta",
    "scene": "cyan",
    "hypothesis": "yellow",
    "experiment": "bold green",
    "observation": "green",
    "belief": "blue",
    "conclusion": "bold magenta",
    **dict.fromkeys(g.AUDIT_KINDS, "dim"),
}


def console_sink(console=None, hide: tuple[str, ...] = ("twin", "raw")) -> Sink:
    """Print each entry live, coloured by kind (`hide`: kinds not printed; the long audit lines by default)."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()

    def show(entry: NotebookEntry) -> None:
        if entry.kind in hide:
            return
        body = entry.text[len(g.start_token(entry.kind)) : -len(g.end_token(entry.kind))]
        console.print(f"[dim]{entry.step:>3}[/dim] [{STYLE.get(entry.kind, '')}]{entry.kind:<11}[/] {escape(body)}")

    return show


def story_sink(console=None, confidence: float = 0.9) -> Sink:
    """Tell the investigation as a story a newcomer follows (`loopylab demo`): the question with its units,
    each experiment with the reason it was chosen, what it measured and how the belief narrowed, and the
    conclusion with why it stopped. Reads only the notebook's records (text and data)."""
    from rich.console import Console
    from rich.markup import escape

    from loopylab.lab import kinds, story

    console = console or Console()
    state: dict = {"question": None, "experiment": None, "n": 0, "scene": False, "bounds": None, "rejected": []}

    def told_here(d: dict) -> bool:
        """A belief's answer told from its record: one number (with its interval) or an order."""
        return story.scalar(d.get("answer")) or kinds.of(state["question"]).ranks is not None

    def say(label: str, text: str, style: str = "") -> None:
        console.print(f"  [{style or 'bold'}]{label:<9}[/] {escape(text)}")

    def show(entry: NotebookEntry) -> None:
        body = g.parse_body(entry.kind, entry.text[len(g.start_token(entry.kind)) : -len(g.end_token(entry.kind))])
        q, d = state["question"], entry.data
        if isinstance(body, g.Question):
            state["question"] = body
            console.print(f"[bold magenta]Question:[/] {escape(story.question_text(body))}")
            qty = story.quantity_of(body)
            if qty.meaning:
                console.print(f"  ({qty.symbol} has {escape(qty.meaning)}.)")
            right = kinds.of(body).right  # a kind graded right or wrong: "sure it has the right model"
            sure = f"it has {right}" if right else f"its answer is within {story.tolerance_text(body)}"
            console.print(
                f"  The robot may run up to {body.max_experiments} experiments. It stops when it is "
                f"{confidence:.0%} sure {sure}, or when no experiment left is worth running."
            )
        elif isinstance(body, g.Scene) and not state["scene"]:
            state["scene"] = True
            things = "; ".join(
                f"{o.name}, a {o.size:.2f} m {o.shape} at ({o.x:.2f}, {o.y:.2f}) m" for o in body.objects
            )
            console.print(f"[cyan]The world:[/] {escape(things)} (hidden: its mass, friction and bounciness)")
        elif isinstance(body, g.Hypothesis):
            console.print(f"[yellow]Prior:[/] {escape(story.hypothesis_text(body, q))}")
            state["bounds"] = story.prior_bounds(body, q)
            if "answer" in d and told_here(d):
                say(
                    "belief",
                    story.belief_text(
                        q, d["answer"], d.get("half_width", 0.0), d["p_within"], confidence, state["bounds"]
                    ),
                    "blue",
                )
        elif isinstance(body, g.Experiment):
            state["experiment"], state["n"] = body, state["n"] + 1
            console.print(f"[bold green]Experiment {state['n']}:[/] {escape(story.experiment_text(body))}")
            if d.get("why"):
                say("why", story.why_text(d["why"], q, body))
        elif isinstance(body, g.Observation):
            say("saw", story.observation_text(state["experiment"].skill, body), "green")
        elif isinstance(body, g.Belief):
            for r in body.estimates:  # each falsified model once, with the observation that refuted it
                if isinstance(r, g.Rejection) and r not in state["rejected"]:
                    state["rejected"].append(r)
                    say("rejected", story.rejection_text(r), "red")
            if "answer" in d and told_here(d):
                bounds = state["bounds"]
                text = story.belief_text(q, d["answer"], d.get("half_width", 0.0), d["p_within"], confidence, bounds)
                say("belief", text, "blue")
        elif isinstance(body, AnswerNow) and not told_here({"answer": body.answer.value}):
            # an answer that is no one number (a model, a pair of numbers, none): told from its clause
            say("belief", story.answer_text(q, body.answer, body.p), "blue")
        elif isinstance(body, g.Conclusion):
            text = story.conclusion_text(q, body, d, confidence, state["bounds"])
            console.print(f"[bold magenta]Conclusion:[/] {escape(text)}")
            if d.get("stop_text"):
                say("stopped", f"because {d['stop_text']}.", "magenta")

    return show
