import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopylab.sim.arm import ArmSim
from loopylab.sim.world import World
from loopylab.world.scene import scene_from_seed


@pytest.fixture(scope="module")
def arm():
    w = World(scene_from_seed(0, n_objects=1))
    yield ArmSim(w)
    w.close()


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10),
    st.text(max_size=2),
    st.none(),
    st.lists(st.floats(-1, 1), max_size=2),
)
commands = st.one_of(
    st.lists(values, min_size=0, max_size=9),
    st.lists(st.floats(-3, 3), min_size=7, max_size=7).map(np.array),
    st.lists(st.floats(-3, 3), min_size=7, max_size=7).map(lambda q: np.array(q).reshape(7, 1)),
    st.lists(st.floats(-3, 3), min_size=7, max_size=7).map(lambda q: np.array(q, ">f4")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=commands, period=st.sampled_from([None, 1 / 120]))
def test_a_command_is_taken_whole_or_refused_whole(arm, q, period):
    """Seven finite numbers become the servo targets (and their velocity feed-forward); anything else is
    refused with a ValueError and leaves the targets as they were."""
    before, before_vel = arm.target, list(arm._target_vel)
    try:
        flat = [float(x) for x in np.asarray(q, dtype=float)] if np.ndim(q) == 1 else None
    except (TypeError, ValueError):
        flat = None
    valid = flat is not None and len(flat) == len(before) and all(map(math.isfinite, flat))
    if valid:
        arm.command_positions(q, period)
        assert arm.target.tolist() == pytest.approx(flat, rel=0, abs=0)
        expected = [(a - b) / period for a, b in zip(flat, before)] if period else [0.0] * len(flat)
        assert arm._target_vel == pytest.approx(expected)
    else:
        with pytest.raises(ValueError, match="finite values"):
            arm.command_positions(q, period)
        assert arm.target.tolist() == before.tolist() and arm._target_vel == before_vel


def test_hold_still_keeps_the_targets_and_drops_the_feed_forward(arm):
    arm.command_positions(np.asarray(arm.r.spec.home) + 0.01, 1 / 120)
    assert max(map(abs, arm._target_vel)) > 0.5
    target = arm.target
    arm.hold_still()
    assert arm.target.tolist() == target.tolist() and arm._target_vel == [0.0] * len(target)
