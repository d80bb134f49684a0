"""The finite experiment grid: which experiments are sensible on a scene where its objects stand now.

Every skill at a few parameter levels (PUSH_DISTANCES ... LIFT_HEIGHTS), pushes and strikes only along
directions with a clear path inside the table the arm reaches (its `Workspace`: WORKSPACE_X/Y for the
large arms, a ring for the desk arms; CLEARANCE), and `place` to the nearest clear spot for an object boxed
in by its neighbours. The agents choose from this grid, the
nanochat engine decodes experiment bodies from it (`valid_bodies`), and the twin's surrogate relies on
the clear paths it guarantees. The text of each experiment is `loopylab.world.notebook`'s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

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
# Free margin around a pushed or struck object's path, edge to edge (a Workspace's `clearance`): the hand
# passing beside a neighbour, the notebook's 1 cm rounding of two positions, and the object's drift off its line,
# which grows with the travel. A Panda's 6 cm holds its 10 cm pushes among objects placed 7 cm apart.
CLEARANCE = 0.06
PLACE_X = (0.40, 0.64)  # where `place` may put an object (well inside the arm's reach)
PLACE_Y = (-0.20, 0.20)


@dataclass(frozen=True)
class Workspace:
    """The table an arm reaches with its tool pointing down, and the levels it can run there: a rectangle
    (`x`, `y`) for the large arms, a ring (`ring`: radius range, `bearing`: |angle| max, rad) for the desk
    arms, whose reach is a ring around the base; `place_*` the same for where `place` may put an object."""

    x: tuple[float, float] = WORKSPACE_X
    y: tuple[float, float] = WORKSPACE_Y
    ring: tuple[float, float] | None = None
    bearing: float = math.pi
    place_x: tuple[float, float] = PLACE_X
    place_y: tuple[float, float] = PLACE_Y
    place_ring: tuple[float, float] | None = None
    push_distances: tuple[float, ...] = PUSH_DISTANCES
    strike_speeds: tuple[float, ...] = STRIKE_SPEEDS
    drop_heights: tuple[float, ...] = DROP_HEIGHTS
    lift_heights: tuple[float, ...] = LIFT_HEIGHTS
    clearance: float = CLEARANCE  # free margin around a path (see CLEARANCE)
    # how far the hand's body trails behind the pusher's start (`path_clear`'s `behind`), at the objects' height
    # (m): a neighbour there is under the hand as it comes down (0: the large arms' hands stay within the margin)
    hand_behind: float = 0.0
    hand_half_width: float = 0.025  # m: how far the trailing hand reaches either side of the push's line
    # the desk arms: how far out (m from the base) a grasp still takes an object of a size, as (size, radius)
    # pairs (interpolated); no push may leave its object beyond that, where nothing could lift, weigh or place
    # it again and a push back would start out of reach (empty: the large arms grasp wherever they push)
    grasp_reach: tuple[tuple[float, float], ...] = ()

    def reaches(self, x: float, y: float) -> bool:
        """True when a push may start or end at (x, y)."""
        return _inside(x, y, self.x, self.y, self.ring, self.bearing)

    def graspable(self, x: float, y: float, size: float) -> bool:
        """True when an object of `size` at (x, y) is within a grasp's reach, with `GRASP_MARGIN` to spare."""
        if not self.grasp_reach:
            return True
        sizes, radii = zip(*self.grasp_reach)
        return math.hypot(x, y) <= float(np.interp(size, sizes, radii)) - GRASP_MARGIN

    def may_place(self, x: float, y: float) -> bool:
        return _inside(x, y, self.place_x, self.place_y, self.place_ring, self.bearing)

    def place_centre(self) -> tuple[float, float]:
        """A spot in the middle of the place area (where `sliding_levels` imagines a placed object)."""
        if self.place_ring is not None:
            return (sum(self.place_ring) / 2, 0.0)
        return (sum(self.place_x) / 2, sum(self.place_y) / 2)

    def centre(self) -> tuple[float, float]:
        """The middle of the reachable table (directions towards it are tried first)."""
        return (sum(self.ring) / 2, 0.0) if self.ring is not None else (sum(self.x) / 2, sum(self.y) / 2)


def _inside(x, y, xs, ys, ring, bearing) -> bool:
    if ring is not None:
        return ring[0] <= math.hypot(x, y) <= ring[1] and abs(math.atan2(y, x)) <= bearing
    return xs[0] <= x <= xs[1] and ys[0] <= y <= ys[1]


PANDA = Workspace()
# The desk arms, measured with their IK (`Motion`: tool pointing down at the push height and at the skills'
# clearance above it, on a grid of radii and bearings). The SO-101 reaches 0.06-0.24 m out, and no higher than
# ~15 cm: pushes start and end 0.09-0.24 m out (clear of the base), within +-1.15 rad (beyond, its wrist roll
# cannot keep the hand's yaw fixed along a push across the reach: `Motion.orientation`). Its objects stand
# 0.14-0.22 m out (world.scene.PLACEMENT): a 6 cm push fits from about half of its dev worlds' red blocks (10 cm:
# 41 %), a place nearer gives the rest room. Strikes are left out: at 0.30 m/s (the slowest level that launches an
# object) its elbow would turn at 3.3-3.5 rad/s, past the 3.0 the gate lets a plan use, and the skill refuses
# them. It drops from 3 cm (a drop's hand rises by the height again; 5 cm was out of reach past 0.16 m), and lifts by
# 5 cm (a 10 cm lift of a 4 cm block 0.18 m out missed its pose by 1.4 mm: every lift of dev world 1000000's
# attachment question failed to plan, on the rig).
# The Koch holds its tool down at both heights only 0.14-0.17 m out: no 6 cm push fits (docs/hardware.md).
# Their clearance is 3 cm, not the Panda's 6: their objects stand a gripper's width (3 cm, world.scene) apart on a
# ring 8 cm deep, so 6 cm left a boxed-in block neither a push nor a place (world 2000002). 3 cm holds the SO-101's
# hand (3.5 cm across, world.robots: 1.75 cm beside the path) plus the 1 cm the notebook's rounding can hide; a
# 6 cm push drifts less than a 10 cm one.
DESK_CLEARANCE = 0.03
# The SO-101's pusher starts with its axis size/2 + 2 cm + its lead (the jaw, ~3.4 cm off the axis) behind the
# object's centre, and its body trails ~1.5 cm beyond the axis: its trailing edge is ~7 cm behind the object's face,
# 2 cm past the grid's `behind`, ~2 cm either side of the line. With the 3 cm margin alone the grid offered pushes
# whose hand came down on a neighbour there ("hit something besides red_block, vertical force -17.6 N": a
# cylinder 8 cm behind a block, in line; dev world 1000000 and the notebooks of test runs).
SO101_HAND_BEHIND = 0.025
# How far out the SO-101 grasps an object from the top (the weigh's path: the tool above it by the skills'
# clearance, the line down, the hold 5 cm up; IK to 1 mm, the worst bearing within +-1.15 rad): a 3 cm block out
# to the ring's 0.24 m, a 7 cm one to 0.216 m. A push that ended 0.238 m out left a block nothing could weigh or
# place (sim bench, test world 2000004; "best miss 0.7 mm" on the rig). tests/lab/test_experiments.py checks
# these against the IK.
SO101_GRASP_REACH = ((0.03, 0.240), (0.04, 0.238), (0.05, 0.232), (0.06, 0.226), (0.07, 0.216), (0.08, 0.206))
GRASP_MARGIN = 0.005  # m: a 6 cm push ends within ~6 mm of its mark (moved 0.049-0.054 m), the camera's 2 mm
SMALL_ARMS = {
    "so101": Workspace(
        ring=(0.09, 0.24),
        bearing=1.15,
        place_ring=(0.13, 0.20),
        push_distances=(0.06,),
        strike_speeds=(),
        drop_heights=(0.03,),
        lift_heights=(0.05,),
        clearance=DESK_CLEARANCE,
        hand_behind=SO101_HAND_BEHIND,
        grasp_reach=SO101_GRASP_REACH,
    ),
    "koch": Workspace(
        ring=(0.14, 0.17),
        bearing=1.15,
        place_ring=(0.14, 0.17),
        push_distances=(),
        strike_speeds=(),
        clearance=DESK_CLEARANCE,
    ),
}


def workspace(robot: str | None) -> Workspace:
    """The workspace of `robot` (the catalogue's name; the large arms share the Panda's)."""
    return SMALL_ARMS.get(robot or "panda", PANDA)


def _unit(direction: str) -> tuple[float, float]:
    return {"+x": (1, 0), "-x": (-1, 0), "+y": (0, 1), "-y": (0, -1)}[direction]


def path_clear(scene: Scene, obj: str, direction: str, travel: float, ws: Workspace = PANDA) -> bool:
    """True when `obj` can travel `travel` metres along `direction` without leaving the workspace `ws` or
    coming near another object (the twin's surrogate assumes an unobstructed, isotropic table)."""
    o = scene.get(obj)
    ux, uy = _unit(direction)
    behind = o.size / 2 + 0.05  # where the pusher starts
    for px, py in ((o.x + ux * travel, o.y + uy * travel), (o.x - ux * behind, o.y - uy * behind)):
        if not ws.reaches(px, py):
            return False
    if not ws.graspable(o.x + ux * travel, o.y + uy * travel, o.size):
        return False
    for other in scene.objects:
        if other.name == obj:
            continue
        dx, dy = other.x - o.x, other.y - o.y
        along, across = dx * ux + dy * uy, abs(dx * uy - dy * ux)
        reach = (o.size + other.size) / 2 + ws.clearance
        if -reach < along < travel + reach and across < reach:
            return False
        # the hand's trailing edge at the start: a neighbour in line with the hand there is under it
        tail = behind + ws.hand_behind + other.size / 2
        if ws.hand_behind and -tail < along < 0 and across < ws.hand_half_width + other.size / 2:
            return False
    return True


def _centre_first(o: SceneObject, ws: Workspace = PANDA) -> list[str]:
    """Directions ordered towards the middle of the workspace first: an agent that takes the first of
    equally good experiments keeps its objects away from the edges, where nothing can be done."""
    cx, cy = ws.centre()
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


def _sliding(scene: Scene, name: str, ws: Workspace = PANDA) -> list[Experiment]:
    """The pushes and strikes of `name` whose path is clear where the objects are now."""
    out: list[Experiment] = []
    dirs = _centre_first(scene.get(name), ws)
    for dr in dirs:
        for dist in ws.push_distances:
            if path_clear(scene, name, dr, dist, ws):
                out += [Experiment("push", name, dr, dist, sp) for sp in PUSH_SPEEDS]
    for dr in dirs:
        out += [
            Experiment("strike", name, dr, speed=sp)
            for sp in ws.strike_speeds
            if dr in _strike_directions(sp) and path_clear(scene, name, dr, strike_travel(sp), ws)
        ]
    return out


def clear_spot(scene: Scene, name: str, ws: Workspace = PANDA, both_axes: bool = False) -> tuple[float, float] | None:
    """Where to put `name` so that it can be pushed and struck: of the spots on a 2 cm grid over the
    place area of `ws` clear of the other objects, the nearest to where it is from which every push and
    strike level of the grid has a clear path in some direction; None if none (or the arm has no such
    levels: then a place makes nothing possible). `both_axes` (a question that compares x with y): the
    nearest spot with a clear path along both axes at every level that may take both, where there is one.
    (The nearest spot alone put test world 2000000's SO-101 block where only +y pushes fit, twice: its
    slides question, which needs an x and a y push, stopped after one push and a place, a coin flip.)"""
    return _spot(scene, name, ws, (True, False) if both_axes else (False,))


def _levels(ws: Workspace) -> list[tuple[float, tuple[str, ...]]]:
    """Each push and strike level's travel and the directions it may take (a path clear this far is clear for less)."""
    return [(d, tuple(DIRECTIONS)) for d in ws.push_distances] + [
        (strike_travel(sp), _strike_directions(sp)) for sp in ws.strike_speeds
    ]


def _free_spots(scene: Scene, name: str, ws: Workspace) -> list[tuple[float, float]]:
    """The spots of a 2 cm grid over the place area of `ws` where `name` would stand clear of the other
    objects by the margin, nearest to where it is first."""
    o = scene.get(name)
    others = [q for q in scene.objects if q.name != name]
    if ws.place_ring is not None:
        r = ws.place_ring[1]
        xs = ys = np.arange(-r, r + 1e-9, 0.02)
    else:
        xs = np.arange(ws.place_x[0], ws.place_x[1] + 1e-9, 0.02)
        ys = np.arange(ws.place_y[0], ws.place_y[1] + 1e-9, 0.02)
    spots = sorted(
        (math.hypot(x - o.x, y - o.y), x, y)
        for x in (round(float(v), 2) + 0.0 for v in xs)
        for y in (round(float(v), 2) + 0.0 for v in ys)
        if ws.may_place(x, y)
    )
    return [
        (x, y)
        for _, x, y in spots
        if not any(math.hypot(x - q.x, y - q.y) < (o.size + q.size) / 2 + ws.clearance for q in others)
    ]


def _spot(scene: Scene, name: str, ws: Workspace, passes: tuple[bool, ...]) -> tuple[float, float] | None:
    """`clear_spot`'s search: for each pass in turn (True: a level that may take both axes needs a clear path
    along each), the nearest free spot from which every level has a clear path."""
    levels = _levels(ws)
    if not levels:
        return None
    free = _free_spots(scene, name, ws)

    def clear_from(spot: tuple[float, float], per_axis: bool) -> bool:
        moved = _moved(scene, name, spot)
        for travel, dirs in levels:
            groups = [dirs]
            if per_axis and all(split := [tuple(d for d in dirs if d[1] == axis) for axis in "xy"]):
                groups = split  # a level that may take both axes needs a clear path along each
            if not all(any(path_clear(moved, name, d, travel, ws) for d in group) for group in groups):
                return False
        return True

    for per_axis in passes:
        for spot in free:
            if clear_from(spot, per_axis):
                return spot
    return None


def _axes(scene: Scene, name: str, ws: Workspace) -> set[str]:
    """The axes ("x", "y") along which `name` has a push or strike with a clear path where it stands."""
    return {e.direction[1] for e in _sliding(scene, name, ws) if e.direction}


# how many spots per neighbour `clearing_place` tries (farthest from the crowded object first): each try is a
# whole both-axes spot search, and the candidate grid is built every step
CLEARING_TRIES = 6


def clearing_place(
    scene: Scene, name: str, keep: Iterable[str], ws: Workspace = PANDA, both_axes: bool = False
) -> Experiment | None:
    """Where `name` has no push or strike and no free spot to be placed at that has one (`both_axes`: a question
    that compares the axes, one along each): a place of a neighbour (not one of `keep`, the question's own
    objects, and one a grasp reaches) to a free spot, the farthest from `name` first, after which `name` has
    such pushes where it stands or a spot with them. None if no such place is found. (On the SO-101's narrow
    place ring, 43 of 200 dev layouts left a slides block no both-axes spot, so its question stopped after
    pushes along one axis, a coin flip.)"""
    return _clearing_place(scene, name, tuple(sorted(set(keep))), ws, both_axes)


@functools.lru_cache(maxsize=256)  # up to half a second on a crowded ring, and asked again at each step
def _clearing_place(
    scene: Scene, name: str, keep: tuple[str, ...], ws: Workspace, both_axes: bool
) -> Experiment | None:
    o, need = scene.get(name), 2 if both_axes else 1
    neighbours = sorted(  # a ball set down may roll: blocks and cylinders first, the nearest first
        (q for q in scene.objects if q.name not in keep and ws.graspable(q.x, q.y, q.size)),
        key=lambda q: (q.shape == "sphere", math.hypot(q.x - o.x, q.y - o.y)),
    )
    for q in neighbours:
        spots = sorted(_free_spots(scene, q.name, ws), key=lambda s: -math.hypot(s[0] - o.x, s[1] - o.y))
        for spot in spots[:CLEARING_TRIES]:
            cleared = _moved(scene, q.name, spot)
            if len(_axes(cleared, name, ws)) >= need or _spot(cleared, name, ws, (both_axes,)) is not None:
                return Experiment("place", q.name, position=spot)
    return None


def _moved(scene: Scene, name: str, spot: tuple[float, float]) -> Scene:
    """`scene` with `name` standing at `spot`."""
    return Scene(tuple(SceneObject(q.name, q.shape, q.size, *spot) if q.name == name else q for q in scene.objects))


def candidate_experiments(
    scene: Scene, question: Question | None = None, exclude: Iterable[Experiment] = (), ws: Workspace = PANDA
) -> list[Experiment]:
    """The finite, sensible grid of experiments on the objects of `question` (all objects if None):
    every skill at every parameter level, pushes and strikes only along directions with a clear path in
    the arm's workspace `ws`; minus `exclude` (e.g. experiments that already failed where the objects are
    now), and only the skills the question's kind allows (`loopylab.lab.kinds.QuestionKind.skills`). An object
    boxed in by its neighbours (no push or strike path at all) can be placed at its nearest clear spot."""
    objs = list(question.objects) if question is not None else scene.names
    both = question is not None and kinds.get(question.kind).both_axes
    allowed = kinds.get(question.kind).skills if question is not None else None
    # a question that slides its objects (a neighbour may be moved out of their way: `clearing_place`)
    slides = question is not None and (allowed is None or not {"push", "strike"}.isdisjoint(allowed))
    out: list[Experiment] = []
    for name in objs:
        sliding = _sliding(scene, name, ws)
        out += sliding
        out.append(Experiment("weigh", name))
        out += [Experiment("drop", name, height=h) for h in _drop_heights(question, ws)]
        out += [Experiment("lift", name, height=h) for h in ws.lift_heights]
        axes = {e.direction[1] for e in sliding if e.direction}
        there: set[str] = set()
        if (not sliding or (both and len(axes) < 2)) and (spot := clear_spot(scene, name, ws, both)) is not None:
            # only where it makes a push or strike possible that is not now: on test world 2000002 an SO-101's
            # slides question (both axes) was offered a place to where its block already stood, whose pushes
            # were this spot's own, five times in a row ("placed 0.001"), and spent its budget on them
            there = _axes(_moved(scene, name, spot), name, ws)
            if there - axes:
                out.append(Experiment("place", name, position=spot))
        if slides and len(axes | there) < (2 if both else 1):  # neither here nor at any free spot
            if (clearing := clearing_place(scene, name, objs, ws, both)) is not None:
                out.append(clearing)  # move a neighbour out of the way first
    skip = set(exclude)
    return [e for e in out if e not in skip and (allowed is None or e.skill in allowed)]


def _drop_heights(question: Question | None, ws: Workspace) -> tuple[float, ...]:
    """The heights a drop may fall from: the question's kind's own on a large arm, else the workspace's."""
    own = kinds.get(question.kind).drop_heights if question is not None else None
    return own if own is not None and ws.ring is None else ws.drop_heights


def sliding_levels(name: str, ws: Workspace = PANDA) -> list[Experiment]:
    """Every push and strike level of the grid for `name`, as from a clear spot: what placing it there
    makes possible (the expert values a place by these)."""
    size = 0.05 if ws.ring is None else 0.03  # the desk arms' objects are smaller (world.scene)
    return _sliding(Scene((SceneObject(name, "cube", size, *ws.place_centre()),)), name, ws)


# ---------------------------------------------------------------------------------------------
# constrained decoding on the grid


def valid_bodies(kind: str, scene: Scene, question: Question | None = None, ws: Workspace = PANDA) -> list[str]:
    """All valid bodies of a finite kind: experiments from the grid of the arm whose workspace is `ws`. Other
    kinds hold free numbers (use `prefix_ok`/`body_complete`), and asking for them here is an error."""
    if kind != "experiment":
        raise GrammarError(f"{kind} bodies are not a finite set; use prefix_ok/body_complete")
    return [e.render() for e in candidate_experiments(scene, question, ws=ws)]


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
