"""A drop seen by a camera (10 Hz, the hand above the object while it holds it) rather than by motion capture:
the emulated SO-101's every drop failed "no object track" (3-4 poses after the release) and so did every centre
of mass question on the hardware path."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopylab.actuation.skills.drop import MIN_TRACK, sees_bounce
from loopylab.lab.bench import sim_bench
from loopylab.world.splits import seeds

WORLD = seeds("dev", 1, offset=2)[0]  # a dev world whose red block the SO-101 takes


def test_a_drop_seen_by_a_camera_reads_the_centre_of_mass_and_says_it_missed_the_bounce():
    """On the sim bench with camera perception (the hardware path's pose source): the drop answers, its centre of
    mass offset is the block's (the camera does not see it in the hand: the lever comes from where it stood,
    moved with the hand), and its bounce's error bar is the drop's height (one frame in a 78 ms fall)."""
    perception = {"cameras": ["overhead"], "hz": 10.0}
    # an exact wrist sensor: the geometry is tested (the FT 300-S noise model scatters this 0.13 kg block's offset
    # by ~2 mm per axis, its torque error over the weight, and the world seeds it: the same 4-5 mm each run)
    with sim_bench(
        robot="so101", seed=WORLD, cameras=True, mocap=False, perception=perception, ft_noise=False
    ) as bench:
        o = bench.sim.scene.object("red_block")
        for _attempt in range(2):  # a loaded host can starve a skill (a protective stop): the lab runs it again
            r = bench.execute("drop", {"object": "red_block", "height": 0.03})
            if r["ok"]:
                break
        assert r["ok"], r["error"]
        m = r["measurements"]
        assert m["source"] == "perception"
        # the camera's ~1.2 mm position error is the lever's (1.1 mm here): within the com question's 3 mm tolerance
        # (a wrong sign or frame reads the offset mirrored: 5.5 mm away on this block)
        assert np.hypot(m["com_x_m"] - o.com_offset[0], m["com_y_m"] - o.com_offset[1]) < 0.003
        assert m["bounce_sigma_m"] >= 0.03


@given(st.floats(0.02, 0.3), st.integers(MIN_TRACK, 60))
def test_a_track_at_the_control_rate_sees_the_bounce_and_one_at_a_cameras_does_not(height, n):
    mocap = np.arange(n) / 120.0
    camera = np.arange(n) / 10.0
    assert sees_bounce(mocap, height)  # a 2 cm fall takes 64 ms: 7 poses
    assert not sees_bounce(camera, height)


@pytest.mark.parametrize("n", range(MIN_TRACK))
def test_too_few_poses_see_no_bounce(n):
    assert not sees_bounce(np.arange(n) / 120.0, 0.1)
