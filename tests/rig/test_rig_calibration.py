"""The rig's motor assembly and calibration (pure register arithmetic, no pty): whatever the arm's seed and
wherever a joint is within its range, the present position the motor reports, read through the calibration
file the rig writes, is the joint's angle (Feetech: Present = Actual - Offset in sign-magnitude; Dynamixel:
Present = Actual + Offset)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.firmware_bridge.emulators.servo_arm import EmulatedMotor
from loopylab.firmware_bridge.servo.calibration import CENTRE, TICK_RAD, to_rad, to_ticks
from loopylab.rig.motors import _limits, calibration, mounts
from loopylab.world.robots import robot_spec

LIMITS = {r: _limits(r) for r in ("so101", "koch")}


@settings(max_examples=60, deadline=None)
@given(robot=st.sampled_from(["so101", "koch"]), seed=st.integers(0, 2**31), frac=st.floats(0.0, 1.0))
def test_present_through_the_file_is_the_joint_angle(robot, seed, frac):
    layout = robot_spec(robot).hardware
    mount = mounts(robot, seed)
    joints = list(robot_spec(robot).arm_joints) + ["gripper"]
    calib = calibration(robot, mount, joints)
    for name in joints:
        lo, hi = LIMITS[robot][name]
        q = lo + frac * (hi - lo)
        c = calib[name]
        assert c.homing_offset != 0 and abs(c.homing_offset) <= 2047  # a real arm's; fits Feetech's 11 bits
        assert c.range_min <= to_ticks(c, q) <= c.range_max  # the whole URDF range is inside the limits
        m = EmulatedMotor(layout.kind, c.id, 0, 0, 0.0)
        m._set("Homing_Offset", c.homing_offset)
        m.body = lambda target, a=mount[name] + q / TICK_RAD: (a, 0.0, 0.0)
        m.update()
        assert to_rad(c, m.present_position()) == pytest.approx(q, abs=TICK_RAD)
        # and a goal the driver writes lands the joint's set point where it asked
        m._set("Torque_Enable", 1)
        m._set("Goal_Position", to_ticks(c, q))
        seen = []
        m.body = lambda target: seen.append(target) or (target or 0.0, 0.0, 0.0)
        m.update()
        assert (seen[0] - mount[name]) * TICK_RAD == pytest.approx(q, abs=TICK_RAD)
    assert all(c.zero == CENTRE for c in calib.values())
