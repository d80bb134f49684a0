"""`loopylab arm ...` through typer's runner against the emulators."""
import typer
from typer.testing import CliRunner

from loopylab.firmware_bridge.arm_node import PRESET_MODEL_NUMBERS
from loopylab.firmware_bridge.cli import register
from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator


def _app():
    app = typer.Typer()
    register(app)
    return app


def test_status_lists_every_motor_of_an_emulated_koch():
    with ServoArmEmulator("dynamixel", model=PRESET_MODEL_NUMBERS["koch"]) as emu:
        r = CliRunner().invoke(_app(), ["arm", "status", "--robot", "koch", "--port", emu.path])
    assert r.exit_code == 0, r.output
    assert "xl430-w250" in r.output and "xl330-m288" in r.output and "wrist_roll" in r.output


def test_status_names_missing_motors():
    with ServoArmEmulator("feetech", ids=(1, 2, 3, 5, 6)) as emu:
        r = CliRunner().invoke(_app(), ["arm", "status", "--robot", "so101", "--port", emu.path])
    assert r.exit_code == 1 and "motor 4 (wrist_flex)" in r.output


def test_setup_motors_walks_through_each_motor():
    # the same single factory-fresh motor is plugged in for each prompt; each pass renames it
    with ServoArmEmulator("feetech", ids=(1,), baud_code=6) as emu:
        r = CliRunner().invoke(_app(), ["arm", "setup-motors", "--robot", "so101", "--port", emu.path],
                               input="\n" * 6)
        assert r.exit_code == 0, r.output
        assert list(emu.motors) == [1] and emu.motors[1].baud == 1_000_000
    assert "gripper: motor 1 @ 57600 baud -> ID 6" in r.output
    assert "shoulder_pan: motor 2 @ 1000000 baud -> ID 1" in r.output


def test_unknown_robot_is_a_clear_error():
    r = CliRunner().invoke(_app(), ["arm", "status", "--robot", "ur5", "--port", "/dev/null"])
    assert r.exit_code == 1 and "unknown robot 'ur5'" in r.output
