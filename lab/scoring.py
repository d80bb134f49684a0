"""Proper scores for the lab's answers: how good a stated belief was, not only whether its point was close.

- `interval_score`: Gneiting & Raftery (2007), eq. 43, for a central (1 - alpha) interval [l, u] and the
  truth y: (u - l) + (2/alpha)(l - y)[y < l] + (2/alpha)(y - u)[y > u]. Lower is better; in expectation it is
  minimised by the alpha/2 and 1 - alpha/2 quantiles of the true distribution, so neither a too-narrow
  nor a too-wide interval pays.
- `crps`: the continuous ranked probability score of a weighted sample (the particle belief),
  E|X - y| - 1/2 E|X - X'| (Gneiting & Raftery, eq. 21), computed exactly for the empirical distribution
  in O(n log n) from the sorted particles. A point mass scores |x - y|.
- `central_interval`, `mass_inside`: weighted quantiles and the belief's probability of an interval.
- `binomial_ci`: the Wilson interval for a coverage measured on n worlds.

Scores are in the question's own units (mass in kg, slide in m): compare them per kind, never across.
"""

from __future__ import annotations

import math

import numpy as np


def interval_score(lo: float, hi: float, y: float, alpha: float = 0.1) -> float:
    """Interval score of the central (1 - alpha) interval [lo, hi] for the outcome y."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if hi < lo:
        raise ValueError(f"interval upper end {hi} is below its lower end {lo}")
    return float((hi - lo) + (2 / alpha) * max(lo - y, 0.0) + (2 / alpha) * max(y - hi, 0.0))


def _sorted_weights(x, w) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, float).ravel()
    if x.size == 0:
        raise ValueError("an empty sample has no score")
    w = np.full(x.size, 1.0 / x.size) if w is None else np.asarray(w, float).ravel()
    if w.shape != x.shape:
        raise ValueError(f"{w.size} weights for {x.size} particles")
    if np.any(w < 0) or not np.all(np.isfinite(w)) or not np.all(np.isfinite(x)) or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero; particles finite")
    order = np.argsort(x, kind="stable")
    return x[order], w[order] / w.sum()


def crps(x, y: float, w=None) -> float:
    """CRPS of the (weighted) sample x for the outcome y: E|X - y| - 1/2 E|X - X'|, exact for the sample's
    own distribution. With x sorted and cumulative weight C_(i-1) before particle i,
    E|X - X'| = 2 sum_i w_i x_i (2 C_(i-1) + w_i - 1)."""
    xs, ws = _sorted_weights(x, w)
    before = np.cumsum(ws) - ws
    spread = 2.0 * float(np.sum(ws * xs * (2.0 * before + ws - 1.0)))
    return float(np.sum(ws * np.abs(xs - y)) - 0.5 * spread)


def quantiles(x, q, w=None) -> np.ndarray:
    """Weighted quantiles of a sample (the inverse of its step CDF: the smallest x with C(x) >= q)."""
    xs, ws = _sorted_weights(x, w)
    cum = np.cumsum(ws)
    idx = np.searchsorted(cum, np.asarray(q, float) - 1e-12)
    return xs[np.minimum(idx, len(xs) - 1)]


def central_interval(x, level: float = 0.9, w=None) -> tuple[float, float]:
    """The central `level` interval of a weighted sample: its (1-level)/2 and (1+level)/2 quantiles."""
    lo, hi = quantiles(x, [(1 - level) / 2, (1 + level) / 2], w)
    return float(lo), float(hi)


def mass_inside(x, lo: float, hi: float, w=None) -> float:
    """The sample's probability of [lo, hi]."""
    xs, ws = _sorted_weights(x, w)
    return float(ws[(xs >= lo) & (xs <= hi)].sum())


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (coverage measured on n worlds)."""
    if n <= 0:
        return (0.0, 1.0)
    z = {0.9: 1.6449, 0.95: 1.96, 0.99: 2.5758}.get(level)
    if z is None:
        raise ValueError(f"level {level} not supported (0.9, 0.95, 0.99)")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def worst_miss(coverage: dict[str, float], lo: float = 0.85, hi: float = 0.95) -> float:
    """The largest distance of any coverage outside [lo, hi] (0 when all are inside)."""
    return max((max(lo - c, c - hi, 0.0) for c in coverage.values() if c is not None), default=0.0)


__all__ = [
    "binomial_ci",
    "central_interval",
    "crps",
    "interval_score",
    "mass_inside",
    "quantiles",
    "worst_miss",
]
