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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
