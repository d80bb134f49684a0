"""A Robotiq FT300 on a real pymodbus RTU server behind a pty relay that also plays streaming mode:
after 0x0200 is written to register 410 the relay sends 16-byte frames at `stream_hz` until the
host sends fifty 0xFF bytes. `faults` damage frames and answers alike."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from pymodbus.simulator import DataType, SimData, SimDevice

from loopylab.firmware_bridge.emulators.modbus_server import ModbusEmulator
from loopylab.firmware_bridge.emulators.pty_device import Faults, PtyRelay
from loopylab.firmware_bridge.modbus.ft300 import DATA, FIRMWARE, SERIAL, STREAM, STREAM_START, encode_frame


class _StreamingRelay(PtyRelay):
    emulator: FT300Emulator = None

    def __init__(self, *a, **kw):
        self.streaming = False  # set before the relay thread starts
        self.pending = False
        self._ff = 0
        self._next = 0.0
        super().__init__(*a, idle_s=0.002, **kw)

    def from_device(self, data: bytes) -> None:
        super().from_device(data)
        if self.pending:  # the write's answer went out: now stream
            self.pending, self.streaming, self._next = False, True, time.monotonic()

    def from_host(self, data: bytes) -> None:
        if not self.streaming:
            super().from_host(data)
            return
        for b in data:  # in streaming mode only the stop sequence matters
            self._ff = self._ff + 1 if b == 0xFF else 0
            if self._ff >= 50:
                self.streaming, self._ff = False, 0

    def idle(self) -> None:
        if not self.streaming or self.host.master < 0:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next += 1.0 / self.emulator.stream_hz
            if now - self._next > 0.1:
                self._next = now
            f, t = self.emulator.reading()
            frame = encode_frame(f, t)
            if not self.faults.silent_ids:
                self.to_host(self.faults.apply(frame))


class FT300Emulator(ModbusEmulator):
    def __init__(
        self,
        device_id: int = 9,
        stream_hz: float = 100.0,
        faults: Faults | None = None,
        firmware: str = "V3.0.5",
        serial_number: str = "EMU00042",
        link: str | None = None,
    ):
        self.stream_hz = stream_hz
        self.wrench = (np.array([1.25, -0.5, 9.81]), np.array([0.012, -0.034, 0.005]))
        self.source: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None  # each reading's wrench, if not `wrench`
        regs = lambda s, n: [int.from_bytes(s.encode().ljust(2 * n, b"\0")[2 * i : 2 * i + 2], "big") for i in range(n)]  # noqa: E731
        dev = SimDevice(
            id=device_id,
            simdata=[
                SimData(DATA, count=6, datatype=DataType.REGISTERS),
                SimData(STREAM, count=1, datatype=DataType.REGISTERS),
                SimData(FIRMWARE, values=regs(firmware, 3), datatype=DataType.REGISTERS),
                SimData(SERIAL, values=regs(serial_number, 4), datatype=DataType.REGISTERS),
            ],
            action=self._action,
        )
        relay_cls = type("FT300Relay", (_StreamingRelay,), {"emulator": self})
        super().__init__(dev, "rtu", 19200, faults, relay_cls=relay_cls, link=link)

    def reading(self) -> tuple[np.ndarray, np.ndarray]:
        """The (force, torque) the next frame or register read carries: `source()` where one is set (a rig's
        physics, filtered as the sensor filters it), else `wrench`."""
        return self.source() if self.source is not None else self.wrench

    async def _action(self, fc, start, address, count, regs, set_values):
        f, t = self.reading()
        vals = [int(round(x * 100)) for x in f] + [int(round(x * 1000)) for x in t]
        regs[DATA - start : DATA - start + 6] = [v & 0xFFFF for v in vals]
        if set_values is not None and address == STREAM and list(set_values)[:1] == [STREAM_START]:
            self.server.relay.pending = True

    @property
    def streaming(self) -> bool:
        return self.server.relay.streaming

    def vanish(self) -> None:
        self.server.relay.vanish()

    def restore(self) -> None:
        self.server.relay.restore()
