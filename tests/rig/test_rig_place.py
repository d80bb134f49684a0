"""The emulated bench's reset: asked to place the objects, the rig's world builder puts them back where the
world starts (as the sim bench's reset does), so every investigation on the rig starts from the same world."""

import numpy as np

from loopylab.rig.rig import Rig, RigConfig


def test_place_puts_every_object_back_where_its_world_starts(tmp_path):
    rig = Rig(RigConfig(robot="so101", seed=2_000_000, cameras=[], out_dir=str(tmp_path))).start()
    try:
        start = {o.label: np.array(o.position) for o in rig.scene.objects}
        for o in rig.scene.objects:  # an investigation pushed them all about
            with rig.physics.lock:
                rig.physics.world.set_object_pose(o.label, start[o.label] + [0.03, -0.02, 0.0])
        moved = rig.truth()
        assert all(np.linalg.norm(np.array(moved[k]["position"])[:2] - v[:2]) > 0.03 for k, v in start.items())
        rig.place(rig.scene.perceived())
        back = rig.truth()
        for label, pos in start.items():
            assert np.allclose(back[label]["position"], pos, atol=2e-3), label  # at rest, the world ticking
    finally:
        rig.stop()


def test_place_takes_out_of_the_hand_what_it_still_holds(tmp_path):
    """A gripper too slow to open left a weighed block in the hand: placed, it is taken out first (else the grasp
    would pull it back into the parked hand)."""
    rig = Rig(RigConfig(robot="so101", seed=2_000_000, cameras=[], out_dir=str(tmp_path))).start()
    try:
        with rig.physics.lock:
            rig.physics.arm._attach("red_block")  # the sim's grasp, as a closing gripper makes it
        rig.place()
        assert rig.physics.arm.grasped is None
        start = next(o.position for o in rig.scene.objects if o.label == "red_block")
        assert np.allclose(rig.truth()["red_block"]["position"], start, atol=2e-3)
    finally:
        rig.stop()
