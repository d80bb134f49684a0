"""The emulators are as strict as the motors, checked with the vendors' own SDKs (dynamixel-sdk,
feetech-servo-sdk, minimalmodbus) on real ptys: REG_WRITE waits for ACTION, REBOOT / FACTORY_RESET /
CLEAR, unknown instructions get the instruction error, a broadcast READ is ignored, Robotiq FC06 and
partial writes, the `--fault` spec, and `arm emulate` cleaning up after SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import pytest

from loopylab.firmware_bridge.emulators.pty_device import Faults, schedule_port_loss
from loopylab.firmware_bridge.emulators.robotiq import RobotiqEmulator
from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.servo.bus import MotorBus, PortLostError
from tests.waiting import wait_until

GOAL = {"dynamixel": (116, 4), "feetech": (42, 2)}
TORQUE = {"dynamixel": 64, "feetech": 40}


def _sdk(kind, path):
    if kind == "dynamixel":
        import dynamixel_sdk as sdk

        ph = sdk.PacketHandler(2.0)
    else:
        import scservo_sdk as sdk

        ph = sdk.PacketHandler(0)
    port = sdk.PortHandler(path)
    assert port.openPort() and port.setBaudRate(1_000_000)
    return sdk, ph, port


def _retry(call, *args, deadline_s: float = 15.0):
    """The vendor SDKs have no retries and fixed timeouts of a few tens of ms: on a loaded machine the emulator's
    thread can be off the CPU for longer than that, so try again until a deadline sized for a busy host."""
    out = None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            out = call(*args)
        except IndexError:  # the SDK can index past a half-read packet
            continue
        result = out[1] if isinstance(out, tuple) and len(out) == 3 else (out[0] if isinstance(out, tuple) else out)
        if result == 0:
            return out
    return out


@pytest.fixture
def vendor(kind):
    emu = ServoArmEmulator(kind, ids=(1, 2)).start()
    sdk, ph, port = _sdk(kind, emu.path)
    yield emu, sdk, ph, port
    port.closePort()
    emu.stop()


def test_reg_write_takes_effect_only_on_action(vendor, kind):
    emu, sdk, ph, port = vendor
    addr, size = GOAL[kind]
    before = emu.register(1, "Goal_Position")
    result, error = _retry(ph.regWriteTxRx, port, 1, addr, size, list((before + 300).to_bytes(size, "little")))
    assert (result, error) == (0, 0)
    assert emu.register(1, "Goal_Position") == before  # registered, not applied
    if kind == "dynamixel":
        assert emu.register(1, "Registered_Instruction") == 1
        ph.action(port, 0xFE)  # broadcast ACTION, as the SDK sends it
    else:
        assert _retry(ph.action, port, 1) == 0
    assert wait_until(lambda: emu.register(1, "Goal_Position") == before + 300, 2)
    if kind == "dynamixel":
        assert emu.register(1, "Registered_Instruction") == 0


def test_unknown_instruction_gets_the_instruction_error(vendor, kind):
    emu, sdk, ph, port = vendor
    if kind == "dynamixel":
        tx = [0] * 10
        tx[4], tx[5], tx[6], tx[7] = 1, 3, 0, 0x07  # ID 1, LEN 3, instruction 0x07 (none)
        want = 2  # Dynamixel error 2: instruction error
    else:
        tx = [0] * 6
        tx[2], tx[3], tx[4] = 1, 2, 0x07
        want = 0x40
    _, result, error = _retry(ph.txRxPacket, port, tx)
    assert result == 0 and error == want


def test_broadcast_read_is_ignored_and_the_emulator_keeps_serving(vendor, kind):
    emu, sdk, ph, port = vendor
    addr, size = GOAL[kind]
    ph.readTx(port, 0xFE, addr, size)  # no motor answers a broadcast READ
    # nothing comes back: a wrong answer would be in within a few ms (answers take ~1 ms even under load)
    assert not wait_until(lambda: port.getBytesAvailable() > 0, 0.2), "an answer to a broadcast READ"
    number, result, error = _retry(ph.ping, port, 2)
    assert (result, error) == (0, 0) and number == emu.motors[2].model


def test_dynamixel_reboot_factory_reset_and_clear_with_the_vendor_sdk():
    with ServoArmEmulator("dynamixel", ids=(2, 3)) as emu:
        sdk, ph, port = _sdk("dynamixel", emu.path)
        try:
            emu.set_hardware_error(2, 0b100000)  # overload
            assert _retry(ph.reboot, port, 2)[0] == 0
            assert emu.register(2, "Hardware_Error_Status") == 0 and emu.register(2, "Torque_Enable") == 0
            # CLEAR folds a multi-turn position back into one turn (motor at rest)
            emu.move_by_hand(3, 4096 * 2 + 100)
            assert _retry(ph.clearMultiTurn, port, 3) == (0, 0)
            assert emu.register(3, "Present_Position") == 100
            # FACTORY_RESET 0x02 keeps ID and baud, resets the rest of EEPROM
            assert _retry(ph.write4ByteTxRx, port, 3, 20, 500) == (0, 0)  # Homing_Offset
            assert _retry(ph.factoryReset, port, 3, 0x02) == (0, 0)
            assert emu.register(3, "Homing_Offset") == 0 and emu.register(3, "ID") == 3
            assert emu.register(3, "Return_Delay_Time") == 250  # factory: 500 µs
            # FACTORY_RESET 0xFF: ID 1 and 57600 baud, as from the factory
            assert _retry(ph.factoryReset, port, 3, 0xFF) == (0, 0)
            assert sorted(emu.motors) == [1, 2] and emu.motors[1].baud == 57600
        finally:
            port.closePort()


def test_faults_spec_parses_every_option_and_refuses_nonsense():
    f = Faults.parse("drop=0.05,corrupt=0.05,delay_ms=5,silent=3,port_loss_after=10s")
    assert (f.lose_rate, f.corrupt_rate, f.latency_s, f.silent_ids, f.port_loss_after_s) == (
        0.05,
        0.05,
        0.005,
        {3},
        10.0,
    )
    assert Faults.parse("silent=2+4,truncate=0.1").silent_ids == {2, 4}
    for bad, msg in (("drop=2", "0..1"), ("bogus=1", "unknown fault"), ("drop", "no value")):
        with pytest.raises(ValueError, match=msg):
            Faults.parse(bad)


def test_dropped_replies_are_lost_whole_and_port_loss_comes_on_time(kind):
    faults = Faults.parse("drop=1.0,port_loss_after=0.5s")
    with ServoArmEmulator(kind, ids=(1,), faults=faults) as emu:
        schedule_port_loss(emu, faults)
        bus = MotorBus(emu.path, kind, {"a": 1}, latency_s=0.05, retries=0).open()
        try:
            with pytest.raises(Exception, match="did not answer"):
                bus.read("ID", "a")
            assert emu.faults.injected >= 1
            assert wait_until(lambda: not os.path.lexists(emu.path), 5)
            deadline = time.monotonic() + 5  # the port is gone: the next read (or one soon after) says so
            with pytest.raises(PortLostError):
                while time.monotonic() < deadline:
                    bus.read("ID", "a")
        finally:
            bus.close()


def test_robotiq_takes_fc06_and_partial_writes_from_minimalmodbus():
    import minimalmodbus

    with RobotiqEmulator("rtu", activation_s=0.0) as emu:
        inst = minimalmodbus.Instrument(emu.path, 9)
        inst.serial.baudrate, inst.serial.timeout = 115200, 1.0
        try:
            for _ in range(10):  # the server may still be opening its end of the pty
                try:
                    inst.write_register(1000, 0x0100, functioncode=6)  # rACT by FC06
                    break
                except minimalmodbus.NoResponseError:
                    continue
            assert wait_until(lambda: inst.read_registers(2000, 1)[0] >> 8 == 0x31, 3)
            inst.write_registers(1001, [0x00C8, 0xFF80])  # position 200, speed, force
            inst.write_register(1000, 0x0900, functioncode=6)  # rGTO | rACT
            assert inst.read_registers(2001, 1)[0] & 0xFF == 200  # the echo of the request
            assert wait_until(lambda: inst.read_registers(2002, 1)[0] >> 8 == 200, 5)
        finally:
            inst.serial.close()


def test_arm_emulate_with_faults_cleans_up_its_link_on_sigterm(tmp_path):
    link = tmp_path / "ttyARM"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from loopylab.lab.cli import main; main()",
            "arm",
            "emulate",
            "--kind",
            "dynamixel",
            "--link",
            str(link),
            "--fault",
            "drop=0.05,corrupt=0.05,delay_ms=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: os.path.lexists(link), 60)  # (the CLI's imports take 20 s and more at load 30)
        bus = MotorBus(str(link), "dynamixel", {"a": 1}, latency_s=0.2, retries=5).open()
        assert bus.read("ID", "a") == 1
        bus.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stdout.read()
    assert not os.path.lexists(link)
