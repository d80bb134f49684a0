"""Agents: one interface, `propose(notebook_view) -> Hypothesis | Experiment | Conclusion`.

    random   uniform over the candidate grid
    grid     a fixed sweep through the grid, one skill level after another
    eig      the expert: the experiment with the highest expected information gain about the question

All three share the scientific routine: state a hypothesis (the prior box) first, experiment until the
belief engine says the answer is within tolerance with the required confidence or the budget is
spent, then conclude with the belief engine's answer. They differ only in which experiment they pick.
Other packages offer agents (the nanochat policy) through the `loopylab.agents` entry points, loaded
by name on first use; `register_agent(name, factory)` adds one at run time.

An agent sees a `loopylab.lab.notebook.NotebookView` and nothing else: no bus node, no service client, no ground
truth. It cannot run experiments itself; the investigation runs what it proposes.
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import EntryPoint
from typing import Protocol

import numpy as np

from loopylab.lab.beliefs import prior_ranges
from loopylab.lab.design import Decision, DesignConfig, choose, sigmas_seen
from loopylab.lab.notebook import NotebookView
from loopylab.lab.plugins import AGENT_GROUP, load, plugins
from loopylab.world import notebook as g

Proposal = g.Hypothesis | g.Experiment | g.Conclusion


class Agent(Protocol):
    name: str

    def propose(self, notebook: NotebookView) -> Proposal: ...


def prior_hypothesis(question: g.Question, robot: str | None = None) -> g.Hypothesis:
    """The hypothesis every built-in agent starts from: the range each parameter is known to lie in on `robot`
    (None: a large arm)."""
    prior = prior_ranges(robot)
    return g.Hypothesis(tuple(g.Range(p, o, *prior[p]) for o in question.objects for p in g.PARAMS))


class ScientistAgent(ABC):
    """The shared routine; subclasses choose the experiment."""

    name = "base"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng([seed, 0xA6E])
        self.last_decision: Decision | None = None

    def propose(self, notebook: NotebookView) -> Proposal:
        if notebook.last("hypothesis") is None:
            scene = getattr(getattr(notebook.posterior, "forward", None), "scene", None)
            return prior_hypothesis(notebook.question, getattr(scene, "robot", None))
        answer = notebook.posterior.answer(notebook.confidence)
        if answer.confidence >= notebook.confidence or notebook.budget_left <= 0 or not notebook.candidates:
            return answer.conclusion
        return self.experiment(notebook)

    @abstractmethod
    def experiment(self, notebook: NotebookView) -> g.Experiment:
        """The next experiment, one of notebook.candidates."""


class RandomAgent(ScientistAgent):
    name = "random"

    def experiment(self, notebook: NotebookView) -> g.Experiment:
        return notebook.candidates[int(self.rng.integers(len(notebook.candidates)))]


class GridAgent(ScientistAgent):
    """Sweeps the grid in a fixed order: each skill's levels in turn, interleaved across skills."""

    name = "grid"

    def experiment(self, notebook: NotebookView) -> g.Experiment:
        by_skill: dict[str, list[g.Experiment]] = {}
        for c in notebook.candidates:
            by_skill.setdefault(c.skill, []).append(c)
        sweep = [lst[i] for i in range(max(map(len, by_skill.values()))) for lst in by_skill.values() if i < len(lst)]
        return sweep[notebook.experiments_used % len(sweep)]


class EIGAgent(ScientistAgent):
    """The expert: argmax over the grid of EIG about the question quantity minus cost."""

    name = "eig"
    needs_tables = True  # it scores every candidate, so the investigation builds all tables first

    def __init__(self, seed: int = 0, design: DesignConfig | None = None):
        super().__init__(seed)
        self.design = design or DesignConfig()
        self.decision_s: list[float] = []

    def propose(self, notebook: NotebookView) -> Proposal:
        proposal = super().propose(notebook)
        dec = self.last_decision
        if isinstance(proposal, g.Experiment) and dec is not None and dec.worth_nothing(self.design.min_gain):
            # nothing left is worth its cost nor narrows the belief measurably: answer now, budget unspent
            return notebook.posterior.answer(notebook.confidence).conclusion
        return proposal

    def experiment(self, notebook: NotebookView) -> g.Experiment:
        t0 = time.perf_counter()
        post = notebook.posterior
        self.last_decision = choose(post, list(notebook.candidates), self.design, self.rng, sigmas_seen(post))
        self.decision_s.append(time.perf_counter() - t0)
        return self.last_decision.experiment


AGENTS: dict[str, Callable[..., Agent]] = {}


def register_agent(name: str, factory: Callable[..., Agent]) -> None:
    """Make an agent available by name (`loopylab run --agent NAME`); factory(seed=...) -> Agent."""
    AGENTS[name] = factory


# agents that other packages offer through the `loopylab.agents` entry points, by name; loaded on first use
PLUGINS: dict[str, EntryPoint] = plugins(AGENT_GROUP)


def agent_names() -> list[str]:
    """Every agent `make_agent` knows: registered ones and those plugins offer."""
    return sorted(set(AGENTS) | set(PLUGINS))


def make_agent(name: str, seed: int = 0, **kw) -> Agent:
    """The agent `name` (registered, a plugin's, or `package.module:factory`), with its own RNG `seed`."""
    if name not in AGENTS and ":" in name:  # e.g. an agent of a test suite, in the agent's own process
        module, _, attr = name.partition(":")
        try:
            register_agent(name, getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError) as e:
            raise KeyError(f"agent {name!r} cannot be loaded: {e}") from None
    if name not in AGENTS and name in PLUGINS:
        factory = load(PLUGINS[name])  # logs one line if the plugin is broken
        if factory is None:
            raise KeyError(f"agent {name!r} failed to load from {PLUGINS[name].value} (see the log line above)")
        register_agent(name, factory)
    if name not in AGENTS:
        raise KeyError(f"unknown agent {name!r} (known: {', '.join(agent_names())})")
    return AGENTS[name](seed=seed, **kw)


register_agent("random", RandomAgent)
register_agent("grid", GridAgent)
register_agent("eig", EIGAgent)
