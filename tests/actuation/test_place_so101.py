"""The SO-101's place sets the object down turned as it stood (its hand turns with its base; the pushes after it
take the block square to its faces, as the twin does), and checks that it carries the object asked for."""

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


def test_the_so101_takes_the_object_it_closes_on_not_the_neighbour_beside_its_jaw():
    """Dev world 1000001 with four objects: closing on the green block (0.4 mm under the tool), the SO-101's jaw
    passes 9 mm from the red block beside it. The suction-like grasp took the first object within reach of any
    hand link, the red one: the weigh then failed ("did not rise with the hand") and a place carried the red
    block off. It takes the nearest now: the green block is weighed and placed, the other blocks stay put."""
    with sim_bench(robot="so101", seed=seeds("dev", 1, offset=1)[0], n_objects=4) as bench:
        before = bench.oracle()
        r = bench.execute("weigh", {"object": "green_block"})
        assert r["ok"], r["error"]
        assert r["measurements"]["mass_kg"] == pytest.approx(bench.oracle()["green_block"]["mass"], rel=0.1)
        r = bench.execute("place", {"object": "green_block", "position": [0.12, -0.08]})
        assert r["ok"], r["error"]
        after = bench.oracle()
        assert math.dist(after["green_block"]["position"][:2], (0.12, -0.08)) < 0.01
        for label in ("red_block", "blue_block"):  # (the ball rolls a little on its own)
            assert math.dist(after[label]["position"][:2], before[label]["position"][:2]) < 0.005, label
