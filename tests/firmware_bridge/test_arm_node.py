"""The hardware arm driver on the bus against the pty emulators: states, commands, faults, reconnect."""
import math
import uuid

import numpy as np
import pytest

from loopylab.bus import GripperCommand, GripperState, JointCommand, JointState, Node
from loopylab.firmware_bridge.arm_node import PRESET_MODEL_NUMBERS, ArmConfig, ArmDriver
from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.messages import DeviceFault

from tests.waiting import wait_until

ROBOT = {"feetech": "so101", "dynamixel": "koch"}


@pytest.fixture
def rig(kind):
    robot = ROBOT[kind]
    emu = ServoArmEmulator(kind, model=PRESET_MODEL_NUMBERS[robot]).start()
    graph = f"inproc://{uuid.uuid4().hex}"
    drv_node, test_node = Node("arm", graph), Node("probe", graph)
    driver = ArmDriver(drv_node, ArmConfig(port=emu.path, robot=robot, rate_hz=100, latency_s=0.2,
                                           reconnect_s=0.05))
    js = test_node.subscribe("arm/joint_state", JointState, mode="latest")
    faults = test_node.subscribe("arm/fault", DeviceFault, queue_size=100)
    yield emu, driver, test_node, js, faults
    driver.close()
    drv_node.close()
    test_node.close()
    emu.stop()


def _fault(faults, active, timeout=3.0):
    return faults.wait_for(lambda f: f.active == active, timeout=timeout)


def test_joint_state_in_radians_and_commands_move_the_motors(rig, kind):
    emu, driver, node, js, _ = rig
    first = js.wait_for(timeout=3)
    assert first is not None and first.name == ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex",
                                               "wrist_roll"]
    # the emulator starts motor i at 2048 + 40 (i - 3) ticks
    assert np.allclose(first.position, [(40 * (i - 3)) * 2 * math.pi / 4096 for i in range(1, 6)], atol=2e-3)
    assert len(first.velocity) == 5 and len(first.effort) == 5
    pub = node.publisher("arm/joint_command", JointCommand)
    assert pub.wait_for_subscribers(1, 3)
    target = np.array([0.3, -0.2, 0.5, 0.0, -0.4])
    pub.publish(JointCommand(name=first.name, position=target))
    assert js.wait_for(lambda m: np.allclose(m.position, target, atol=3e-3), timeout=3)
    assert emu.register(3, "Goal_Position") == round(2048 + 0.5 * 4096 / (2 * math.pi))
    grip = node.publisher("gripper/command", GripperCommand)
    gs = node.subscribe("gripper/state", GripperState, mode="latest")
    assert grip.wait_for_subscribers(1, 3)
    grip.publish(GripperCommand(position=0.03))
    assert gs.wait_for(lambda m: abs(m.position - 0.03) < 1e-3, timeout=3)


def test_silent_motor_faults_torque_off_and_recovers(rig):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    emu.faults.silent_ids = {3}
    f = _fault(faults, True)
    assert f.code == "no_response" and f.motor_ids == [3] and "motor 3 (elbow_flex)" in f.message
    assert wait_until(lambda: all(emu.register(i, "Torque_Enable") == 0 for i in (1, 2, 4, 5, 6)), 2)
    seen = js.latest().seq
    with pytest.raises(TimeoutError):                                  # no states while faulted
        js.wait_for(lambda m: m.seq > seen + 1, timeout=0.3)
    emu.faults.silent_ids = set()
    assert _fault(faults, False).message.startswith("recovered")
    assert js.wait_for(lambda m: m.seq > seen + 1, timeout=3)
    assert emu.register(1, "Torque_Enable") == 1                      # holding the present pose


def test_hardware_error_is_published_as_a_motor_fault(rig):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    emu.set_hardware_error(5, 0b100)  # overheating
    f = _fault(faults, True)
    assert f.code == "motor_fault" and f.motor_ids == [5] and "overheat" in f.message


@pytest.mark.parametrize("fault", ["drop_bytes", "corrupt"])
def test_transient_faults_are_absorbed_by_retries(rig, fault):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    setattr(emu.faults, fault, 2)
    assert wait_until(lambda: emu.faults.injected == 2, 3)
    seen = js.latest().seq
    assert js.wait_for(lambda m: m.seq > seen + 3, timeout=3)
    assert faults.latest() is None and driver.bus.stats["retries"] >= 1


def test_unplugged_port_mid_run_then_reconnect(rig):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    emu.vanish()
    f = _fault(faults, True)
    assert f.code == "port_lost"
    emu.restore()
    assert _fault(faults, False, timeout=5)
    seen = js.latest().seq
    assert js.wait_for(lambda m: m.seq > seen, timeout=3)


def test_torque_off_on_shutdown(rig):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    assert emu.register(2, "Torque_Enable") == 1
    driver.close()
    assert wait_until(lambda: all(emu.register(i, "Torque_Enable") == 0 for i in emu.motors), 2)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown robot 'ur5'"):
        ArmConfig(robot="ur5")
    with pytest.raises(ValueError, match="gripper motor 'hand'"):
        ArmConfig(robot="so101", gripper="hand")


def test_commands_that_do_not_fit_the_arm_are_ignored(rig):
    emu, driver, node, js, faults = rig
    first = js.wait_for(timeout=3)
    goals = {i: emu.register(i, "Goal_Position") for i in emu.motors}
    pub = node.publisher("arm/joint_command", JointCommand)
    assert pub.wait_for_subscribers(1, 3)
    pub.publish(JointCommand(name=["elbow", "wrist"], position=[1.0, 1.0]))            # unknown joints
    pub.publish(JointCommand(name=first.name, velocity=[0.5] * 5))                    # velocity mode
    seen = js.latest().seq
    assert js.wait_for(lambda m: m.seq > seen + 5, timeout=3)                          # still running
    assert {i: emu.register(i, "Goal_Position") for i in emu.motors} == goals and faults.latest() is None
