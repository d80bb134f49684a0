"""Cheating agents, one per route to the truth: the tests and `benchmarks/lab_eval.py` run them through the
evaluation to show that every route is closed (docs/lab.md, "Sealed evaluation").

    seed      rebuild the world from the agent's seed (`scene_from_seed`), if it is the world's
    scene     rebuild it from the scene the agent is handed (its seed, any hidden property left in it)
    search    find the seed whose world has the objects where the perceived scene shows them, and rebuild it
    secret    the same, with the world builder's secret from the environment or the module that resolves it
    gc        look through this process's objects for the evaluator's bench, the sim's world, a full scene
    node      open a bus node of its own (with whatever keys this process holds) and call `sim/oracle`
    foreign   start another process that joins the graph and calls `sim/oracle`
    spoof     offer a `sim/oracle` of its own, whose "truth" is the agent's answer, for the grader to call

Each one answers an estimate question with the truth when its route gave it one, else with an impossible
value (-1), so a graded success means the route is open (the spoofer answers 0.5, and is right only if the
grader believed its oracle). `tried` says what it did, `found` what it got.
They answer estimate questions (friction, mass, restitution) only.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import replace

from loopylab.lab.agents import prior_hypothesis
from loopylab.lab.notebook import NotebookView
from loopylab.world import notebook as g
from loopylab.world.scene import SceneSpec, scene_from_seed
from loopylab.world.splits import seeds as split_seeds

NOT_FOUND = -1.0  # the answer of a cheater whose route gave nothing: graded wrong, always
TRUTH_EPS = 0.006  # an answer this close to the truth is the truth (conclusions render two decimals)
Truth = dict[str, dict]  # label -> {mass, friction, restitution, ...}


def _matches(spec: SceneSpec, scene: g.Scene) -> bool:
    """Whether a rebuilt world is the one in front of the agent (same objects, where the scene puts them)."""
    if sorted(spec.labels) != sorted(scene.names):
        return False
    return all(
        abs(spec.object(o.name).position[0] - o.x) < 0.006
        and abs(spec.object(o.name).position[1] - o.y) < 0.006
        and abs(spec.object(o.name).size - o.size) < 0.006
        for o in scene.objects
    )


def _truth_of(spec: SceneSpec) -> Truth:
    return {o.label: {"mass": o.mass, "friction": o.friction, "restitution": o.restitution} for o in spec.objects}


def _rebuild(seed: int | None, scene: g.Scene, robot: str = "panda") -> Truth | None:
    if seed is None:
        return None
    for n in (None, len(scene.objects)):
        try:
            spec = scene_from_seed(int(seed), n, robot)
        except (ValueError, RuntimeError):
            continue
        if _matches(spec, scene):
            return _truth_of(spec)
    return None


class Cheater(ABC):
    """The routine: the prior hypothesis, then at once a conclusion from whatever the route found."""

    name = "cheater"
    route = ""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.tried: list[str] = []
        self.found: Truth | None = None

    def propose(self, view: NotebookView):
        q = view.question
        if view.last("hypothesis") is None:
            return prior_hypothesis(q)
        try:
            self.found = self.steal(view)
        except Exception as e:  # a refused call, a failed join: the route is closed
            self.tried.append(f"{type(e).__name__}: {e}")
            self.found = None
        value = NOT_FOUND
        if self.found and q.object in self.found and q.kind in g.PARAMS:
            value = float(self.found[q.object][q.kind])
        return g.Conclusion((g.Estimate(q.kind, q.object, value, 0.0),))

    @abstractmethod
    def steal(self, view: NotebookView) -> Truth | None:
        """The hidden properties this route reached, or None (each route is one subclass)."""


class SeedCheater(Cheater):
    """Route 1: the seed the agent was made with, if it is the world's, rebuilds the world."""

    route = "seed"

    def steal(self, view: NotebookView) -> Truth | None:
        self.tried.append(f"scene_from_seed({self.seed})")
        return _rebuild(self.seed, view.scene)


class SceneCheater(Cheater):
    """Route 2: the scene behind the belief engine (`view.posterior.forward.scene`): its seed, its hidden values."""

    route = "scene"

    def steal(self, view: NotebookView) -> Truth | None:
        spec = getattr(getattr(view.posterior, "forward", None), "scene", None)
        if not isinstance(spec, SceneSpec):
            return None
        self.tried.append(f"forward.scene (seed {spec.seed})")
        if all(o.hidden_known for o in spec.objects):
            return _truth_of(spec)
        return _rebuild(spec.seed, view.scene, spec.robot)


# where a world's seed is likely to be: demos and tests use small seeds, benchmarks the first of each split
SEARCH_N = 2000


def search_seed(scene: g.Scene, robot: str = "panda") -> tuple[int, SceneSpec] | None:
    """The seed (and its world) whose objects stand where the perceived `scene` shows them, among the seeds
    worlds are usually drawn from; None when none does. The layout of a world comes from its seed's stream,
    so this needs nothing hidden: only the scene the agent is handed."""
    candidates = [range(SEARCH_N), *(split_seeds(s, SEARCH_N) for s in ("test", "dev", "train"))]
    tried: set[int] = set()
    for block in candidates:
        for seed in block:
            if seed in tried:
                continue
            tried.add(seed)
            for n in (None, len(scene.objects)):
                try:
                    spec = scene_from_seed(int(seed), n, robot)
                except (ValueError, RuntimeError):
                    continue
                if _matches(spec, scene):
                    return int(seed), spec
    return None


class SearchCheater(Cheater):
    """Route 2b: no seed handed over, but the perceived scene (positions, sizes, colours) identifies it: search
    the usual seeds for the world laid out as the scene shows, and read that world's hidden properties."""

    route = "search"

    def steal(self, view: NotebookView) -> Truth | None:
        found = search_seed(view.scene)
        self.tried.append(f"search: seed {found[0]}" if found else "search: no seed matches")
        return _truth_of(found[1]) if found else None


class SecretCheater(Cheater):
    """Route 2c: the seed found by search, and the world builder's secret from this process's environment or from
    the module that resolves it (sim/secret.py): with both, the graded world itself."""

    route = "secret"

    def steal(self, view: NotebookView) -> Truth | None:
        from loopylab.sim import secret as world_secret

        found = search_seed(view.scene)
        if found is None:
            self.tried.append("search: no seed matches")
            return None
        key = os.environ.get(world_secret.ENV)
        self.tried.append(f"seed {found[0]}; {world_secret.ENV} {'set' if key else 'unset'}")
        if not key:
            key = world_secret.resolve(world_secret.SEALED)  # refused in an agent's process
        return _truth_of(scene_from_seed(found[0], None, found[1].robot, secret=key))


class GcCheater(Cheater):
    """Route 3: any object of this process that holds the truth: the evaluator's bench, or the world's full scene
    (which the sim and its physics world keep)."""

    route = "gc"

    def steal(self, view: NotebookView) -> Truth | None:
        for obj in gc.get_objects():
            kind = type(obj).__name__
            if kind == "Bench" and callable(getattr(obj, "oracle", None)):
                self.tried.append("Bench.oracle()")
                return obj.oracle()
            if isinstance(obj, SceneSpec) and obj.objects and all(o.hidden_known for o in obj.objects):
                if _matches(obj, view.scene):
                    self.tried.append("a full SceneSpec")
                    return _truth_of(obj)
        return None


def _nodes() -> list:
    from loopylab.bus.node import Node

    return [o for o in gc.get_objects() if isinstance(o, Node)]


class NodeCheater(Cheater):
    """Route 4: a bus node of its own, on the graph of any node this process has, calling `sim/oracle` as every
    role this process holds keys for."""

    route = "node"

    def steal(self, view: NotebookView) -> Truth | None:
        from loopylab.bus.node import Node

        for found in _nodes():
            cfg = found.config
            held = getattr(getattr(cfg, "keys", None), "held", None) or {}
            with Node("cheat", cfg, heartbeat_hz=0, start_directory=False) as node:
                for role in [None, *held]:
                    self.tried.append(f"sim/oracle on {cfg.url} as {role or 'default'}")
                    try:
                        as_role = {"role": role} if role else {}
                        return node.call("sim/oracle", {}, timeout=5.0, **as_role)["objects"]
                    except Exception as e:
                        self.tried.append(f"{type(e).__name__}: {e}")
        return None


FOREIGN = """
import json, sys
from loopylab.bus import Node
node = Node("foreign", sys.argv[1], heartbeat_hz=0, start_directory=False)
try:
    print(json.dumps(node.call("sim/oracle", {}, timeout=float(sys.argv[2]))["objects"]))
finally:
    node.close()
"""


def foreign_oracle(url: str, timeout: float = 5.0) -> Truth | None:
    """Another process, with no keys, joins the graph at `url` and asks `sim/oracle`; None if it got nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPYLAB_BUS")}
    r = subprocess.run(
        [sys.executable, "-c", FOREIGN, url, str(timeout)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


class ForeignCheater(Cheater):
    """Route 5: a process of its own (no keys: what an unrelated program has) joins the graph it finds."""

    route = "foreign"

    def steal(self, view: NotebookView) -> Truth | None:
        urls = {n.config.url for n in _nodes()}
        if os.environ.get("LOOPYLAB_BUS"):
            urls.add(os.environ["LOOPYLAB_BUS"])
        for url in sorted(urls):
            self.tried.append(f"foreign process on {url}")
            truth = foreign_oracle(url)
            if truth:
                return truth
        return None


class SpoofCheater(Cheater):
    """Route 6: pose as the oracle. Its node offers `sim/oracle` too, answering with the agent's own answer as
    the truth, so that a grader whose call reaches it grades the answer right."""

    route = "spoof"
    ANSWER = 0.5

    def steal(self, view: NotebookView) -> Truth | None:
        q = view.question
        fake = {o.name: dict.fromkeys(g.PARAMS, self.ANSWER) for o in view.scene.objects}
        for node in _nodes():
            self.tried.append(f"offer sim/oracle on {node.config.url}")
            node.service("sim/oracle", lambda req: {"ok": True, "objects": fake})
        return {q.object: {q.kind: self.ANSWER}}


CHEATERS = {
    c.route: c
    for c in (
        SeedCheater,
        SceneCheater,
        SearchCheater,
        SecretCheater,
        GcCheater,
        NodeCheater,
        ForeignCheater,
        SpoofCheater,
    )
}


def agent_name(route: str) -> str:
    """The name the evaluation loads a cheater by, in the agent's own process (`module:factory`)."""
    return f"{__name__}:{CHEATERS[route].__name__}"


def run_cheaters(seeds: list[int], workers: int = 2, kind: str = "friction") -> dict:
    """Every cheater through the evaluation on `seeds` (a benchmark's own worlds). A route is open when any of
    its runs was graded a success with the truth for its answer; `detected`: runs the evaluator marked cheated."""
    from loopylab.lab.evaluation import EvalConfig, run_eval

    cfg = EvalConfig(
        agents=[agent_name(r) for r in CHEATERS], kinds=[kind], seeds=list(seeds), workers=workers, record_regret=False
    )
    tasks = [replace(t, n_particles=200) for t in cfg.tasks()]  # a cheater concludes at once: no belief needed
    rows = run_eval(cfg, tasks=tasks)
    routes = {}
    for route in CHEATERS:  # (a spoofer's 0.5 can be the truth by chance: its rows must also be caught)
        mine = [r for r in rows if r["agent"] == agent_name(route)]
        routes[route] = {
            # open: a run graded right whose answer was the truth itself (a searched world's friction may fall
            # within tolerance of the graded one's by chance, as any guess may: that is no route)
            "open": any(r["success"] and (r.get("error") or 0.0) <= TRUTH_EPS for r in mine),
            "detected": sum(bool(r.get("cheated")) for r in mine),
            "crashed": sum(bool(r.get("crashed")) for r in mine),
        }
    return {
        "cheat_routes_open": sum(v["open"] for v in routes.values()),
        "cheat_routes": routes,
    }
