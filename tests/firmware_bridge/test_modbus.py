"""Modbus devices against real pymodbus servers (TCP, and RTU on ptys): Robotiq 2F gripper, FT300,
generic TOML register maps; minimalmodbus as an independent RTU client."""

import contextlib
import threading
import time
import uuid

import numpy as np
import pytest
from pymodbus.simulator import DataType, SimData, SimDevice

from loopylab.bus import GripperCommand, GripperState, Node, Wrench
from loopylab.firmware_bridge.emulators.ft300 import FT300Emulator
from loopylab.firmware_bridge.emulators.modbus_server import ModbusServerThread
from loopylab.firmware_bridge.emulators.robotiq import RobotiqEmulator
from loopylab.firmware_bridge.messages import DeviceFault, Readings
from loopylab.firmware_bridge.modbus import ft300 as ft
from loopylab.firmware_bridge.modbus.client import Endpoint, ModbusDeviceError
from loopylab.firmware_bridge.modbus.device import DeviceMap, ModbusDevice, ModbusDeviceNode
from loopylab.firmware_bridge.modbus.robotiq import RobotiqGripper, RobotiqNode, RobotiqStatus, command_registers
from tests.waiting import wait_for_value, wait_until


def _gripper(emu, transport):
    ep = Endpoint(transport=transport, port=emu.path, tcp_port=emu.tcp_port or 0, timeout_s=0.3)
    return RobotiqGripper(ep).connect()


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_robotiq_activation_and_grasp(transport):
    with RobotiqEmulator(transport, object_at=140) as emu:
        g = _gripper(emu, transport)
        s = g.activate()
        assert s.activated and s.gFLT == 0
        g.goto(255, speed=255, force=100)  # close on the object
        s = wait_for_value(g.status, lambda s: s.gOBJ != 0, 10)  # the fingers stopped
        assert (s.gOBJ, s.position, s.object_detected) == (2, 140, True) and s.current_ma > 0
        g.goto(0, speed=255, force=100)  # open: no object on the way
        s = wait_for_value(g.status, lambda s: s.gOBJ != 0, 10)
        assert (s.gOBJ, s.position, s.object_detected) == (3, 0, False)
        g.close()


def test_robotiq_faults_are_decoded():
    with RobotiqEmulator("tcp", watchdog_s=0.15) as emu:
        g = _gripper(emu, "tcp")
        g.client.write_registers(1000, command_registers(0x08, 255, 255, 255))  # go-to without activation
        assert g.status().fault == "the activation bit must be set before an action"
        g.activate()
        time.sleep(0.25)  # the stimulus under test: the host stays silent past the watchdog
        s = g.status()
        assert s.gFLT == 9 and "communication watchdog" in s.fault
        g.goto(100)  # a fresh command clears it
        assert g.status().gFLT == 0
        g.close()


def test_minimalmodbus_reads_the_gripper_emulator_over_rtu():
    import minimalmodbus

    with RobotiqEmulator("rtu") as emu:
        g = _gripper(emu, "rtu")
        ours = g.activate()
        g.close()
        inst = minimalmodbus.Instrument(emu.path, 9)
        inst.serial.baudrate, inst.serial.timeout = 115200, 1.0
        try:
            regs = inst.read_registers(2000, 3, functioncode=3)
            assert RobotiqStatus.from_registers(regs) == ours
            assert regs[0] >> 8 == 0x31  # "activated" status byte, as on the real gripper
            inst.write_registers(1000, command_registers(0x09, 200, 255, 50))
            assert inst.read_registers(2001, 1)[0] & 0xFF == 200  # position request echo
        finally:
            inst.serial.close()


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
def test_modbus_faults_retry_or_fail_clearly(transport):
    with RobotiqEmulator(transport) as emu:
        g = _gripper(emu, transport)
        if transport == "rtu":  # only RTU has a CRC to break
            emu.faults.corrupt = 1
            assert g.status().gSTA == 0 and emu.faults.injected == 1
        emu.faults.drop_bytes = 1
        assert g.status().gSTA == 0
        emu.faults.silent_ids = {9}
        with pytest.raises(
            ModbusDeviceError, match=r"Robotiq 2f85 \(device 9 on .*\) did not answer read holding 2000\+3"
        ):
            g.status()
        g.close()


@contextlib.contextmanager
def _robotiq_node(emu):
    """A RobotiqNode on `emu` (RTU) and a probe node: yields (driver, its state, its faults, a command publisher)
    once the gripper reports ready."""
    graph = f"inproc://{uuid.uuid4().hex}"
    dn, tn = Node("gripper", graph), Node("probe", graph)
    ep = Endpoint(transport="rtu", port=emu.path, timeout_s=0.3, retries=2)
    drv = RobotiqNode(dn, RobotiqGripper(ep), rate_hz=50, reconnect_s=0.05)
    try:
        state = tn.subscribe("gripper/state", GripperState, mode="latest")
        faults = tn.subscribe("gripper/fault", DeviceFault, queue_size=20)
        assert state.wait_for(lambda s: s.ready, timeout=5)
        cmd = tn.publisher("gripper/command", GripperCommand)
        assert cmd.wait_for_subscribers(1, 3)
        yield drv, state, faults, cmd
    finally:
        drv.close()
        dn.close()
        tn.close()


def test_robotiq_node_grasps_and_reports_faults():
    with RobotiqEmulator("rtu", object_at=180) as emu, _robotiq_node(emu) as (_drv, state, faults, cmd):
        cmd.publish(GripperCommand(position=0.0, speed=0.15, force=60.0))
        s = state.wait_for(lambda s: s.object_detected, timeout=3)
        assert s.position == pytest.approx((1 - 180 / 255) * 0.085) and s.effort == 60.0
        emu.faults.silent_ids = {9}
        f = faults.wait_for(lambda f: f.active, timeout=3)
        assert f.code == "no_response" and "did not answer" in f.message
        emu.faults.silent_ids = set()
        assert faults.wait_for(lambda f: not f.active, timeout=5)
        assert state.wait_for(lambda s: s.ready, timeout=3)


def test_robotiq_node_resumes_its_command_after_the_watchdog_stopped_the_gripper():
    """The flaky host: the driver's process stalls past the gripper's 1 s communication watchdog mid-close. The
    2F-85 stops with fault 9 and keeps still until a command comes; the driver wrote its command once, so the
    fingers stayed open for good (a push then went on with an open hand). Now the driver writes the latest
    command again on seeing fault 9, and the fingers finish closing on the object."""
    with (
        RobotiqEmulator("rtu", object_at=180, watchdog_s=0.3) as emu,
        _robotiq_node(emu) as (drv, state, faults, cmd),
    ):
        status, stalled = drv.g.status, threading.Event()

        def stall_once():  # the host starved once, just after the close went out
            if not stalled.is_set() and emu.model.rGTO and emu.model.rPR == 255:
                stalled.set()
                time.sleep(0.6)  # the stimulus under test: twice the watchdog
            return status()

        drv.g.status = stall_once
        cmd.publish(GripperCommand(position=0.0, speed=0.02, force=60.0))  # slow: ~3 s to the object
        f = faults.wait_for(lambda f: f.active, timeout=10)
        assert f.code == "device_fault" and "watchdog" in f.message
        s = state.wait_for(lambda s: s.object_detected, timeout=20)
        assert s.position == pytest.approx((1 - 180 / 255) * 0.085)
        assert faults.wait_for(lambda f: not f.active, timeout=5)


def test_ft300_registers_streaming_and_stop():
    with FT300Emulator() as emu:
        s = ft.FT300(emu.path).connect()
        assert s.info() == {"firmware": "V3.0.5", "serial": "EMU00042"}
        f, t = s.read_wrench()
        assert np.allclose(f, [1.25, -0.5, 9.81]) and np.allclose(t, [0.012, -0.034, 0.005])
        s.start_stream()
        frames = s.read_frames(0.5)
        assert frames and np.allclose(frames[0][0], [1.25, -0.5, 9.81])
        emu.faults.corrupt = 2
        emu.wrench = (np.array([0.0, 0.0, -3.5]), np.zeros(3))
        assert wait_until(lambda: any(np.allclose(f, [0, 0, -3.5]) for f, _ in s.read_frames(0.2)), 3)
        assert s.bad_frames == 2
        s.stop_stream()
        assert wait_until(lambda: not emu.streaming, 2)
        s.connect()
        assert np.allclose(s.read_wrench()[0], [0, 0, -3.5])  # back to Modbus
        s.close()


def test_ft300_stream_parser_resyncs_after_garbage():
    good = ft.encode_frame([1, 2, 3], [0.1, 0.2, 0.3])
    bad = bytearray(good)
    bad[5] ^= 0xFF
    buf = bytearray(b"\x20\x4e\x01" + bytes(bad) + good + good[:7])
    frames, nbad = ft.parse_stream(buf)
    assert len(frames) == 1 and nbad >= 1 and np.allclose(frames[0][1], [0.1, 0.2, 0.3])
    assert bytes(buf) == good[:7]  # the partial frame waits for more


def test_ft300_node_publishes_wrench_and_faults_on_unplug():
    with FT300Emulator() as emu:
        graph = f"inproc://{uuid.uuid4().hex}"
        dn, tn = Node("ft300", graph), Node("probe", graph)
        drv = ft.FT300Node(dn, ft.FT300(emu.path, timeout_s=0.1), silence_s=0.1, reconnect_s=0.05)
        try:
            w = tn.subscribe("wrist/wrench", Wrench, mode="latest")
            faults = tn.subscribe("wrist/fault", DeviceFault, queue_size=20)
            m = w.wait_for(timeout=5)
            assert np.allclose(m.force, [1.25, -0.5, 9.81]) and m.frame_id == "ft300"
            emu.vanish()
            assert faults.wait_for(lambda f: f.active, timeout=3).device == "wrist"
            emu.restore()
            assert faults.wait_for(lambda f: not f.active, timeout=5)
        finally:
            drv.close()
            dn.close()
            tn.close()


MAP = {
    "device": {"name": "plc", "transport": "tcp", "device_id": 1, "rate_hz": 50, "word_order": "little"},
    "register": [
        {"name": "temperature", "table": "holding", "address": 10, "type": "int16", "scale": 0.1},
        {"name": "setpoint", "table": "holding", "address": 11, "type": "float32", "access": "rw"},
        {"name": "counter", "table": "holding", "address": 13, "type": "uint32"},
        {"name": "valve", "table": "coil", "address": 3, "type": "bool", "access": "rw"},
    ],
}


def test_generic_device_from_a_register_map():
    regs = [(-215) & 0xFFFF, 0, 0, 0x0002, 0x0001]  # temperature -21.5; counter 0x00010002 (low word first)
    bits = [SimData(0, count=8, values=False, datatype=DataType.BITS)]
    dev = SimDevice(
        id=1,
        simdata=(
            bits,
            bits,
            [SimData(10, values=regs, datatype=DataType.REGISTERS)],
            [SimData(0, count=1, datatype=DataType.REGISTERS)],
        ),
    )
    with ModbusServerThread(dev, "tcp") as server:
        spec = DeviceMap.parse({**MAP, "device": {**MAP["device"], "tcp_port": server.port}})
        device = ModbusDevice(spec)
        assert [(t, a, n) for t, a, n, _ in device.runs] == [("holding", 10, 5), ("coil", 3, 1)]
        graph = f"inproc://{uuid.uuid4().hex}"
        dn, tn = Node("plc", graph), Node("probe", graph)
        drv = ModbusDeviceNode(dn, device)
        try:
            state = tn.subscribe("plc/state", Readings, mode="latest")
            first = state.wait_for(timeout=5).as_dict()
            assert first == {"temperature": pytest.approx(-21.5), "setpoint": 0.0, "counter": 65538.0, "valve": 0.0}
            cmd = tn.publisher("plc/command", Readings)
            assert cmd.wait_for_subscribers(1, 3)
            cmd.publish(Readings(name=["setpoint", "valve"], value=[37.25, 1.0]))
            assert state.wait_for(lambda m: m.as_dict()["setpoint"] == 37.25 and m.as_dict()["valve"] == 1.0, 3)
        finally:
            drv.close()
            dn.close()
            tn.close()
        with pytest.raises(ValueError, match="read-only"):
            device.write("temperature", 3)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"table": "input", "access": "rw"}, "input registers are read-only"),
        ({"type": "float64"}, "type must be one of"),
        ({"table": "coil", "type": "int16"}, "coils and discrete inputs are type bool"),
        ({"colour": "red"}, "unexpected keyword"),
    ],
)
def test_bad_register_maps_are_clear_errors(change, message):
    bad = {**MAP, "register": [{**MAP["register"][0], **change}]}
    with pytest.raises(ValueError, match=message):
        DeviceMap.parse(bad, "plc.toml")
