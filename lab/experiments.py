"""The finite experiment grid: which experiments are sensible on a scene where its objects stand now.

Every skill at a few parameter levels (PUSH_DISTANCES ... LIFT_HEIGHTS), pushes and strikes only along
directions with a clear path inside the reachable table (WORKSPACE_X/Y, CLEARANCE), and `place` to the
nearest clear spot for an object boxed in by its neighbours. The agents choose from this grid, the
nanochat engine decodes experiment bodies from it (`valid_bodies`), and the twin's surrogate relies on
the clear paths it guarantees. The text of each experiment is `loopylab.world.notebook`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from loopylab.lab import kinds
from loopylab.world import notebook
from loopylab.world.notebook import DIRECTIONS, Experiment, GrammarError, Question, Scene, SceneObject

PUSH_DISTANCES = (0.10,)
PUSH_SPEEDS = (0.05, 0.10)
STRIKE_SPEEDS = (0.30, 0.45, 0.60)  # slower strikes hardly launch the object
# Strikes along the arm's reach (+x, -x) are capped: there the joints turn fastest per m/s of the hand
# (a Panda's hand at x = 0.55 m reaches the gate's velocity limit at about 0.45 m/s along x, 1.0 m/s
# along y; a strike also overshoots its speed while it accelerates). A faster strike is clamped by the
# gate, launches slower than asked and brakes late, and the slide misleads the lab (benchmark eig runs,
# 50 worlds: -x at 0.60 slid 1.34x v^2/(2 mu g) at the median, 3.8x at p90; other directions 0.90x).
# The skill refuses, before moving, any strike its arm cannot follow.
STRIKE_MAX_SPEED_ALONG_X = 0.30
DROP_HEIGHTS = (0.10, 0.20)
LIFT_HEIGHTS = (0.10,)
WORKSPACE_X = (0.30, 0.74)  # reachable table area (base frame, metres) for pushes: the pusher's start
WORKSPACE_Y = (-0.30, 0.30)  # behind the object and the object's end point must both lie inside
CLEARANCE = 0.06  # free margin around a pushed or struck object's path
PLACE_X = (0.40, 0.64)  # where `place` may put an object (well inside the arm's reach)
PLACE_Y = (-0.20, 0.20)


def _unit(direction: str) -> tuple[float, float]:
    return {"+x": (1, 0), "-x": (-1, 0), "+y": (0, 1), "-y": (0, -1)}[direction]


def path_clear(scene: Scene, obj: str, direction: str, travel: float) -> bool:
    """True when `obj` can travel `travel` metres along `direction` without leaving the workspace or
    coming near another object (the twin's surrogate assumes an unobstructed, isotropic table)."""
    o = scene.get(obj)
    ux, uy = _unit(direction)
    behind = o.size / 2 + 0.05  # where the pusher starts
    for px, py in ((o.x + ux * travel, o.y + uy * travel), (o.x - ux * behind, o.y - uy * behind)):
        if not (WORKSPACE_X[0] <= px <= WORKSPACE_X[1] and WORKSPACE_Y[0] <= py <= WORKSPACE_Y[1]):
            return False
    for other in scene.objects:
        if other.name == obj:
            continue
        dx, dy = other.x - o.x, other.y - o.y
        along, across = dx * ux + dy * uy, abs(dx * uy - dy * ux)
        reach = (o.size + other.size) / 2 + CLEARANCE
        if -reach < along < travel + reach and across < reach:
            return False
    return True


def _centre_first(o: SceneObject) -> list[str]:
    """Directions ordered towards the middle of the workspace first: an agent that takes the first of
    equally good experiments keeps its objects away from the edges, where nothing can be done."""
    cx, cy = sum(WORKSPACE_X) / 2, sum(WORKSPACE_Y) / 2
    return sorted(DIRECTIONS, key=lambda d: (o.x + _unit(d)[0] * 0.1 - cx) ** 2 + (o.y + _unit(d)[1] * 0.1 - cy) ** 2)


def strike_travel(speed: float) -> float:
    """Metres a strike at `speed` may carry its object, reserved clear ahead of it: pushed while the pusher
    speeds up (4 m/s^2 from contact) and cruises 3 cm, then the free slide v^2/(2 mu g) on the slipperiest
    surface the prior allows (mu 0.2), plus 2 cm. (A flat 12 cm let a light block struck at 0.6 m/s slide
    out of the arm's reach, and the rest of its investigation fail.)"""
    return speed**2 / (2 * 4.0) + 0.03 + speed**2 / (2 * 0.2 * 9.81) + 0.02


def _strike_directions(speed: float) -> tuple[str, ...]:
    """The directions a strike at `speed` may take (along the reach it is capped: STRIKE_MAX_SPEED_ALONG_X)."""
    return tuple(d for d in DIRECTIONS if d in ("+y", "-y") or speed <= STRIKE_MAX_SPEED_ALONG_X)


def _sliding(scene: Scene, name: str) -> list[Experiment]:
    """The pushes and strikes of `name` whose path is clear where the objects are now."""
    out: list[Experiment] = []
    dirs = _centre_first(scene.get(name))
    for dr in dirs:
        for dist in PUSH_DISTANCES:
            if path_clear(scene, name, dr, dist):
                out += [Experiment("push", name, dr, dist, sp) for sp in PUSH_SPEEDS]
    for dr in dirs:
        out += [
            Experiment("strike", name, dr, speed=sp)
            for sp in STRIKE_SPEEDS
            if dr in _strike_directions(sp) and path_clear(scene, name, dr, strike_travel(sp))
        ]
    return out


def clear_spot(scene: Scene, name: str) -> tuple[float, float] | None:
    """Where to put `name` so that it can be pushed and struck: of the spots on a 2 cm grid over the
    reachable table (PLACE_X, PLACE_Y) clear of the other objects, the nearest to where it is from which
    every push and strike level of the grid has a clear path in some direction; None if none."""
    o = scene.get(name)
    others = [q for q in scene.objects if q.name != name]
    # each level's travel and the directions it may take (a path clear this far is clear for less)
    levels = [(d, tuple(DIRECTIONS)) for d in PUSH_DISTANCES] + [
        (strike_travel(sp), _strike_directions(sp)) for sp in STRIKE_SPEEDS
    ]
    spots = sorted(
        (math.hypot(x - o.x, y - o.y), x, y)
        for x in (round(float(v), 2) + 0.0 for v in np.arange(PLACE_X[0], PLACE_X[1] + 1e-9, 0.02))
        for y in (round(float(v), 2) + 0.0 for v in np.arange(PLACE_Y[0], PLACE_Y[1] + 1e-9, 0.02))
    )
    for _, x, y in spots:  # nearest first
        if any(math.hypot(x - q.x, y - q.y) < (o.size + q.size) / 2 + CLEARANCE for q in others):
            continue
        moved = Scene(tuple(SceneObject(q.name, q.shape, q.size, x, y) if q.name == name else q for q in scene.objects))
        if all(any(path_clear(moved, name, d, travel) for d in dirs) for travel, dirs in levels):
            return (x, y)
    return None


def candidate_experiments(
    scene: Scene, question: Question | None = None, exclude: Iterable[Experiment] = ()
) -> list[Experiment]:
    """The finite, sensible grid of experiments on the objects of `question` (all objects if None):
    every skill at every parameter level, pushes and strikes only along directions with a clear path;
    minus `exclude` (e.g. experiments that already failed where the objects are now), and only the skills the
    question's kind allows (`loopylab.lab.kinds.QuestionKind.skills`). An object boxed
    in by its neighbours (no push or strike path at all) can be placed at its nearest clear spot."""
    objs = list(question.objects) if question is not None else scene.names
    both = question is not None and kinds.get(question.kind).both_axes
    out: list[Experiment] = []
    for name in objs:
        sliding = _sliding(scene, name)
        out += sliding
        out.append(Experiment("weigh", name))
        out += [Experiment("drop", name, height=h) for h in DROP_HEIGHTS]
        out += [Experiment("lift", name, height=h) for h in LIFT_HEIGHTS]
        axes = {e.direction[1] for e in sliding if e.direction}
        if (not sliding or (both and len(axes) < 2)) and (spot := clear_spot(scene, name)) is not None:
            out.append(Experiment("place", name, position=spot))
    skip = set(exclude)
    allowed = kinds.get(question.kind).skills if question is not None else None
    return [e for e in out if e not in skip and (allowed is None or e.skill in allowed)]


def sliding_levels(name: str) -> list[Experiment]:
    """Every push and strike level of the grid for `name`, as from a clear spot: what placing it there
    makes possible (the expert values a place by these)."""
    centre = (sum(PLACE_X) / 2, sum(PLACE_Y) / 2)
    return _sliding(Scene((SceneObject(name, "cube", 0.05, *centre),)), name)


# ---------------------------------------------------------------------------------------------
# constrained decoding on the grid


def valid_bodies(kind: str, scene: Scene, question: Question | None = None) -> list[str]:
    """All valid bodies of a finite kind: experiments from the grid. Other kinds hold free numbers
    (use `prefix_ok`/`body_complete`), and asking for them here is an error."""
    if kind != "experiment":
        raise GrammarError(f"{kind} bodies are not a finite set; use prefix_ok/body_complete")
    return [e.render() for e in candidate_experiments(scene, question)]


def prefix_ok(kind: str, partial: str, scene: Scene | None = None, question: Question | None = None) -> bool:
    """`loopylab.world.notebook.prefix_ok`, with experiment bodies narrowed to the grid when a scene is given."""
    if kind == "experiment" and scene is not None:
        return any(b.startswith(partial) for b in valid_bodies(kind, scene, question))
    return notebook.prefix_ok(kind, partial, scene)


def body_complete(kind: str, text: str, scene: Scene | None = None, question: Question | None = None) -> bool:
    """`loopylab.world.notebook.body_complete`, with experiment bodies narrowed to the grid when a scene is given."""
    if kind == "experiment" and scene is not None:
        return text in valid_bodies(kind, scene, question)
    return notebook.body_complete(kind, text, scene)
