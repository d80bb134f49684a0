"""LeRobot calibrations imported and checked against the motors, operating modes and models read at
connect, modes and gains written by setup, effort units per model — all against the pty emulators."""

import json
import math

import pytest

from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.servo import calibration
from loopylab.firmware_bridge.servo.bus import Motor, MotorBus, MotorBusError
from loopylab.firmware_bridge.servo.models import effort_unit
from loopylab.firmware_bridge.servo.setup import configure_motors
from loopylab.world.config import ConfigError
from tests.firmware_bridge.conftest import JOINTS

ZERO = {1: 1800.0, 2: 2300.0, 3: 2048.0, 4: 1500.0, 5: 2600.0, 6: 2100.0}  # actual ticks of the URDF zero
HALF_RANGE = {1: 900, 2: 700, 3: 1000, 4: 800, 5: 1200, 6: 600}


def lerobot_file_for(emu, kind, path, drive_modes=None):
    """What LeRobot's calibration leaves behind for this emulated arm: homing offsets in the motors (the user
    centred each joint roughly, not exactly, at its middle) and ranges whose middle is the URDF zero; returns
    the present position each zero reads at."""
    drive_modes = drive_modes or {}
    out, zero_present = {}, {}
    for i, name in enumerate(JOINTS, start=1):
        homing_pose = ZERO[i] + 37 * (i - 3)  # roughly centred
        offset = int(homing_pose - 2047) if kind == "feetech" else int(2047 - homing_pose)
        emu.motors[i]._set("Homing_Offset", offset)
        zero = ZERO[i] - offset if kind == "feetech" else ZERO[i] + offset
        lo, hi = int(zero - HALF_RANGE[i]), int(zero + HALF_RANGE[i])
        emu.motors[i]._set("Min_Position_Limit", max(0, lo))
        emu.motors[i]._set("Max_Position_Limit", min(4095, hi))
        out[name] = {
            "id": i,
            "drive_mode": drive_modes.get(name, 0),
            "homing_offset": offset,
            "range_min": max(0, lo),
            "range_max": min(4095, hi),
        }
        zero_present[name] = zero
    path.write_text(json.dumps(out, indent=4))
    return zero_present


def test_lerobot_import_reads_the_true_angles(emulator, bus, kind, tmp_path):
    lerobot = tmp_path / "my_arm.json"
    lerobot_file_for(emulator, kind, lerobot, {"elbow_flex": 1})
    calib = calibration.from_lerobot(lerobot, JOINTS)
    calibration.check(bus, calib)  # offsets and limits agree with the motors
    truth = {1: 0.4, 2: -0.3, 3: 0.25, 4: -0.5, 5: 1.0, 6: 0.1}
    for i, q in truth.items():
        emulator.move_by_hand(i, ZERO[i] + q * 4096 / (2 * math.pi))
    present = bus.sync_read("Present_Position")
    for i, name in enumerate(JOINTS, start=1):
        want = -truth[i] if name == "elbow_flex" else truth[i]  # drive_mode 1: the joint turns the other way
        assert abs(calibration.to_rad(calib[name], present[name]) - want) <= 0.002
        assert abs(calibration.to_ticks(calib[name], want) - present[name]) <= 1
    # saved as ours, loaded back identical; and the LeRobot view of it is the file we imported
    ours = calibration.save(tmp_path / "ours.json", calib)
    assert calibration.load(ours) == calib
    assert calibration.to_lerobot(calib) == json.loads(lerobot.read_text())


def test_a_lerobot_file_that_disagrees_with_the_motors_is_refused_in_one_line(emulator, bus, kind, tmp_path):
    lerobot = tmp_path / "my_arm.json"
    lerobot_file_for(emulator, kind, lerobot)
    data = json.loads(lerobot.read_text())
    data["wrist_flex"]["homing_offset"] += 100  # recalibrated since, or another arm's file
    lerobot.write_text(json.dumps(data))
    with pytest.raises(calibration.CalibrationMismatch) as e:
        calibration.check(bus, calibration.from_lerobot(lerobot, JOINTS))
    assert "\n" not in str(e.value) and "wrist_flex (motor 4): Homing_Offset is" in str(e.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("gripper"), "this arm has"),
        (lambda d: d["gripper"].update(unit="deg"), "unknown keys"),
        (lambda d: d["gripper"].pop("range_max"), "missing"),
        (lambda d: d["gripper"].update(range_min=3000, range_max=2000), "not below"),
    ],
)
def test_bad_lerobot_files_are_clear_errors(tmp_path, change, message):
    data = {
        n: {"id": i, "drive_mode": 0, "homing_offset": 0, "range_min": 1000, "range_max": 3000}
        for i, n in enumerate(JOINTS, start=1)
    }
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        calibration.from_lerobot(path, JOINTS)


def test_modes_and_models_are_read_at_connect_and_mismatches_refused(kind):
    mode = {"dynamixel": "extended_position", "feetech": "step"}[kind]
    with ServoArmEmulator(kind, ids=(1, 2)) as emu:
        described = {"a": Motor(1, "", "position"), "b": Motor(2, "", "position")}
        emu.motors[2]._set("Operating_Mode", {"dynamixel": 4, "feetech": 3}[kind])  # left so by another tool
        bus = MotorBus(emu.path, kind, described, latency_s=0.2)
        with pytest.raises(MotorBusError, match=rf"motor 2 \(b\) is in {mode} mode, expected position") as e:
            bus.connect()
        assert "\n" not in str(e.value)
        assert configure_motors(bus)["b"].startswith("position mode")
        bus.connect()  # now it is
        bus.close()
        wrong = MotorBus(
            emu.path, kind, {"a": Motor(1, "xm540-w270" if kind == "dynamixel" else "sts3250")}, latency_s=0.2
        )
        with pytest.raises(MotorBusError, match=r"motor 1 \(a\) is a .*, expected .*--motors"):
            wrong.connect()
        wrong.close()


def test_setup_writes_the_recommended_gains(kind):
    model = {
        "dynamixel": (1200, "xl330-m288", "Position_P_Gain", 1500),
        "feetech": (777, "sts3215", "P_Coefficient", 16),
    }
    number, name, reg, value = model[kind]
    with ServoArmEmulator(kind, ids=(1,), model=number) as emu:
        bus = MotorBus(emu.path, kind, {"a": Motor(1, name, "position")}, latency_s=0.2).open()
        configure_motors(bus)
        assert emu.register(1, reg) == value
        bus.close()


def test_effort_units_follow_the_control_tables():
    xl430, xl330, sts = (
        effort_unit("dynamixel", "xl430-w250"),
        effort_unit("dynamixel", "xl330-m288"),
        effort_unit("feetech", "sts3215"),
    )
    assert (xl430.quantity, xl330.quantity, sts.quantity) == ("load", "current", "load")
    assert xl430.nm_per_unit * 1000 == pytest.approx(1.5)  # 100 % load: the stall torque
    assert xl330.nm_per_unit * 1000 == pytest.approx(0.35)  # 1 A: the torque constant
    assert sts.nm_per_unit * 1000 == pytest.approx(1.9)
