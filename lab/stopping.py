"""Why an investigation stopped, in words: the belief was sure enough, the budget was spent, nothing was left
to run, or nothing left was worth its cost (and then which of the belief's twin-vs-world latents holds its
spread). `lab/investigation.py` records the reason with the conclusion; `loopylab run` and the demo print it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopylab.lab import kinds
from loopylab.lab.beliefs import BIAS, LATENT_SD, Posterior
from loopylab.lab.forward import PARAM_INDEX
from loopylab.lab.story import narrowing, short_text, tolerance_text
from loopylab.world import notebook as g


@dataclass(frozen=True)
class Stop:
    """Why an investigation stopped: `code` for programs, `text` for people."""

    code: str  # confident | budget | no_candidates | not_worth | max_steps | agent
    text: str
    met: bool  # whether the belief reached the confidence asked for


# the belief's twin-vs-world latents (lab/beliefs.py, BIAS and LOAD_SHARE), in words: (what, which experiment)
SYSTEMATIC = {
    "force_mean_N": ("the push force's systematic error", "push"),
    "slide_m": ("the strike's systematic error in how far the block slides", "strike"),
    "bounce_m": ("the drop's systematic error in how high the block bounces", "drop"),
    "load_share": ("how much of the hand's downward push reaches the table", "push"),
}


def stop_reason(
    question: g.Question,
    p_within: float,
    confidence: float,
    experiments: int,
    n_candidates: int,
    best: tuple[g.Experiment, float, float] | None = None,
    max_steps_hit: bool = False,
    systematic: tuple[str, float] | None = None,
) -> Stop:
    """Why an investigation with this final state stopped, in the order the built-in agents check.
    `best`: (experiment, eig, cost) of the expert's last choice when it judged nothing worth running;
    `systematic`: (latent, its prior sd) that the answer's remaining spread is tied to (`dominant_systematic`)."""
    sure = (
        f"the belief is {p_within:.0%} sure its answer is right"
        if kinds.of(question).right is not None
        else f"the belief is {p_within:.0%} sure its answer is within {tolerance_text(question)}"
    )
    short = f"{sure}, short of the {confidence:.0%} it needs"
    if p_within >= confidence:
        return Stop("confident", f"{sure} (it needs {confidence:.0%})", True)
    if max_steps_hit:
        return Stop(
            "max_steps",
            f"the agent did not conclude within {experiments} steps, so the belief engine answered for it; {short}",
            False,
        )
    if experiments >= question.max_experiments:
        return Stop("budget", f"the budget of {question.max_experiments} experiments is spent; {short}", False)
    if n_candidates == 0:
        return Stop(
            "no_candidates",
            "no experiment is left to run (every one failed or has no clear path where "
            f"the objects stand now); {short}",
            False,
        )
    if best is None:
        return Stop("agent", f"the agent chose to conclude; {short}", False)
    exp, eig, cost = best
    left = question.max_experiments - experiments
    why = ""
    if systematic is not None and systematic[0] in SYSTEMATIC:
        what, skill = SYSTEMATIC[systematic[0]]
        plural = skill + ("es" if skill.endswith("sh") else "s")
        why = (
            f" (its remaining spread is tied to {what}: the belief allows the simulated twin to be off from "
            f"the robot by about {systematic[1]:.0%}, the same way in every {skill}, which repeating "
            f"{plural} cannot average away)"
        )
    return Stop(
        "not_worth",
        f"no experiment left is worth running: the most promising, {short_text(exp)}, would "
        f"shrink the belief's spread by only {narrowing(eig)} ({eig:.3f} nats of information for "
        f"{cost:.3f} nats of robot time and risk); more experiments of the kinds on offer barely narrow "
        f"it further{why}, so it answers now with {left} of its {question.max_experiments} experiments "
        f"unspent; {short}",
        False,
    )


def dominant_systematic(post: Posterior, question: g.Question) -> tuple[str, float] | None:
    """The twin-vs-world latent most of the answer's remaining spread is tied to: correlated with the
    question's parameter (|r| >= 0.5) and still at least half as uncertain as a priori; (name, prior sd)."""
    if question.kind not in PARAM_INDEX or question.object not in post.objects:
        return None
    op = post.objects[question.object]
    if op.theta.shape[1] <= 3:
        return None
    phi = op.theta[:, PARAM_INDEX[question.kind]]
    m_phi, sd_phi = op.mean_sd(phi)
    found = None
    for i, (name, prior_sd) in enumerate(zip([*BIAS, "load_share"], LATENT_SD)):
        col = op.theta[:, 3 + i]
        m, sd = op.mean_sd(col)
        if sd < 0.5 * prior_sd or sd_phi <= 0:
            continue
        r = abs(float(np.sum(op.weights * (phi - m_phi) * (col - m))) / (sd * sd_phi))
        if r >= 0.5 and (found is None or r > found[0]):
            found = (r, name, float(prior_sd))
    return None if found is None else (found[1], found[2])


__all__ = ["SYSTEMATIC", "Stop", "dominant_systematic", "stop_reason"]
