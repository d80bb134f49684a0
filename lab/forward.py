"""The forward model of the belief engine: what each experiment would measure for given hidden
parameters, computed by the sim `Twin` (docs/contracts.md, "Twin") and tabulated.

Calling the Twin once per (particle, candidate, inner sample) would cost minutes per decision, so for
each experiment *level* (skill and its parameters, direction left out) we run the Twin once per point
of a regular grid over the parameters that skill depends on, through a `TwinPool`, and interpolate
multilinearly in log space afterwards. Most responses are power laws of the parameters (push force
~ mu*m*g, slide ~ v^2/(2*mu*g), bounce ~ e^2*h), which log-log interpolation reproduces almost exactly.

Why the direction can be left out: the grid only offers pushes and strikes along directions whose path
is clear (`lab.grammar.path_clear`), and on an isotropic table an unobstructed object responds the same
way in every direction. Why some parameters are left out of a skill's table (`SKILL_DEPENDS`): e.g. a
drop is vertical, so friction does not enter; tests/lab/test_identifiability.py checks each claim on
the Twin itself.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lab import grammar as g

PARAM_INDEX = {"friction": 0, "mass": 1, "restitution": 2}   # theta columns: log mu, log m, log e


@dataclass(frozen=True)
class Axes:
    """Grid of the surrogate tables (natural units; the grid is uniform in log space)."""
    friction: tuple[float, float] = (0.15, 1.0)
    mass: tuple[float, float] = (0.04, 0.8)
    restitution: tuple[float, float] = (0.05, 0.9)
    points: int = 9

    def grid(self, param: str) -> np.ndarray:
        lo, hi = getattr(self, param)
        return np.linspace(np.log(lo), np.log(hi), self.points)

    def log_bounds(self) -> np.ndarray:
        """(3, 2) array of [log lo, log hi] in PARAM_INDEX order."""
        return np.log(np.array([self.friction, self.mass, self.restitution], float))


# which hidden parameters each skill's measurements depend on (the rest are held at NOMINAL)
SKILL_DEPENDS = {"push": ("friction", "mass"), "strike": ("friction", "mass"), "weigh": ("mass",),
                 "drop": ("restitution", "mass"), "lift": ("mass",)}
# the measurements of each skill that the likelihood uses, with the floor added before taking logs
MEASURED = {"push": {"force_mean_N": 0.01, "moved_m": 1e-3}, "strike": {"slide_m": 1e-3},
            "weigh": {"mass_kg": 1e-3}, "drop": {"bounce_m": 1e-3}, "lift": {"lifted_m": 1e-3}}
NOMINAL = {"friction": 0.5, "mass": 0.2, "restitution": 0.4}


class TwinLike(Protocol):
    """What the forward model needs from `sim.twin.TwinPool`."""

    def predict_many(self, scene, skill: str, args: dict, params: list[dict]) -> list[dict]: ...


class Table:
    """Measurements of one experiment level on a regular log-space grid over its parameters."""

    def __init__(self, params: tuple[str, ...], axes: Axes, values: dict[str, np.ndarray]):
        self.params = params
        self.cols = [PARAM_INDEX[p] for p in params]
        self.grids = [axes.grid(p) for p in params]
        self.floor = {k: MEASURED_FLOOR.get(k, 1e-3) for k in values}
        # interpolate log(value + floor); the tables are small, so keep them as float64 arrays
        self.logv = {k: np.log(np.maximum(v, 0.0) + self.floor[k]) for k, v in values.items()}
        self.raw = values

    def predict(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """theta: (N, 3) log-parameters -> {measurement: (N,)} by multilinear interpolation."""
        theta = np.atleast_2d(theta)
        idx, frac = [], []
        for col, grid in zip(self.cols, self.grids):
            x = np.clip(theta[:, col], grid[0], grid[-1])
            step = grid[1] - grid[0]
            i = np.minimum(((x - grid[0]) / step).astype(np.int64), len(grid) - 2)
            idx.append(i)
            frac.append((x - grid[i]) / step)
        out = {}
        for key, table in self.logv.items():
            acc = np.zeros(theta.shape[0])
            for corner in itertools.product((0, 1), repeat=len(self.cols)):
                w = np.ones(theta.shape[0])
                for c, f in zip(corner, frac):
                    w = w * (f if c else 1.0 - f)
                acc += w * table[tuple(i + c for i, c in zip(idx, corner))]
            out[key] = np.exp(acc) - self.floor[key]
        return out


MEASURED_FLOOR = {k: v for d in MEASURED.values() for k, v in d.items()}


def level_key(exp: g.Experiment) -> tuple:
    """An experiment's level: everything but the direction (see the module docstring)."""
    return (exp.object, exp.skill, exp.distance, exp.speed, exp.height)


class ForwardModel:
    """Twin-backed, tabulated predictions for the objects of one (perceived) scene.

    `scene` is the perceived `sim.scene.SceneSpec` (hidden properties unknown); `twins` anything with
    `predict_many(scene, skill, args, params)` — a `sim.twin.TwinPool`.
    """

    def __init__(self, scene, twins: TwinLike, axes: Axes = Axes()):
        self.scene, self.twins, self.axes = scene, twins, axes
        self._tables: OrderedDict[tuple, Table] = OrderedDict()
        self._lock = threading.Lock()
        self.twin_calls = 0

    def table(self, exp: g.Experiment) -> Table:
        key = level_key(exp)
        with self._lock:
            if key in self._tables:
                return self._tables[key]
        table = self._build(exp)
        with self._lock:
            self._tables[key] = table
        return table

    def prepare(self, experiments: list[g.Experiment]) -> None:
        """Build the tables of many experiments (all levels of the candidate grid) up front."""
        for e in experiments:
            self.table(e)

    def predict(self, exp: g.Experiment, theta: np.ndarray) -> dict[str, np.ndarray]:
        return self.table(exp).predict(theta)

    def _build(self, exp: g.Experiment) -> Table:
        params = SKILL_DEPENDS[exp.skill]
        grids = [np.exp(self.axes.grid(p)) for p in params]
        points = list(itertools.product(*grids))
        batch = []
        for pt in points:
            props = dict(NOMINAL)
            props.update({p: float(v) for p, v in zip(params, pt)})
            batch.append({exp.object: props})
        replies = self.twins.predict_many(self.scene, exp.skill, exp.args(), batch)
        self.twin_calls += len(batch)
        shape = tuple(len(gr) for gr in grids)
        values = {}
        for key in MEASURED[exp.skill]:
            col = np.abs(np.array([float(r.get(key, np.nan)) for r in replies], float))
            if not np.all(np.isfinite(col)):
                bad = [r for r in replies if not np.isfinite(float(r.get(key, np.nan)))][:1]
                raise RuntimeError(f"twin gave no finite {key!r} for {exp.render()} (e.g. {bad})")
            values[key] = col.reshape(shape)
        return Table(params, self.axes, values)
