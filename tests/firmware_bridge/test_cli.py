"""`loopylab arm ...` through typer's runner against the emulators."""

import json

import typer
from typer.testing import CliRunner

from loopylab.firmware_bridge.cli import register
from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.servo import calibration

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def _app():
    app = typer.Typer()
    register(app)
    return app


def test_status_lists_every_motor_of_an_emulated_koch():
    with ServoArmEmulator.for_robot("koch") as emu:
        r = CliRunner().invoke(_app(), ["arm", "status", "--robot", "koch", "--port", emu.path])
    assert r.exit_code == 0, r.output
    assert "xl430-w250" in r.output and "xl330-m288" in r.output and "wrist_roll" in r.output


def test_status_names_missing_motors():
    with ServoArmEmulator("feetech", ids=(1, 2, 3, 5, 6)) as emu:
        r = CliRunner().invoke(_app(), ["arm", "status", "--robot", "so101", "--port", emu.path])
    assert r.exit_code == 1 and "motor 4 (wrist_flex)" in r.output


def test_other_motor_models_are_described_not_refused():
    models = {1: 1060, 2: 1060, 3: 1060, 4: 1200, 5: 1200, 6: 1200}  # an XL430 elbow on a Koch
    with ServoArmEmulator("dynamixel", model=models) as emu:
        for m in emu.motors.values():
            m._set("Operating_Mode", 5 if m.id == 6 else 3)
        refused = CliRunner().invoke(_app(), ["arm", "status", "--robot", "koch", "--port", emu.path])
        described = CliRunner().invoke(
            _app(), ["arm", "status", "--robot", "koch", "--port", emu.path, "--motors", "elbow_flex=xl430-w250"]
        )
    assert refused.exit_code == 1 and "motor 3 (elbow_flex) is a xl430-w250, expected xl330-m288" in refused.output
    assert "--motors" in refused.output
    assert described.exit_code == 0, described.output


def test_setup_motors_walks_through_each_motor_and_writes_modes_and_gains():
    # the same single factory-fresh motor is plugged in for each prompt; each pass renames it
    with ServoArmEmulator("feetech", ids=(1,), baud_code=6) as emu:
        r = CliRunner().invoke(_app(), ["arm", "setup-motors", "--robot", "so101", "--port", emu.path], input="\n" * 6)
        assert r.exit_code == 0, r.output
        assert list(emu.motors) == [1] and emu.motors[1].baud == 1_000_000
        assert emu.register(1, "P_Coefficient") == 16 and emu.register(1, "Operating_Mode") == 0
    assert "gripper: motor 1 @ 57600 baud -> ID 6" in r.output
    assert "shoulder_pan: motor 2 @ 1000000 baud -> ID 1" in r.output and "P_Coefficient=16" in r.output


def test_configure_only_fixes_modes_left_by_another_tool():
    with ServoArmEmulator.for_robot("koch") as emu:
        for m in emu.motors.values():
            m._set("Operating_Mode", 4)  # LeRobot's Koch: extended position everywhere
        r = CliRunner().invoke(
            _app(), ["arm", "setup-motors", "--robot", "koch", "--port", emu.path, "--configure-only"]
        )
        assert r.exit_code == 0, r.output
        assert [emu.register(i, "Operating_Mode") for i in range(1, 7)] == [3, 3, 3, 3, 3, 5]
        assert emu.register(3, "Position_P_Gain") == 1500


def test_calibrate_from_lerobot_checks_the_motors_and_saves_ours(tmp_path):
    with ServoArmEmulator.for_robot("so101") as emu:
        lerobot = {
            n: {"id": i, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 4095}
            for i, n in enumerate(JOINTS, 1)
        }
        lerobot["elbow_flex"].update(range_min=1000, range_max=3000)
        emu.motors[3]._set("Min_Position_Limit", 1000)
        emu.motors[3]._set("Max_Position_Limit", 3000)
        src, out = tmp_path / "so101.json", tmp_path / "ours.json"
        src.write_text(json.dumps(lerobot))
        ok = CliRunner().invoke(
            _app(),
            ["arm", "calibrate", "--robot", "so101", "--port", emu.path, "--from-lerobot", str(src), "--out", str(out)],
        )
        assert ok.exit_code == 0, ok.output
        assert calibration.load(out)["elbow_flex"].zero == 2000
        lerobot["wrist_flex"]["homing_offset"] = 55  # not what the motor holds
        src.write_text(json.dumps(lerobot))
        bad = CliRunner().invoke(
            _app(),
            [
                "arm",
                "calibrate",
                "--robot",
                "so101",
                "--port",
                emu.path,
                "--from-lerobot",
                str(src),
                "--out",
                str(tmp_path / "no.json"),
            ],
        )
    assert bad.exit_code == 1 and "wrist_flex (motor 4): Homing_Offset is 0, file says 55" in bad.output
    assert not (tmp_path / "no.json").exists()


def test_reboot_clears_a_hardware_error():
    with ServoArmEmulator.for_robot("koch") as emu:
        emu.set_hardware_error(4, 0b100000)
        r = CliRunner().invoke(_app(), ["arm", "reboot", "--robot", "koch", "--port", emu.path, "--id", "4"])
        assert r.exit_code == 0, r.output
        assert emu.register(4, "Hardware_Error_Status") == 0


def test_unknown_robot_is_a_clear_error():
    r = CliRunner().invoke(_app(), ["arm", "status", "--robot", "ur5", "--port", "/dev/null"])
    assert r.exit_code == 1 and "unknown robot 'ur5'" in r.output


def test_launch_takes_the_latency_and_fault_window_allowances(tmp_path, monkeypatch):
    """`arm launch --latency-ms --fault-window-ms` reach the arm node (over the graph's own latency_s)."""
    for key in ("PORT", "CALIBRATION", "LATENCY_S", "FAULT_WINDOW_S"):  # the CLI sets them: restored after
        monkeypatch.setenv(f"LOOPYLAB_ARM_{key}", "")
    graph = tmp_path / "arm.toml"
    graph.write_text(
        '[graph]\nname = "arm_only"\ntransport = "ipc"\n\n[nodes.arm]\n'
        'run = "loopylab.firmware_bridge.arm_node:run_arm"\n'
        'params = { robot = "so101", latency_s = 0.02 }\n'
    )
    args = ["arm", "launch", str(graph), "--emulate", "--latency-ms", "40", "--fault-window-ms", "600"]
    result = CliRunner().invoke(_app(), [*args, "--duration", "10"])
    assert "6 feetech motors connected (latency allowance 40 ms, fault window 600 ms)" in result.output, result.output
