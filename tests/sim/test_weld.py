"""Hidden welds in the sim (sim/weld.py): an object fixed to the table or to another object, rigid within every
force the arm can put on it, and hidden from the lab."""

import copy

import numpy as np
import pybullet as p
import pytest

from loopylab.sim.arm import ArmSim
from loopylab.sim.weld import WELD_FORCE
from loopylab.sim.world import World
from loopylab.world.scene import STRUCTURES, SceneSpec, scene_from_seed, with_structure

# the hardest pull the arm puts on an object: a grasp's constraint gives at 500 N (sim/arm.py), and a push the
# skill refuses read 277 N against a welded block (dev world 1000006); twice the grasp's, to be sure
ARM_MAX_N = 1000.0


def _welded(to: str) -> SceneSpec:
    spec = scene_from_seed(1000006, n_objects=2)
    spec.objects[0].attached_to = to
    return spec


def _shove(w: World, label: str, force, steps: int = 240) -> np.ndarray:
    """Push `label` at its centre of mass with `force` (N) for `steps`; how far it went (m)."""
    start, body = w.object_pose(label)[0], w.objects[label]
    for _ in range(steps):
        com = p.getBasePositionAndOrientation(body, physicsClientId=w.cid)[0]
        p.applyExternalForce(body, -1, list(force), com, p.WORLD_FRAME, physicsClientId=w.cid)
        w.step(1)
    return w.object_pose(label)[0] - start


@pytest.mark.parametrize("force", [(ARM_MAX_N, 0, 0), (0, -ARM_MAX_N, 0), (0, 0, ARM_MAX_N)])
def test_a_table_weld_holds_under_the_arms_hardest_pull(force):
    spec = _welded("table")
    with World(spec, with_robot=False) as w:
        moved = _shove(w, "red_block", force)
        assert np.linalg.norm(moved) < 1e-3
    with World(scene_from_seed(1000006, n_objects=2), with_robot=False) as free:  # the same shove, no weld
        assert np.linalg.norm(_shove(free, "red_block", force)) > 0.1
    assert WELD_FORCE > 10 * ARM_MAX_N


def test_a_weld_to_another_object_carries_it_rigidly():
    spec = _welded("blue_ball")
    with World(spec, with_robot=False) as w:
        a0, b0 = (w.object_pose(k)[0] for k in ("red_block", "blue_ball"))
        moved = _shove(w, "red_block", (2.5, 0, 0), steps=120)  # more than the pair's friction (2.1 N)
        a1, b1 = (w.object_pose(k)[0] for k in ("red_block", "blue_ball"))
        assert np.linalg.norm(moved) > 0.02  # the pair slides: welded to a free object, not to the table
        assert np.linalg.norm(b1 - b0) > 0.005  # and the partner goes along
        # rigid but for the iterative solver's give while the pair accelerates (measured: 0.1-1 mm)
        assert np.linalg.norm(a1 - b1) == pytest.approx(np.linalg.norm(a0 - b0), abs=2e-3)


def test_the_arm_cannot_lift_a_block_welded_to_the_table():
    spec = _welded("table")
    with World(spec) as w:
        arm = ArmSim(w, ft_noise=None)
        arm._attach("red_block")  # as a closed gripper takes it (its constraint: 500 N)
        z0 = w.object_pose("red_block")[0][2]
        hand = w.robot.body
        for _ in range(240):  # the hand pulled up with twice the grasp's strength
            p.applyExternalForce(hand, w.robot.ee, [0, 0, ARM_MAX_N], [0, 0, 0], p.LINK_FRAME, physicsClientId=w.cid)
            w.step(1)
        assert abs(w.object_pose("red_block")[0][2] - z0) < 1e-3


def test_the_weld_is_hidden_and_travels_with_the_scene():
    spec = _welded("blue_ball")
    assert spec.perceived().objects[0].attached_to is None
    back = SceneSpec.from_toml(spec.to_toml())
    assert back.objects[0].attached_to == "blue_ball" and back.objects[1].attached_to is None
    with World(spec, with_robot=False) as w:
        assert w.object_truth()["red_block"]["attached_to"] == "blue_ball"
        assert w.object_truth()["blue_ball"]["attached_to"] is None


def test_a_weld_to_nothing_in_the_scene_is_a_clear_error():
    spec = _welded("green_block")
    with pytest.raises(ValueError, match="green_block.*not in the scene.*table, blue_ball"):
        World(spec, with_robot=False)
    bad = copy.deepcopy(spec.objects[0])
    bad.attached_to = "red_block"
    with pytest.raises(ValueError, match="attached_to"):
        bad.__post_init__()


def test_worlds_draw_free_table_and_welded_a_third_each():
    seeds = range(1_000_000, 1_000_090)
    drawn = [with_structure(scene_from_seed(s, n_objects=2), "attachment").objects for s in seeds]
    kinds = [objs[0].attached_to if objs[0].attached_to in (None, "table") else "other" for objs in drawn]
    for k in (None, "table", "other"):
        assert 18 <= kinds.count(k) <= 42, (k, kinds.count(k))  # 30 expected; binomial sd 4.5
    for objs in drawn:
        assert objs[0].attached_to in (None, "table", objs[1].label) and objs[1].attached_to is None
    again = with_structure(scene_from_seed(1_000_004, n_objects=2), "attachment")
    assert again.objects[0].attached_to == drawn[4][0].attached_to  # deterministic
    assert STRUCTURES["attachment"][0] != STRUCTURES["friction_model"][0]  # a stream of its own
    alone = with_structure(scene_from_seed(1_000_000, n_objects=1), "attachment").objects[0]
    assert alone.attached_to in (None, "table")  # nothing else to be welded to
