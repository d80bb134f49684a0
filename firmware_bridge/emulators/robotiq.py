"""A Robotiq 2F gripper on a real pymodbus server: activation, go-to with speed, object detection,
faults (including the 1 s communication watchdog). `object_at` puts an object between the fingers:
closing stops there with gOBJ = 2. Like the gripper, it takes a write of any part of the command
registers (FC16) or of one register (FC06)."""

from __future__ import annotations

import threading
import time

from pymodbus.simulator import DataType, SimData, SimDevice

from loopylab.firmware_bridge.emulators.modbus_server import ModbusEmulator
from loopylab.firmware_bridge.emulators.pty_device import Faults
from loopylab.firmware_bridge.modbus.robotiq import ACT, COMMAND, STATUS

WATCHDOG_S = 1.0  # Robotiq: fault 9 after 1 s without communication


class RobotiqModel:
    def __init__(
        self,
        object_at: int | None = None,
        activation_s: float = 0.15,
        stroke_mm: float = 85.0,
        watchdog_s: float = WATCHDOG_S,
    ):
        self.object_at, self.activation_s, self.stroke_mm = object_at, activation_s, stroke_mm
        self.watchdog_s = watchdog_s
        self.rACT = self.rGTO = 0
        self.rPR, self.rSP, self.rFR = 0, 0, 0
        self.gACT = self.gSTA = self.gOBJ = self.gFLT = 0
        self.position = 0.0
        self.activating_until = 0.0
        self.last_comm = time.monotonic()
        self._last = time.monotonic()
        self.lock = threading.Lock()

    def _speed_units(self) -> float:  # position units per second
        mm_s = 20.0 + self.rSP / 255.0 * 130.0
        return mm_s / self.stroke_mm * 255.0

    def update(self, now: float) -> None:
        dt, self._last = now - self._last, now
        if self.gACT and now - self.last_comm > self.watchdog_s and self.gFLT == 0:
            self.gFLT = 0x9  # host went quiet: stop and report
            self.rGTO = 0
        if self.gSTA == 1 and now >= self.activating_until:
            self.gSTA = 3
        if not (self.gSTA == 3 and self.rGTO and not self.gFLT):
            return
        target = float(self.rPR)
        if self.object_at is not None and target > self.object_at >= self.position:
            target = float(self.object_at)
        step = self._speed_units() * dt
        delta = max(-step, min(step, target - self.position))
        self.position += delta
        if abs(target - self.position) < 1e-6:
            self.position = target
            blocked = target != self.rPR
            self.gOBJ = 2 if blocked else 3
        else:
            self.gOBJ = 0

    def on_command(self, regs: list[int], now: float) -> None:
        act = regs[0] >> 8
        rACT, rGTO = act & ACT, (act >> 3) & 1
        if rACT and not self.rACT:  # rising edge: (re)activate, clears faults
            self.gACT, self.gSTA, self.gFLT, self.gOBJ = 1, 1, 0, 0
            self.activating_until = now + self.activation_s
        if not rACT:  # reset
            self.gACT = self.gSTA = self.gOBJ = 0
            self.gFLT = 0
        elif rGTO and self.gSTA != 3:
            self.gFLT = 0x5
        if rGTO and not rACT:
            self.gFLT = 0x7
        if self.gFLT == 0x9 and rACT:  # a fresh command clears the communication fault
            self.gFLT = 0
        if self.gFLT == 0x5 and self.gSTA == 3:
            self.gFLT = 0
        self.rACT, self.rGTO = rACT, rGTO
        self.rPR, self.rSP, self.rFR = regs[1] & 0xFF, regs[2] >> 8, regs[2] & 0xFF
        if rGTO:
            self.gOBJ = 0

    def status_registers(self) -> list[int]:
        b0 = self.gACT | (self.rGTO << 3) | (self.gSTA << 4) | (self.gOBJ << 6)
        pos = int(round(self.position))
        moving = self.gOBJ == 0 and self.rGTO and self.gSTA == 3
        current = (self.rFR // 4 + 10) if self.gOBJ == 2 else (8 if moving else 0)
        return [b0 << 8, (self.gFLT << 8) | self.rPR, (pos << 8) | min(255, current)]


class RobotiqEmulator(ModbusEmulator):
    def __init__(
        self,
        transport: str = "tcp",
        object_at: int | None = None,
        device_id: int = 9,
        faults: Faults | None = None,
        activation_s: float = 0.15,
        link: str | None = None,
        watchdog_s: float = WATCHDOG_S,
    ):
        self.model = RobotiqModel(object_at, activation_s, watchdog_s=watchdog_s)
        self.device_id = device_id
        dev = SimDevice(
            id=device_id,
            simdata=[
                SimData(COMMAND, count=3, datatype=DataType.REGISTERS),
                SimData(STATUS, count=3, datatype=DataType.REGISTERS),
            ],
            action=self._action,
        )
        super().__init__(dev, transport, 115200, faults, link=link)

    async def _action(self, fc, start, address, count, regs, set_values):
        if self.faults.latency_s:
            import asyncio

            await asyncio.sleep(self.faults.latency_s)
        now = time.monotonic()
        m = self.model
        with m.lock:
            m.update(now)
            m.last_comm = now
            if set_values is not None and COMMAND <= address < COMMAND + 3:
                # FC16 of any part of the command block, or FC06 of one register: the gripper acts on
                # the whole block as it stands after the write
                cmd = list(regs[COMMAND - start : COMMAND - start + 3])
                off = address - COMMAND
                cmd[off : off + len(set_values)] = list(set_values)[: 3 - off]
                m.on_command(cmd, now)
            status = m.status_registers()
            regs[STATUS - start : STATUS - start + 3] = status

    @property
    def tcp_port(self) -> int:
        return self.server.port
