"""A real pymodbus server (TCP, or RTU on a pty behind a faulty-cable relay) on a background thread,
with fault injection on what it sends."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimDevice

from loopylab.firmware_bridge.emulators.pty_device import Faults, PtyRelay

log = logging.getLogger("loopylab.emulator.modbus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModbusServerThread:
    """Serve `device` over `transport` ("tcp" or "rtu"). RTU: the host opens `.path`."""

    def __init__(
        self,
        device: SimDevice,
        transport: str = "tcp",
        baudrate: int = 115200,
        faults: Faults | None = None,
        relay_cls: type[PtyRelay] = PtyRelay,
        link: str | None = None,
    ):
        self.device, self.transport, self.baudrate = device, transport, baudrate
        self.faults = faults or Faults()
        self.port = free_port() if transport == "tcp" else None
        self.relay = relay_cls(None, link=link, faults=self.faults) if transport == "rtu" else None
        self.server = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"modbus-{transport}", daemon=True)

    @property
    def path(self) -> str:
        return self.relay.path if self.relay else f"127.0.0.1:{self.port}"

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending or self.transport == "rtu":  # RTU faults live on the relay (the cable)
            return data
        if self.faults.silent_ids:
            return b""
        return self.faults.apply(data)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main():
            if self.transport == "tcp":
                self.server = ModbusTcpServer(self.device, address=("127.0.0.1", self.port), trace_packet=self._trace)
            else:
                self.server = ModbusSerialServer(
                    self.device, framer=FramerType.RTU, port=self.relay.device_side, baudrate=self.baudrate
                )
            self._ready.set()
            await self.server.serve_forever()

        try:
            self._loop.run_until_complete(main())
        except Exception:  # a server that cannot start must not hang the caller
            log.exception("modbus server stopped")
            self._ready.set()

    def start(self) -> ModbusServerThread:
        self._thread.start()
        self._ready.wait(5)
        if self.transport == "tcp":  # wait until it accepts
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None and self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.server.shutdown(), self._loop).result(5)
            except Exception:  # already stopping
                pass
        if self._thread.is_alive():  # (a server never started has nothing to join, but its pty to close)
            self._thread.join(5)
        if self.relay is not None:
            self.relay.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ModbusEmulator:
    """A device emulator served by a `ModbusServerThread`: the host opens `.path` (RTU) or connects to
    it (TCP, `host:port`); `faults` damage what the server sends."""

    def __init__(
        self,
        device: SimDevice,
        transport: str,
        baudrate: int,
        faults: Faults | None = None,
        relay_cls: type[PtyRelay] = PtyRelay,
        link: str | None = None,
    ):
        self.server = ModbusServerThread(device, transport, baudrate, faults, relay_cls=relay_cls, link=link)
        self.faults = self.server.faults

    @property
    def path(self) -> str:
        return self.server.path

    def start(self) -> ModbusEmulator:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def vanish(self) -> None:
        """Unplug the RTU cable (TCP: nothing to unplug)."""
        if self.server.relay is not None:
            self.server.relay.vanish()

    def restore(self) -> None:
        if self.server.relay is not None:
            self.server.relay.restore()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
