"""A per-rig noise model: how far to trust another rig's observations, learnt from how they agree with what the
lab's own measurements let it predict (docs/lab.md, "Buying data").

Each rig (its market rig key) has a noise factor k: its measurement sd is k times the lab's own noise model's
sigma for the same measurement. A rig nobody knows yet gets `PRIOR_FACTOR`. Each bought observation y is
compared with the lab's belief before it, the predictive mean mu and variance v of the measurement over the
particles: with the lab's own sigma s, z^2 = (y - mu)^2 / (v + s^2) has mean (v + k^2 s^2) / (v + s^2), so each
observation estimates k^2 = (z^2 (v + s^2) - v) / s^2 (at least 1), weighted by how much it can tell,
w = s^2 / (v + s^2) (a belief as wide as the prior tells nothing). The factor is the weighted mean of those
estimates with `PRIOR_WEIGHT` pseudo-observations of the prior, so a rig earns trust (or loses it) over many
observations. An observation more than `OUTLIER_Z` predictive sds from the belief is an outlier: flagged in the
notebook (world/source.py) and not used; it still counts against its rig.

The book is a JSON file (`~/.loopylab/rigs.json` by default) that grows with every bought observation.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from loopylab.lab.beliefs import Measurement, Posterior, predict_biased
from loopylab.world import notebook as g

PRIOR_FACTOR = 2.0  # an unknown rig: twice the lab's own sigma
PRIOR_WEIGHT = 3.0  # pseudo-observations behind the prior
MAX_FACTOR = 20.0
OUTLIER_Z = 4.0


def default_path() -> Path:
    return Path(os.environ.get("LOOPYLAB_RIGS", Path.home() / ".loopylab" / "rigs.json"))


@dataclass
class Agreement:
    """One bought observation against the belief before it."""

    z: float  # (y - mu) / sqrt(v + (k s)^2): standard deviations from the belief, with the rig's factor
    k2: float  # this observation's estimate of the rig's k^2
    weight: float  # how much it can tell (0: the belief was as wide as the prior)


@dataclass
class RigNoise:
    """The factor of every rig seen: rig -> [sum of w k^2, sum of w, observations, outliers]."""

    rigs: dict[str, list[float]] = field(default_factory=dict)

    def factor(self, rig: str) -> float:
        swk, sw, _n, _out = self.rigs.get(rig, [0.0, 0.0, 0, 0])
        k2 = (PRIOR_WEIGHT * PRIOR_FACTOR**2 + swk) / (PRIOR_WEIGHT + sw)
        return float(min(max(math.sqrt(k2), 1.0), MAX_FACTOR))

    def agreement(self, post: Posterior, m: Measurement, rig: str) -> Agreement:
        """How `m` (a rig's measurement) sits against the belief before it."""
        op = post.objects[m.experiment.object]
        pred = predict_biased(post.forward, m.experiment, op.theta, m.com, m.load)
        w = op.weights
        z2, k2s, ws = [], [], []
        k = self.factor(rig)
        for key, y in m.values.items():
            mu = float(np.sum(w * pred[key]))
            v = float(np.sum(w * (pred[key] - mu) ** 2))
            s = float(post.noise.sigma(key, np.asarray([mu]))[0])
            z2.append((y - mu) ** 2 / (v + (k * s) ** 2))
            k2s.append(max(((y - mu) ** 2 - v) / s**2, 1.0))
            ws.append(s**2 / (v + s**2))
        z = math.copysign(math.sqrt(max(z2)), y - mu)
        return Agreement(z, float(np.mean(k2s)), float(np.mean(ws)))

    def learn(self, rig: str, a: Agreement, outlier: bool) -> None:
        row = self.rigs.setdefault(rig, [0.0, 0.0, 0, 0])
        row[0] += a.weight * min(a.k2, MAX_FACTOR**2)
        row[1] += a.weight
        row[2] += 1
        row[3] += int(outlier)

    # -- the book on disk --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> RigNoise:
        p = Path(path) if path is not None else default_path()
        if not p.exists():
            return cls()
        data = json.loads(p.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, list) and len(v) == 4 for v in data.values()):
            raise ValueError(f"{p}: not a rig noise book ({{rig: [sum w k2, sum w, n, outliers]}})")
        return cls({str(k): [float(v[0]), float(v[1]), int(v[2]), int(v[3])] for k, v in data.items()})

    def save(self, path: str | Path | None = None) -> Path:
        p = Path(path) if path is not None else default_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.rigs, indent=1, sort_keys=True) + "\n")
        tmp.replace(p)
        return p


def weigh_in(post: Posterior, m: Measurement, rig: str, book: RigNoise) -> tuple[float, float | None]:
    """Take one bought measurement into the belief, weighted by its rig's factor, unless it is an outlier
    against the belief; the rig's book learns from it either way. Returns (the factor applied, z if flagged)."""
    k = float(g.fmt(book.factor(rig), 2))  # as the source line writes it: a replay applies the same
    a = book.agreement(post, m, rig)
    outlier = abs(a.z) > OUTLIER_Z
    book.learn(rig, a, outlier)
    if outlier:
        return k, a.z
    m.noise = k
    post.update(m)
    return k, None
