"""Evaluation: many independent seeded worlds, each investigated by an agent on the simulated bench and
graded against the ground truth that only this module reads (`sim/oracle`).

Worlds run in parallel: a process pool by default, Ray when an address is given (`"local"` starts a
local Ray instance). Each world runs sealed (`lab.sealed`): the worker process is the grader; it runs the
bench (an inproc graph, every node a thread) and a gateway to it on a sealed ipc graph, and holds every key;
the agent and its belief engine run in a child process with the gateway graph's lab keys only, its own RNG
seed (drawn from the run's seed, never the world's) and the perceived scene. A row whose agent asked the bus
for anything beyond the lab's role is marked `cheated` and not graded.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import signal
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context

import numpy as np

from loopylab.lab import kinds
from loopylab.lab.held_out import Ungradable, on_bench
from loopylab.lab.questions import KINDS, grade, grade_answer, make_question
from loopylab.world import notebook as g

log = logging.getLogger("loopylab.eval")


@dataclass
class WorldTask:
    agent: str
    kind: str
    seed: int
    budget: int | None = None
    robot: str = "panda"
    record_regret: bool = True
    confidence: float = 0.9
    n_particles: int = 1500
    run_seed: int | None = None  # the run's own seed: the agents' RNG seeds come from it (None: drawn now)


def agent_seed(task: WorldTask) -> int:
    """The agent's RNG seed for one world: from the run's seed and the task, never the world's seed alone (the
    agent cannot invert it without the run's seed, which stays with the evaluator)."""
    base = task.run_seed if task.run_seed is not None else secrets.randbits(63)
    tag = zlib.crc32(f"{task.agent}/{task.kind}".encode())
    return int(np.random.SeedSequence([base, task.seed, tag]).generate_state(1, np.uint64)[0] >> 1)


def world_objects(kind: str, seed: int) -> int | None:
    """How many objects the world of `seed` gets for a question of `kind` (rank questions need two or more: those
    worlds get 2-4 objects; others keep the seed's own)."""
    return kinds.get(kind).n_objects(seed)


def parse_seeds(text: str) -> list[int]:
    """'0:50' (half-open range), '7', '1,5,9', or a mix: '0:10,50:60,99'."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if ":" in part:
                a, b = part.split(":", 1)
                lo, hi = int(a or 0), int(b)
                if hi <= lo:
                    raise ValueError(
                        f"seeds {part!r} in {text!r}: start {lo} is not below end {hi} "
                        "(a range is half-open, start:end)"
                    )
                out += range(lo, hi)
            else:
                out.append(int(part))
        except ValueError as e:
            if str(e).startswith("seeds "):
                raise
            raise ValueError(f"seeds must look like 0:50, 7, 1,5,9 or 0:10,50:60; got {part!r} in {text!r}") from None
    if not out:
        raise ValueError(f"no seeds in {text!r}")
    return out


def benchmark_seeds(n: int, split: str = "test", spec: str | None = None, dev_run: bool = False) -> list[int]:
    """A benchmark's worlds: the first `n` of `split`, or the seeds `spec` names (which must all be in it).
    Benchmarks report on test; any other split is refused unless `dev_run` says this is a tuning run,
    never a reported figure (`loopylab.world.splits`)."""
    from loopylab.world.splits import check_split, seeds

    if split != "test" and not dev_run:
        raise ValueError(f"benchmarks report on the test split; {split!r} needs --dev-run (a tuning run, not a result)")
    chosen = parse_seeds(spec) if spec else seeds(split, n)
    check_split(chosen, split)
    return chosen


def parse_kinds(text: str) -> list[str]:
    known = kinds.names()
    chosen = list(known) if text == "all" else [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in chosen if k not in known]
    if bad:
        raise ValueError(f"unknown question kind(s) {bad}; known: {', '.join(known)} or 'all'")
    return chosen


# ------------------------------------------------------------------------------------------------
# one world (runs inside a worker process: the grader's)

# Worlds a worker process runs, on one bench, before it is replaced (see _run_pool). A world's start-up
# (spawning the worker, its imports, the bench's nodes, the robot's meshes for sim, gate and skills) cost
# ~4 CPU-s a world when each world had its own (dev mass/sits, lead, load ~20); a reset builds a fresh
# PyBullet world, so the bench carries nothing of one world into the next but its running nodes.
WORLDS_PER_WORKER = 8

_worker_benches: dict[str, object] = {}  # robot -> this process's bench, reused world after world
_bench_worlds: dict[str, int] = {}  # robot -> worlds its current bench has run


def _worker_bench(robot: str):
    """This process's sealed sim bench of `robot`, started on first use and closed when the process exits."""
    import atexit

    from loopylab.lab.bench import sim_bench
    from loopylab.sim.secret import SEALED

    bench = _worker_benches.get(robot)
    if bench is None:
        bench = _worker_benches[robot] = sim_bench(robot=robot, seed=0, world_secret=SEALED)
        atexit.register(close_worker_benches, robot)
    return bench


def run_world_reusing_bench(task: WorldTask) -> dict:
    """`run_world` on this process's bench (`_worker_bench`). A world that crashed takes its bench with it: the
    next world starts a fresh one rather than inherit whatever broke."""
    try:
        bench = _worker_bench(task.robot)
    except Exception as e:
        return _crashed(task, f"the bench did not start: {type(e).__name__}: {e}")
    row = run_world(task, bench=bench)
    row["bench_world"] = _bench_worlds[task.robot] = _bench_worlds.get(task.robot, 0) + 1  # 1: a fresh bench
    if row["crashed"]:
        close_worker_benches(task.robot)
    return row


def close_worker_benches(robot: str | None = None) -> None:
    """Close this process's bench of `robot` (every robot's if None): an idle bench still ticks."""
    for r in [robot] if robot is not None else list(_worker_benches):
        bench = _worker_benches.pop(r, None)
        _bench_worlds.pop(r, None)
        if bench is not None:
            try:
                bench.close()
            except Exception as e:  # closing must not turn a graded world into a crash
                log.warning("closing the %s bench: %s", r, e)


def _error(question: g.Question, answer, truth: dict, outcome: float | None) -> float:
    return grade_answer(question, tuple(answer) if isinstance(answer, list) else answer, truth, outcome).error


def run_world(task: WorldTask, sealed: bool = True, bench=None) -> dict:
    """Investigate one seeded world and grade it. Never raises: a crash is a row with crashed=True.
    `sealed=False` runs a trusted agent in this process (generating expert data, not evaluating). `bench`: a
    running sealed sim bench of `task.robot` to use (its world is reset to the task's; it runs on after), instead
    of starting one: several worlds in a row pay for one start-up (lab.bench.Bench or AttachedBench)."""
    from contextlib import nullcontext

    from loopylab.lab.bench import sim_bench
    from loopylab.lab.sealed import AgentProcess, LabGateway, LocalAgent
    from loopylab.sim.secret import SEALED

    t0 = time.perf_counter()
    row = {
        **asdict(task),
        "crashed": False,
        "success": False,
        "error": None,
        "experiments": 0,
        "cheated": False,
        "ungradable": False,
    }
    agent = AgentProcess.start() if sealed else LocalAgent()  # first: it imports while the bench starts
    try:
        n_obj = world_objects(task.kind, task.seed)
        # the world builder holds the secret of the hidden properties (sim/secret.py): the agent's process never
        if bench is None:
            bench = sim_bench(robot=task.robot, seed=task.seed, n_objects=n_obj, world_secret=SEALED)
        else:
            bench = nullcontext(bench)  # the caller's: left running
        with bench as b, LabGateway(b) as gateway:
            row.update(_investigate_world(task, b, gateway, agent, n_obj))
    except Exception as e:
        row.update(crashed=True, exception=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        log.error("world %s/%s/%d crashed: %s", task.agent, task.kind, task.seed, e)
    finally:
        agent.kill()
    row["wall_s"] = time.perf_counter() - t0
    return row


def _investigate_world(task: WorldTask, bench, gateway, agent_proc, n_obj: int | None) -> dict:
    """The investigation (in the agent's process) and its grading (here, the evaluator's: it may read the
    oracle). A run whose agent touched the bus beyond the lab's role is not graded."""
    from loopylab.bus.access import refusals
    from loopylab.lab.investigation import grammar_scene

    structure = kinds.get(task.kind).structure
    scene = bench.reset(task.seed, n_obj, structure=structure)
    if scene.robot != task.robot:  # a bench the caller started (run_world's `bench`) for another arm
        raise RuntimeError(f"the bench has a {scene.robot}, the task asks for a {task.robot}")
    question = make_question(task.kind, grammar_scene(scene), task.seed, budget=task.budget)
    seed = agent_seed(task)
    result = agent_proc.run(_agent_job(task, seed, question, scene, bench, gateway))
    refused = refusals(gateway.keys.domain)
    if refused:
        log.warning(
            "world %s/%s/%d: the agent's process was refused %d time(s): not graded", *_name(task), len(refused)
        )
        refusal_names = [f"{r.service} as {r.role or 'no role'}" for r in refused]
        return _not_graded(seed, question, result, cheated=True, refusals=refusal_names)
    truth = bench.oracle()
    outcome, held_out = None, {}
    if kinds.of(question).needs_outcome:  # graded by running the held-out action on the same hidden world
        try:
            held = on_bench(question, bench, lambda: bench.reset(task.seed, n_obj, structure=structure))
        except Ungradable as e:  # every try disturbed by the gate: no grade, and no wrong answer either
            log.warning("world %s/%s/%d: not gradable: %s", *_name(task), e)
            return _not_graded(
                seed,
                question,
                result,
                ungradable=True,
                ungradable_reason=str(e),
                held_out_disturbed=e.tries,
                executed=sum(s.ok for s in result.steps),
                notebook_audit=result.notebook_audit,
            )
        outcome, held_out = held.outcome, {"held_out_tries": held.tries, "held_out_disturbed": held.disturbed}
    gr = grade(question, result.conclusion, truth, outcome)
    own = kinds.of(question).row
    extra = own(question, gr, result.notebook_text, _world(bench, task, n_obj, scene)) if own is not None else {}
    return {**_graded(task, question, result, gr, truth, outcome), "agent_seed": seed, **held_out, **extra}


def _name(task: WorldTask) -> tuple[str, str, int]:
    return task.agent, task.kind, task.seed


def _agent_job(task: WorldTask, seed: int, question: g.Question, scene, bench, gateway):
    """What the agent's process is handed: the question, the perceived scene, the gateway and its lab keys."""
    from loopylab.lab.sealed import AgentJob

    return AgentJob(
        task.agent,
        seed,
        question,
        scene.to_dict(),
        gateway.url,
        gateway.keys.only("lab").dumps(),
        bench.runner.epoch_ns,
        task.confidence,
        task.n_particles,
        task.record_regret,
        f"sim_bench:{task.robot}",
    )


def _not_graded(seed: int, question: g.Question, result, **why) -> dict:
    """A row for a run that is not graded (`why`: cheated, or ungradable): what it asked, said and did."""
    return dict(
        agent_seed=seed,
        question=question.render(),
        conclusion=result.conclusion.render(),
        experiments=result.experiments,
        notebook=result.notebook_text,
        **why,
    )


def _graded(task: WorldTask, question: g.Question, result, gr, truth: dict, outcome) -> dict:
    """A graded run's row: success, the proper scores, the error after each experiment, the notebook."""
    honest = _scores(question, result, gr, task.confidence)
    trace = [_error(question, s.answer, truth, outcome) for s in result.steps if s.answer is not None]
    trace.append(gr.error)  # the conclusion
    within = [e <= question.tolerance + 1e-9 for e in trace]
    budget = question.max_experiments
    to_tol = next((i + 1 for i in range(len(within)) if all(within[i:])), budget + 1)
    regrets = [s.regret for s in result.steps if s.regret is not None]
    return dict(
        question=question.render(),
        conclusion=result.conclusion.render(),
        # a conclusion within tolerance whose interval is not the belief's is not a success
        success=gr.success and honest["interval_is_belief"] is not False,
        within_tolerance=gr.success,
        **honest,
        error=None if not math.isfinite(gr.error) else gr.error,
        experiments=result.experiments,
        to_tolerance=min(to_tol, result.experiments) if gr.success else budget + 1,
        error_trace=trace,
        regret_mean=float(np.mean(regrets)) if regrets else None,
        decision_s=result.decision_s,
        truth_value=gr.truth if not isinstance(gr.truth, tuple) else list(gr.truth),
        notebook=result.notebook_text,
        notebook_audit=result.notebook_audit,  # with its audit lines: what `loopylab notebook replay` reads
        tables_s=result.tables_s,
    )


def _world(bench, task: WorldTask, n_obj: int | None, scene) -> dict:
    """What a kind's own figures may ask of the hidden world (QuestionKind.row): run a held-out experiment on it."""

    def run(exp: g.Experiment) -> dict | None:
        bench.reset(task.seed, n_obj, structure=kinds.get(task.kind).structure)
        reply = bench.runner.execute(exp)
        return reply.get("measurements") if reply.get("ok") else None

    return {"scene": scene, "seed": task.seed, "run": run}


def _scores(question: g.Question, result, gr, confidence: float) -> dict:
    """The proper scores of the answer and its belief (lab/grading.py), and how many calls executed."""
    from loopylab.lab.grading import belief_sample, score_answer

    truth = float(gr.truth) if isinstance(gr.truth, (int, float)) else None
    if hasattr(result, "belief_sample"):  # a sealed run: the agent's process sent its final belief back
        sample = result.belief_sample()
    else:
        sample = belief_sample(result.posterior, question) if result.posterior is not None else None
    executed = sum(s.ok for s in result.steps)
    return {
        **score_answer(question, result.conclusion, sample, truth, confidence).row(),
        "executed": executed,
        "executed_rate": executed / len(result.steps) if result.steps else None,
        "regrets": [s.regret for s in result.steps if s.regret is not None],
    }


def _crashed(task: WorldTask, why: str) -> dict:
    return {
        **asdict(task),
        "crashed": True,
        "success": False,
        "error": None,
        "experiments": 0,
        "exception": why,
        "wall_s": 0.0,
    }


# ------------------------------------------------------------------------------------------------
# many worlds


@dataclass
class EvalConfig:
    agents: list[str] = field(default_factory=lambda: ["eig"])
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    seeds: list[int] = field(default_factory=lambda: list(range(50)))
    workers: int = max(1, min(4, (os.cpu_count() or 2)))
    ray: str | None = None  # Ray address, or "local" for a local instance
    budget: dict = field(default_factory=dict)  # agent -> experiment budget (default: the question's)
    robot: str = "panda"
    record_regret: bool = True
    run_seed: int = field(default_factory=lambda: secrets.randbits(32))  # the agents' seeds come from it

    def tasks(self) -> list[WorldTask]:
        return [
            WorldTask(a, k, s, self.budget.get(a), self.robot, self.record_regret, run_seed=self.run_seed)
            for a in self.agents
            for k in self.kinds
            for s in self.seeds
        ]


def run_eval(
    cfg: EvalConfig, on_row: Callable[[dict], None] | None = None, tasks: list[WorldTask] | None = None
) -> list[dict]:
    """Every world of `cfg` (or just `tasks`, e.g. those a resumed run still lacks); rows sorted."""
    tasks = cfg.tasks() if tasks is None else tasks
    runner = _run_ray if cfg.ray else _run_pool
    rows = []
    for row in runner(tasks, cfg):
        rows.append(row)
        if on_row:
            on_row(row)
    rows.sort(key=lambda r: (r["agent"], r["kind"], r["seed"]))
    return rows


def _run_pool(tasks: list[WorldTask], cfg: EvalConfig, attempts: int = 3) -> Iterable[dict]:
    if cfg.workers <= 1:  # in this process: its bench lives as long as the run
        try:
            for t in tasks:
                yield run_world_reusing_bench(t)
        finally:
            close_worker_benches()
        return
    # A worker runs WORLDS_PER_WORKER worlds on one bench, then a fresh process takes over: benches started
    # and closed one after another in a process leak memory, one bench reset many times does not (its RSS
    # stayed at ~500 MB over 16 resets, lead, dev 1000000-15). A worker killed by a native crash (a libzmq assertion inside the bus, seen under heavy
    # load) breaks the pool: its worlds are not failures of the agent, so they run again in a new pool
    # (seeded worlds are deterministic), up to `attempts` times.
    todo = [(t, 1) for t in reversed(tasks)]  # a stack: pop() takes them in order
    while todo:
        # at most `workers` worlds in flight, so that a broken pool takes only those down with it
        with ProcessPoolExecutor(
            max_workers=cfg.workers, mp_context=get_context("spawn"), max_tasks_per_child=WORLDS_PER_WORKER
        ) as pool:
            flying: dict = {}
            broken = False
            while (todo or flying) and not broken:
                while todo and len(flying) < cfg.workers:
                    t, n = todo.pop()
                    flying[pool.submit(run_world_reusing_bench, t)] = (t, n)
                done, _ = wait(flying, return_when=FIRST_COMPLETED)
                for f in done:
                    t, n = flying.pop(f)
                    try:
                        yield f.result()
                    except BrokenProcessPool as e:
                        broken = True
                        if n < attempts:
                            todo.append((t, n + 1))
                        else:
                            yield _crashed(t, f"worker process died {attempts} times: {e}")
            if broken:
                for t, n in flying.values():  # the rest of the broken pool's worlds
                    if n < attempts:
                        todo.append((t, n + 1))
                    else:
                        yield _crashed(t, f"worker process died {attempts} times")
                log.warning("a worker process died; %d worlds left", len(todo))


def _run_ray(tasks: list[WorldTask], cfg: EvalConfig) -> Iterable[dict]:
    import ray

    started = False
    # ray.init installs its own SIGTERM handler (sys.exit) and leaves it after shutdown: the caller's comes back
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    if not ray.is_initialized():
        if cfg.ray == "local":
            # the workers import agents named module:factory from the working directory, as the pool's do; set
            # for them only, not in this process's environment (later subprocesses of the caller would inherit it)
            path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)
            # Ray runs its workers at nice 15 by default (its control plane first); a world's sim, gate and agent
            # then starve beside any other work on the machine: under two CPU hogs a mass world took 24.6 s on a
            # local Ray worker against 4.3 s in the process pool. At nice 0 they share the machine as the pool does.
            ray.init(
                num_cpus=cfg.workers,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
                _system_config={"worker_niceness": 0},
            )
        else:
            ray.init(address=cfg.ray, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_calls=WORLDS_PER_WORKER)(run_world_reusing_bench)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    if handler is not None:  # None: a handler set from C, which Python cannot put back
                        signal.signal(sig, handler)
