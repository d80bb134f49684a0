"""The motor bus against the pty emulators: transactions, retries, clear errors, vendor-SDK cross-checks."""

import time

import pytest

from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.servo import calibration
from loopylab.firmware_bridge.servo.bus import (
    CorruptResponseError,
    MotorBus,
    MotorFaultError,
    NoResponseError,
    PortLostError,
    ProtocolError,
)
from loopylab.firmware_bridge.servo.setup import setup_motor
from tests.firmware_bridge.conftest import JOINTS
from tests.waiting import wait_until


def test_sync_write_moves_joints_and_sync_read_sees_them(bus, emulator):
    bus.set_torque(True)
    goals = {n: 1500 + 100 * i for i, n in enumerate(JOINTS)}
    bus.sync_write("Goal_Position", goals)
    assert wait_until(lambda: bus.sync_read("Present_Position") == goals, 3)

    def settled():  # at the goal the last sub-tick step may still read as motion; a servo then comes to rest
        state = bus.sync_read(["Present_Position", "Present_Velocity"])
        return {n: s["Present_Position"] for n, s in state.items()} == goals and all(
            s["Present_Velocity"] == 0 for s in state.values()
        )

    assert wait_until(settled, 3)


def test_negative_values_survive_both_sign_conventions(bus):
    bus.set_torque(False)
    bus.write("Homing_Offset", "wrist_flex", -300)
    assert bus.read("Homing_Offset", "wrist_flex") == -300


def test_dynamixel_bulk_read_reads_different_registers_per_motor():
    with ServoArmEmulator("dynamixel") as emu:
        bus = MotorBus(emu.path, "dynamixel", {"a": 1, "b": 2}, latency_s=0.2).open()
        out = bus.bulk_read([("a", "Present_Position"), ("b", "Hardware_Error_Status")])
        assert out == {
            ("a", "Present_Position"): emu.register(1, "Present_Position"),
            ("b", "Hardware_Error_Status"): 0,
        }
        bus.close()


@pytest.mark.parametrize("fault", ["drop_bytes", "corrupt", "lose", "protocol_error"])
def test_a_transient_fault_is_retried_and_succeeds(bus, emulator, fault):
    setattr(emulator.faults, fault, 1)
    before = bus.stats["retries"]
    assert bus.read("Present_Position", "elbow_flex") == emulator.register(3, "Present_Position")
    assert bus.stats["retries"] == before + 1 and emulator.faults.injected == 1


@pytest.mark.parametrize("fault", ["drop_bytes", "corrupt"])
def test_a_persistent_fault_ends_in_a_clear_error(bus, emulator, fault):
    setattr(emulator.faults, fault, 1000)
    with pytest.raises((NoResponseError, CorruptResponseError), match="after 3 tries"):
        bus.sync_read("Present_Position")
    with pytest.raises((NoResponseError, CorruptResponseError), match=r"motor 1 \(shoulder_pan\)|corrupted"):
        bus.read("ID", "shoulder_pan")


def test_a_persistent_protocol_error_is_its_own_class_never_a_motor_fault(bus, emulator, kind):
    emulator.faults.protocol_error = 1000  # every answer: "your instruction arrived damaged"
    with pytest.raises(ProtocolError, match="after 3 tries") as e:
        bus.read("Present_Position", "elbow_flex")
    code = {"dynamixel": 0x03, "feetech": 0x40}[kind]
    assert e.value.label == f"protocol_error(3, 0x{code:02X})" and e.value.fault_class == "protocol_error"
    assert bus.stats["protocol_errors"] == 3


def test_a_late_reply_is_never_taken_as_the_answer_to_the_next_request(bus, emulator):
    """The reply to a timed-out READ arrives while the next READ (same motor, same size) waits: it is
    stale and skipped, and the next READ gets its own answer."""
    bus.set_torque(False)
    bus.write("Goal_Position", "shoulder_pan", 1234)  # torque off: goal != present
    present = emulator.register(1, "Present_Position")
    assert present != 1234
    bus.latency_s, bus.retries = 0.15, 0
    emulator.faults.late, emulator.faults.late_s = 1, 0.25
    with pytest.raises(NoResponseError):
        bus.read("Present_Position", "shoulder_pan")
    bus.retries = 2
    assert bus.read("Goal_Position", "shoulder_pan") == 1234
    assert bus.read("Present_Position", "shoulder_pan") == present
    assert bus.read("Goal_Position", "shoulder_pan") == 1234


def test_silent_motor_is_named(bus, emulator):
    emulator.faults.silent_ids = {4}
    with pytest.raises(NoResponseError, match=r"motor 4 \(wrist_flex\) did not answer SYNC READ") as e:
        bus.sync_read("Present_Position")
    assert e.value.motor_ids == [4] and e.value.label == "no_response(4)"
    bus.close()
    with pytest.raises(NoResponseError, match=r"missing motors.*motor 4 \(wrist_flex\)"):
        bus.connect()


def test_latency_within_the_allowance_is_fine_beyond_it_is_an_error(bus, emulator):
    emulator.faults.latency_s = 0.02
    assert bus.read("ID", "gripper") == 6
    emulator.faults.latency_s = 0.6  # > the ~200 ms allowance
    bus.retries = 0
    with pytest.raises(NoResponseError, match="after 1 tries"):
        bus.read("ID", "gripper")


def test_vanished_port_raises_port_lost(bus, emulator):
    emulator.vanish()
    with pytest.raises(PortLostError):
        bus.sync_read("Present_Position")
    bus.close()
    with pytest.raises(PortLostError, match="cannot open"):
        bus.open()
    emulator.restore()
    bus.open()
    assert bus.read("ID", "shoulder_pan") == 1


def test_hardware_error_is_a_motor_fault_not_a_retry(bus, emulator, kind):
    emulator.set_hardware_error(2, 0b100000)  # overload (Dynamixel bit 5 / Feetech bit 5)
    with pytest.raises(MotorFaultError, match=r"motor 2 \(shoulder_lift\) reports .*overload") as e:
        bus.sync_read("Present_Position")
    assert e.value.motor_id == 2 and e.value.label == "motor_error(2, 0x20)"
    assert bus.stats["retries"] == 0
    if kind == "dynamixel":  # REBOOT clears a Dynamixel hardware error
        bus.reboot("shoulder_lift")
        assert bus.read("Hardware_Error_Status", "shoulder_lift") == 0


def test_dynamixel_eeprom_write_with_torque_on_names_the_fix():
    with ServoArmEmulator("dynamixel") as emu:
        bus = MotorBus(emu.path, "dynamixel", {"a": 1}, latency_s=0.2).open()
        bus.write("Torque_Enable", "a", 1)
        with pytest.raises(ProtocolError, match="access error.*torque off"):
            bus.write("Homing_Offset", "a", 10)
        with bus.torque_disabled():
            bus.write("Homing_Offset", "a", 10)
        assert bus.read("Homing_Offset", "a") == 10
        bus.close()


def test_feetech_eeprom_writes_unlock_then_lock():
    with ServoArmEmulator("feetech") as emu:
        bus = MotorBus(emu.path, "feetech", {"a": 1, "b": 2}, latency_s=0.2).open()
        bus.write("Homing_Offset", "a", -25)  # ours: unlock, write, lock
        proto = bus.proto
        bus.transact(proto.write(2, 31, proto.encode_value(proto.table["Homing_Offset"], 40)), [(2, 0)], "raw")
        assert emu.register(1, "Lock") == 1
        emu.power_cycle()
        assert bus.read("Homing_Offset", "a") == -25  # saved
        assert bus.read("Homing_Offset", "b") == 0  # written locked: lost
        bus.close()


def test_setup_motor_assigns_id_and_baud_that_survive_power_off(kind):
    factory = {"dynamixel": 1, "feetech": 6}[kind]  # 57600 baud both
    with ServoArmEmulator(kind, ids=(1,), baud_code=factory) as emu:
        bus = MotorBus(emu.path, kind, {"wrist_flex": 4}, latency_s=0.05)
        bus.open()
        assert setup_motor(bus, 4, 1_000_000) == (1, 57600)
        emu.power_cycle()
        assert bus.baudrate == 1_000_000 and bus.ping("wrist_flex") == emu.motors[4]._get("Model_Number")
        assert bus.read("Return_Delay_Time", 4) == 0
        bus.close()


def test_calibration_round_trip_and_mismatch(bus, emulator, kind, tmp_path):
    centre = {1: 1000, 2: 3000, 3: 2048, 4: 500, 5: 2100, 6: 3500}
    sweeps = iter(range(6))

    def centred():
        for i, a in centre.items():
            emulator.move_by_hand(i, a)

    def sweep():
        step = next(sweeps, None)
        if step is None:
            return True
        for i, a in centre.items():
            emulator.move_by_hand(i, a + (-200 if step % 2 else 300))
        return False

    calib = calibration.calibrate(bus, centred, sweep, reversed_joints=("elbow_flex",), full_turn=("wrist_roll",))
    assert all(c.range_min == 2047 - 200 and c.range_max == 2047 + 300 for n, c in calib.items() if n != "wrist_roll")
    assert (calib["wrist_roll"].range_min, calib["wrist_roll"].range_max) == (0, 4095)
    assert calib["elbow_flex"].drive_mode == 1
    for i, a in centre.items():
        emulator.move_by_hand(i, a)
    assert set(bus.sync_read("Present_Position").values()) == {2047}
    path = calibration.save(tmp_path / "arm.json", calib)
    calibration.check(bus, calibration.load(path))  # matches
    bus.write("Max_Position_Limit", "gripper", 4000)
    with pytest.raises(calibration.CalibrationMismatch, match=r"gripper \(motor 6\): Max_Position_Limit is 4000"):
        calibration.check(bus, calibration.load(path))


def test_vendor_sdk_ping_read_sync_read_sync_write_against_our_emulators(emulator, kind, monkeypatch):
    if kind == "dynamixel":
        import dynamixel_sdk as sdk

        ph = sdk.PacketHandler(2.0)
        pos, size, model = 132, 4, 1060
    else:
        import scservo_sdk as sdk

        ph = sdk.PacketHandler(0)
        pos, size, model = 56, 2, 777
    # The SDK's answer timeout is 2 x its USB latency timer (16 ms) + 2 ms: sized for a real adapter, not for
    # an emulator thread on a machine whose cores are busy (it failed with COMM_RX_TIMEOUT, -6, under load).
    # The SDK's own knob, at a value a loaded machine meets: 2 x 100 + 2 ms.
    monkeypatch.setattr(sdk.port_handler, "LATENCY_TIMER", 100)
    port = sdk.PortHandler(emulator.path)
    assert port.openPort() and port.setBaudRate(1_000_000)

    def vendor(call, *args):
        """The SDK has no retries (and can index past a half-read packet): on a loaded machine, try again
        until a deadline. Feetech's clearPort does not drop unread input, so a late answer to an earlier try
        is dropped here first (as Dynamixel's clearPort does)."""
        out = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            port.ser.reset_input_buffer()
            try:
                out = call(*args)
            except IndexError:
                continue
            result = out[1] if isinstance(out, tuple) and len(out) == 3 else (out[0] if isinstance(out, tuple) else out)
            if result == 0:
                return out
        return out

    try:
        for i in emulator.motors:
            number, result, err = vendor(ph.ping, port, i)
            assert (number, result, err) == (model, 0, 0)
        value, result, _ = vendor(ph.read4ByteTxRx if size == 4 else ph.read2ByteTxRx, port, 3, pos)
        assert result == 0 and value == emulator.register(3, "Present_Position")
        for i in emulator.motors:  # torque on
            assert vendor(ph.write1ByteTxRx, port, i, 64 if kind == "dynamixel" else 40, 1) == (0, 0)
        goal = 116 if kind == "dynamixel" else 42
        w = sdk.GroupSyncWrite(port, ph, goal, size)
        targets = {i: 1800 + 50 * i for i in emulator.motors}
        for i, v in targets.items():
            assert w.addParam(i, list(v.to_bytes(size, "little")))
        assert w.txPacket() == 0
        r = sdk.GroupSyncRead(port, ph, pos, size)
        for i in emulator.motors:
            r.addParam(i)

        def arrived():
            if vendor(r.txRxPacket) != 0:
                return False
            return {i: r.getData(i, pos, size) for i in emulator.motors} == targets

        assert wait_until(arrived, 10)
    finally:
        port.closePort()
