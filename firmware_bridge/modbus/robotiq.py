"""Robotiq 2F-85 / 2F-140 adaptive grippers over Modbus RTU (115200 8N1, device 9) or TCP.

Registers are byte pairs (high byte first). Command block at 1000 (0x03E8): byte 0 action request
(rACT bit 0, rGTO bit 3, rATR bit 4, rARD bit 5), byte 3 position request (0 open .. 255 closed),
byte 4 speed, byte 5 force. Status block at 2000 (0x07D0): byte 0 gACT bit 0, gGTO bit 3, gSTA bits
4-5 (3 = activated), gOBJ bits 6-7 (0 moving, 1/2 object while opening/closing, 3 at position),
byte 2 faults (gFLT low nibble, kFLT high), byte 3 position echo, byte 4 position, byte 5 current x 10 mA.
Fault 9: no communication for at least 1 s — poll at least every second (the node polls at 50 Hz).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from loopylab.bus import GripperCommand, GripperState, Node
from loopylab.firmware_bridge.modbus.client import Endpoint, ModbusClient, ModbusDeviceError
from loopylab.firmware_bridge.modbus.device import DeviceNode

log = logging.getLogger("loopylab.robotiq")
COMMAND, STATUS = 1000, 2000
ACT, GTO, ATR, ARD = 0x01, 0x08, 0x10, 0x20
FAULTS = {
    0x0: "",
    0x5: "action delayed: activation (reactivation) must complete first",
    0x7: "the activation bit must be set before an action",
    0x8: "maximum operating temperature exceeded",
    0x9: "no communication for at least 1 second (communication watchdog)",
    0xA: "under minimum operating voltage",
    0xB: "automatic release in progress",
    0xC: "internal fault: contact support",
    0xD: "activation fault: check for obstructions",
    0xE: "overcurrent triggered",
    0xF: "automatic release completed",
}
OBJECT = {0: "moving", 1: "object detected while opening", 2: "object detected while closing", 3: "at position"}
MODELS = {  # stroke m, speed m/s (min, max), force N (min, max)
    "2f85": (0.085, (0.020, 0.150), (20.0, 235.0)),
    "2f140": (0.140, (0.030, 0.250), (10.0, 125.0)),
}


def describe_fault(code: int) -> str:
    return FAULTS.get(code & 0x0F, f"fault 0x{code & 0x0F:X}")


@dataclass
class RobotiqStatus:
    gACT: int
    gGTO: int
    gSTA: int
    gOBJ: int
    gFLT: int
    kFLT: int
    position_echo: int
    position: int
    current_ma: int

    @classmethod
    def from_registers(cls, regs: list[int]) -> RobotiqStatus:
        b = [regs[0] >> 8, regs[0] & 0xFF, regs[1] >> 8, regs[1] & 0xFF, regs[2] >> 8, regs[2] & 0xFF]
        return cls(
            b[0] & 1, (b[0] >> 3) & 1, (b[0] >> 4) & 3, (b[0] >> 6) & 3, b[2] & 0x0F, b[2] >> 4, b[3], b[4], b[5] * 10
        )

    @property
    def activated(self) -> bool:
        return self.gACT == 1 and self.gSTA == 3

    @property
    def object_detected(self) -> bool:
        return self.gOBJ in (1, 2)

    @property
    def fault(self) -> str:
        return describe_fault(self.gFLT) if self.gFLT else ""


def command_registers(action: int, position: int = 0, speed: int = 0, force: int = 0) -> list[int]:
    for name, v in (("position", position), ("speed", speed), ("force", force)):
        if not 0 <= v <= 255:
            raise ValueError(f"Robotiq {name} must be 0..255, got {v}")
    return [action << 8, position, (speed << 8) | force]


class RobotiqGripper:
    def __init__(self, ep: Endpoint, model: str = "2f85"):
        if model not in MODELS:
            raise ValueError(f"unknown Robotiq model {model!r}; choose one of {sorted(MODELS)}")
        self.client = ModbusClient(ep, f"Robotiq {model}")
        self.model = model
        self.stroke, self.speeds, self.forces = MODELS[model]

    def connect(self) -> RobotiqGripper:
        self.client.connect()
        return self

    def close(self) -> None:
        self.client.close()

    def status(self) -> RobotiqStatus:
        return RobotiqStatus.from_registers(self.client.read_holding(STATUS, 3))

    def activate(self, timeout: float = 5.0) -> RobotiqStatus:
        """Reset (rACT 0), then rACT 1, then wait for gSTA = 3. A rising edge also clears faults."""
        self.client.write_registers(COMMAND, command_registers(0))
        self.client.write_registers(COMMAND, command_registers(ACT))
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if s.activated:
                return s
            if s.gFLT and s.gFLT != 0x5:
                raise ModbusDeviceError(f"gripper activation failed: {s.fault}")
            if time.monotonic() > deadline:
                raise ModbusDeviceError(f"gripper did not finish activating within {timeout} s (gSTA={s.gSTA})")
            time.sleep(0.01)

    def goto(self, position: int, speed: int = 255, force: int = 150) -> None:
        self.client.write_registers(COMMAND, command_registers(ACT | GTO, position, speed, force))

    # -- SI units ----------------------------------------------------------------------------
    def to_units(self, cmd: GripperCommand) -> tuple[int, int, int]:
        def scale(v, lo, hi):
            return int(round(255 * min(1.0, max(0.0, (v - lo) / (hi - lo)))))

        pos = int(round(255 * (1.0 - min(1.0, max(0.0, cmd.position / self.stroke)))))
        return pos, scale(cmd.speed, *self.speeds), scale(cmd.force, *self.forces)

    def opening(self, position: int) -> float:
        return (1.0 - position / 255.0) * self.stroke


class RobotiqNode(DeviceNode):
    """`gripper/state` at `rate_hz` (polling also feeds the gripper's 1 s watchdog), `gripper/command`
    -> go-to, `gripper/fault` (DeviceFault, latched) for communication and gripper faults."""

    def __init__(
        self,
        node: Node,
        gripper: RobotiqGripper,
        rate_hz: float = 50.0,
        activate: bool = True,
        reconnect_s: float = 0.5,
    ):
        super().__init__(node, "gripper", "robotiq:loop")
        self.g, self.period, self.auto_activate = gripper, 1.0 / rate_hz, activate
        self.reconnect_s = reconnect_s
        self.state_pub = node.publisher("gripper/state", GripperState)
        self.cmd_sub = node.subscribe("gripper/command", GripperCommand, mode="latest")
        self.connected = False
        self.last_force = 0.0
        self._last_cmd = None
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set() and self.node.running:
            t0 = time.monotonic()
            try:
                if not self.connected:
                    self._connect()
                msg = self.cmd_sub.latest()
                key = None if msg is None else (msg.seq, msg.stamp_ns)
                if msg is not None and key != self._last_cmd:
                    self.g.goto(*self.g.to_units(msg))
                    # marked sent once written: a write that went unanswered is written again next turn (the
                    # same go-to twice is harmless; a lost one left an open waiting seconds for the next command)
                    self._last_cmd = key
                    self.last_force = msg.force
                s = self.g.status()
                if s.gFLT == 0x9:
                    # the watchdog stopped it (this host went quiet for a second: a starved process): the latest
                    # command, written again, clears the fault and resumes it; else the fingers stayed where
                    # they stopped (a close never carried out, on the emulated SO-101 under 6 CPU hogs)
                    self._last_cmd = None
                self.state_pub.publish(
                    GripperState(
                        position=self.g.opening(s.position),
                        effort=self.last_force if s.object_detected else 0.0,
                        object_detected=s.object_detected,
                        ready=s.activated and not s.gFLT,
                        fault=s.fault,
                    )
                )
                self._report("device_fault" if s.gFLT else "", s.fault)
            except ModbusDeviceError as e:
                self._report("no_response", str(e))
                if not self.connected:  # the port itself would not open: wait before trying again
                    self.g.close()
                    self._stop.wait(self.reconnect_s)
                    continue
                # an unanswered request on an open line (a busy host, a noisy cable) is tried again at the next
                # poll; nothing is reset: the gripper keeps its activation and what it holds
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def _connect(self) -> None:
        """Open the port; activate the gripper only if it is not active already. Activation resets it (a real
        2F-85 opens and closes its fingers to find its stroke): after a lost answer or a restarted driver, the
        fingers must keep what they hold. A communication fault (9) clears with the next command."""
        self.g.connect()
        if self.auto_activate:
            s = self.g.status()
            if not s.activated or (s.gFLT and s.gFLT != 0x9):
                self.g.activate()
            elif s.gFLT == 0x9:
                self._last_cmd = None  # the watchdog stopped it: the latest command again clears the fault
        self.connected = True

    def close(self) -> None:
        super().close()
        self.g.close()


def run_robotiq(
    node: Node,
    transport: str = "rtu",
    port: str = "/dev/ttyUSB1",
    host: str = "127.0.0.1",
    tcp_port: int = 502,
    baudrate: int = 115200,
    device_id: int = 9,
    model: str = "2f85",
    rate_hz: float = 50.0,
    activate: bool = True,
) -> RobotiqNode:
    """Graph entry point (`loopylab.firmware_bridge.modbus.robotiq:run_robotiq`)."""
    ep = Endpoint(transport=transport, port=port, host=host, tcp_port=tcp_port, baudrate=baudrate, device_id=device_id)
    return RobotiqNode(node, RobotiqGripper(ep, model), rate_hz, activate)
