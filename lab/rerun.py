"""Rerun a notebook: run its recorded experiments again, in order, on a world (a bench graph, or the sim bench
at a world seed the user names), and compare what they measure and what the belief makes of it, step by step.

Where a replay (lab/replay.py) checks the arithmetic, a rerun checks the science: does the world answer the
same way twice? The belief engine starts from the notebook's own seed and hypotheses, so on the same world the
differences are the world's (contact noise, an object that ended elsewhere), not the sampler's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loopylab.lab import audit, kinds
from loopylab.lab.forward import ForwardModel, InlineTwins
from loopylab.lab.investigation import observe
from loopylab.lab.replay import ReplayError, header
from loopylab.world import audit as a
from loopylab.world import notebook as g


@dataclass
class RerunStep:
    step: int
    experiment: str
    recorded: str  # the recorded observation
    rerun: str  # what the experiment measured this time
    delta: str  # rerun - recorded, per value ("slide +0.004"), or why there is none
    recorded_answer: str = ""  # the answer line after it (value, half-width, p)
    rerun_answer: str = ""


@dataclass
class RerunReport:
    path: str
    steps: list[RerunStep] = field(default_factory=list)
    recorded_conclusion: str = ""
    rerun_answer: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def same_observations(self) -> int:
        return sum(s.recorded == s.rerun for s in self.steps)


@dataclass
class _Planned:
    hypotheses: list[g.Hypothesis]  # stated before this experiment (the belief restarts from each)
    experiment: g.Experiment
    observation: str = ""
    answer: str = ""


def plan(sections: list[tuple[int, g.Section]]) -> tuple[list[_Planned], list[g.Hypothesis]]:
    """The recorded experiments with what was recorded after each; and hypotheses stated after the last one."""
    steps: list[_Planned] = []
    waiting: list[g.Hypothesis] = []
    for _, s in sections:
        if isinstance(s.body, g.Hypothesis):
            waiting.append(s.body)
        elif isinstance(s.body, g.Experiment):
            steps.append(_Planned(waiting, s.body))
            waiting = []
        elif isinstance(s.body, g.Observation) and steps:
            steps[-1].observation = s.body.render()
        elif isinstance(s.body, a.AnswerNow) and steps:
            steps[-1].answer = s.body.render()
    return steps, waiting


def delta(recorded: str, rerun: g.Observation) -> str:
    """rerun - recorded, per value of the observation ("slide +0.004"), or which of them failed."""
    try:
        old = g.parse_body("observation", recorded)
    except g.GrammarError:
        return "not recorded"
    assert isinstance(old, g.Observation)
    if old.error or rerun.error:
        return {(True, True): "both failed", (True, False): "failed before", (False, True): "failed now"}[
            (bool(old.error), bool(rerun.error))
        ]
    new = dict(rerun.values)
    return " ".join(f"{k} {new[k] - v:+.3f}" for k, v in old.values if k in new)


def rerun_sections(
    sections: list[tuple[int, g.Section]],
    bench,
    world_seed: int | None = None,
    n_objects: int | None = None,
    twins=None,
    where: str = "notebook",
) -> RerunReport:
    """Run the notebook's experiments on `bench` (a `lab.bench.Bench`): reset to `world_seed` first when it
    simulates (a simulated bench needs one); on a bench without sim/reset the world is as it stands."""
    question, prov, twin = header(sections)
    if bench.has_sim:
        if world_seed is None:
            raise ReplayError("a simulated bench needs the world to run on: give its seed (--seed)")
        scene = bench.reset(world_seed, n_objects)
    else:
        scene = audit.scene_of(twin)  # where the notebook saw things: the best guess on a real bench
    post = kinds.make_posterior(
        question, ForwardModel(scene, twins or InlineTwins()), None, prov.particles, None, prov.run_seed
    )
    report = RerunReport(where)
    steps, after = plan(sections)
    for i, st in enumerate(steps, start=1):
        for h in st.hypotheses:
            post.reset(h)
        try:
            reply = bench.runner.execute(st.experiment)
        except Exception as e:  # a timeout or a dead service is an observation, as in the investigation
            reply = {"ok": False, "measurements": {}, "error": f"{type(e).__name__}: {e}"}
        obs, measurement = observe(st.experiment, reply)
        if measurement is not None:
            post.update(measurement)
        now = audit.answer_now(post.answer(prov.confidence)).render()
        report.steps.append(
            RerunStep(
                i, st.experiment.render(), st.observation, obs.render(), delta(st.observation, obs), st.answer, now
            )
        )
    for h in after:
        post.reset(h)
    conclusion = next((s.body for _, s in reversed(sections) if isinstance(s.body, g.Conclusion)), None)
    report.recorded_conclusion = conclusion.render() if conclusion is not None else ""
    report.rerun_answer = audit.answer_now(post.answer(prov.confidence)).render()
    if not steps:
        report.notes.append("the notebook records no experiments")
    return report


__all__ = ["RerunReport", "RerunStep", "delta", "plan", "rerun_sections"]
