"""A small wrapper over pymodbus's sync clients: one way to open RTU or TCP, and errors that say
which device did not answer what."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException

log = logging.getLogger("loopylab.modbus")
EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ModbusDeviceError(RuntimeError):
    """A Modbus request failed after pymodbus's retries (no answer, or an exception response)."""


@dataclass
class Endpoint:
    transport: str = "rtu"  # rtu | tcp
    port: str = "/dev/ttyUSB0"  # rtu: serial port
    host: str = "127.0.0.1"  # tcp
    tcp_port: int = 502
    baudrate: int = 115200
    parity: str = "N"
    device_id: int = 9
    timeout_s: float = 0.2
    retries: int = 2

    def describe(self) -> str:
        where = self.port if self.transport == "rtu" else f"{self.host}:{self.tcp_port}"
        return f"device {self.device_id} on {where}"


class ModbusClient:
    """Thread-safe (one lock: pymodbus clients are not) register access to one device."""

    def __init__(self, ep: Endpoint, name: str = "device"):
        if ep.transport not in ("rtu", "tcp"):
            raise ValueError(f"Modbus transport must be rtu or tcp, not {ep.transport!r}")
        self.ep, self.name = ep, name
        self._lock = threading.Lock()
        if ep.transport == "rtu":
            self.client = ModbusSerialClient(
                ep.port,
                framer=FramerType.RTU,
                baudrate=ep.baudrate,
                parity=ep.parity,
                timeout=ep.timeout_s,
                retries=ep.retries,
            )
        else:
            self.client = ModbusTcpClient(ep.host, port=ep.tcp_port, timeout=ep.timeout_s, retries=ep.retries)

    def connect(self) -> ModbusClient:
        with self._lock:
            if not self.client.connect():
                raise ModbusDeviceError(f"{self.name}: cannot open {self.ep.describe()}")
        return self

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def _call(self, what: str, fn, *args, **kw):
        with self._lock:
            try:
                r = fn(*args, device_id=self.ep.device_id, **kw)
            except ModbusException as e:
                raise ModbusDeviceError(f"{self.name} ({self.ep.describe()}) did not answer {what}: {e}") from None
        if r.isError():
            code = getattr(r, "exception_code", 0)
            raise ModbusDeviceError(
                f"{self.name} ({self.ep.describe()}) refused {what}: {EXCEPTIONS.get(code, f'exception {code}')}"
            )
        return r

    def _registers(self, what: str, r, count: int) -> list[int]:
        """The reply's registers, if there are as many as asked for: on a busy line a late answer to an
        earlier request (a write's, with none) can be taken for this one's, and must be a retry, not a crash."""
        regs = list(getattr(r, "registers", None) or [])
        if len(regs) != count:
            raise ModbusDeviceError(
                f"{self.name} ({self.ep.describe()}) answered {what} with {len(regs)} registers "
                "(a stale or damaged reply)"
            )
        return regs

    def read_holding(self, address: int, count: int) -> list[int]:
        what = f"read holding {address}+{count}"
        return self._registers(what, self._call(what, self.client.read_holding_registers, address, count=count), count)

    def read_input(self, address: int, count: int) -> list[int]:
        what = f"read input {address}+{count}"
        return self._registers(what, self._call(what, self.client.read_input_registers, address, count=count), count)

    def read_coils(self, address: int, count: int) -> list[bool]:
        return self._call(f"read coils {address}+{count}", self.client.read_coils, address, count=count).bits[:count]

    def read_discrete(self, address: int, count: int) -> list[bool]:
        return self._call(
            f"read discrete inputs {address}+{count}", self.client.read_discrete_inputs, address, count=count
        ).bits[:count]

    def write_registers(self, address: int, values: list[int]) -> None:
        self._call(f"write {address}+{len(values)}", self.client.write_registers, address, values)

    def write_coil(self, address: int, value: bool) -> None:
        self._call(f"write coil {address}", self.client.write_coil, address, bool(value))
