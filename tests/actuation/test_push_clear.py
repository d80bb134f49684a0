"""A push whose hand would come down on another object is refused before the arm moves: an SO-101's jaw leads
its hand by 3.5 cm, and pushing towards the base the hand's body came down on the neighbour behind the start
(the reading was the neighbour's weight, and the neighbour was knocked aside)."""

import numpy as np

from loopylab.actuation.skills.motion import Motion
from loopylab.lab.bench import sim_bench
from loopylab.world import protocols as P
from loopylab.world.splits import seeds

WORLD = seeds("dev", 1)[0]  # with three objects: the green block at (0.20, 0.01), the red one at (0.18, 0.10)
PUSH = {"object": "green_block", "direction": "-y", "distance": 0.06, "speed": 0.05}


def _start_pose(mo: Motion, obj, d: str, size: float):
    q0 = np.array(mo.rs.home)
    q_probe = mo.kin.ik(mo.ee([obj[0], obj[1], P.TIP_Z + mo.rs.clearance]), mo.orientation(obj, d), q0=q0)
    plan = P.push_plan([obj[0], obj[1], size / 2], size, d, 0.06, 0.05, mo.pad(q_probe, d, size), mo.hz)
    start = plan.start + [0.0, 0.0, mo.below_tip(q_probe)]
    return mo.kin.ik(mo.ee(start), mo.orientation(start, d), q0=q_probe)


def test_the_so101_hand_at_a_push_start_overlaps_a_neighbour_behind_it_and_not_one_beside():
    mo = Motion("so101", 100.0)
    try:
        q = _start_pose(mo, (0.20, 0.01), "-y", 0.04)
        behind = mo.hand_hits([q], {"red_block": ("cube", 0.04, np.array([0.18, 0.10, 0.02]))})
        assert behind is not None and behind[0] == "red_block" and behind[1] > 0.005
        assert mo.hand_hits([q], {"red_block": ("cube", 0.04, np.array([0.18, 0.16, 0.02]))}) is None
        assert mo.hand_hits([q], {"ball": ("sphere", 0.04, np.array([0.10, -0.10, 0.02]))}) is None
    finally:
        mo.close()


def test_a_push_that_would_land_on_a_neighbour_is_refused_and_moves_nothing():
    with sim_bench(robot="so101", seed=WORLD, n_objects=3) as bench:
        truth = bench.oracle()
        assert np.hypot(*np.subtract(truth["red_block"]["position"][:2], (0.18, 0.10))) < 0.01  # the layout above
        r = bench.execute("push", PUSH)
        assert not r["ok"] and "would come down on red_block" in r["error"]
        after = bench.oracle()
        for label in ("green_block", "red_block"):  # (the ball may roll on its own)
            assert np.allclose(after[label]["position"], truth[label]["position"], atol=1e-3), label
