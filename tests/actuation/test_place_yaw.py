"""A place by an arm whose hand turns with its base (the SO-101) sets the object down turned as it stood: the
pushes after it take the block square to its faces, as the twin does."""

import math

import pytest
from scipy.spatial.transform import Rotation

from loopylab.lab.bench import sim_bench
from loopylab.world.splits import seeds

WORLD = seeds("dev", 1, offset=2)[0]  # its red block stands 25 degrees off the SO-101's straight ahead


def _yaw_deg(orientation) -> float:
    """The object's turn about the vertical, folded onto a cube's quarter turn: (-45, 45]."""
    yaw = Rotation.from_quat(orientation).as_euler("xyz", degrees=True)[2]
    return (yaw + 45) % 90 - 45


@pytest.mark.parametrize("target", [(0.16, -0.05), (0.12, 0.16)])
def test_a_place_across_the_so101s_reach_keeps_the_blocks_yaw(target):
    with sim_bench(robot="so101", seed=WORLD) as bench:
        before = bench.oracle()["red_block"]
        turn = math.degrees(math.atan2(target[1], target[0]) - math.atan2(before["position"][1], before["position"][0]))
        assert abs(turn) > 20  # the base turns: the old place turned the block with it
        r = bench.execute("place", {"object": "red_block", "position": list(target)})
        assert r["ok"], r["error"]
        after = bench.oracle()["red_block"]
        assert math.dist(after["position"][:2], target) < 0.01
        assert abs(_yaw_deg(after["orientation"]) - _yaw_deg(before["orientation"])) < 5
