"""A generic Modbus device described by a TOML register map, on the bus.

    [device]
    name = "io8"                     # topics: io8/state (Readings), io8/command (Readings), io8/fault
    transport = "rtu"                # rtu | tcp
    port = "/dev/ttyUSB1"            # rtu          host = "192.168.1.20"; tcp_port = 502   (tcp)
    baudrate = 9600
    device_id = 1
    rate_hz = 10
    word_order = "big"               # 32-bit values: high word first (big) or low word first (little)

    [[register]]
    name = "temperature"
    table = "input"                  # holding | input | coil | discrete
    address = 3
    type = "int16"                   # bool | int16 | uint16 | int32 | uint32 | float32
    scale = 0.1                      # published value = raw * scale
    access = "r"                     # r | w | rw

Readable registers are read in as few requests as possible (contiguous runs per table) and published
scaled; a `<name>/command` Readings message writes writable registers (value / scale, rounded).
"""

from __future__ import annotations

import abc
import logging
import struct
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from loopylab.bus import Node
from loopylab.firmware_bridge.messages import DeviceFault, Readings
from loopylab.firmware_bridge.modbus.client import Endpoint, ModbusClient, ModbusDeviceError

log = logging.getLogger("loopylab.modbus.device")
TYPES = {"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
TABLES = ("holding", "input", "coil", "discrete")


@dataclass
class RegisterSpec:
    name: str
    address: int
    table: str = "holding"
    type: str = "uint16"
    scale: float = 1.0
    access: str = "r"
    unit: str = ""

    @property
    def words(self) -> int:
        return TYPES[self.type]


@dataclass
class DeviceMap:
    name: str
    endpoint: Endpoint
    registers: list[RegisterSpec] = field(default_factory=list)
    rate_hz: float = 10.0
    word_order: str = "big"

    @classmethod
    def load(cls, path: str | Path) -> DeviceMap:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{path}: {e}") from None
        return cls.parse(doc, str(path))

    @classmethod
    def parse(cls, doc: dict, where: str = "register map") -> DeviceMap:
        d = dict(doc.get("device", {}))
        name = d.pop("name", None)
        if not name:
            raise ValueError(f"{where}: [device].name is required")
        rate, order = float(d.pop("rate_hz", 10.0)), d.pop("word_order", "big")
        if order not in ("big", "little"):
            raise ValueError(f"{where}: word_order must be big or little, not {order!r}")
        known = set(Endpoint.__dataclass_fields__)
        if set(d) - known:
            raise ValueError(f"{where}: unknown [device] keys {sorted(set(d) - known)}")
        regs, seen = [], set()
        for i, r in enumerate(doc.get("register", [])):
            try:
                spec = RegisterSpec(**r)
            except TypeError as e:
                raise ValueError(f"{where}: register #{i + 1}: {e}") from None
            problems = []
            if spec.table not in TABLES:
                problems.append(f"table must be one of {TABLES}")
            if spec.type not in TYPES:
                problems.append(f"type must be one of {sorted(TYPES)}")
            if spec.access not in ("r", "w", "rw"):
                problems.append("access must be r, w or rw")
            if spec.table in ("coil", "discrete") and spec.type != "bool":
                problems.append("coils and discrete inputs are type bool")
            if spec.table in ("input", "discrete") and "w" in spec.access:
                problems.append(f"{spec.table} registers are read-only")
            if not 0 <= spec.address <= 0xFFFF or spec.scale == 0:
                problems.append("address must be 0..65535 and scale non-zero")
            if spec.name in seen:
                problems.append("duplicate name")
            if problems:
                raise ValueError(f"{where}: register {spec.name!r}: " + "; ".join(problems))
            seen.add(spec.name)
            regs.append(spec)
        if not regs:
            raise ValueError(f"{where}: no [[register]] entries")
        return cls(name, Endpoint(**d), regs, rate, order)


class ModbusDevice:
    def __init__(self, spec: DeviceMap):
        self.spec = spec
        self.client = ModbusClient(spec.endpoint, spec.name)
        self.by_name = {r.name: r for r in spec.registers}
        self.runs = self._plan()

    def _plan(self) -> list[tuple[str, int, int, list[RegisterSpec]]]:
        """Contiguous runs of readable registers per table: (table, start, count, registers)."""
        runs = []
        for table in TABLES:
            regs = sorted(
                (r for r in self.spec.registers if r.table == table and "r" in r.access), key=lambda r: r.address
            )
            for r in regs:
                if (
                    runs
                    and runs[-1][0] == table
                    and r.address <= runs[-1][1] + runs[-1][2]
                    and r.address + r.words - runs[-1][1] <= 120
                ):
                    t, start, count, members = runs[-1]
                    runs[-1] = (t, start, max(count, r.address + r.words - start), members + [r])
                else:
                    runs.append((table, r.address, r.words, [r]))
        return runs

    def _decode(self, r: RegisterSpec, words: list[int]) -> float:
        if r.type in ("bool",):
            return float(bool(words[0]))
        if r.words == 2 and self.spec.word_order == "little":
            words = words[::-1]
        raw = b"".join(w.to_bytes(2, "big") for w in words)
        fmt = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}[r.type]
        return struct.unpack(fmt, raw)[0] * r.scale

    def _encode(self, r: RegisterSpec, value: float) -> list[int]:
        v = value / r.scale
        fmt = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}[r.type]
        try:
            raw = struct.pack(fmt, v if r.type == "float32" else int(round(v)))
        except struct.error:
            raise ValueError(f"{r.name}: {value} does not fit {r.type} (scale {r.scale})") from None
        words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        return words[::-1] if r.words == 2 and self.spec.word_order == "little" else words

    def read_all(self) -> dict[str, float]:
        out = {}
        c = self.client
        for table, start, count, regs in self.runs:
            if table in ("coil", "discrete"):
                bits = (c.read_coils if table == "coil" else c.read_discrete)(start, count)
                for r in regs:
                    out[r.name] = float(bits[r.address - start])
            else:
                words = (c.read_holding if table == "holding" else c.read_input)(start, count)
                for r in regs:
                    out[r.name] = self._decode(r, words[r.address - start : r.address - start + r.words])
        return out

    def write(self, name: str, value: float) -> None:
        r = self.by_name.get(name)
        if r is None:
            raise KeyError(f"{self.spec.name} has no register {name!r}")
        if "w" not in r.access:
            raise ValueError(f"{self.spec.name}.{name} is read-only")
        if r.table == "coil":
            self.client.write_coil(r.address, bool(value))
        else:
            self.client.write_registers(r.address, self._encode(r, value))


class DeviceNode(abc.ABC):
    """A device driver on the bus: a loop thread and a latched `<device>/fault` topic. Subclasses write
    `_loop` (return once `_stop` is set) and start `_thread` when the rest of their state is ready."""

    def __init__(self, node: Node, device: str, thread_name: str):
        self.node, self.device_name = node, device
        self.fault_pub = node.publisher(f"{device}/fault", DeviceFault, latched=True)
        self.fault = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)

    @abc.abstractmethod
    def _loop(self) -> None:
        """Poll the device until `_stop` is set."""

    def _report(self, code: str, message: str) -> None:
        """Publish the fault only when it changes; an empty message says the device is healthy again."""
        if message != self.fault:
            self.fault = message
            self.fault_pub.publish(
                DeviceFault(device=self.device_name, active=bool(message), code=code, message=message)
            )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class ModbusDeviceNode(DeviceNode):
    def __init__(self, node: Node, device: ModbusDevice, reconnect_s: float = 0.5):
        name = device.spec.name
        super().__init__(node, name, f"{name}:loop")
        self.dev, self.reconnect_s = device, reconnect_s
        self.state_pub = node.publisher(f"{name}/state", Readings)
        self.cmd_sub = node.subscribe(f"{name}/command", Readings, queue_size=100)
        self._thread.start()

    def _loop(self) -> None:
        period = 1.0 / self.dev.spec.rate_hz
        connected = False
        while not self._stop.is_set() and self.node.running:
            t0 = time.monotonic()
            try:
                if not connected:
                    self.dev.client.connect()
                    connected = True
                while True:
                    try:
                        cmd = self.cmd_sub.get(timeout=0)
                    except TimeoutError:
                        break
                    for n, v in cmd.as_dict().items():
                        try:
                            self.dev.write(n, v)
                        except (KeyError, ValueError) as e:
                            log.warning("command ignored: %s", e)
                values = self.dev.read_all()
                self.state_pub.publish(Readings(name=list(values), value=list(values.values())))
                self._report("", "")
            except ModbusDeviceError as e:
                connected = False
                self.dev.client.close()
                self._report("no_response", str(e))
                self._stop.wait(self.reconnect_s)
                continue
            self._stop.wait(max(0.0, period - (time.monotonic() - t0)))

    def close(self) -> None:
        super().close()
        self.dev.client.close()


def run_modbus_device(node: Node, map: str, **endpoint) -> ModbusDeviceNode:
    """Graph entry point (`loopylab.firmware_bridge.modbus.device:run_modbus_device`): `map` is the TOML file;
    extra params (port, host, tcp_port, device_id...) override its [device] table."""
    spec = DeviceMap.load(map)
    for k, v in endpoint.items():
        if not hasattr(spec.endpoint, k):
            raise ValueError(f"unknown endpoint parameter {k!r}")
        setattr(spec.endpoint, k, v)
    return ModbusDeviceNode(node, ModbusDevice(spec))
