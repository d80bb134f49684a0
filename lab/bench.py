"""The bench an investigation runs on: a bus graph (simulated arm, safety gate, skills, perception when
present) started in this process, plus the lab's own node on it.

    with Bench.sim(seed=3) as bench:               # the default sim graph, nodes as inproc threads
        scene = bench.reset(seed=3)                # perceived scene of the world (no hidden properties)
        reply = bench.runner.execute(experiment)   # skills/execute over the bus
        truth = bench.oracle()                     # privileged: evaluation code only

The oracle lives on the bench, which belongs to the evaluator. Agents only ever see a NotebookView.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

from loopylab.bus import Node, NotebookEntry
from loopylab.bus.directory import stop_local
from loopylab.bus.launch import GraphSpec, Launcher, NodeSpec, load_graph, resolve
from loopylab.lab.investigation import BusRunner

log = logging.getLogger("loopylab.lab")

SKILLS_RUN = "loopylab.actuation.skills:run_skills"


def sim_graph(robot: str = "panda", seed: int = 0, n_objects: int | None = None, cameras: bool = False,
              url: str | None = None) -> GraphSpec:
    """The default simulated bench: SimArm (lockstep clock, mocap object poses), safety gate, skills."""
    url = url or f"inproc://lab-{uuid.uuid4().hex[:10]}"
    transport, _, name = url.partition("://")
    proc = transport != "inproc"
    nodes = [NodeSpec("sim_arm", "loopylab.sim.node:run_sim_arm", proc,
                      params={"robot": robot, "seed": seed, "n_objects": n_objects, "cameras": cameras,
                              "clock": "lockstep"}),
             NodeSpec("safety_gate", "loopylab.actuation.gate:run_gate", proc, params={"robot": robot}),
             # the skills node reads object sizes from the scene of the same seed
             NodeSpec("skills", SKILLS_RUN, proc, params={"robot": robot, "seed": seed, "n_objects": n_objects})]
    for n in nodes:
        n.params = {k: v for k, v in n.params.items() if v is not None}
    return GraphSpec(name=name if transport != "tcp" else "sim_bench", transport=transport,
                     directory=name if transport == "tcp" else "127.0.0.1:7447", nodes=nodes)


class _ThreadNodes:
    """The graph's thread nodes, started here rather than by the bus Launcher, which would redirect this
    process's stdout while they run (the lab prints the notebook live)."""

    def __init__(self, specs: list[NodeSpec], url: str):
        self.url = url
        self.specs = {s.name: s for s in specs}
        self.running: dict[str, tuple[Node, threading.Thread, dict]] = {}
        self.failed: str = ""
        for spec in specs:
            self._start(spec)

    def _start(self, spec: NodeSpec) -> None:
        fn = resolve(spec.run)
        node = Node(spec.name, self.url)
        box: dict = {}

        def body():
            try:
                box["result"] = fn(node, **spec.params)
            except Exception as e:
                log.exception("bench node %s failed", spec.name)
                self.failed = f"node {spec.name!r} failed: {type(e).__name__}: {e}"
        t = threading.Thread(target=body, name=f"{spec.name}:main", daemon=True)
        t.start()
        self.running[spec.name] = (node, t, box)

    def _stop(self, name: str) -> None:
        node, t, box = self.running.pop(name)
        node.shutdown()
        t.join(5)
        result = box.get("result")
        if result is not None and hasattr(result, "close"):
            try:
                result.close()
            except Exception:
                log.exception("closing %s", name)
        node.close()   # says bye to the directory: its services disappear

    def restart(self, name: str, **params) -> None:
        spec = self.specs[name]
        spec.params = {**spec.params, **params}
        self._stop(name)
        self._start(spec)

    def close(self) -> None:
        for name in reversed(list(self.running)):
            self._stop(name)


class Bench:
    def __init__(self, graph: GraphSpec, wait_s: float = 60.0, quiet: bool = True):
        self.graph = graph
        self.node = Node("lab", graph.url)   # first, so that it serves the graph's directory
        self.threads = _ThreadNodes([n for n in graph.nodes if not n.process], graph.url)
        procs = [n for n in graph.nodes if n.process]
        self.launcher = None
        if procs:
            sub = GraphSpec(graph.name, graph.transport, graph.directory, procs)
            self.launcher = Launcher(sub, stdout=_Null() if quiet else None, stderr=_Null() if quiet else None)
            self._thread = threading.Thread(target=self.launcher.run, name="lab:bench", daemon=True)
            self._thread.start()
        self._stop = threading.Event()
        self.notebook_pub = self.node.publisher("lab/notebook", NotebookEntry)
        self.wait_s = wait_s
        self._wait_for_services(["skills/execute"], wait_s)
        self.runner = BusRunner(self.node)

    @classmethod
    def sim(cls, **kw) -> "Bench":
        return cls(sim_graph(**kw))

    @classmethod
    def from_file(cls, path: str | Path, bus: str | None = None) -> "Bench":
        spec = load_graph(path)
        return cls(spec.with_bus(bus) if bus else spec)

    def _wait_for_services(self, names: list[str], wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        missing = list(names)
        while missing and time.monotonic() < deadline:
            failure = self.threads.failed or (self.launcher.failure if self.launcher else "")
            if failure:
                self.close()
                raise RuntimeError(f"bench graph failed: {failure}")
            missing = [n for n in missing if not self._has_service(n)]
            if missing:
                self._stop.wait(0.05)  # poll the directory until the services announce themselves
        if missing:
            self.close()
            raise RuntimeError(f"bench graph has no {', '.join(missing)} after {wait_s:.0f} s "
                               f"(nodes: {', '.join(n.name for n in self.graph.nodes)})")

    def _has_service(self, name: str) -> bool:
        try:
            return bool(self.node.lookup("service", name))
        except Exception:
            return False

    @property
    def has_sim(self) -> bool:
        return self._has_service("sim/reset")

    def reset(self, seed: int, n_objects: int | None = None, robot: str | None = None):
        """Load the world of `seed`; returns its perceived SceneSpec (hidden properties stripped)."""
        from loopylab.world.scene import SceneSpec
        req = {"seed": int(seed)}
        if n_objects is not None:
            req["n_objects"] = int(n_objects)
        if robot is not None:
            req["robot"] = robot
        reply = self.node.call("sim/reset", req, timeout=30.0)
        if not reply.get("ok"):
            raise RuntimeError(f"sim/reset failed: {reply}")
        self._sync_skills(int(seed), n_objects)
        return SceneSpec.from_dict(reply["scene"]).perceived()

    def _sync_skills(self, seed: int, n_objects: int | None) -> None:
        """The skills node knows object sizes from its seed's scene: after loading another world, restart
        it on that world (thread nodes of this bench only; a graph file's nodes are left as they are)."""
        name = next((n for n, s in self.threads.specs.items() if s.run == SKILLS_RUN), None)
        if name is None:
            return
        params = self.threads.specs[name].params
        if params.get("seed") == seed and params.get("n_objects") == n_objects:
            return
        self.runner.close()
        self.threads.restart(name, seed=seed, n_objects=n_objects)
        self._wait_for_services(["skills/execute"], self.wait_s)
        self.runner = BusRunner(self.node)

    def oracle(self) -> dict[str, dict]:
        """Ground truth {label: {mass, friction, restitution, ...}} (privileged: evaluation only)."""
        reply = self.node.call("sim/oracle", {}, timeout=10.0)
        return {label: dict(v) for label, v in reply["objects"].items()}

    def close(self) -> None:
        # subscribers before publishers: the lab first, then the graph's nodes in reverse start order
        owned = self.node._owned_directory is not None   # the lab node started this graph's directory
        if getattr(self, "runner", None) is not None:
            self.runner.close()
        self.node.close()
        if self.launcher is not None:
            self.launcher.stop()
            self._thread.join(15)
        self.threads.close()
        if owned:
            stop_local(self.node.config)

    def __enter__(self) -> "Bench":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Null:
    def write(self, s):
        return len(s)

    def flush(self):
        """Nothing is buffered: writes are discarded."""

    def isatty(self):
        return False
