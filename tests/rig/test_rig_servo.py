"""The emulated servo's response to a goal stream: a real servo's own loop approaches each goal smoothly, so a
stream that comes late now and then (100 Hz goals against the 120 Hz world, a starved host) still moves the
joint steadily. A set point that met each goal within one tick stopped the joint dead for every tick without
a new goal (velocity to zero and back), and a push on the emulated arm knocked its block along in jolts."""

import numpy as np
import pytest

from loopylab.rig.physics import TRACK_TAU_S, RigPhysics
from loopylab.world.scene import scene_from_seed

RATE = 0.25  # rad/s: the shoulder's speed along a slow push


@pytest.fixture(scope="module")
def physics():
    ph = RigPhysics(scene_from_seed(5, 1, "so101"))  # not started: ticked here, one by one
    yield ph
    ph.world.close()


def _ramp(ph: RigPhysics, ticks: int = 150) -> tuple[np.ndarray, float]:
    """Drive the shoulder along a ramp whose goals arrive on five ticks of six. Returns the joint's speed over
    each tick after the start-up and its lag behind the ramp at the end (rad)."""
    q0 = ph.joint(0)[0]
    for _ in range(40):
        ph.set_goal(0, q0)
        ph.tick()
    goal, q = q0, []
    for k in range(ticks):
        if k % 6 != 5:
            goal += RATE * ph.period * 6 / 5  # the ramp's rate, over the ticks that bring a goal
            ph.set_goal(0, goal)
        ph.tick()
        q.append(ph.joint(0)[0])
    return np.diff(q)[ticks // 3 :] / ph.period, goal - ph.joint(0)[0]


def test_a_goal_stream_with_gaps_moves_the_joint_steadily(physics):
    v, lag = _ramp(physics)
    assert v.mean() == pytest.approx(RATE, rel=0.1)
    assert v.min() > 0.5 * RATE, f"the joint stalled between goals: {v.min():.3f} rad/s"
    # it trails the stream by about its time constant (what `lab calibrate-twin` fits as the tracking lag)
    assert 0.0 < lag / RATE < 3 * TRACK_TAU_S


def test_a_held_goal_is_reached(physics):
    q0 = physics.joint(0)[0]
    physics.set_goal(0, q0 + 0.05)
    for _ in range(int(10 * TRACK_TAU_S / physics.period) + 20):
        physics.tick()
    assert physics.joint(0)[0] == pytest.approx(q0 + 0.05, abs=0.002)
