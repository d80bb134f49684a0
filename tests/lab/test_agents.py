"""Agents: the shared routine, the registry, and that an agent cannot reach the bus or the ground truth."""

import gc
import threading
import types

import pytest

from loopylab.bus import Node
from loopylab.bus.node import Publisher, ServiceClient
from loopylab.lab.agents import AGENTS, GridAgent, RandomAgent, make_agent, prior_hypothesis, register_agent
from loopylab.lab.beliefs import Posterior
from loopylab.lab.bench import Bench, sim_bench
from loopylab.lab.experiments import candidate_experiments
from loopylab.lab.forward import Axes, ForwardModel, InlineTwins
from loopylab.lab.investigation import BusRunner, InvestigationConfig, grammar_scene, investigate
from loopylab.lab.notebook import NotebookView
from loopylab.lab.twin import TwinPool
from loopylab.world import notebook as g
from loopylab.world.scene import SceneSpec, scene_from_seed


def _reachable(root, limit=200_000):
    """Every object reachable from `root` through data (attributes, containers): what an agent holding
    `root` is handed. Code objects are not followed: any function can reach every module's globals,
    which is what "structurally" rules out — nothing in the view *is* a handle on the bus."""
    seen, stack, out = set(), [root], []
    while stack and len(out) < limit:
        o = stack.pop()
        if (
            id(o) in seen
            or callable(o)
            or isinstance(o, (types.ModuleType, types.FrameType, types.CellType, types.GeneratorType, threading.Thread))
        ):
            continue
        seen.add(id(o))
        out.append(o)
        stack.extend(gc.get_referents(o))
    return out


class Spy:
    """An agent that records every view it got and proposes a fixed plan."""

    name = "spy"

    def __init__(self, plan):
        self.plan, self.views = list(plan), []

    def propose(self, view):
        self.views.append(view)
        return self.plan.pop(0)


class CountingRunner:
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def execute(self, exp):
        self.calls.append(exp.render())
        return self.inner.execute(exp)


@pytest.fixture(scope="module")
def bench():
    with sim_bench(seed=4, n_objects=2) as b:
        yield b


def test_agent_sees_no_bus_and_no_ground_truth(bench):
    scene = bench.reset(4, 2)
    q = g.Question("mass", (scene.objects[0].label,), 0.1)
    spy = Spy(
        [prior_hypothesis(q), g.Experiment("weigh", q.object), g.Conclusion((g.Estimate("mass", q.object, 0.2, 0.05),))]
    )
    pool = TwinPool(workers=1)
    investigate(
        q, scene, spy, bench.runner, ForwardModel(scene, pool, Axes(points=5)), InvestigationConfig(n_particles=200)
    )
    assert len(spy.views) == 3 and all(isinstance(v, NotebookView) for v in spy.views)
    for view in spy.views:
        for o in _reachable(view):
            assert not isinstance(o, (Node, Publisher, ServiceClient, Bench, BusRunner)), type(o)
            if isinstance(o, SceneSpec):
                assert all(ob.mass is None and ob.friction is None for ob in o.objects)
    # the truth exists, one service away, for the evaluator only
    assert bench.oracle()[q.object]["mass"] > 0
    if hasattr(pool, "close"):
        pool.close()


def test_experiments_outside_the_grid_never_reach_the_bus(bench):
    scene = bench.reset(4, 2)
    q = g.Question("mass", (scene.objects[0].label,), 0.1)
    sneaky = [g.Experiment("oracle", q.object), g.Experiment("strike", q.object, "+x", speed=5.0)]
    spy = Spy([prior_hypothesis(q), *sneaky, g.Conclusion((g.Estimate("mass", q.object, 0.2, 0.05),))])
    runner = CountingRunner(bench.runner)
    pool = TwinPool(workers=1)
    res = investigate(
        q, scene, spy, runner, ForwardModel(scene, pool, Axes(points=5)), InvestigationConfig(n_particles=200)
    )
    assert runner.calls == []
    obs = [s.body for s in res.notebook.sections if s.kind == "observation"]
    assert len(obs) == 2 and all(o.error and "grid" in o.error for o in obs)
    if hasattr(pool, "close"):
        pool.close()


def test_routine_and_registry():
    spec = scene_from_seed(1, n_objects=2).perceived()
    scene = grammar_scene(spec)
    q = g.Question("friction", (scene.names[0],), 0.05)
    cands = tuple(candidate_experiments(scene, q))
    post = Posterior(q, ForwardModel(spec, InlineTwins()), prior_hypothesis(q), n_particles=300)
    hyp = g.Section("hypothesis", prior_hypothesis(q))
    assert isinstance(RandomAgent().propose(NotebookView(q, scene, cands, (), post)), g.Hypothesis)
    view1 = NotebookView(q, scene, cands, (hyp,), post)
    picks = {RandomAgent(seed=s).propose(view1) for s in range(20)}
    assert len(picks) > 5 and picks <= set(cands)
    sweep = []
    for k in range(len({c.skill for c in cands})):
        done = tuple(g.Section("experiment", c) for c in cands[:k])
        sweep.append(GridAgent().propose(NotebookView(q, scene, cands, (hyp, *done), post)).skill)
    assert len(set(sweep)) == len(sweep)  # the sweep visits every skill before repeating one
    spent = NotebookView(q, scene, cands, (hyp,) + tuple(g.Section("experiment", cands[0]) for _ in range(10)), post)
    assert isinstance(RandomAgent().propose(spent), g.Conclusion)  # budget spent: conclude
    register_agent("always_random", RandomAgent)
    try:
        assert isinstance(make_agent("always_random", seed=3), RandomAgent)
    finally:
        AGENTS.pop("always_random")
    with pytest.raises(KeyError, match="known"):
        make_agent("no_such_agent")
    assert all(hasattr(make_agent(n), "propose") for n in ("random", "grid", "eig"))
