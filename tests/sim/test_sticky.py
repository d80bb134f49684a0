"""Sticky contact in the sim: restitution set from the approach speed before each step (sim/sticky.py).

A block dropped flat (no centre-of-mass offset) from 3 to 28 cm; its measured restitution is sqrt(bounce / h)
(`protocols.analyze_drop`: the rise from the first impact to the rebound's apex)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopylab.sim.sticky import E_RANGE, V_REF, StickyContacts, impact_speed, restitution_at
from loopylab.sim.world import World
from loopylab.world import protocols as P
from loopylab.world.scene import SceneSpec, scene_from_seed, with_structure

HEIGHTS = (0.03, 0.06, 0.10, 0.20, 0.28)


def _block(e: float, k: float | None) -> SceneSpec:
    spec = scene_from_seed(5, n_objects=1)
    o = spec.objects[0]
    o.restitution, o.sticky, o.com_offset = e, k, (0.0, 0.0, 0.0)
    return spec


def _bounce(spec: SceneSpec, h: float) -> float:
    with World(spec, with_robot=False) as w:
        label = spec.objects[0].label
        w.step(20)
        pos, orn = w.object_pose(label)
        w.set_object_pose(label, [pos[0], pos[1], pos[2] + h], orn)
        z = []
        for _ in range(int(1.0 / spec.dt)):
            w.step(1)
            z.append(w.object_pose(label)[0][2])
    return P.analyze_drop(np.arange(len(z)) * spec.dt, z, 0.0, spec.objects[0].size)["bounce_m"]


def _measured_e(spec: SceneSpec) -> np.ndarray:
    return np.array([np.sqrt(_bounce(spec, h) / h) for h in HEIGHTS])


def test_an_elastic_block_bounces_back_the_same_share_from_every_height():
    e = _measured_e(_block(0.6, None))
    # measured: 0.53 (3 cm: a low bounce reads short) then 0.64-0.67
    assert np.ptp(e[1:]) < 0.06 and e[0] > 0.48


def test_a_sticky_block_bounces_back_less_the_harder_it_hits():
    e = _measured_e(_block(0.6, 0.5))
    # law: 0.69 at 3 cm to 0.39 at 28 cm; measured 0.63 ... 0.41
    assert e[1] > e[2] > e[3] and e[-1] < 0.8 * e[1]
    assert e[1] - e[-1] > 0.15  # an elastic block's spread over the same drops is under 0.06


@pytest.mark.parametrize("k", [0.3, 0.6])
def test_a_sticky_block_bounces_like_a_constant_restitution_at_its_impact_speed(k):
    """What the lab's sticky model relies on: the twin's constant restitution e(v) reproduces the sticky world."""
    for h in (0.04, 0.10, 0.28):
        sticky = _block(0.6, k)
        fixed = _block(float(restitution_at(0.6, k, impact_speed(h))), None)
        # measured: within 1-3 % (8 % at 3 cm, k 0.5)
        assert _bounce(sticky, h) == pytest.approx(_bounce(fixed, h), rel=0.06)


@given(st.floats(0.05, 1.0), st.floats(0.0, 1.5), st.floats(0.01, 10.0), st.floats(1.01, 5.0))
def test_the_law_falls_with_speed_and_stays_a_restitution(e0, k, v, factor):
    e1, e2 = float(restitution_at(e0, k, v)), float(restitution_at(e0, k, v * factor))
    assert E_RANGE[0] <= e2 <= e1 <= E_RANGE[1]
    if E_RANGE[0] < e0 < E_RANGE[1]:
        assert float(restitution_at(e0, k, V_REF)) == pytest.approx(e0)
    if k == 0.0:
        assert e1 == e2


def test_a_bad_law_is_refused():
    with pytest.raises(ValueError, match="stickiness"):
        StickyContacts(0).add(1, 0.5, -0.1)
    with pytest.raises(ValueError, match="sticky"):
        _block(0.5, 0.4).objects[0].__class__(label="b", shape="cube", size=0.05, sticky=3.0)


def test_the_structure_is_hidden_from_the_lab_and_told_to_the_grader():
    drawn = [with_structure(scene_from_seed(s), "bounce_model") for s in range(1000000, 1000040)]
    sticky = [w for w in drawn if w.object("red_block").sticky is not None]
    assert 0.3 < len(sticky) / len(drawn) < 0.7  # half the worlds, by its own stream
    o = sticky[0].object("red_block")
    assert sticky[0].perceived().object("red_block").sticky is None
    assert copy.deepcopy(sticky[0]).with_params({"red_block": {"sticky": 0.4}}).object("red_block").sticky == 0.4
    with World(sticky[0], with_robot=False) as w:
        truth = w.object_truth()["red_block"]
        w.step(10)
    assert truth["sticky"] == o.sticky and truth["restitution"] == o.restitution
    assert SceneSpec.from_toml(sticky[0].to_toml()).object("red_block").sticky == o.sticky
