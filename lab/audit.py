"""The audit lines of the lab's notebooks (`loopylab.world.audit`), made from the lab's own objects: where the
notebook came from, the twin's scene, why each experiment was chosen, the raw measurements, the answer at
each step and why the investigation stopped. `lab/replay.py` reads them back.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from loopylab.world import audit as a
from loopylab.world import notebook as g

VERSUS = 3  # alternatives written beside each choice: the best other experiment levels


@functools.cache
def code_version() -> tuple[str, str | None]:
    """(loopylab.__version__, `git describe` of the checkout the code runs from, or None)."""
    import loopylab

    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            check=False,
            cwd=Path(loopylab.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        git = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        git = ""
    return a.token(loopylab.__version__), (a.token(git) if git else None)


def provenance(agent, graph: str, run_seed: int, particles: int, confidence: float) -> a.Provenance:
    code, git = code_version()
    name = a.token(getattr(agent, "name", type(agent).__name__))
    return a.Provenance(code, name, a.token(graph or "unknown"), int(run_seed), int(particles), confidence, git)


def twin(spec) -> a.Twin:
    """The twin line of a perceived `loopylab.world.scene.SceneSpec`: everything the twin simulates, exactly."""
    objs = tuple(
        a.TwinObject(o.label, o.shape, float(o.size), tuple(map(float, o.position)), tuple(map(float, o.orientation)))
        for o in spec.objects
    )
    table = (float(spec.table.friction), float(spec.table.restitution))
    return a.Twin(objs, spec.robot, float(spec.dt), float(spec.gravity), table)


def scene_of(line: a.Twin):
    """The perceived SceneSpec a twin line describes (colours and cameras left default: the twin ignores them)."""
    from loopylab.world.scene import ObjectSpec, SceneSpec, TableSpec

    objs = [ObjectSpec(o.name, o.shape, o.size, position=o.position, orientation=o.orientation) for o in line.objects]
    return SceneSpec(
        robot=line.robot, objects=objs, table=TableSpec(*line.table), dt=line.dt, gravity=line.gravity, cameras=[]
    )


def _r3(x: float | None) -> float | None:
    """EIG and cost as the line writes them (three decimals), so that the record and its text agree."""
    return None if x is None else float(g.fmt(float(x), a.EIG_DECIMALS))


def reason(agent, exp: g.Experiment, options: int, why: dict | None, eig: float | None = None) -> a.Reason:
    """Why `exp` was chosen: from the agent's decision summary (`lab.design.Decision.summary`) when it gave
    one; else only who chose it among how many (and the EIG the evaluation scored it at, if it did)."""
    name = a.token(getattr(agent, "name", type(agent).__name__))
    if not why:
        return a.Reason(name, options, _r3(eig))
    plan = why.get("plan")
    chosen = level(exp)
    versus: list[a.Alternative] = []
    for text, e_eig, cost in why.get("alternatives", []):  # best first, one per level
        alt = _experiment(text)
        if level(alt) != chosen and len(versus) < VERSUS:
            versus.append(a.Alternative(alt, _r3(e_eig), _r3(cost)))
    return a.Reason(
        name,
        int(why.get("options", options)),
        _r3(why["eig"]),
        _r3(why.get("cost", 0.0)),
        None if not plan else _experiment(plan["with"]),
        None if not plan else _r3(plan["eig"]),
        tuple(versus),
    )


def _experiment(text: str) -> g.Experiment:
    exp = g.parse_body("experiment", text)
    assert isinstance(exp, g.Experiment)
    return exp


def level(exp: g.Experiment) -> tuple:
    return (exp.object, exp.skill, exp.distance, exp.speed, exp.height, exp.position)


def answer_now(ans) -> a.AnswerNow:
    """The belief engine's answer (`lab.beliefs.Answer`) as an answer line."""
    return a.AnswerNow(ans.conclusion.answers[0], float(g.fmt(ans.confidence, 3)))


def stop_line(stop, question: g.Question, p: float, confidence: float, experiments: int, best) -> a.StopLine:
    """`stop`: a `lab.stopping.Stop`; `best`: (experiment, eig, cost) of the expert's last choice, when it
    judged nothing worth running."""
    alt = None if best is None or stop.code != "not_worth" else a.Alternative(best[0], _r3(best[1]), _r3(best[2]))
    p3, c3 = float(g.fmt(p, 3)), float(g.fmt(confidence, 3))
    return a.StopLine(stop.code, p3, c3, experiments, question.max_experiments, stop.met, alt)
