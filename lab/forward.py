"""The forward model of the belief engine: what each experiment would measure for given hidden
parameters, computed by the sim `Twin` (docs/contracts.md, "Twin") and tabulated.

Calling the Twin once per (particle, candidate, inner sample) would cost minutes per decision, so for
each experiment *level* (skill and its parameters, direction left out) we run the Twin once per point
of a regular grid over the parameters that skill depends on, through a `TwinPool`, and interpolate
multilinearly in log space afterwards. Most responses are power laws of the parameters (push force
~ mu*m*g, slide ~ v^2/(2*mu*g), bounce ~ e^2*h), which log-log interpolation reproduces almost exactly.

Why the direction can be left out: the grid only offers pushes and strikes along directions whose path
is clear (`loopylab.lab.experiments.path_clear`), and on an isotropic table an unobstructed object responds the same
way in every direction. Why some parameters are left out of a skill's table (`SKILL_DEPENDS`): e.g. a
strike's slide does not depend on the mass; tests/lab/test_beliefs.py checks each claim on the Twin
itself.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from loopylab.world import notebook as g

PARAM_INDEX = {"friction": 0, "mass": 1, "restitution": 2}  # theta columns: log mu, log m, log e


@dataclass(frozen=True)
class Axes:
    """Bounds of the parameters the tables cover (natural units) and the points per table axis."""

    friction: tuple[float, float] = (0.15, 1.0)
    mass: tuple[float, float] = (0.04, 0.8)
    restitution: tuple[float, float] = (0.05, 0.9)
    points: int = 9

    def log_bounds(self) -> np.ndarray:
        """(3, 2) array of [log lo, log hi] in PARAM_INDEX order."""
        return np.log(np.array([self.friction, self.mass, self.restitution], float))


@dataclass(frozen=True)
class Coord:
    """A table axis: a linear combination of theta = (log mu, log m, log e), e.g. log(mu*m) = (1, 1, 0)."""

    name: str
    weights: tuple[float, float, float]

    def bounds(self, axes: Axes) -> tuple[float, float]:
        lb = axes.log_bounds()
        w = np.asarray(self.weights)
        lo = float(np.sum(np.where(w > 0, w * lb[:, 0], w * lb[:, 1])))
        hi = float(np.sum(np.where(w > 0, w * lb[:, 1], w * lb[:, 0])))
        return lo, hi


MU, M, E = Coord("log friction", (1, 0, 0)), Coord("log mass", (0, 1, 0)), Coord("log restitution", (0, 0, 1))
MU_M = Coord("log friction*mass", (1, 1, 0))
# The coordinates each skill's measurements depend on, checked on the Twin (tests/lab/test_beliefs.py):
# a steady push needs force mu*m*g (only the product), a strike's slide v^2/(2 mu g) (not the mass: the
# pusher imposes the launch speed), weighing the mass, and a drop's bounce the restitution and, for a block
# whose centre of mass is off-centre (COM_SKILLS), the friction: it lands tipping and its corners slip or
# grip (smoothly: the bounce falls, then rises with mu, flat above ~0.65). Fewer table axes mean far fewer
# Twin runs.
SKILL_COORDS = {"push": (MU_M,), "strike": (MU,), "weigh": (M,), "drop": (MU, E), "lift": (M,), "place": ()}
SKILL_DEPENDS = {
    "push": ("friction", "mass"),
    "strike": ("friction",),
    "weigh": ("mass",),
    "drop": ("restitution", "friction"),
    "lift": (),
    "place": (),
}
# the measurements of each skill that the likelihood uses, with the floor added before taking logs
MEASURED = {
    "push": {"force_mean_N": 0.01},
    "strike": {"slide_m": 1e-3},
    "weigh": {"mass_kg": 1e-3},
    "drop": {"bounce_m": 1e-3},
    "lift": {"lifted_m": 1e-3},
    "place": {"placed_m": 1e-3},
}
MEASURED_FLOOR = {k: v for d in MEASURED.values() for k, v in d.items()}
NOMINAL = {"friction": 0.5, "mass": 0.2, "restitution": 0.4}
# Skills whose response depends on the centre-of-mass offset: a block dropped with its COM off-centre
# lands on an edge and tumbles, and its bounce differs by up to 2x from a centred one (with a sign that
# changes with the height), more than any noise model can absorb. The drop skill measures the offset
# from the wrist torque while it holds the object, and the drop tables are built with that offset.
COM_SKILLS = ("drop",)
COM_STEP = 0.001  # m: offsets are rounded to this before keying tables (one table per distinct offset)
POINTS = {"drop": (8, 7)}  # points per axis where the default is too many Twin runs


class TwinLike(Protocol):
    """What the forward model needs from `loopylab.lab.twin.TwinPool`."""

    def predict_many(self, scene, skill: str, args: dict, params: list[dict]) -> list[dict]: ...


def _natural(point: dict[str, float]) -> dict[str, float]:
    """A table point {coord name: value} -> natural parameters (others nominal; a product split evenly
    in log space around the nominal ratio)."""
    theta = np.log([NOMINAL["friction"], NOMINAL["mass"], NOMINAL["restitution"]])
    for name, v in point.items():
        if name == MU_M.name:
            ratio = np.log(NOMINAL["friction"] / NOMINAL["mass"])
            theta[0], theta[1] = (v + ratio) / 2, (v - ratio) / 2
        else:
            theta[{MU.name: 0, M.name: 1, E.name: 2}[name]] = v
    return dict(zip(("friction", "mass", "restitution"), map(float, np.exp(theta))))


class Table:
    """Measurements of one experiment level on a regular grid over its coordinates (log space)."""

    def __init__(self, coords: tuple[Coord, ...], grids: list[np.ndarray], values: dict[str, np.ndarray]):
        self.coords, self.grids = coords, grids
        self.W = np.array([c.weights for c in coords], float)  # (D, 3)
        self.floor = {k: MEASURED_FLOOR.get(k, 1e-3) for k in values}
        self.logv = {k: np.log(np.maximum(v, 0.0) + self.floor[k]) for k, v in values.items()}
        self.raw = values

    def predict(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """theta: (N, 3) log-parameters -> {measurement: (N,)} by multilinear interpolation."""
        theta = np.atleast_2d(theta)
        if not self.coords:
            return {k: np.full(theta.shape[0], float(v)) for k, v in self.raw.items()}
        x_all = theta[:, :3] @ self.W.T
        idx, frac = [], []
        for d, grid in enumerate(self.grids):
            x = np.clip(x_all[:, d], grid[0], grid[-1])
            step = grid[1] - grid[0]
            i = np.minimum(((x - grid[0]) / step).astype(np.int64), len(grid) - 2)
            idx.append(i)
            frac.append((x - grid[i]) / step)
        out = {}
        for key, table in self.logv.items():
            acc = np.zeros(theta.shape[0])
            for corner in itertools.product((0, 1), repeat=len(self.grids)):
                w = np.ones(theta.shape[0])
                for c, f in zip(corner, frac):
                    w = w * (f if c else 1.0 - f)
                acc += w * table[tuple(i + c for i, c in zip(idx, corner))]
            out[key] = np.exp(acc) - self.floor[key]
        return out


def clean_1d(logv: np.ndarray, max_dev: float = 0.35) -> np.ndarray:
    """Replace glitches in a 1-D log table (a twin run where contact was lost) by their neighbours'
    interpolation: a point off both neighbours' line by more than max_dev (in log) is not physics."""
    v = logv.copy()
    for i in range(1, len(v) - 1):
        mid = 0.5 * (v[i - 1] + v[i + 1])
        if abs(v[i] - mid) > max_dev and abs(v[i - 1] - v[i + 1]) < max_dev:
            v[i] = mid
    return v


def level_key(exp: g.Experiment) -> tuple:
    """An experiment's level: everything but the direction (see the module docstring)."""
    return (exp.object, exp.skill, exp.distance, exp.speed, exp.height)


class ForwardModel:
    """Twin-backed, tabulated predictions for the objects of one (perceived) scene.

    `scene` is the perceived `loopylab.world.scene.SceneSpec` (hidden properties unknown); `twins` anything with
    `predict_many(scene, skill, args, params)` — a `loopylab.lab.twin.TwinPool`.
    """

    def __init__(self, scene, twins: TwinLike, axes: Axes = Axes()):
        self.scene, self.twins, self.axes = scene, twins, axes
        self._tables: OrderedDict[tuple, Table] = OrderedDict()
        self._lock = threading.Lock()
        self._com: dict[str, tuple[float, ...]] = {}  # object -> latest measured offset
        self._load: dict[str, float] = {}  # object -> latest measured push load, N
        self._gscene: g.Scene | None = None  # the scene as the experiment grid sees it (see `representative`)
        self.twin_calls = 0

    def note_com(self, label: str, com: tuple[float, ...]) -> None:
        """An object's centre-of-mass offset as the latest drop measured it (x, y and, when the drop tilted
        the object, z; in the frame of the faces of the object as it lies now: it may have tumbled since)."""
        self._com[label] = tuple(float(v) for v in com)

    def measured_com(self, label: str) -> tuple[float, ...] | None:
        """The latest offset `note_com` was given for an object (None before any)."""
        return self._com.get(label)

    def note_load(self, label: str, load: float) -> None:
        """The vertical force the hand put on an object in its latest push (it depends on how the object's
        height meets the hand, so the next push on it will likely see the same)."""
        self._load[label] = float(load)

    def com(self, label: str, com: tuple[float, ...] | None = None) -> tuple[float, float, float]:
        """The COM offset a table uses: `com` when given (a past measurement's own), else the object's
        latest measured one, else zero; rounded to COM_STEP (z is zero when it was not measured)."""
        xyz = com if com is not None else self._com.get(label)
        if xyz is None:
            return (0.0, 0.0, 0.0)
        xyz = (tuple(xyz) + (0.0, 0.0, 0.0))[:3]
        return tuple(round(round(float(v) / COM_STEP) * COM_STEP, 6) for v in xyz)

    def _key(self, exp: g.Experiment, com: tuple[float, ...] | None = None) -> tuple:
        return level_key(exp) + ((self.com(exp.object, com),) if exp.skill in COM_SKILLS else ())

    def table(self, exp: g.Experiment, com: tuple[float, ...] | None = None) -> Table:
        key = self._key(exp, com)
        with self._lock:
            if key in self._tables:
                return self._tables[key]
        table = self._build(self.representative(exp), key[-1] if exp.skill in COM_SKILLS else (0.0, 0.0, 0.0))
        with self._lock:
            self._tables[key] = table
        return table

    def representative(self, exp: g.Experiment) -> g.Experiment:
        """The experiment that builds its level's table: a push or strike along the first direction (in
        DIRECTIONS order) with a clear path in this scene, whichever direction asked first. A table is then a
        function of the scene and the level alone, and a replayed notebook builds the same one (the twin's
        pad is not square: a push along y reads differently from one along x)."""
        if exp.direction is None:
            return exp
        from dataclasses import replace

        from loopylab.lab.experiments import path_clear, strike_travel, workspace

        if self._gscene is None:
            self._gscene = g.Scene(
                tuple(
                    g.SceneObject(o.label, o.shape, o.size, float(o.position[0]), float(o.position[1]))
                    for o in self.scene.objects
                )
            )
        travel = exp.distance if exp.skill == "push" and exp.distance is not None else strike_travel(exp.speed or 0.0)
        ws = workspace(getattr(self.scene, "robot", None))
        clear = [d for d in g.DIRECTIONS if path_clear(self._gscene, exp.object, d, travel, ws)]
        return replace(exp, direction=(clear or list(g.DIRECTIONS))[0])

    def prepare(self, experiments: list[g.Experiment]) -> None:
        """Build the tables of many experiments (all levels of the candidate grid) up front."""
        for e in experiments:
            self.table(e)

    def predict(
        self,
        exp: g.Experiment,
        theta: np.ndarray,
        com: tuple[float, ...] | None = None,
        load: float | None = None,
        load_share: np.ndarray | float = 1.0,
    ) -> dict[str, np.ndarray]:
        """`com`, `load`: a past measurement's own; None: the object's latest (for experiments to come).
        A push's vertical load L adds mu x c L to the friction force: F = mu (m g + c L), which the twin's
        pad (pushing straight, never pressing down) does not produce; c (`load_share`, per particle) is the
        share of the measured load that reaches the table (see beliefs.LOAD_SHARE)."""
        pred = self.table(exp, com).predict(theta)
        if exp.skill == "push":
            load = self._load.get(exp.object, 0.0) if load is None else load
            if load:
                extra = np.exp(theta[:, 0]) * load_share * load
                pred["force_mean_N"] = np.maximum(pred["force_mean_N"] + extra, 0.0)
        return pred

    def _build(self, exp: g.Experiment, com: tuple[float, float, float]) -> Table:
        coords = SKILL_COORDS[exp.skill]
        npts = POINTS.get(exp.skill, (self.axes.points,) * len(coords))
        grids = [np.linspace(*c.bounds(self.axes), n) for c, n in zip(coords, npts)]
        points = [dict(zip((c.name for c in coords), pt)) for pt in itertools.product(*grids)] or [{}]
        # the offset is passed every time (zero for other skills): a twin keeps the last one it was given
        batch = [{exp.object: {**_natural(pt), "com_offset": com}} for pt in points]
        replies = self.twins.predict_many(self.scene, exp.skill, exp.args(), batch)
        self.twin_calls += len(batch)
        shape = tuple(len(gr) for gr in grids)
        values = {}
        for key in MEASURED[exp.skill]:
            col = np.abs(np.array([float(r.get(key, np.nan)) for r in replies], float))
            if not np.all(np.isfinite(col)):
                raise RuntimeError(f"twin gave no finite {key!r} for {exp.render()}")
            if len(shape) == 1:
                floor = MEASURED_FLOOR[key]
                col = np.exp(clean_1d(np.log(col + floor))) - floor
            values[key] = col.reshape(shape) if shape else col[0]
        return Table(coords, grids, values)


class InlineTwins:
    """Twin predictions in this process, one `loopylab.lab.twin.Twin` per scene: for evaluation workers, which are
    already parallel (a pool of pools would only add start-up and pickling)."""

    def __init__(self, max_scenes: int = 4):
        self.max_scenes = max_scenes
        self._twins: OrderedDict[str, object] = OrderedDict()

    def predict_many(self, scene, skill: str, args: dict, params: list[dict]) -> list[dict]:
        from loopylab.lab.twin import Twin

        key = scene.to_toml()
        twin = self._twins.get(key)
        if twin is None:
            while len(self._twins) >= self.max_scenes:
                self._twins.popitem(last=False)[1].close()
            twin = self._twins[key] = Twin(scene)
        return [twin.predict(skill, args, prm) for prm in params]

    def close(self) -> None:
        while self._twins:
            self._twins.popitem()[1].close()
