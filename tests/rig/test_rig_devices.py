"""The emulated rig's devices: real servo protocols over a pty with the physics behind them, calibrated like a
real arm; the FT300 streams the physics' wrench in its own (wrist) frame; the Robotiq's fingers are the sim's."""

import numpy as np
import pytest

from loopylab.firmware_bridge.modbus.client import Endpoint
from loopylab.firmware_bridge.modbus.ft300 import FT300
from loopylab.firmware_bridge.modbus.robotiq import RobotiqGripper
from loopylab.firmware_bridge.servo import calibration as cal
from loopylab.firmware_bridge.servo.bus import Motor, MotorBus
from loopylab.firmware_bridge.servo.models import effort_unit
from loopylab.rig.rig import Rig, RigConfig
from loopylab.world.robots import robot_spec
from tests.waiting import wait_for_value, wait_until


@pytest.fixture(params=["so101", "koch"])
def rig(request, tmp_path):
    r = Rig(RigConfig(robot=request.param, seed=5, n_objects=1, cameras=[], out_dir=str(tmp_path))).start()
    yield r
    r.stop()


def _bus(rig) -> MotorBus:
    layout = robot_spec(rig.cfg.robot).hardware
    motors = {n: Motor(layout.motors[n][0], layout.motors[n][1], "position") for n in rig.calibration}
    return MotorBus(rig.ports["arm"], layout.kind, motors, latency_s=0.25)  # generous: a loaded CI machine


@pytest.mark.parametrize("robot", ["so101", "koch"])
def test_the_world_is_at_rest_when_the_ports_open(robot, tmp_path):
    """A powered-down arm rests where it was put: no tick after the rig is built moves a joint (the SO-101 once
    swung its wrist 0.9 rad over the first 0.2 s, and a host that read the servos then saw a stale angle)."""
    rig = Rig(RigConfig(robot=robot, seed=5, n_objects=1, cameras=[], out_dir=str(tmp_path)))
    try:
        home = [rig.physics.joint(i)[0] for i in range(len(rig.physics.names))]
        for _ in range(60):  # half a second of the world, ticked by hand (no thread, no clock)
            rig.physics.tick()
            for i, q in enumerate(home):
                now, v, _ = rig.physics.joint(i)
                assert abs(v) < 0.01 and now == pytest.approx(q, abs=cal.TICK_RAD)
    finally:
        rig.stop()


def test_servos_are_calibrated_like_a_real_arm_and_read_the_physics(rig):
    """Non-zero homing offsets in the motors, the file the driver loads matches them, and present position
    through that file is the simulated joint angle."""
    calib = cal.load(rig.files["calibration"])
    assert all(c.homing_offset != 0 for c in calib.values())
    bus = _bus(rig)
    bus.connect()
    try:
        cal.check(bus, calib)  # what the arm driver checks at connect
        present = bus.sync_read("Present_Position")
        for i, name in enumerate(robot_spec(rig.cfg.robot).arm_joints):
            q, _, _ = rig.physics.joint(i)
            assert cal.to_rad(calib[name], present[name]) == pytest.approx(q, abs=2 * cal.TICK_RAD)
    finally:
        bus.close()


def test_a_goal_over_serial_moves_the_simulated_joint(rig):
    """Torque on, a goal written over the port: the simulated joint goes there, and present position and
    velocity follow it (Feetech: sign-magnitude registers; Dynamixel: two's complement)."""
    calib = cal.load(rig.files["calibration"])
    bus = _bus(rig)
    bus.connect()
    try:
        start = bus.sync_read("Present_Position")
        bus.sync_write("Goal_Position", start)
        bus.set_torque(True)
        goal_rad = cal.to_rad(calib["shoulder_pan"], start["shoulder_pan"]) + 0.4
        bus.write("Goal_Position", "shoulder_pan", cal.to_ticks(calib["shoulder_pan"], goal_rad))
        # turning toward the goal (> 0.1 rad/s; a settling jiggle at torque-on is smaller), read from the physics
        unit = 0.229 * 2 * np.pi / 60 if robot_spec(rig.cfg.robot).hardware.kind == "dynamixel" else cal.TICK_RAD
        moving = wait_for_value(lambda: bus.read("Present_Velocity", "shoulder_pan") * unit, lambda v: v > 0.1, 10)
        assert moving is not None
        assert wait_until(lambda: abs(rig.physics.joint(0)[0] - goal_rad) < 0.01, 20)
        at = cal.to_rad(calib["shoulder_pan"], bus.read("Present_Position", "shoulder_pan"))
        assert at == pytest.approx(goal_rad, abs=0.01)
        # the shoulder holds the arm up against gravity: its load register carries the simulated torque
        layout = robot_spec(rig.cfg.robot).hardware
        reg = "Present_Load" if layout.kind == "feetech" else "Present_Current"
        unit = effort_unit(layout.kind, layout.motors["shoulder_lift"][1]).nm_per_unit
        # (register and physics read a moment apart: a pair that agrees, with the joint loaded, within 10 s)
        pair = wait_for_value(
            lambda: (bus.read(reg, "shoulder_lift") * unit, rig.physics.joint(1)[2]),
            lambda p: abs(p[1]) > 0.02 and abs(p[0] - p[1]) <= 0.05 + 0.2 * abs(p[1]),
            10,
        )
        assert pair is not None
        bus.set_torque(False)
    finally:
        bus.close()


def test_the_ft300_reads_the_mean_wrench_of_the_ticks_since_its_last_reading(tmp_path):
    """A real FT300 filters what it samples before it sends its 100 frames a second; the rig's world ticks at 120
    Hz. Each reading is the mean of the ticks since the one before, so no tick goes unread. (The last tick alone
    aliased: where a push knocks its block along in jolts, a few ticks carry its force, and pushes of one block
    from one spot read 0.21-0.34 N for its 0.28: dev world 1000005, the hardware path.)"""
    rig = Rig(RigConfig(robot="so101", seed=5, n_objects=1, cameras=[], out_dir=str(tmp_path), ft_noise_n=0.0))
    try:
        rig.ft.reading()  # what the settling left
        rig.physics.set_goal(1, rig.physics.joint(1)[0] + 0.5)  # the shoulder swings: the wrench changes each tick
        every = []
        for ticks in (1, 2, 3, 1, 2):  # ticked by hand (no thread, no clock): 120 Hz ticks, 100 Hz frames
            seen = []
            for _ in range(ticks):
                rig.physics.tick()
                seen.append(rig.physics.sensor_wrench()[0])
            force, _ = rig.ft.reading()
            assert force == pytest.approx(np.mean(seen, axis=0), abs=1e-9)
            every += seen
        assert np.ptp(np.array(every)[:, :2], axis=0).max() > 0.05  # the ticks did differ
        again, _ = rig.ft.reading()  # no tick since: the same mean (with the sensor's noise, here none)
        assert again == pytest.approx(force, abs=1e-12)
    finally:
        rig.stop()


def test_ft300_streams_the_physics_wrench_and_robotiq_moves_the_sim_fingers(rig):
    ft = FT300(rig.ports["ft"], timeout_s=1.0)
    ft.connect()
    try:
        ft.start_stream()
        frames, physics = [], []  # the physics' wrench sampled alongside: the arm may still settle at start-up

        def read() -> bool:
            frames.extend(ft.read_frames(1.0))
            physics.append((rig.physics.wrench()[0], rig.physics.sensor_wrench()[0]))
            return len(frames) >= 40

        assert wait_until(read, 20)
        force = np.mean([b for b, _ in physics[-5:]], axis=0)
        own = np.mean([s for _, s in physics[-5:]], axis=0)
        measured = np.mean([f for f, _ in frames[-20:]], axis=0)
        # the hand's own weight, within the sensor's noise (0.03 N) and its 0.01 N resolution, in the sensor's
        # own axes (on the wrist they turn with it: pointing down, its z axis is the base's -z)
        assert measured == pytest.approx(own, abs=0.05)
        assert force[2] < -0.5  # the hand hangs from the sensor
        assert measured[2] > 0.5 and not np.allclose(measured, force, atol=0.3)
        # the skills turn it back with the arm's forward kinematics at the joints the motors report
        from loopylab.actuation.skills.motion import Motion

        mo = Motion(rig.cfg.robot)
        try:
            q = [rig.physics.joint(i)[0] for i in range(len(rig.physics.names))]
            assert mo.sensor_rotation(q) @ measured == pytest.approx(force, abs=0.05)
        finally:
            mo.close()
    finally:
        ft.close()
    g = RobotiqGripper(Endpoint(transport="rtu", port=rig.ports["gripper"], timeout_s=1.0))
    g.connect()
    try:
        g.activate()
        g.goto(255, 255, 0)  # close
        max_opening = robot_spec(rig.cfg.robot).max_opening
        assert wait_until(lambda: g.status() and rig.physics.gripper_opening() < 0.2 * max_opening, 20)
    finally:
        g.close()
