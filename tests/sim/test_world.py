import subprocess
import sys
import textwrap

import numpy as np
import pybullet as p
import pytest

from loopylab.sim.world import World
from loopylab.world.scene import ObjectSpec, SceneSpec, scene_from_seed

SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np
    from loopylab.world.scene import scene_from_seed
    from loopylab.sim.world import World
    from loopylab.sim.arm import ArmSim
    w = World(scene_from_seed(5, n_objects=4))
    arm = ArmSim(w)
    q = np.asarray(w.robot.spec.home)
    for k in range(240):  # sweep the arm through the objects' region while they are live
        arm.command_positions(q + np.sin(k / 40) * np.array([0.6, 0.5, 0, 0.3, 0, 0, 0]), 1 / 120)
        arm.step(2)
    state = [w.object_pose(o.label) for o in w.spec.objects] + [arm.joint_state()]
    print(hashlib.sha256(b"".join(np.asarray(a, np.float64).tobytes() for s in state for a in s)).hexdigest())
""")


def test_bit_identical_in_two_fresh_processes():
    out = [
        subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
        for _ in range(2)
    ]
    assert out[0] == out[1] and len(out[0]) == 64


def _cube(**kw):
    d = dict(
        label="red_block",
        shape="cube",
        size=0.05,
        position=(0.5, 0.0, 0.025),
        mass=0.2,
        friction=0.5,
        restitution=0.2,
        com_offset=(0.0, 0.0, 0.0),
    )
    d.update(kw)
    return SceneSpec(objects=[ObjectSpec(**d)])


def _slide(mu: float, mass: float, v: float = 1.0) -> float:
    with World(_cube(friction=mu, mass=mass), with_robot=False) as w:
        w.step(24)
        start = w.object_pose("red_block")[0]
        p.resetBaseVelocity(w.objects["red_block"], [v, 0, 0], [0, 0, 0], physicsClientId=w.cid)
        w.step(int(2.0 / w.dt))
        return float(np.linalg.norm(w.object_pose("red_block")[0] - start))


@pytest.mark.parametrize("mu", [0.3, 0.6])
def test_friction_is_applied_slide_matches_v2_over_2mug(mu):
    expected = 1.0 / (2 * mu * 9.81)
    assert _slide(mu, 0.2) == pytest.approx(expected, rel=0.05)


def test_velocity_launch_slide_does_not_depend_on_mass():
    assert _slide(0.4, 0.1) == pytest.approx(_slide(0.4, 0.5), rel=0.02)


def test_mass_restitution_and_com_offset_are_applied():
    with World(_cube(mass=0.37, restitution=0.55, com_offset=(0.01, -0.005, 0.0)), with_robot=False) as w:
        info = p.getDynamicsInfo(w.objects["red_block"], -1, physicsClientId=w.cid)
        assert info[0] == pytest.approx(0.37) and info[5] == pytest.approx(0.55)
        assert np.allclose(info[3], (0.01, -0.005, 0.0))
        # poses are reported at the geometric centre, not the centre of mass
        assert np.allclose(w.object_pose("red_block")[0], (0.5, 0.0, 0.025), atol=1e-9)
        truth = w.object_truth()["red_block"]
        assert truth["mass"] == pytest.approx(0.37) and truth["com_offset"] == pytest.approx([0.01, -0.005, 0.0])


def test_restitution_shows_in_the_bounce():
    def bounce(e):
        with World(
            SceneSpec(
                objects=[
                    ObjectSpec("b", "sphere", 0.05, position=(0.5, 0, 0.125), mass=0.1, friction=0.5, restitution=e)
                ]
            ),
            with_robot=False,
        ) as w:
            zs = []
            for _ in range(240):
                w.step(1)
                zs.append(w.object_pose("b")[0][2])
            zs = np.asarray(zs)
            first = int(np.argmax(zs < 0.0252))
            return zs[first:].max() - 0.025

    lo, hi = bounce(0.3), bounce(0.7)
    assert hi > 2 * lo
    assert hi == pytest.approx(0.49 * 0.1, rel=0.15)


@pytest.mark.parametrize("robot", ["panda", "kuka_iiwa", "xarm6", "so101"])
def test_every_robot_loads_with_its_sensor_and_tool(robot):
    with World(scene_from_seed(1, robot=robot)) as w:
        r = w.robot
        assert len(r.arm) == len(r.spec.arm_joints) == len(r.spec.home)
        assert np.all(r.lower < r.upper)
        ee = p.getLinkState(r.body, r.ee, physicsClientId=w.cid)[4]
        assert ee[2] > 0.02  # home pose: tool above the table
