"""The bench an investigation runs on: a bus graph (simulated arm, safety gate, skills, perception when
present) started by the launcher in this process (in-process mode), plus the lab's own node on it.

    with sim_bench(seed=3) as bench:               # the default sim graph, nodes as inproc threads
        scene = bench.reset(seed=3)                # perceived scene of the world (no hidden properties)
        reply = bench.runner.execute(experiment)   # skills/execute over the bus, in the world just loaded
        reply = bench.execute("push", {...})       # the same, by skill name
        truth = bench.oracle()                     # privileged: evaluation code only

The oracle lives on the bench, which belongs to the evaluator: the bench's graph is sealed (its [access] table,
docs/bus.md) and this process, which started it, holds every role; `call` picks the one a service's policy
names (`sim/reset`: evaluator, `sim/oracle`: grader). An agent under evaluation runs in a process of its own
with the lab's role only (lab/sealed.py); here agents only ever see a NotebookView.

A bench started once can serve many runs (a test module, a session of questions): `serve_bench` starts one and
offers it on a sealed ipc graph of its own, writing the evaluator's keys to a file (owner-only); `loopylab run
--attach URL --bench-keys FILE` then joins it (an AttachedBench) instead of starting its own, loads its world
with sim/reset as every run does, and leaves the bench running when it ends. One run at a time per bench.

    with serve_bench(tmp / "bench.keys", seed=0) as served:      # served.url: ipc://lab...
        loopylab run -q "estimate mass of red_block within 10%" --seed 2 --attach URL --bench-keys FILE
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from loopylab.actuation.graphs import sim_bench_graph
from loopylab.bus import NotebookEntry
from loopylab.bus.launch import GraphSpec, load_graph, start_graph
from loopylab.lab.investigation import BusRunner


class Bench:
    """A bench graph running in this process (the launcher's in-process mode) and the lab's node on it."""

    def __init__(self, graph: GraphSpec, wait_s: float = 60.0, quiet: bool = True):
        self.graph = start_graph(graph, wait_for=["skills/execute"], timeout=wait_s, quiet=quiet, client="lab")
        self.node = self.graph.node
        self.notebook_pub = self.node.publisher("lab/notebook", NotebookEntry)
        self.runner = BusRunner(self.node)

    @classmethod
    def from_file(cls, path: str | Path, bus: str | None = None) -> Bench:
        spec = load_graph(path)
        return cls(spec.with_bus(bus) if bus else spec)

    @property
    def has_sim(self) -> bool:
        return self.graph.has_service("sim/reset")

    # the graph's thread nodes (tests and benchmarks look inside them; None where a node is a process)
    @property
    def sim(self) -> Any:
        return self.graph.result("sim_arm")

    @property
    def gate(self) -> Any:
        return self.graph.result("safety_gate")

    @property
    def skills(self) -> Any:
        return self.graph.result("skills")

    def call(self, service: str, request: dict, timeout: float = 30.0) -> Any:
        return self.graph.call(service, request, timeout)

    def execute(self, skill: str, args: dict, timeout: float = 120.0) -> dict:
        """One skill, in the world of the last reset (see BusRunner.epoch_ns)."""
        return self.call("skills/execute", self.runner.request({"skill": skill, "args": args}), timeout)

    def reset(self, seed: int, n_objects: int | None = None, robot: str | None = None, structure: str | None = None):
        """Load the world of `seed` (with its hidden `structure` drawn, `loopylab.world.scene.with_structure`,
        for a question about one); returns its perceived SceneSpec (hidden properties stripped). The skills
        after it wait for that world's sim/scene (the reply's epoch), however late it reaches their node."""
        from loopylab.world.scene import SceneSpec

        req: dict[str, Any] = {"seed": int(seed)}
        if n_objects is not None:
            req["n_objects"] = int(n_objects)
        if robot is not None:
            req["robot"] = robot
        if structure is not None:
            req["structure"] = structure
        reply = self.call("sim/reset", req, timeout=30.0)
        if not reply.get("ok"):
            raise RuntimeError(f"sim/reset failed: {reply}")
        self.runner.epoch_ns = int(reply.get("epoch_ns", 0))
        return SceneSpec.from_dict(reply["scene"]).perceived()

    def oracle(self) -> dict[str, dict]:
        """Ground truth {label: {mass, friction, restitution, ...}} (privileged: evaluation only)."""
        reply = self.call("sim/oracle", {}, timeout=10.0)
        return {label: dict(v) for label, v in reply["objects"].items()}

    def close(self) -> None:
        # subscribers before publishers: the lab's runner and node first, then the graph's nodes
        if getattr(self, "runner", None) is not None:
            self.runner.close()
        self.graph.close()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sim_bench(**kw) -> Bench:
    """The simulated bench in this process: `sim_bench_graph(**kw)` (robot, seed, n_objects, scene, cameras,
    mocap, mocap_noise, clock, gate, perception, url) started in-process, as a context manager."""
    return Bench(sim_bench_graph(**kw))


# -- a bench served to other processes, and a run's side of it ---------------------------------------------

ATTACH_ROLES = ("evaluator", "grader")  # what a run does with a bench: load worlds, read the truth to grade


class AttachedBench(Bench):
    """A bench another process serves (`serve_bench`), joined over its sealed graph with the keys of `keys_file`
    (the evaluator's and the grader's). Closing it closes this process's node only: the bench runs on."""

    ROLE: ClassVar[dict[str, str]] = {"sim/reset": "evaluator", "sim/oracle": "grader"}

    def __init__(self, url: str, keys_file: str | Path, robot: str | None = None, wait_s: float = 60.0):
        from loopylab.bus import BusConfig, Node

        self.robot = robot  # the robot a run asks for: the served bench has one, and a run on another is refused
        self.graph = None
        self.runner = None  # for close() if joining fails
        self.node = Node("lab", BusConfig.parse(url).with_keys(read_keys(keys_file)), start_directory=False)
        try:
            self._wait_for("skills/execute", url, wait_s)
            self.notebook_pub = self.node.publisher("lab/notebook", NotebookEntry)
            self.runner = BusRunner(self.node)
        except BaseException:
            self.node.close()
            raise

    def _wait_for(self, service: str, url: str, wait_s: float) -> None:
        from loopylab.bus.directory import DirectoryUnavailable

        deadline = time.monotonic() + wait_s
        while True:
            try:
                if self.node.lookup("service", service):
                    return
            except DirectoryUnavailable:
                pass
            if time.monotonic() > deadline:
                raise ConnectionError(f"no bench serves {service} at {url} (after {wait_s:.0f} s): is it running?")
            time.sleep(0.05)

    @property
    def has_sim(self) -> bool:
        from loopylab.bus.directory import DirectoryUnavailable

        for attempt in range(4):  # the serving process's directory answers late on a loaded host
            try:
                return bool(self.node.lookup("service", "sim/reset"))
            except DirectoryUnavailable:
                time.sleep(0.2 * (attempt + 1))
        return bool(self.node.lookup("service", "sim/reset"))

    @property
    def sim(self) -> Any:
        return None  # in the serving process

    gate = skills = sim

    def call(self, service: str, request: dict, timeout: float = 30.0) -> Any:
        return self.node.call(service, request, timeout=timeout, role=self.ROLE.get(service, "evaluator"))

    def reset(self, seed: int, n_objects: int | None = None, robot: str | None = None, structure: str | None = None):
        scene = super().reset(seed, n_objects, robot, structure)
        want = robot or self.robot
        if want is not None and scene.robot != want:
            raise RuntimeError(f"the attached bench has a {scene.robot}, not a {want}: serve one with robot={want!r}")
        return scene

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        self.node.close()


def read_keys(path: str | Path):
    """A served bench's keys file; refused when others may read it (it holds the grader's secret key)."""
    from loopylab.bus import GraphKeys

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no bench keys file {p} (serve_bench writes it)")
    if p.stat().st_mode & 0o077:
        raise PermissionError(f"{p} is readable by others: chmod 600 it (it holds the grader's secret key)")
    return GraphKeys.loads(p.read_bytes())


@dataclass
class ServedBench:
    bench: Bench  # in the serving process: run_world(task, bench=...) uses it directly
    url: str
    keys_file: Path

    def cli_args(self) -> list[str]:
        """`loopylab run`'s options that attach a run to this bench."""
        return ["--attach", self.url, "--bench-keys", str(self.keys_file)]


@contextmanager
def serve_bench(keys_file: str | Path, **kw) -> Iterator[ServedBench]:
    """A sim bench (`sim_bench(**kw)`, in this process) offered to other processes on a sealed ipc graph of its
    own (lab.sealed.LabGateway: skills/execute, sim/reset for the evaluator, sim/oracle for the grader,
    perception/objects); its evaluator's and grader's keys are written to `keys_file` (owner-only, a new file)."""
    from loopylab.lab.sealed import LabGateway

    path = Path(keys_file)
    with sim_bench(**kw) as bench, LabGateway(bench) as gateway:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(gateway.keys.only(*ATTACH_ROLES).dumps())
        try:
            yield ServedBench(bench, gateway.url, path)
        finally:
            path.unlink(missing_ok=True)
