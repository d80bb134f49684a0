"""The scientific loop: question -> scene -> (agent proposes -> experiment -> observation -> belief)* ->
conclusion.

The investigation owns everything with side effects: the notebook and its sinks, the experiment runner
(skills over the bus) and the belief engine's updates. The agent only proposes, from a read-only
`NotebookView`. The scene it works on is a *perceived* scene (no hidden properties); the ground truth
stays with the evaluator (lab/evaluation.py), which reads it through `sim/oracle`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from loopylab.bus import ObjectPoses
from loopylab.bus.node import ServiceClient
from loopylab.lab import audit, kinds
from loopylab.lab.beliefs import Measurement, NoiseModel, Posterior
from loopylab.lab.design import DesignConfig, regret_vs_random
from loopylab.lab.experiments import candidate_experiments, workspace
from loopylab.lab.forward import ForwardModel
from loopylab.lab.notebook import Notebook, NotebookView, Sink
from loopylab.lab.stopping import Stop, dominant_systematic, stop_reason
from loopylab.world import notebook as g
from loopylab.world.audit import Raw as AuditRaw

log = logging.getLogger("loopylab.lab")


class ExperimentRunner(Protocol):
    def execute(self, exp: g.Experiment) -> dict:
        """Run one experiment; reply {ok, measurements, error} as the `skills/execute` service."""
        ...


class BusRunner:
    """Runs experiments through the `skills/execute` service (the actuation skills, safety gate, driver)."""

    def __init__(self, node, timeout: float = 120.0):
        # the one service the lab's experiments use, on a client of its own (closed with the runner)
        self._client = ServiceClient(node, "skills/execute")
        self.timeout = timeout
        self._objects = node.subscribe("perception/objects", ObjectPoses, mode="latest")
        # the world the experiments are for (the sim/scene epoch a sim/reset replied): the skills node waits
        # for that world's scene before it moves; 0 = whatever world it knows (set by lab.bench.Bench.reset)
        self.epoch_ns = 0

    def request(self, req: dict) -> dict:
        """A skills/execute request for the current world."""
        return {**req, "epoch_ns": self.epoch_ns} if self.epoch_ns else req

    def execute(self, exp: g.Experiment) -> dict:
        return self.call(exp.request())

    def call(self, req: dict, timeout: float | None = None) -> dict:
        return self._client.call(self.request(req), timeout=self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """Close the client's socket here and now (left to the garbage collector, a ZeroMQ socket may be
        closed from another thread, which libzmq does not survive)."""
        self._client.close()

    def poses(self) -> dict[str, tuple[float, float]] | None:
        """Where perception (or mocap) sees the objects now: {label: (x, y)}; None before any message."""
        msg = self._objects.latest()
        if msg is None:
            return None
        return {o.label: (float(o.position[0]), float(o.position[1])) for o in msg.objects}


def shifts(before: dict | None, after: dict | None) -> dict[str, float]:
    """How far each tracked object moved between two `poses()` ({label: (x, y)}): {"shift_LABEL_m": metres}."""
    if not before or not after:
        return {}
    return {
        f"shift_{k}_m": float(np.hypot(after[k][0] - x, after[k][1] - y)) for k, (x, y) in before.items() if k in after
    }


def moved_scene(scene: g.Scene, poses: dict | None, threshold: float = 0.01) -> g.Scene | None:
    """The scene with the objects where they are now, or None if none moved by `threshold` metres."""
    if not poses:
        return None
    objs, moved = [], False
    for o in scene.objects:
        x, y = poses.get(o.name, (o.x, o.y))
        moved |= abs(x - o.x) >= threshold or abs(y - o.y) >= threshold
        objs.append(g.SceneObject(o.name, o.shape, o.size, float(g.fmt(x, 2)), float(g.fmt(y, 2))))
    return g.Scene(tuple(objs)) if moved else None


def grammar_scene(spec) -> g.Scene:
    """The notebook's scene line from a (perceived) `loopylab.world.scene.SceneSpec`."""
    return g.Scene(
        tuple(
            g.SceneObject(
                o.label,
                o.shape,
                float(g.fmt(o.size, 2)),
                float(g.fmt(o.position[0], 2)),
                float(g.fmt(o.position[1], 2)),
            )
            for o in spec.objects
        )
    )


@dataclass
class InvestigationConfig:
    confidence: float = 0.9  # required P(answer within tolerance) to conclude
    n_particles: int = 1500
    record_regret: bool = False  # score every candidate at every step (for evaluation: EIG regret)
    max_steps: int = 200  # guard against an agent that never concludes
    seed: int = 0  # the run's own random numbers (the belief's particles): never the world's seed
    graph: str = "unknown"  # the bench graph it ran on, for the notebook's provenance (a name or a path)
    lacks: tuple[str, ...] = ()  # skills the lab's rig does not have (no gripper: weigh, lift, drop, place)


def _stop_of(
    question,
    post: Posterior,
    p_within: float,
    cfg: InvestigationConfig,
    steps: list,
    candidates: tuple,
    agent,
    concluded: bool,
) -> tuple[Stop, tuple | None]:
    """Why it stopped, and the expert's last choice (experiment, eig, cost) when it judged it not worth running."""
    dec = getattr(agent, "last_decision", None)
    min_gain = getattr(getattr(agent, "design", None), "min_gain", DesignConfig.min_gain)
    worthless = dec is not None and hasattr(dec, "worth_nothing") and dec.worth_nothing(min_gain)
    best = (dec.experiment, dec.eig, dec.cost) if worthless else None
    stop = stop_reason(
        question,
        p_within,
        cfg.confidence,
        len(steps),
        len(candidates),
        best,
        max_steps_hit=not concluded,
        systematic=dominant_systematic(post, question) if best is not None else None,
    )
    return stop, best


@dataclass
class StepRecord:
    experiment: str
    ok: bool
    eig: float | None = None
    regret: float | None = None
    answer: object = None  # the belief engine's answer after this experiment
    p_within: float = 0.0
    half_width: float | None = None  # of the answer's interval holding `confidence` of the belief


@dataclass
class InvestigationResult:
    question: g.Question
    conclusion: g.Conclusion
    notebook: Notebook
    steps: list[StepRecord] = field(default_factory=list)
    wall_s: float = 0.0
    decision_s: list[float] = field(default_factory=list)
    posterior: Posterior | None = None
    tables_s: float = 0.0  # building the twin tables (before the first decision)
    stop: Stop | None = None  # why it stopped

    @property
    def experiments(self) -> int:
        return len(self.steps)


def answer_value(clause: g.Clause):
    """The answer a clause states, as the step records and the kind grades it (a pair or an order as a list)."""
    v = clause.value
    return list(v) if isinstance(v, tuple) else v


def _answer_value(conclusion: g.Conclusion):
    return answer_value(conclusion.answers[0])


def _measurement_data(reply: dict) -> dict:
    """The reply's scalar measurements (profiles left out of the notebook record)."""
    ms = reply.get("measurements") or {}
    return {k: v for k, v in ms.items() if isinstance(v, (int, float, str, bool))}


def investigate(
    question: g.Question,
    scene,
    agent,
    runner: ExperimentRunner,
    forward: ForwardModel,
    cfg: InvestigationConfig | None = None,
    sinks: list[Sink] | None = None,
    noise: NoiseModel | None = None,
    investigation: str | None = None,
) -> InvestigationResult:
    """Run one investigation to its conclusion. `scene` is the perceived SceneSpec."""
    cfg = cfg or InvestigationConfig()
    t0 = time.perf_counter()
    gscene = grammar_scene(scene)
    ws = workspace(getattr(scene, "robot", None))  # the table this arm reaches, and the levels it can run
    failed: set[g.Experiment] = set()  # failed where the objects stand: not offered again until one moves away
    refused: set[tuple] = set()  # pushes and strikes that failed on contact (`contact_key`): never offered again
    candidates = _grid(gscene, question, failed, cfg.lacks, ws, refused)
    nb = Notebook(question, investigation, sinks)
    nb.add(question)
    nb.add(audit.provenance(agent, cfg.graph, cfg.seed, cfg.n_particles, cfg.confidence))
    nb.add(gscene)
    nb.add(audit.twin(forward.scene))  # what the belief engine's twin simulates, for a replay to build again
    t_tables = time.perf_counter()
    if getattr(agent, "needs_tables", False) or cfg.record_regret:
        # the expert scores the whole grid: build every level's twin table up front, not inside a decision
        forward.prepare(list(candidates) + ([question.action] if question.action else []))
    tables_s = time.perf_counter() - t_tables
    post = kinds.make_posterior(question, forward, None, cfg.n_particles, noise, cfg.seed)
    rng = np.random.default_rng([cfg.seed, 0x4E6])
    steps: list[StepRecord] = []
    decision_s: list[float] = []
    conclusion = None
    for _ in range(cfg.max_steps):
        view = NotebookView(question, gscene, candidates, tuple(nb.policy_sections), post, cfg.confidence)
        td = time.perf_counter()
        proposal = agent.propose(view)
        if isinstance(proposal, g.Experiment):
            decision_s.append(time.perf_counter() - td)
        if isinstance(proposal, g.Hypothesis):
            post.reset(proposal)
            # the answer before any experiment (estimates only: a ranking's or prediction's draws the
            # belief engine's random numbers, which would change the rest of the investigation)
            prior = post.answer(cfg.confidence) if question.kind in g.PARAMS else None
            nb.add(proposal, data=_answer_data(prior) if prior is not None else {})
            if prior is not None:
                nb.add(audit.answer_now(prior))
        elif isinstance(proposal, g.Experiment):
            steps.append(_run_experiment(proposal, agent, nb, post, runner, candidates, cfg, rng))
            if not steps[-1].ok:
                failed.add(proposal)
            # experiments move objects: keep the scene (and so the grid of clear paths) current
            now = moved_scene(gscene, runner.poses() if hasattr(runner, "poses") else None)
            if now is not None:
                ran = proposal in candidates and proposal.skill in SLIDING  # the arm tried it (outside the grid: not)
                if ran and not steps[-1].ok and moved(gscene, now, proposal.object):
                    # it failed after the hand met the object (a planning refusal moves nothing): the same hand
                    # meets it the same way from that side wherever it stands (a tall block pressed on its top)
                    refused.add(contact_key(proposal))
                if displacement(gscene, now) > FAILED_UNTIL_MOVED_M:
                    failed.clear()
                gscene = now
                nb.add(gscene)
            candidates = _grid(gscene, question, failed, cfg.lacks, ws, refused)
        elif isinstance(proposal, g.Conclusion):
            conclusion = proposal
            break
        else:
            raise TypeError(
                f"agent {getattr(agent, 'name', agent)!r} proposed {type(proposal).__name__}, "
                "not a Hypothesis, Experiment or Conclusion"
            )
    concluded = conclusion is not None
    if conclusion is None:  # the agent never concluded: the belief engine answers for it
        log.warning("agent did not conclude within %d steps; concluding with the belief engine", cfg.max_steps)
        conclusion = post.answer(cfg.confidence).conclusion
    ans = post.answer(cfg.confidence)
    stop, best = _stop_of(question, post, ans.confidence, cfg, steps, candidates, agent, concluded)
    nb.add(
        conclusion,
        data={"p_within": ans.confidence, "experiments": len(steps), "stop": stop.code, "stop_text": stop.text},
    )
    nb.add(audit.stop_line(stop, question, ans.confidence, cfg.confidence, len(steps), best))
    return InvestigationResult(
        question, conclusion, nb, steps, time.perf_counter() - t0, decision_s, post, tables_s, stop
    )


SLIDING = ("push", "strike")
# A failed experiment stays off the grid until some object moved this far: a weigh or a lift puts its object back a
# centimetre or two off, and the drop that fell out of reach there would fail again (dev 1000001: six of ten calls).
FAILED_UNTIL_MOVED_M = 0.03


def displacement(before: g.Scene, after: g.Scene) -> float:
    """The farthest any object of `before` stands from where it stood (metres; objects missing from `after` count 0)."""
    far = 0.0
    for o in before.objects:
        if o.name in after.names:
            a = after.get(o.name)
            far = max(far, float(np.hypot(a.x - o.x, a.y - o.y)))
    return far


def contact_key(exp: g.Experiment) -> tuple:
    """What a push or strike that failed on contact is barred by: the object, the skill and the side the hand
    comes from (not where the object stood, nor how far or fast: the hand meets the object the same way)."""
    return (exp.object, exp.skill, exp.direction)


def moved(before: g.Scene, after: g.Scene, name: str) -> bool:
    """Whether object `name` stands elsewhere in `after` (the scenes round positions to a centimetre)."""
    if name not in before.names or name not in after.names:
        return False
    a, b = before.get(name), after.get(name)
    return (a.x, a.y) != (b.x, b.y)


def _grid(
    scene: g.Scene, question: g.Question, failed: set, lacks: tuple[str, ...], ws, refused: set = frozenset()
) -> tuple[g.Experiment, ...]:
    """The experiments the lab's own rig can run now (the grid in its arm's workspace, less what failed here,
    what failed on contact anywhere (`contact_key`) and the skills it lacks). A skill that failed on contact
    from two sides of an object is barred from all of them: what refused it is the object, not the side (a
    6 cm block whose top the hand pressed at 41-49 N from each of its four sides, test world 2000004)."""
    sides: dict[tuple, int] = {}
    for obj, skill, _side in refused:
        sides[(obj, skill)] = sides.get((obj, skill), 0) + 1
    return tuple(
        e
        for e in candidate_experiments(scene, question, exclude=failed, ws=ws)
        if e.skill not in lacks
        and not (e.skill in SLIDING and (contact_key(e) in refused or sides.get((e.object, e.skill), 0) >= 2))
    )


def _answer_data(ans) -> dict:
    """The belief engine's answer as the notebook records it: value (or order, or model), half-width where the
    clause has one, P(within) (or P(right))."""
    a = ans.conclusion.answers[0]
    data = {"answer": answer_value(a), "p_within": ans.confidence}
    return data if a.half_width is None else {**data, "half_width": a.half_width}


def observe(exp: g.Experiment, reply: dict) -> tuple[g.Observation, Measurement | None]:
    """A `skills/execute` reply as the notebook writes it and as the belief engine takes it (None: it failed,
    and teaches nothing)."""
    if not reply.get("ok"):
        return g.Observation.failure(reply.get("error") or "failed"), None
    try:
        obs = g.Observation.from_measurements(exp.skill, reply["measurements"])
        return obs, (Measurement.from_reply(exp, reply["measurements"]) if obs.error is None else None)
    except KeyError as e:
        return g.Observation.failure(f"missing measurement {e}"), None


def _run_experiment(
    exp: g.Experiment,
    agent,
    nb: Notebook,
    post: Posterior,
    runner: ExperimentRunner,
    candidates: tuple,
    cfg: InvestigationConfig,
    rng: np.random.Generator,
) -> StepRecord:
    rec = StepRecord(exp.render(), ok=False)
    dec = getattr(agent, "last_decision", None)
    why = dec.summary() if dec is not None and dec.experiment is exp and hasattr(dec, "summary") else None
    if cfg.record_regret and candidates:  # the evaluator's own EIG estimates, not the agent's
        rec.eig, rec.regret = regret_vs_random(post, list(candidates), exp, rng)
    nb.add(exp, data={k: v for k, v in (("eig", rec.eig), ("regret", rec.regret), ("why", why)) if v is not None})
    nb.add(audit.reason(agent, exp, len(candidates), why, rec.eig))
    # a belief about how objects hang together (lab/attached.py) reads what moved: where they stood before
    tracks = hasattr(post, "observe_outcome") and hasattr(runner, "poses")
    before = runner.poses() if tracks else None
    if exp not in candidates:
        reply = {"ok": False, "measurements": {}, "error": "not in the experiment grid of this scene"}
    else:
        try:
            reply = runner.execute(exp)
        except Exception as e:  # a timeout or a dead service is an observation, not a crash of the lab
            reply = {"ok": False, "measurements": {}, "error": f"{type(e).__name__}: {e}"}
    obs, measurement = observe(exp, reply)
    if hasattr(post, "observe_outcome"):  # failures and what moved are evidence too (lab/attached.py)
        if tracks:  # into the raw line, so that a replay reads the same
            reply = {**reply, "measurements": {**(reply.get("measurements") or {}), **shifts(before, runner.poses())}}
        post.observe_outcome(exp, obs.error, reply.get("measurements") or {})
    if measurement is not None:
        post.update(measurement)
        rec.ok = True
    elif not reply.get("ok"):
        log.info("experiment %s failed: %s", exp.render(), reply.get("error"))
    nb.add(obs, data={"measurements": _measurement_data(reply), "error": reply.get("error", "")})
    raw = AuditRaw.from_measurements(reply.get("measurements") or {})
    if raw is not None:  # the measurements unrounded, signs kept: what the belief engine used
        nb.add(raw)
    ans = post.answer(cfg.confidence)
    rec.answer, rec.p_within = _answer_value(ans.conclusion), ans.confidence
    data = _answer_data(ans)
    rec.half_width = data.get("half_width")
    nb.add(post.belief(), data={"ess": {o: p.ess for o, p in post.objects.items()}, **data})
    nb.add(audit.answer_now(ans))
    return rec
