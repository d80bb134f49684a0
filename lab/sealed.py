"""The agent's own process: how the evaluator runs an investigation out of the truth's reach.

The evaluator's process holds the world (the sim bench's nodes run there, on a sealed ipc graph) and every
key that matters: it resets the world (role "evaluator") and reads the truth (role "grader"). The agent and
the lab's belief engine run in a child process that gets only what a lab may know:

- the question, the perceived scene (no seed, no hidden property), the graph's URL and the "lab" keys;
- an RNG seed of its own, drawn independently of the world's seed (recorded in the evaluation's row).

It runs the experiments over the bus (skills/execute), as any lab would, and sends back its conclusion and
steps as JSON: the evaluator never unpickles anything the agent's process wrote. Whatever the agent tries
in its own process finds no truth there; whatever it asks of the bus beyond the lab's role is refused, and
the refusal is recorded in the evaluator's process (`loopylab.bus.access.refusals`).

    proc = AgentProcess.start()          # early: the child imports while the bench starts
    report = proc.run(AgentJob(...))     # the investigation, in the child; an AgentReport back
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from loopylab.lab.notebook import Notebook
from loopylab.sim.secret import AGENT_FLAG
from loopylab.sim.secret import ENV as WORLD_SECRET_ENV
from loopylab.world import notebook as g

log = logging.getLogger("loopylab.sealed")

AGENT_TIMEOUT_S = 1800.0  # one investigation, at most (a stuck agent must not hold a worker forever)


@dataclass
class AgentJob:
    """Everything the agent's process is given (and nothing else)."""

    agent: str
    agent_seed: int  # its own RNG seed: not the world's
    question: g.Question
    scene: dict  # the perceived SceneSpec, as a dict
    url: str  # the sealed graph
    keys: bytes  # GraphKeys.only("lab").dumps()
    epoch_ns: int  # the world the experiments are for (the reset's reply)
    confidence: float = 0.9
    n_particles: int = 1500
    record_regret: bool = True
    graph: str = "unknown"  # the bench graph, for the notebook's provenance
    stream: bool = False  # send each notebook entry as it is written (`loopylab run`'s live notebook)
    posterior: bool = False  # send the final belief's particles (the report's posterior plot)
    lacks: tuple[str, ...] = ()  # skills the lab's rig does not have (its candidates leave them out)
    buy: dict | None = None  # lab.buying.BuyConfig fields: draft a bounty for what the rig cannot run


@dataclass
class StepReport:
    experiment: str
    ok: bool
    eig: float | None = None
    regret: float | None = None
    answer: Any = None
    p_within: float = 0.0
    half_width: float | None = None


@dataclass
class AgentReport:
    """What the agent's process sends back (read from JSON, checked here)."""

    conclusion: g.Conclusion
    steps: list[StepReport] = field(default_factory=list)
    decision_s: list[float] = field(default_factory=list)
    notebook_text: str = ""  # the policy's view
    notebook_audit: str = ""  # with its audit lines (`loopylab notebook replay` reads these)
    tables_s: float = 0.0
    stop: dict = field(default_factory=dict)  # {code, text, met}
    wall_s: float = 0.0
    posterior: dict = field(default_factory=dict)  # {object: {box, weights, samples: {param: [...]}}} if asked
    # the final belief about the question's quantity (lab/grading.belief_sample), for the proper scores
    belief_values: list[float] = field(default_factory=list)
    belief_weights: list[float] = field(default_factory=list)
    bounty: dict = field(default_factory=dict)  # a drafted bounty (lab.buying.BountyDraft.to_dict), if any

    def belief_sample(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.belief_values or len(self.belief_values) != len(self.belief_weights):
            return None
        values, weights = np.asarray(self.belief_values, float), np.asarray(self.belief_weights, float)
        if not (np.all(np.isfinite(values)) and np.all(weights >= 0) and weights.sum() > 0):
            return None  # the grader takes nothing malformed from the agent's side
        return values, weights / weights.sum()

    @property
    def experiments(self) -> int:
        return len(self.steps)

    def to_json(self) -> str:
        d = asdict(self)
        d["conclusion"] = [_answer_json(a) for a in self.conclusion.answers]
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> AgentReport:
        d = json.loads(text)
        if not isinstance(d, dict) or not isinstance(d.get("conclusion"), list):
            raise ValueError("the agent's process sent no conclusion")
        answers = tuple(_answer_from(a) for a in d["conclusion"])
        return cls(
            g.Conclusion(answers),
            [StepReport(**s) for s in d.get("steps", [])],
            [float(x) for x in d.get("decision_s", [])],
            str(d.get("notebook_text", "")),
            str(d.get("notebook_audit", "")),
            float(d.get("tables_s", 0.0)),
            dict(d.get("stop") or {}),
            float(d.get("wall_s", 0.0)),
            dict(d.get("posterior") or {}),
            [float(x) for x in d.get("belief_values", [])],
            [float(x) for x in d.get("belief_weights", [])],
            dict(d.get("bounty") or {}),
        )


def _answer_json(a: g.Clause) -> dict:
    """An answer travels as its one-clause text (its ClauseForm parses it back), or as the exact values its form
    declares (`ClauseForm.exact`): no clause type needs a branch here."""
    form = g.form_of(a)
    if form is not None and form.exact is not None:
        return {"clause": form.name, "exact": form.exact[0](a)}
    return {"text": a.render()}


def _answer_from(d: dict) -> g.Clause:
    if isinstance(d, dict) and "exact" in d:
        form = g.CLAUSE_FORMS.get(str(d.get("clause")))
        if form is None or form.exact is None or not isinstance(d["exact"], list):
            raise ValueError(f"the agent's process sent {d!r}: no clause travels so")
        try:
            return form.exact[1](d["exact"])
        except (IndexError, TypeError, ValueError) as e:
            raise ValueError(f"the agent's process sent a malformed {form.name}: {d['exact']!r} ({e})") from None
    if not isinstance(d, dict) or not isinstance(d.get("text"), str):
        raise ValueError(f"the agent's process sent {d!r} where an answer's text belongs")
    try:
        body = g.parse_body("conclusion", d["text"])
    except g.GrammarError as e:
        raise ValueError(f"the agent's process sent an answer outside the grammar: {e}") from None
    assert isinstance(body, g.Conclusion)
    if len(body.answers) != 1:
        raise ValueError(f"the agent's process sent {d['text']!r} where one answer belongs")
    return body.answers[0]


class AgentProcess:
    """A child process waiting for one AgentJob on its stdin; its JSON report comes back on its stdout."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls) -> AgentProcess:
        # no graph, no keys, no world secret (sim/secret.py)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPYLAB_BUS") and k != WORLD_SECRET_ENV}
        env[AGENT_FLAG] = "1"  # sim/secret.py refuses the builder's secret here
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")  # worlds run in parallel already: BLAS threads would only spin against them
        proc = subprocess.Popen(
            [sys.executable, "-m", "loopylab.lab.sealed"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # the evaluator's signals are not the agent's business
        )
        return cls(proc)

    def run(
        self, job: AgentJob, timeout: float = AGENT_TIMEOUT_S, on_entry: Callable[[Any], None] | None = None
    ) -> AgentReport:
        """The investigation in the child. With `job.stream`, each notebook entry it writes is handed to
        `on_entry` (a NotebookEntry, rebuilt from JSON) as it comes."""
        if job.stream:
            return self._run_streaming(job, timeout, on_entry or (lambda e: None))
        try:
            out, _ = self.proc.communicate(pickle.dumps(job), timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"the agent's process ran past {timeout:.0f} s") from None
        return self._report(out)

    def _run_streaming(self, job: AgentJob, timeout: float, on_entry: Callable[[Any], None]) -> AgentReport:
        from loopylab.bus import NotebookEntry

        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self.kill()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(pickle.dumps(job))
            self.proc.stdin.close()
            last = b""
            for line in self.proc.stdout:
                if line.startswith(b'{"entry": '):
                    on_entry(NotebookEntry(**json.loads(line)["entry"]))
                elif line.strip():
                    last = line
            self.proc.wait()
        finally:
            timer.cancel()
        if expired.is_set():
            raise TimeoutError(f"the agent's process ran past {timeout:.0f} s")
        return self._report(last)

    def _report(self, out: bytes) -> AgentReport:
        if self.proc.returncode != 0:
            raise RuntimeError(f"the agent's process failed (exit {self.proc.returncode}): {_last_line(out)}")
        return AgentReport.from_json(out.decode().strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class LocalAgent:
    """The same investigation in this process: for a trusted agent (generating expert data), never for grading
    an agent under test."""

    def run(
        self, job: AgentJob, timeout: float = AGENT_TIMEOUT_S, on_entry: Callable[[Any], None] | None = None
    ) -> AgentReport:
        return _investigate(job, on_entry if job.stream else None)

    def kill(self) -> None:
        """Nothing to stop: the investigation ran in this process."""


class LabGateway:
    """What the agent's process can reach of a bench: a sealed ipc graph of its own (fresh keys) with one node,
    in this (the grader's) process, that forwards `skills/execute` to the bench and republishes
    `perception/objects`, and offers `sim/reset` (evaluator) and `sim/oracle` (grader) to those roles only. The
    bench itself stays an inproc graph (its lockstep traffic stays in memory); the agent holds the gateway
    graph's `lab` keys, and every refusal on it is recorded here (`refusals(gateway.keys.domain)`). A skill the
    lab's rig lacks (`lacks`: no gripper, so no weigh) is answered `this rig cannot ...` here, whatever the agent asks."""

    LAB = "skills/execute"  # the one thing a lab asks of a bench

    def __init__(self, bench: Any, url: str | None = None, lacks: tuple[str, ...] = ()):
        from loopylab.bus import GraphKeys, Node, ObjectPoses

        self.bench, self.lacks = bench, tuple(lacks)
        self.url = url or f"ipc://lab{uuid.uuid4().hex[:12]}"
        self.keys = GraphKeys.generate(f"lab-{uuid.uuid4().hex[:12]}")
        self.node = Node("bench_gateway", self.url, keys=self.keys.only("node"))
        self.node.service(self.LAB, self._forward(self.LAB))
        if getattr(bench, "has_sim", True):  # a rig's bench (HardwareBench) has neither: none is offered
            self.node.service("sim/reset", self._forward("sim/reset"), allow=("evaluator",))
            self.node.service("sim/oracle", self._forward("sim/oracle"), allow=("grader",))
        self._poses = self.node.publisher("perception/objects", ObjectPoses)
        # the newest poses, undecoded, until the relay thread sends them on: the bench publishes them at the
        # sim's rate (3,711 in one com world) and decoding each one here cost the bench's I/O thread more than
        # the lab gains from them
        self._pending: list[Any] | None = None
        self._next = 0.0  # monotonic time before which nothing more is relayed
        self._closed = False
        self._cv = threading.Condition()
        self._relayer = threading.Thread(target=self._relay_latest, name="bench_gateway:poses", daemon=True)
        self._relayer.start()
        self._sub = bench.node.subscribe(
            "perception/objects", ObjectPoses, callback=self._keep, raw=True, mode="latest"
        )

    POSES_HZ = 30.0  # the lab reads where objects are after each experiment: no need for the sim's full rate

    def _keep(self, _topic: str, frames: list[Any], _recv_ns: int) -> None:
        """(the bench node's I/O thread) The newest poses replace any not yet relayed; no decoding here."""
        with self._cv:
            first = self._pending is None
            self._pending = frames
            if first:  # the relay thread waits for a first one; newer ones need not wake it
                self._cv.notify()

    def _relay_latest(self) -> None:
        """Sends on the newest poses at most POSES_HZ times a second, and always the last of a burst (a lab that
        reads where the objects came to rest must see where they came to rest)."""
        from loopylab.bus import codec

        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                wait = self._next - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)  # newer poses replace the pending ones meanwhile
                    continue
                frames, self._pending = self._pending, None
                self._next = time.monotonic() + 1.0 / self.POSES_HZ
            try:
                self._poses.publish(codec.from_frames(frames)[1])
            except (codec.DecodeError, TypeError) as e:  # (a type other than ObjectPoses: TypeError)
                log.warning("the bench's perception/objects could not be relayed: %s", e)

    def _forward(self, service: str):
        def handler(req: Any) -> Any:
            if service == self.LAB and isinstance(req, dict) and req.get("skill") in self.lacks:
                return {"ok": False, "measurements": {}, "error": f"this rig cannot {req['skill']}"}
            return self.bench.call(service, req, timeout=300.0)

        return handler

    def close(self) -> None:
        self.bench.node.unsubscribe(self._sub)
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._relayer.join(timeout=5.0)  # it may be publishing: the node's sockets close after it
        self.node.close()
        from loopylab.bus.directory import stop_local

        stop_local(self.url)  # this process served the gateway graph's directory

    def __enter__(self) -> LabGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_line(out: bytes) -> str:
    lines = out.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


# -- the child ----------------------------------------------------------------------------------------------


def _investigate(job: AgentJob, emit: Callable[[Any], None] | None = None) -> AgentReport:
    from loopylab.bus import BusConfig, GraphKeys, Node
    from loopylab.lab.agents import make_agent
    from loopylab.lab.forward import ForwardModel, InlineTwins
    from loopylab.lab.investigation import BusRunner, InvestigationConfig, investigate
    from loopylab.world.scene import SceneSpec

    scene = SceneSpec.from_dict(job.scene)
    node = Node("agent", BusConfig.parse(job.url).with_keys(GraphKeys.loads(job.keys)))
    runner = BusRunner(node)
    runner.epoch_ns = job.epoch_ns
    twins = InlineTwins()
    try:
        agent = make_agent(job.agent, seed=job.agent_seed)
        cfg = InvestigationConfig(
            confidence=job.confidence,
            n_particles=job.n_particles,
            record_regret=job.record_regret,
            graph=job.graph,
            seed=job.agent_seed,  # the belief engine's random numbers: the lab's own, not the world's
            lacks=tuple(job.lacks),
        )
        sinks = [emit] if emit is not None else None
        result = investigate(job.question, scene, agent, runner, ForwardModel(scene, twins), cfg, sinks)
    finally:
        runner.close()
        node.close()
        if hasattr(twins, "close"):
            twins.close()
    steps = [
        StepReport(s.experiment, s.ok, s.eig, s.regret, _plain(s.answer), s.p_within, s.half_width)
        for s in result.steps
    ]
    from loopylab.lab.grading import belief_sample

    sample = belief_sample(result.posterior, job.question) if result.posterior is not None else None
    stop = {"code": result.stop.code, "text": result.stop.text, "met": result.stop.met} if result.stop else {}
    posterior = _posterior_json(result.posterior) if job.posterior and result.posterior is not None else {}
    return AgentReport(
        result.conclusion,
        steps,
        result.decision_s,
        result.notebook.text(),
        result.notebook.full_text(),
        result.tables_s,
        stop,
        result.wall_s,
        posterior,
        [float(x) for x in sample[0]] if sample is not None else [],
        [float(x) for x in sample[1]] if sample is not None else [],
        _bounty_draft(job, result),
    )


def _bounty_draft(job: AgentJob, result: Any) -> dict:
    """The bounty the lab would post for what its rig cannot run ({} when none is worth it, or it is sure)."""
    if job.buy is None or not job.lacks or result.posterior is None or (result.stop and result.stop.met):
        return {}
    from loopylab.lab.buying import BuyConfig, draft_bounty

    scene = result.notebook.last("scene")
    draft = draft_bounty(result.posterior, scene, frozenset(job.lacks), BuyConfig(**job.buy), seed=job.agent_seed)
    return draft.to_dict() if draft is not None else {}


def _posterior_json(posterior: Any) -> dict:
    from loopylab.lab.forward import PARAM_INDEX

    return {
        o: {
            "box": [[float(lo), float(hi)] for lo, hi in post.box],
            "weights": [float(w) for w in post.weights],
            "samples": {p: [float(v) for v in post.natural(p)] for p in PARAM_INDEX},
        }
        for o, post in posterior.objects.items()
    }


class ReceivedNotebook(Notebook):
    """The agent's notebook as its process wrote it (the entries streamed, its text): what the report saves."""

    def __init__(self, question: g.Question, entries: list, text: str, full_text: str = ""):
        super().__init__(question, entries[0].investigation if entries else None)
        self.entries, self._text, self._full = list(entries), text, full_text or text

    def text(self) -> str:
        return self._text

    def full_text(self) -> str:
        return self._full


class ReceivedPosterior:
    """The agent's final belief as its process sent it: what the report's posterior plot reads."""

    @dataclass
    class _Object:
        box: list
        weights: Any
        samples: dict

        def natural(self, param: str) -> Any:
            return self.samples[param]

    def __init__(self, d: dict):
        import numpy as np

        self.objects = {
            str(o): self._Object(
                [tuple(map(float, b)) for b in v["box"]],
                np.asarray(v["weights"], float),
                {str(p): np.asarray(x, float) for p, x in v["samples"].items()},
            )
            for o, v in d.items()
        }


def _plain(x: Any) -> Any:
    """An answer as JSON carries it (a ranking's order as a list of names, a pair of numbers as floats, a model's
    name as text, a value as a float)."""
    if isinstance(x, (list, tuple)):
        return [v if isinstance(v, str) else float(v) for v in x]
    if isinstance(x, str):  # a model's name
        return x
    return None if x is None else float(x)


ORPHAN_CHECK_S = 1.0


def exit_when_orphaned(interval: float = ORPHAN_CHECK_S) -> threading.Thread:
    """Exit this process once its parent (the evaluator) is gone: an agent mid-investigation would otherwise go on
    calling a gateway that died with it (four such agents outlived a killed lab_eval by 17 minutes)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the evaluator (pid %d) is gone: the agent stops", parent)
        os._exit(3)

    t = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    t.start()
    return t


def main() -> int:
    exit_when_orphaned()
    out = os.fdopen(os.dup(1), "w")  # the report's channel; everything else the agent prints goes to stderr
    os.dup2(2, 1)
    import loopylab.lab.investigation  # noqa: F401  (imported while the evaluator starts the bench)

    job = pickle.loads(sys.stdin.buffer.read())  # from the evaluator, the trusted side
    emit = None
    if job.stream:
        from loopylab.lab.notebook import entry_to_dict

        def emit(entry: Any) -> None:
            out.write(json.dumps({"entry": entry_to_dict(entry)}) + "\n")
            out.flush()

    report = _investigate(job, emit)
    out.write(report.to_json() + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
