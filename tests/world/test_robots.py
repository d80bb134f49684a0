"""The robot catalogue (`loopylab.world.robots`) and the rule that `world` stands on nothing else of loopylab."""

import ast
from pathlib import Path

import numpy as np
import pytest

from loopylab.world import robots
from loopylab.world.kinematics import Kinematics
from loopylab.world.robots import CATALOGUE, hardware_robots, robot_spec, so101_urdf

WORLD = Path(robots.__file__).parent


def test_the_shipped_so101_urdf_is_the_generators_output():
    # the catalogue only reads it: after changing the SO-101 figures run `python -m loopylab.world.robots`
    assert Path(robot_spec("so101").urdf).read_text() == so101_urdf()


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_each_robot_loads_and_its_home_pose_is_within_its_limits(name):
    rs = robot_spec(name)
    kin = Kinematics(rs.urdf, rs.ee_link, list(rs.arm_joints))
    home = np.asarray(rs.home)
    assert list(kin.joint_names) == list(rs.arm_joints) and home.shape == (kin.n,)
    assert (home >= kin.limits.lower).all() and (home <= kin.limits.upper).all()
    assert len(rs.gripper_open) == len(rs.gripper_closed) == len(rs.gripper_joints)


@pytest.mark.parametrize("name", hardware_robots())
def test_a_hardware_arm_has_one_motor_per_joint(name):
    rs = robot_spec(name)
    assert rs.hardware.kind in ("feetech", "dynamixel")
    assert list(rs.hardware.motors) == [*rs.arm_joints, *rs.gripper_joints]
    ids = [i for i, _ in rs.hardware.motors.values()]
    assert len(set(ids)) == len(ids)


def test_the_catalogue_knows_so101_and_koch_on_servos_and_names_the_known_on_a_typo():
    assert hardware_robots() == ["so101", "koch"]
    with pytest.raises(ValueError, match="unknown robot 'ur5'.*koch"):
        robot_spec("ur5")


def test_world_imports_no_other_loopylab_package():
    for path in sorted(WORLD.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for m in mods:
                assert not m.startswith("loopylab") or m == "loopylab.world" or m.startswith("loopylab.world."), (
                    f"{path.name} imports {m}"
                )
