"""Using what it bought: the observations of a bounty's approved submissions go into the lab's notebook and belief,
and the lab concludes again (docs/lab.md, "Buying data").

The investigation goes on from its notebook (notebook.txt in the run's report: the belief is rebuilt from its
raw measurements, lab/replay.py). Each bought observation is written as the lab's own are (experiment,
observation, raw) followed by a source line (world/source.py: bounty, submission, rig, the rig's noise factor),
then the belief and answer after it. Its weight is the rig's noise model (lab/rig_noise.py); one that lies far
outside the belief is flagged `outlier` on its source line and not used. Only the requested experiment counts:
anything else a contributor's notebook holds is ignored. The conclusion and stop line come last.

    result = collect_into(report_dir, {submission_id: (rig, [nb text, ...])}, bounty_id, book)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from loopylab.lab import audit
from loopylab.lab.beliefs import REPORTED_SIGMA, Measurement, Posterior
from loopylab.lab.bounty_request import ExperimentRequest
from loopylab.lab.replay import belief_at_end, parse_numbered
from loopylab.lab.rig_noise import RigNoise, weigh_in
from loopylab.world import audit as a
from loopylab.world import notebook as g
from loopylab.world.source import Source

BOUGHT_NOTEBOOK = "notebook_bought.txt"


class CollectError(ValueError):
    """A report or a bought notebook the lab cannot use (the message says which and why)."""


@dataclass
class Collected:
    conclusion: g.Conclusion
    p_within: float
    used: int = 0  # bought observations the belief took
    outliers: int = 0  # flagged, not used
    ignored: int = 0  # lines of other experiments, failures, unparseable notebooks
    factors: dict[str, float] = field(default_factory=dict)  # rig -> noise factor applied (the last)
    notebook: str = ""


def bought_measurements(text: str, want: g.Experiment) -> tuple[list[Measurement], int]:
    """The measurements of experiment `want` in a contributor's notebook (raw lines when present, else the
    rounded observation) and how many other sections were ignored. CollectError if it is not notebook text."""
    try:
        sections = g.parse(text)
    except g.GrammarError as e:
        raise CollectError(f"a bought notebook does not parse: {e}") from None
    out: list[Measurement] = []
    ignored, current, obs = 0, None, None
    for s in sections:
        if s.kind == "experiment":
            current, obs = s.body, None
        elif s.kind == "observation" and current == want:
            assert isinstance(s.body, g.Observation)
            if s.body.error is not None:
                ignored += 1
                continue
            obs = s.body
            out.append(Measurement.from_observation(want, obs))
        elif s.kind == "raw" and current == want and obs is not None:
            assert isinstance(s.body, a.Raw)
            try:
                exact = Measurement.from_reply(want, s.body.as_dict())
            except KeyError:
                continue  # the raw line lacks the measurement: the observation stands
            if g.Observation.from_measurements(want.skill, s.body.as_dict()).render() == obs.render():
                out[-1] = exact  # the unrounded values, when they agree with the written observation
            obs = None
        elif s.kind in ("experiment", "observation"):
            ignored += 1
    return out, ignored


def _without_ending(sections: list[tuple[int, g.Section]]) -> list[g.Section]:
    """The run's notebook without its conclusion and stop line (the investigation goes on)."""
    return [s for _, s in sections if s.kind not in ("conclusion", "stop")]


def continue_with(
    text: str,
    request: ExperimentRequest,
    bounty_id: int,
    bought: dict[int, tuple[str, list[str]]],
    book: RigNoise,
    twins=None,
) -> Collected:
    """The run's notebook `text` (with its audit lines) continued with the bought notebooks (`bought`:
    submission id -> (rig, [notebook text])), in submission order; the new conclusion at the end."""
    sections = parse_numbered(text)
    question, prov, post = belief_at_end(sections, twins)
    lines = _without_ending(sections)
    own = sum(1 for s in lines if s.kind == "experiment")
    res = Collected(g.Conclusion(()), 0.0)
    for sid in sorted(bought):
        rig, texts = bought[sid]
        for nb in texts:
            try:
                ms, ignored = bought_measurements(nb, request.experiment)
            except CollectError:
                res.ignored += 1
                continue
            res.ignored += ignored
            for m in ms:
                lines += _take(post, m, rig, bounty_id, sid, book, res)
    ans = post.answer(prov.confidence)
    res.conclusion, res.p_within = ans.conclusion, ans.confidence
    met = ans.confidence >= prov.confidence
    stop = a.StopLine(
        "confident" if met else "budget",
        float(g.fmt(ans.confidence, 3)),
        float(g.fmt(prov.confidence, 3)),
        own + res.used + res.outliers,
        question.max_experiments,
        met,
    )
    lines += [ans.conclusion, stop]
    res.notebook = g.render(lines)
    return res


def _take(post: Posterior, m: Measurement, rig: str, bounty: int, sid: int, book: RigNoise, res: Collected) -> list:
    """One bought measurement into the belief (or flagged), as notebook sections."""
    obs = g.Observation(tuple((k, v) for k, v in _observed(m)), com=m.com, load=m.load)
    factor, z = weigh_in(post, m, rig, book)
    res.factors[rig] = factor
    src = Source(bounty, sid, rig, float(g.fmt(factor, 2)), None if z is None else float(g.fmt(z, 2)))
    if z is None:
        res.used += 1
    else:
        res.outliers += 1
    out: list = [m.experiment, obs, _raw(m), src]
    if z is None:
        out += [post.belief(), audit.answer_now(post.answer())]
    return out


def _raw(m: Measurement) -> a.Raw:
    """The measurement exactly as the belief took it (values, the rig's reported sigmas, a drop's offset, a
    push's load): what a replay reads."""
    pairs = [*m.values.items(), *((REPORTED_SIGMA[k], s) for k, s in m.reported_sigma.items() if k in REPORTED_SIGMA)]
    if m.com is not None:
        pairs += list(zip(g.OBS_OPTIONAL["drop"][1], m.com))
    if m.load is not None:
        pairs.append((g.OBS_OPTIONAL["push"][1][0], m.load))
    return a.Raw(tuple((k, float(v)) for k, v in pairs))


def _observed(m: Measurement) -> list[tuple[str, float]]:
    """The measurement as an observation's (word, value) pairs, rounded as the grammar writes them."""
    words = {mk: (k, d) for k, mk, d in g.OBS_FIELDS[m.experiment.skill]}
    return [(words[mk][0], float(g.fmt(v, words[mk][1]))) for mk, v in m.values.items() if mk in words]


def collect_into(
    report: Path, bought: dict[int, tuple[str, list[str]]], book: RigNoise, twins=None
) -> tuple[Collected, dict]:
    """Continue the run in `report` (notebook.txt, bounty.json, result.json) with what was bought: writes
    notebook_bought.txt and the market's part of result.json (re-graded when the run recorded the truth)."""
    from loopylab.lab.questions import grade

    report = Path(report)
    for name in ("notebook.txt", "bounty.json", "result.json"):
        if not (report / name).exists():
            raise CollectError(f"{report}: no {name} (a report of `loopylab run --without ...` that drafted a bounty)")
    bounty = json.loads((report / "bounty.json").read_text())
    request = ExperimentRequest.from_task_spec(bounty["terms"]["task_spec"])
    res = continue_with((report / "notebook.txt").read_text(), request, int(bounty.get("id", 0)), bought, book, twins)
    (report / BOUGHT_NOTEBOOK).write_text(res.notebook)
    result = json.loads((report / "result.json").read_text())
    answer = res.conclusion.answers[0]
    market = {
        "bounty": bounty.get("id"),
        "submissions": sorted(bought),
        "used": res.used,
        "outliers": res.outliers,
        "ignored": res.ignored,
        "noise_factors": res.factors,
        "conclusion": res.conclusion.render(),
        "p_within": res.p_within,
        "notebook": str(report / BOUGHT_NOTEBOOK),
    }
    truth = result.get("truth")
    if truth:
        question = g.parse_body("question", result["question"])
        assert isinstance(question, g.Question)
        gr = grade(question, res.conclusion, truth)
        market.update(success=gr.success, error=gr.error, answer=getattr(answer, "value", None))
    result["market"] = market
    (report / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return res, market
