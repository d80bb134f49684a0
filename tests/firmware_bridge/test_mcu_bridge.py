"""The MCU bridge: Python codec properties, and the C firmware core (built with gcc, on a pty) driven
from Python: handshake, targets, sensors, watchdog, e-stop, bad frames, faults, the driver node."""

import shutil
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.bus import JointCommand, JointState, Node, SafetyState
from loopylab.firmware_bridge.emulators.mcu import McuEmulator, build_firmware
from loopylab.firmware_bridge.mcu import protocol as P
from loopylab.firmware_bridge.mcu.link import McuLink, McuTimeout
from loopylab.firmware_bridge.mcu.node import McuConfig, McuDriver
from loopylab.firmware_bridge.messages import DeviceFault, Readings
from loopylab.firmware_bridge.servo.bus import PortLostError
from tests.waiting import wait_for_value, wait_until


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=600))
def test_cobs_round_trip_has_no_zero_bytes(data):
    enc = P.cobs_encode(data)
    assert 0 not in enc and P.cobs_decode(enc) == data


@settings(max_examples=150, deadline=None)
@given(type=st.integers(0, 255), seq=st.integers(0, 255), body=st.binary(max_size=P.MAX_BODY), data=st.data())
def test_frame_round_trip_and_single_corruption_rejected(type, seq, body, data):
    wire = P.encode_frame(type, seq, body)
    assert wire.endswith(b"\x00") and P.decode_frame(wire[:-1]) == (type, seq, body)
    bad = bytearray(wire[:-1])
    i = data.draw(st.integers(0, len(bad) - 1))
    bad[i] = data.draw(st.integers(1, 255).filter(lambda b: b != bad[i]))  # 0 would split the frame
    with pytest.raises(P.FrameError):
        P.decode_frame(bytes(bad))


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed: the MCU firmware core cannot be built for the host (apt install gcc)")
    return build_firmware(tmp_path_factory.mktemp("fw"))  # gcc -std=c99 -Wall -Wextra -Werror -pedantic


@pytest.fixture
def mcu(firmware, request):
    # 200 ms as on the board where the watchdog is under test; elsewhere 2 s, so that a loaded CI
    # machine pausing this process does not trip it
    watchdog = getattr(request, "param", 2000)
    emu = McuEmulator(joints=4, sensors=2, watchdog_ms=watchdog, binary=firmware).start()
    link = McuLink(emu.path, timeout_s=0.5).open()  # generous: CI machines are loaded
    yield emu, link
    link.close()
    emu.stop()


def test_handshake_targets_and_sensors(mcu):
    emu, link = mcu
    info = link.hello()
    assert (info.version, info.firmware, info.n_joints, info.n_sensors, info.watchdog_ms) == (1, "1.0", 4, 2, 2000)
    s = link.send_targets([400, -300, 0, 100])
    assert s.outputs_on and not s.estop
    s = wait_for_value(link.heartbeat, lambda s: s.position_mrad == [400, -300, 0, 100], 10)
    assert s is not None
    pot = lambda mrad, i: 512 + int(mrad * 512 / 1571) + i  # noqa: E731  (C division truncates)
    assert s.sensors == [pot(400, 0), pot(-300, 1)]  # pots follow joints 0 and 1


def test_targets_before_handshake_are_refused(mcu):
    _, link = mcu
    link.send_raw(P.targets(7, [0, 0, 0, 0]))
    assert P.McuError(6, P.TARGETS) in link.drain_errors(0.3)


def test_version_mismatch_is_a_clear_error(mcu):
    _, link = mcu
    link.send_raw(P.encode_frame(P.HELLO, 9, bytes((2,))))
    assert P.McuError(5, 1) in link.drain_errors(0.3)


@pytest.mark.parametrize("mcu", [200], indirect=True)
def test_firmware_watchdog_stops_motion_when_the_host_goes_quiet(mcu):
    _, link = mcu
    link.hello()
    link.send_targets([1500, 0, 0, 0])  # 0.5 s of travel at 3 rad/s
    errors = link.drain_errors(0.6)  # host silent for 600 ms (> 200 ms watchdog)
    assert P.McuError(8, 0) in errors
    s = link.heartbeat()
    assert s.watchdog_tripped and not s.outputs_on
    assert 0 < s.position_mrad[0] < 1500  # stopped part way
    frozen = s.position_mrad[0]
    assert wait_for_value(link.heartbeat, lambda x: x.position_mrad[0] != frozen, 0.2) is None
    s = link.send_targets([frozen + 100, 0, 0, 0])  # fresh targets move again
    assert not s.watchdog_tripped and s.outputs_on
    assert wait_for_value(link.heartbeat, lambda x: x.position_mrad[0] > frozen, 10)


def test_estop_latches_until_clear(mcu):
    _, link = mcu
    link.hello()
    assert link.estop().estop
    link.send_targets([200, 0, 0, 0])
    assert P.McuError(7, 0) in link.errors
    assert link.heartbeat().position_mrad[0] == 0
    assert not link.clear().estop
    link.send_targets([200, 0, 0, 0])
    assert wait_for_value(link.heartbeat, lambda s: s.position_mrad[0] == 200, 10)


def test_out_of_range_target_is_clamped_and_reported(mcu):
    _, link = mcu
    link.hello()
    link.send_targets([0, 0, 0, 3000])
    assert P.McuError(9, 3) in link.errors
    assert wait_for_value(link.heartbeat, lambda s: s.position_mrad[3] == 1571, 10)


def test_bad_frames_from_the_host_are_reported_and_retried(mcu):
    emu, link = mcu
    link.hello()
    emu.host_faults.corrupt = 1  # the board gets a frame with a bad last byte
    assert link.heartbeat().flags & P.F_READY  # retried, answered
    assert any(e.code in (1, 2) for e in link.errors)
    link.send_raw(P.encode_frame(0x42, 3))
    assert P.McuError(3, 0x42) in link.drain_errors(0.3)


@pytest.mark.parametrize("fault", ["drop_bytes", "corrupt"])
def test_damaged_answers_are_retried(mcu, fault):
    emu, link = mcu
    link.hello()
    setattr(emu.faults, fault, 1)
    assert link.heartbeat().flags & P.F_READY
    assert link.bad_frames >= 1 and emu.faults.injected == 1


def test_silent_board_and_vanished_port_are_clear_errors(mcu):
    emu, link = mcu
    link.hello()
    emu.faults.silent_ids = {1}
    with pytest.raises(McuTimeout, match="did not answer message 0x03 after 3 tries"):
        link.heartbeat()
    emu.faults.silent_ids = set()
    emu.vanish()
    with pytest.raises(PortLostError):
        link.heartbeat()


def test_driver_node_moves_joints_follows_the_gate_estop_and_reconnects(firmware):
    emu = McuEmulator(binary=firmware, watchdog_ms=2000).start()
    graph = f"inproc://{uuid.uuid4().hex}"
    dn, tn = Node("mcu", graph), Node("probe", graph)
    drv = McuDriver(dn, McuConfig(port=emu.path, rate_hz=50, reconnect_s=0.05, timeout_s=0.5))
    try:
        js = tn.subscribe("arm/joint_state", JointState, mode="latest")
        sensors = tn.subscribe("mcu/sensors", Readings, mode="latest")
        faults = tn.subscribe("mcu/fault", DeviceFault, queue_size=50)
        assert js.wait_for(timeout=5).name == ["joint0", "joint1", "joint2", "joint3"]
        assert sensors.wait_for(timeout=2).name == ["a0", "a1"]
        cmd = tn.publisher("arm/joint_command", JointCommand)
        safety = tn.publisher("safety/state", SafetyState)
        assert cmd.wait_for_subscribers(1, 3) and safety.wait_for_subscribers(1, 3)
        cmd.publish(JointCommand(name=["joint0", "joint1", "joint2", "joint3"], position=[0.2, -0.1, 0.0, 0.3]))
        assert js.wait_for(lambda m: np.allclose(m.position, [0.2, -0.1, 0.0, 0.3]), timeout=3)
        safety.publish(SafetyState(estop=True, reason="test"))
        assert wait_until(lambda: drv.board_estop, 2)
        cmd.publish(JointCommand(name=["joint0", "joint1", "joint2", "joint3"], position=[0.0] * 4))
        with pytest.raises(TimeoutError):  # e-stopped: the board does not move
            js.wait_for(lambda m: m.position[0] < 0.19, timeout=0.3)
        safety.publish(SafetyState(estop=False))
        assert wait_until(lambda: not drv.board_estop, 2)
        emu.vanish()
        assert faults.wait_for(lambda f: f.active and f.code == "port_lost", timeout=3)
        emu.restore()
        assert faults.wait_for(lambda f: not f.active, timeout=5)
        seen = js.latest().seq
        assert js.wait_for(lambda m: m.seq > seen, timeout=3)
    finally:
        drv.close()
        dn.close()
        tn.close()
        emu.stop()
