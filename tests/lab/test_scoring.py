"""Proper scores (lab/scoring.py): the formulas exactly, and propriety on a known distribution."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from loopylab.lab.scoring import binomial_ci, central_interval, crps, interval_score, mass_inside, quantiles, worst_miss

finite = st.floats(-100, 100, allow_nan=False)
# outcomes of a standard normal at 20000 evenly spaced probabilities: expectations without sampling noise
Y = norm.ppf((np.arange(20000) + 0.5) / 20000)


@settings(deadline=None)  # a busy machine: no per-example deadline
@given(lo=finite, width=st.floats(0, 50), y=finite, alpha=st.floats(0.01, 0.99))
def test_interval_score_is_the_width_plus_the_penalty_of_a_miss(lo, width, y, alpha):
    hi = lo + width
    s = interval_score(lo, hi, y, alpha)
    if lo <= y <= hi:
        assert s == pytest.approx(width)
    elif y < lo:
        assert s == pytest.approx(width + 2 / alpha * (lo - y))
    else:
        assert s == pytest.approx(width + 2 / alpha * (y - hi))


def test_interval_score_refuses_a_reversed_interval_or_a_bad_alpha():
    with pytest.raises(ValueError, match="below its lower end"):
        interval_score(1.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        interval_score(0.0, 1.0, 0.5, alpha=0.0)


@settings(max_examples=40, deadline=None)
@given(d_lo=st.floats(-1, 1), d_hi=st.floats(-1, 1))
def test_the_true_quantiles_minimise_the_expected_interval_score(d_lo, d_hi):
    q = norm.ppf(0.95)
    best = np.mean([interval_score(-q, q, y) for y in Y[::4]])
    lo, hi = -q + d_lo, q + d_hi
    if hi < lo:
        lo, hi = hi, lo
    other = np.mean([interval_score(lo, hi, y) for y in Y[::4]])
    assert other >= best - 1e-9
    if max(abs(d_lo), abs(d_hi)) > 0.05:
        assert other > best


@settings(deadline=None)
@given(x=finite, y=finite)
def test_crps_of_a_point_mass_is_the_absolute_error(x, y):
    assert crps([x], y) == pytest.approx(abs(x - y), abs=1e-9)
    assert crps([x] * 5, y, w=[0.1, 0.2, 0.3, 0.2, 0.2]) == pytest.approx(abs(x - y), abs=1e-9)


def _crps_by_integral(x, w, y):
    """integral of (F(z) - [z >= y])^2 dz for the weighted step CDF, piece by piece."""
    x, w = np.asarray(x, float), np.asarray(w, float) / np.sum(w)
    pts = np.sort(np.append(x, y))
    total = 0.0
    for a, b in itertools.pairwise(pts):
        F = w[x <= a].sum()
        H = 1.0 if a >= y else 0.0
        total += (F - H) ** 2 * (b - a)
    return total


@settings(deadline=None)
@given(
    st.lists(st.tuples(st.floats(-10, 10), st.floats(0.01, 1)), min_size=1, max_size=30),
    st.floats(-12, 12),
)
def test_crps_equals_the_integral_of_the_squared_cdf_difference(pairs, y):
    x, w = zip(*pairs)
    assert crps(x, y, w) == pytest.approx(_crps_by_integral(x, w, y), abs=1e-7)


@settings(max_examples=30, deadline=None)
@given(shift=st.floats(-1, 1), log_scale=st.floats(-1, 1))
def test_the_true_distribution_minimises_the_expected_crps(shift, log_scale):
    base = norm.ppf((np.arange(400) + 0.5) / 400)  # the true N(0, 1), as 400 particles
    ys = Y[::20]
    best = np.mean([crps(base, y) for y in ys])
    other = np.mean([crps(shift + math.exp(log_scale) * base, y) for y in ys])
    assert other >= best - 1e-4
    if abs(shift) > 0.1 or abs(log_scale) > 0.1:
        assert other > best


def test_crps_matches_the_gaussian_closed_form():
    particles = norm.ppf((np.arange(4000) + 0.5) / 4000)
    for y in (-2.0, 0.0, 0.7):
        exact = y * (2 * norm.cdf(y) - 1) + 2 * norm.pdf(y) - 1 / math.sqrt(math.pi)
        assert crps(particles, y) == pytest.approx(exact, abs=2e-3)


def test_weighted_particles_score_as_the_repeated_sample():
    x, w = [0.1, 0.5, 0.9], [1, 2, 1]
    assert crps(x, 0.3, w) == pytest.approx(crps([0.1, 0.5, 0.5, 0.9], 0.3))


def test_crps_refuses_an_empty_or_badly_weighted_sample():
    with pytest.raises(ValueError, match="empty"):
        crps([], 0.0)
    with pytest.raises(ValueError, match="weights"):
        crps([0.0, 1.0], 0.0, w=[1.0, -1.0])
    with pytest.raises(ValueError, match="2 weights for 3"):
        crps([0.0, 1.0, 2.0], 0.0, w=[1.0, 1.0])


def test_central_interval_and_mass_inside():
    x = np.arange(1000) / 1000
    lo, hi = central_interval(x, 0.9)
    assert lo == pytest.approx(0.05, abs=2e-3) and hi == pytest.approx(0.95, abs=2e-3)
    assert mass_inside(x, lo, hi) == pytest.approx(0.9, abs=3e-3)
    assert quantiles([3.0, 1.0, 2.0], [0.0, 0.5, 1.0]).tolist() == [1.0, 2.0, 3.0]


def test_binomial_ci_and_worst_miss():
    lo, hi = binomial_ci(27, 30)
    assert lo < 0.9 < hi and lo > 0.7 and hi < 1.0
    assert binomial_ci(0, 0) == (0.0, 1.0)
    assert worst_miss({"mass": 0.99, "restitution": 0.65, "friction": 0.9}) == pytest.approx(0.2)
    assert worst_miss({"mass": 0.9}) == 0.0
