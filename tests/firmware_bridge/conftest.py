import pytest

from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.servo.bus import MotorBus

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@pytest.fixture(params=["feetech", "dynamixel"])
def kind(request):
    return request.param


@pytest.fixture
def emulator(kind):
    emu = ServoArmEmulator(kind).start()
    yield emu
    emu.stop()


@pytest.fixture
def bus(emulator, kind):
    b = MotorBus(
        emulator.path, kind, {n: i + 1 for i, n in enumerate(JOINTS)}, latency_s=0.2
    )  # generous: CI machines are loaded
    b.connect()
    yield b
    b.close()
