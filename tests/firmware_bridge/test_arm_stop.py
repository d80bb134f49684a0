"""The fault window (a run of failed cycles; when it becomes a protective stop, and what it tells about why) and
the protective stop's goals (hold, then lower at a bounded speed)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from loopylab.firmware_bridge.arm_stop import FaultWindow, LowerToRest
from loopylab.firmware_bridge.servo.bus import CorruptResponseError, NoResponseError


@given(
    st.lists(st.tuples(st.floats(0.0, 0.2), st.floats(0.0, 0.5)), min_size=1, max_size=30),
    st.floats(0.01, 1.0),
)
def test_the_window_counts_a_run_of_failures_from_its_first(steps, window_s):
    """(gap to the next failure, how long that failed cycle took): past the window from the run's first failure
    on, never before; the count and the longest cycle are the run's."""
    w = FaultWindow(window_s)
    now, first = 100.0, None
    for k, (gap, took) in enumerate(steps):
        now += gap
        first = now if first is None else first
        assert w.failed(NoResponseError("silent", [3]), now, took) == (now - first > window_s)
        assert w.count == k + 1 and w.since == first
    assert w.longest == max(t for _, t in steps)
    assert w.first.label == "no_response(3)"


def test_a_good_cycle_ends_the_run_and_the_next_starts_afresh():
    w = FaultWindow(0.25)
    w.failed(CorruptResponseError("bad checksum"), 10.0, 0.4)
    assert w.active and w.longest == 0.4
    w.ok()
    assert not w.active and w.count == 0 and w.longest == 0.0
    assert not w.failed(NoResponseError("silent", [1]), 10.3, 0.05)  # 0.3 s after the old run: a new one
    assert w.since == 10.3 and w.longest == 0.05 and w.first.label == "no_response(1)"


def test_a_stop_holds_then_lowers_the_masked_joints_at_its_speed():
    stop = LowerToRest(np.array([1.0, -0.5]), np.array([0.0, 0.0]), t0=0.0, hold_s=1.0, speed=0.2, mask=[True, False])
    assert np.allclose(stop.goal(0.9), [1.0, -0.5])  # holds
    assert np.allclose(stop.goal(2.0), [0.8, -0.5])  # 0.2 rad/s, the unmasked joint holds
    assert not stop.done(2.0) and stop.done(6.1) and np.allclose(stop.goal(9.0), [0.0, -0.5])
    braked = LowerToRest(np.array([1.0]), np.array([0.0]), t0=0.0, lower=False)
    assert np.allclose(braked.goal(100.0), [1.0])  # an arm with brakes only holds
