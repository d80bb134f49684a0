"""The hardware arm driver on the bus against the pty emulators: states, commands, and faults that never drop
the arm (transient faults held with torque on, a protective stop that holds then lowers, torque off only on an
e-stop, a hardware error or a lost port), reboot, calibration and configuration refusals, units."""

import dataclasses
import math
import uuid

import msgpack
import numpy as np
import pytest

from loopylab.bus import GripperCommand, GripperState, JointCommand, JointState, Node, SafetyState, codec
from loopylab.firmware_bridge.arm_codec import ArmCodec
from loopylab.firmware_bridge.arm_node import ArmConfig, ArmDriver, NotCalibrated
from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.messages import DeviceFault
from loopylab.firmware_bridge.servo import calibration
from loopylab.firmware_bridge.servo.bus import MotorBus
from tests.bus.test_malformed import _rogue_publisher
from tests.waiting import wait_until

ROBOT = {"feetech": "so101", "dynamixel": "koch"}
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def identity_calibration(tmp_path) -> str:
    return str(calibration.save(tmp_path / "arm.json", calibration.identity({n: i for i, n in enumerate(JOINTS, 1)})))


@pytest.fixture
def rig(kind, tmp_path, request):
    robot = ROBOT[kind]
    emu = ServoArmEmulator.for_robot(robot).start()
    graph = f"inproc://{uuid.uuid4().hex}"
    drv_node, test_node = Node("arm", graph), Node("probe", graph)
    options = dict(getattr(request, "param", {}))
    driver = ArmDriver(
        drv_node,
        ArmConfig(
            port=emu.path,
            robot=robot,
            rate_hz=100,
            latency_s=0.2,
            reconnect_s=0.05,
            calibration=identity_calibration(tmp_path),
            **options,
        ),
    )
    js = test_node.subscribe("arm/joint_state", JointState, mode="latest")
    faults = test_node.subscribe("arm/fault", DeviceFault, queue_size=100)
    yield emu, driver, test_node, js, faults
    driver.close()
    drv_node.close()
    test_node.close()
    emu.stop()


def _fault(faults, active, timeout=3.0):
    return faults.wait_for(lambda f: f.active == active, timeout=timeout)


def _torque(emu):
    return {i: emu.register(i, "Torque_Enable") for i in emu.motors}


def test_joint_state_in_radians_and_commands_move_the_motors(rig, kind):
    emu, driver, node, js, _ = rig
    first = js.wait_for(timeout=3)
    assert first is not None and first.name == JOINTS[:5]
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


def test_a_flaky_cable_never_drops_the_arm(rig):
    """Replies lost whole, corrupted or answered with a protocol error, 1.5 s long: the arm keeps its torque
    and its pose, nothing is published as a fault, joint states keep coming."""
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    hold = {i: emu.register(i, "Goal_Position") for i in emu.motors}
    emu.faults.lose_rate, emu.faults.corrupt_rate, emu.faults.protocol_error = 0.1, 0.1, 5
    seen = js.latest().seq
    assert wait_until(lambda: emu.faults.injected >= 40, 10)
    assert js.wait_for(lambda m: m.seq > seen + 20, timeout=5)
    emu.faults.lose_rate = emu.faults.corrupt_rate = 0.0
    assert sum(m.torque_offs for m in emu.motors.values()) == 0 and set(_torque(emu).values()) == {1}
    assert {i: emu.register(i, "Goal_Position") for i in emu.motors} == hold
    assert faults.latest() is None and driver.protective_stops == 0 and driver.bus.stats["retries"] > 0


@pytest.mark.parametrize("rig", [dict(stop_hold_s=0.3, stop_speed=2.0)], indirect=True)
def test_a_persistent_fault_holds_then_lowers_to_rest_with_torque_on(rig):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    start = emu.register(2, "Goal_Position")
    emu.faults.silent_ids = {3}
    f = _fault(faults, True)
    assert f.code == "no_response" and f.motor_ids == [3] and "no_response(3)" in f.message
    assert "protective stop" in f.message and "lowering to rest" in f.message
    # why it stopped, for telling a silent motor from a stalled host: how many cycles failed, the longest one
    (stop,) = driver.stop_log
    assert stop["label"] == "no_response(3)" and stop["ms"] > 250 and stop["cycles"] >= 2
    # each failed cycle is 3 tries, each waiting at least the 200 ms latency allowance
    assert stop["longest_ms"] >= 3 * 200
    assert f"{stop['cycles']} failed cycles, the longest {stop['longest_ms']:.0f} ms" in f.message
    assert emu.register(2, "Goal_Position") == start  # first it holds
    rest = driver.to_ticks("shoulder_lift", driver.cfg.rest["shoulder_lift"])
    assert wait_until(lambda: emu.register(2, "Goal_Position") == rest, 10)  # then lowers, slowly, to rest
    assert wait_until(lambda: emu.register(2, "Present_Position") == rest, 3)
    assert set(_torque(emu).values()) == {1} and sum(m.torque_offs for m in emu.motors.values()) == 0
    seen = js.latest().seq
    emu.faults.silent_ids = set()
    assert _fault(faults, False).message.startswith("recovered")
    assert js.wait_for(lambda m: m.seq > seen + 1, timeout=3)
    assert emu.register(2, "Goal_Position") == rest  # stays where the stop left it


def test_a_hardware_error_turns_torque_off_and_reboot_clears_it(rig):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    emu.set_hardware_error(5, 0b100)  # overheating
    f = _fault(faults, True)
    assert f.code == "motor_error" and f.motor_ids == [5] and "motor_error(5, 0x04)" in f.message
    assert "overheat" in f.message
    assert wait_until(lambda: set(_torque(emu).values()) == {0}, 2)
    assert node.call("arm/reboot", {}, timeout=5) == {"ok": True, "rebooted": [5]}
    assert _fault(faults, False).message.startswith("recovered")
    assert wait_until(lambda: set(_torque(emu).values()) == {1}, 3)


def test_unplugged_port_mid_run_then_reconnect(rig):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    emu.vanish()
    f = _fault(faults, True)
    assert f.code == "port_lost" and f.message.startswith("port_lost")
    emu.restore()
    assert _fault(faults, False, timeout=5)
    seen = js.latest().seq
    assert js.wait_for(lambda m: m.seq > seen, timeout=3)


def test_e_stop_turns_torque_off_and_release_holds_the_present_pose(rig):
    emu, driver, node, js, faults = rig
    assert js.wait_for(timeout=3)
    safety = node.publisher("safety/state", SafetyState, latched=True)
    assert safety.wait_for_subscribers(1, 3)
    safety.publish(SafetyState(estop=True, reason="e-stop: test"))
    assert _fault(faults, True).code == "estop"
    assert wait_until(lambda: set(_torque(emu).values()) == {0}, 2)
    safety.publish(SafetyState(estop=False, reason="reset"))
    assert _fault(faults, False)
    assert wait_until(lambda: set(_torque(emu).values()) == {1}, 2)


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
    with pytest.raises(ValueError, match=r"not among the motors"):
        ArmConfig(robot="so101", rest={"elbow": 0.0})


def test_an_uncalibrated_arm_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPYLAB_CALIBRATION", str(tmp_path))  # no calibration saved there
    node = Node("arm", f"inproc://{uuid.uuid4().hex}")
    try:
        with pytest.raises(NotCalibrated, match=r"arm so101 on /dev/ttyX is not calibrated.*--from-lerobot") as e:
            ArmDriver(node, ArmConfig(port="/dev/ttyX", robot="so101"), start=False)
        assert "\n" not in str(e.value)
    finally:
        node.close()


def test_motors_left_in_another_mode_are_refused_with_one_clear_line(tmp_path):
    # a Koch whose gripper was never set to current-based position mode
    emu = ServoArmEmulator.for_robot("koch").start()
    emu.motors[6]._set("Operating_Mode", 4)
    graph = f"inproc://{uuid.uuid4().hex}"
    drv_node, test_node = Node("arm", graph), Node("probe", graph)
    faults = test_node.subscribe("arm/fault", DeviceFault, queue_size=10)
    driver = ArmDriver(
        drv_node,
        ArmConfig(
            port=emu.path, robot="koch", latency_s=0.2, reconnect_s=0.05, calibration=identity_calibration(tmp_path)
        ),
    )
    try:
        f = _fault(faults, True)
        assert f.code == "configuration" and "\n" not in f.message
        assert "motor 6 (gripper) is in extended_position mode, expected current_based_position" in f.message
        assert set(_torque(emu).values()) == {0}
    finally:
        driver.close()
        drv_node.close()
        test_node.close()
        emu.stop()


def test_effort_units_per_model_through_the_codec():
    """Koch: the XL430 shoulders report load (0.1 % of 1.5 N·m), the XL330s current (1 mA x 0.35 N·m/A)."""
    with ServoArmEmulator.for_robot("koch") as emu:
        bus = MotorBus(emu.path, "dynamixel", {n: i for i, n in enumerate(JOINTS, 1)})
        models = {n: m for n, (_, m) in ArmConfig(robot="koch").motors.items()}
        codec = ArmCodec(bus, JOINTS, models, calibration.identity({n: i for i, n in enumerate(JOINTS, 1)}))
        raw = {
            i: (100).to_bytes(2, "little", signed=True) + bytes(4) + (2048).to_bytes(4, "little") for i in range(1, 7)
        }  # Present_Current/Load 100, velocity 0, position 2048
        _, pos, _, eff = codec.decode(raw)
    assert np.allclose(pos, 0.0)
    assert eff[0] == pytest.approx(0.15) and eff[1] == pytest.approx(0.15)  # 10 % of the XL430's 1.5 N·m
    assert eff[2] == pytest.approx(0.035)  # 100 mA x 0.35 N·m/A


def test_commands_that_do_not_fit_the_arm_are_ignored(rig):
    emu, driver, node, js, faults = rig
    first = js.wait_for(timeout=3)
    goals = {i: emu.register(i, "Goal_Position") for i in emu.motors}
    pub = node.publisher("arm/joint_command", JointCommand)
    assert pub.wait_for_subscribers(1, 3)
    pub.publish(JointCommand(name=["elbow", "wrist"], position=[1.0, 1.0]))  # unknown joints
    pub.publish(JointCommand(name=first.name, velocity=[0.5] * 5))  # velocity mode
    seen = js.latest().seq
    assert js.wait_for(lambda m: m.seq > seen + 5, timeout=3)  # still running
    for bad in ([0.1, float("nan"), 0.0, 0.0, 0.0], [0.1, 0.2, 0.3], np.zeros((5, 5))):  # not finite; too few; 2-D
        pub.publish(JointCommand(name=first.name, position=bad))
        seen = js.latest().seq
        assert js.wait_for(lambda m, seen=seen: m.seq > seen + 5, timeout=3)  # still running
    assert {i: emu.register(i, "Goal_Position") for i in emu.motors} == goals and faults.latest() is None


def test_feetech_sign_magnitude_velocity_and_load_and_a_reversed_joint_through_the_codec():
    """SO-101: velocity (sign bit 15) and load (sign bit 10) are sign-magnitude; a reversed joint (drive
    mode 1) flips position, velocity and effort. Load 100 = 10 % of the STS3215's 1.9 N·m."""
    with ServoArmEmulator.for_robot("so101") as emu:
        bus = MotorBus(emu.path, "feetech", {n: i for i, n in enumerate(JOINTS, 1)})
        models = {n: m for n, (_, m) in ArmConfig(robot="so101").motors.items()}
        cal = calibration.identity({n: i for i, n in enumerate(JOINTS, 1)})
        cal["elbow_flex"] = dataclasses.replace(cal["elbow_flex"], drive_mode=1)
        codec = ArmCodec(bus, JOINTS, models, cal)
        block = (
            (2048 + 100).to_bytes(2, "little")
            + (0x8000 | 40).to_bytes(2, "little")
            + (0x400 | 100).to_bytes(2, "little")
        )
        ticks, pos, vel, eff = codec.decode(block * 6)
    tick = 2 * math.pi / 4096
    assert ticks == [2148] * 6
    assert pos[0] == pytest.approx(100 * tick) and pos[2] == pytest.approx(-100 * tick)
    assert vel[0] == pytest.approx(-40 * tick) and vel[2] == pytest.approx(40 * tick)
    assert eff[0] == pytest.approx(-0.19) and eff[2] == pytest.approx(0.19)


@pytest.mark.parametrize("kind", ["feetech"])
def test_garbage_on_the_command_topic_is_counted_and_the_loop_runs_on(rig):
    """A truncated, undecodable or wrong-type message on arm/joint_command: dropped and counted by the bus, the
    driver keeps cycling, holds its goal, and takes the next good command."""
    emu, driver, node, js, faults = rig
    first = js.wait_for(timeout=3)
    goals = {i: emu.register(i, "Goal_Position") for i in emu.motors}
    rogue = _rogue_publisher(driver.node.config.url, "arm/joint_command", "JointCommand")
    assert wait_until(lambda: rogue.poll(0) and rogue.recv().startswith(b"\x01arm/joint_command"), 5)
    prefix = b"arm/joint_command\0rogue"
    good, _ = codec.encode(JointCommand(name=first.name, position=[0.2, 0.1, -0.1, 0.0, 0.3], seq=9, stamp_ns=1))
    stats = driver.node.stats
    for frames, what in (
        ([prefix, good[: len(good) // 2]], "malformed"),
        ([prefix, b"\xc1"], "malformed"),
        (
            [prefix, msgpack.packb({"__m__": "JointCommand", "name": first.name, "position": "not numbers"})],
            "malformed",
        ),
        ([prefix, codec.encode(JointState(name=first.name, position=[1.0] * 5))[0]], "wrong_type"),
        ([prefix, msgpack.packb({"__m__": "WarpDrive"})], "unknown_type"),
    ):
        before = stats[what]
        rogue.send_multipart(frames)  # one at a time: a latest-mode poll decodes only the newest
        assert wait_until(lambda what=what, before=before: stats[what] == before + 1, 5), (what, stats)
        seen = js.latest().seq
        assert js.wait_for(lambda m, seen=seen: m.seq > seen + 3, timeout=3)  # still cycling
    assert {i: emu.register(i, "Goal_Position") for i in emu.motors} == goals and faults.latest() is None
    rogue.send_multipart([prefix, good])
    assert js.wait_for(lambda m: np.allclose(m.position, [0.2, 0.1, -0.1, 0.0, 0.3], atol=3e-3), timeout=3)
    rogue.close()


def test_a_repeated_pose_keeps_its_goals_and_any_change_is_recomputed(tmp_path):
    """The driver reuses the goals of a pose the gate streams again; the same values for other joints, a moved
    joint or a pose with a value it refused are new commands, each computed (no port needed: the cycle's maths)."""
    node = Node("arm", f"inproc://{uuid.uuid4().hex}")
    try:
        cfg = ArmConfig(port="/nonexistent", robot="so101", calibration=identity_calibration(tmp_path))
        driver = ArmDriver(node, cfg, start=False)

        def goals(names, q):
            return driver._goals({"name": names, "position": q, "velocity": []})

        pose = [0.1, -0.2, 0.3, 0.0, 0.5]
        held = goals(JOINTS[:5], list(pose))
        assert goals(JOINTS[:5], list(pose)) is held  # the same pose again: the same goals
        assert held == {n: driver.to_ticks(n, q) for n, q in zip(JOINTS[:5], pose)}
        swapped = goals(JOINTS[1::-1], pose[:2])  # the same values for other joints
        assert swapped == {
            "shoulder_lift": driver.to_ticks("shoulder_lift", 0.1),
            "shoulder_pan": driver.to_ticks("shoulder_pan", -0.2),
        }
        moved = goals(JOINTS[:5], [*pose[:4], 0.6])
        assert moved["wrist_roll"] == driver.to_ticks("wrist_roll", 0.6) and goals(JOINTS[:5], list(pose)) == held
        assert goals(JOINTS[:5], [*pose[:4], float("nan")]) == {}  # refused, and not taken for the pose before
        assert goals(JOINTS[:5], list(pose)) == held
        q = [*pose[:4], 0.7]
        assert goals(JOINTS[:5], q)["wrist_roll"] == driver.to_ticks("wrist_roll", 0.7)
        q[4] = 0.8  # the same list, changed in place: a new pose
        assert goals(JOINTS[:5], q)["wrist_roll"] == driver.to_ticks("wrist_roll", 0.8)
    finally:
        node.close()
