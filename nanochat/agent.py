"""The `nanochat` agent: the lab's agent interface (`propose(notebook_view)`) backed by the GPT.

The model reads the notebook text and writes the next section under the engine's constraints. The
lab's scientific routine is kept as protocol, the model fills it in: the first section it writes is
a hypothesis (the investigation resets the belief engine on every hypothesis, so only one is allowed),
then experiments or a conclusion; with the budget spent or no candidates left, only a conclusion.

The lab finds it through the `loopylab.agents` entry point `nanochat` (pyproject.toml): `--agent nanochat`.
Loading a checkpoint costs a second, and the lab makes one agent per investigation, so loaded
checkpoints are cached per process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from loopylab.lab import kinds as question_kinds
from loopylab.nanochat.checkpoint import SHIPPED_DIR, load_cached
from loopylab.nanochat.engine import Engine, SampleConfig, allowed_kinds, answer_quantity
from loopylab.nanochat.feasible import Feasibility, feasible_candidates
from loopylab.world import notebook as g

_FEASIBILITY: dict[str, Feasibility] = {}  # one planner per robot and process (its IK plans are cached)


def shared_feasibility(robot: str) -> Feasibility:
    if robot not in _FEASIBILITY:
        _FEASIBILITY[robot] = Feasibility(robot)
    return _FEASIBILITY[robot]


class NanochatAgent:
    name = "nanochat"

    def __init__(
        self,
        seed: int = 0,
        checkpoint: str | Path | None = None,
        temperature: float = 0.0,
        top_k: int = 20,
        device: str = "cpu",
        threads: int | None = None,
        robot: str | None = os.environ.get("LOOPYLAB_POLICY_ROBOT", "panda"),
    ):
        """`robot`: whose skills plan the candidates (calls its arm cannot carry out are masked); None
        offers the lab's grid unfiltered."""
        import torch

        if threads:
            torch.set_num_threads(threads)
        checkpoint = checkpoint or os.environ.get("LOOPYLAB_POLICY_CHECKPOINT") or SHIPPED_DIR
        model, tokenizer, self.meta = load_cached(checkpoint, device)
        self.engine = Engine(model, tokenizer, SampleConfig(temperature=temperature, top_k=top_k, seed=seed))
        self.decision_s: list[float] = []
        self.decision_kinds: list[str] = []
        self.invalid_calls = 0  # experiments outside the lab's grid (the constraints make this 0)
        self.feasibility = shared_feasibility(robot) if robot else None
        self.masked = 0  # candidates masked as infeasible or uninformative, over all decisions

    @property
    def stats(self):
        return self.engine.stats

    def propose(self, notebook) -> g.Hypothesis | g.Experiment | g.Conclusion:
        """notebook: a `loopylab.lab.notebook.NotebookView`."""
        t0 = time.perf_counter()
        candidates = feasible_candidates(
            notebook.sections, notebook.question, notebook.scene, notebook.candidates, self.feasibility
        )
        self.masked += len(notebook.candidates) - len(candidates)
        kinds = allowed_kinds(notebook.sections, notebook.budget_left, bool(candidates))
        section = self.engine.propose(
            list(notebook.sections),
            allowed=kinds,
            candidates=[c.render() for c in candidates],
            answers=offered_answers(notebook) if "conclusion" in kinds else (),
        )
        self.decision_s.append(time.perf_counter() - t0)
        self.decision_kinds.append(section.kind)
        if section.kind == "experiment" and section.body not in notebook.candidates:
            self.invalid_calls += 1
        return section.body


def offered_answers(notebook) -> list[str]:
    """The belief engine's answer now, for a question whose answer is no single estimate or order (a model, a
    position, an offset: the kinds of the registry beyond the scalar ones): the conclusion the policy may give."""
    post = getattr(notebook, "posterior", None)
    if post is None or answer_quantity(notebook.question) is not None or question_kinds.of(notebook.question).ranks:
        return []
    return [post.answer(notebook.confidence).conclusion.render()]


def run_one(
    seed: int,
    kind: str,
    checkpoint: str | Path | None = None,
    temperature: float = 0.0,
    console: bool = False,
    robot: str = "panda",
    agent_seed: int | None = None,
) -> dict:
    """One simulated world investigated by the policy and graded (what `loopylab policy sample` prints).
    `agent_seed`: the policy's and belief engine's own RNG seed (drawn when None, returned): never the world's
    `seed`. The world is the sealed one (its hidden properties keyed by the world builder's secret, sim/secret.py),
    as `loopylab eval` builds it: a public world's seed rebuilds every hidden property, and a policy that found the
    seed from the layout (lab/cheaters.py, `search`) would read the truth. The policy runs in this process (a
    trusted demo, not an evaluation: `loopylab eval` runs agents in a process of their own, lab/sealed.py)."""
    import secrets

    from loopylab.lab import kinds
    from loopylab.lab.evaluation import world_objects
    from loopylab.lab.forward import ForwardModel
    from loopylab.lab.investigation import InvestigationConfig, grammar_scene, investigate
    from loopylab.lab.notebook import console_sink
    from loopylab.lab.questions import make_question
    from loopylab.lab.twin import TwinPool

    agent_seed = secrets.randbits(32) if agent_seed is None else int(agent_seed)
    agent = NanochatAgent(seed=agent_seed, checkpoint=checkpoint, temperature=temperature, robot=robot)
    n_obj, structure = world_objects(kind, seed), kinds.get(kind).structure
    with sealed_bench(robot, seed, n_obj) as bench:
        scene = bench.reset(seed, n_obj, structure=structure)
        question = make_question(kind, grammar_scene(scene), seed)
        twins = TwinPool(workers=1)
        try:
            result = investigate(
                question,
                scene,
                agent,
                bench.runner,
                ForwardModel(scene, twins),
                InvestigationConfig(seed=agent_seed),
                sinks=[console_sink()] if console else None,
            )
        finally:
            getattr(twins, "close", lambda: None)()
        graded = _grade(bench, question, result.conclusion, seed, n_obj, structure)
    return {
        "seed": seed,
        "agent_seed": agent_seed,
        "kind": kind,
        "success": bool(graded and graded.success),
        "experiments": result.experiments,
        "notebook": result.notebook.text(),
        "parse_failures": agent.invalid_calls,
        "fallbacks": agent.stats.fallbacks,
        "masked": agent.masked,
        "decision_s": agent.decision_s,
    }


def sealed_bench(robot: str, seed: int, n_objects: int | None = None):
    """The simulated bench of the world of `seed` as `loopylab eval` builds it: sealed (the world builder's secret
    keys its hidden properties, sim/secret.py), so that the seed rebuilds its layout and nothing it hides."""
    from loopylab.lab.bench import sim_bench
    from loopylab.sim.secret import SEALED

    return sim_bench(robot=robot, seed=seed, n_objects=n_objects, world_secret=SEALED)


def _grade(bench, question, conclusion, seed: int, n_obj: int | None, structure: str | None):
    """The conclusion's grade on the bench's hidden world (a needs_outcome kind: by its held-out action run on the
    world reset for it); None where that action failed, so the run cannot be graded."""
    from loopylab.lab import kinds
    from loopylab.lab.questions import grade

    outcome = None
    if kinds.of(question).needs_outcome:
        bench.reset(seed, n_obj, structure=structure)
        try:
            outcome = kinds.held_out_outcome(question, bench.runner.execute, bench.oracle)
        except RuntimeError:
            return None
    return grade(question, conclusion, bench.oracle(), outcome)
