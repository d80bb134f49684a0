"""A motor bus over pyserial: one serial port, one protocol, named motors.

Every transaction gets a deadline computed from the bytes on the wire at the port's baud rate, the
motors' return delay and the USB adapter's latency. Replies are matched to their request: a status
packet from a motor that was not asked, or of another length than the request's (a late answer to an
earlier request), is stale and skipped, never taken as this request's answer. After any failed try the
next request is preceded by a barrier: a small READ of a length no other request uses (a new one each
time); a motor answers in order, so everything before the barrier's answer is stale. A reply that
arrives after its deadline is never mistaken for a later request's.

Faults fall into the classes the arm driver reports (`fault_class`, `label`):
- transient, retried at once: `no_response(id)` (no reply in time), `corrupt` (bad checksum or
  framing), `protocol_error(id, code)` (the motor answered that it could not carry out the request,
  e.g. Dynamixel error 3: the instruction reached it with a bad CRC);
- `motor_error(id, bits)`: the motor reports its own hardware error (overload, overheating...): raised
  at once, never retried;
- `port_lost`: the adapter went away.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import serial

from loopylab.firmware_bridge.servo.codecs import get_protocol
from loopylab.firmware_bridge.servo.protocol import BROADCAST_ID, CorruptPacket, Register, StatusPacket

log = logging.getLogger("loopylab.motorbus")

BARRIER_LENGTHS = (5, 7, 11, 13)  # READ lengths of the barrier (from address 0): none used by a request


class MotorBusError(RuntimeError):
    """Anything that went wrong on the bus."""

    fault_class = "bus"

    @property
    def label(self) -> str:
        return self.fault_class


class NoResponseError(MotorBusError):
    fault_class = "no_response"

    def __init__(self, message: str, motor_ids: list[int]):
        super().__init__(message)
        self.motor_ids = motor_ids

    @property
    def label(self) -> str:
        return f"no_response({','.join(map(str, self.motor_ids))})"


class CorruptResponseError(MotorBusError):
    fault_class = "corrupt"


class ProtocolError(MotorBusError):
    """A motor answered with a protocol error number: it could not carry out this request."""

    fault_class = "protocol_error"

    def __init__(self, message: str, motor_id: int, code: int):
        super().__init__(message)
        self.motor_id, self.code = motor_id, code

    @property
    def motor_ids(self) -> list[int]:
        return [self.motor_id]

    @property
    def label(self) -> str:
        return f"protocol_error({self.motor_id}, 0x{self.code:02X})"


class MotorFaultError(MotorBusError):
    """A motor reported a hardware problem (its status error byte / alert); `bits` are its hardware
    error bits (Dynamixel Hardware_Error_Status, Feetech status), `error` the raw status byte."""

    fault_class = "motor_error"

    def __init__(self, message: str, motor_id: int, error: int, bits: int | None = None):
        super().__init__(message)
        self.motor_id, self.error = motor_id, error
        self.bits = error if bits is None else bits

    @property
    def motor_ids(self) -> list[int]:
        return [self.motor_id]

    @property
    def label(self) -> str:
        return f"motor_error({self.motor_id}, 0x{self.bits:02X})"


class PortLostError(MotorBusError):
    """The serial port went away (unplugged adapter, powered-down hub)."""

    fault_class = "port_lost"


def open_serial(port: str, baudrate: int, advice: str = "", **options) -> serial.Serial:
    """Open `port` exclusively with reads that never block (callers wait with select on its fd).
    `advice` follows the error in the PortLostError raised when it cannot be opened."""
    try:
        return serial.Serial(port, baudrate, timeout=0, exclusive=True, **options)
    except (serial.SerialException, OSError) as e:
        raise PortLostError(f"cannot open {port}: {e}" + (f". {advice}" if advice else "")) from e


def close_serial(ser: serial.Serial | None) -> None:
    """Close `ser` if open; a port that already went away has nothing left to close."""
    if ser is not None:
        try:
            ser.close()
        except (serial.SerialException, OSError):
            pass


@dataclass(frozen=True)
class Motor:
    id: int
    model: str = ""  # expected model name; empty = accept any of the protocol's models
    mode: str = ""  # expected operating mode (servo.models.OPERATING_MODES); empty = not checked


class MotorBus:
    def __init__(
        self,
        port: str,
        kind: str,
        motors: dict[str, Motor | int],
        baudrate: int = 1_000_000,
        retries: int = 2,
        latency_s: float = 0.02,
        return_delay_s: float = 0.0005,
    ):
        """`latency_s`: USB adapter allowance per transaction (FTDI default latency timer is 16 ms;
        2-4 ms once it is set to 1 ms). `return_delay_s`: each motor's Return_Delay_Time."""
        self.port_name, self.kind = port, kind
        self.proto = get_protocol(kind)
        self.motors = {n: m if isinstance(m, Motor) else Motor(int(m)) for n, m in motors.items()}
        self.ids = {n: m.id for n, m in self.motors.items()}
        self.names = {m.id: n for n, m in self.motors.items()}
        self.baudrate, self.retries = baudrate, retries
        self.latency_s, self.return_delay_s = latency_s, return_delay_s
        self.ser: serial.Serial | None = None
        self._fd = -1
        self.stats = {
            "transactions": 0,
            "retries": 0,
            "timeouts": 0,
            "corrupt": 0,
            "protocol_errors": 0,
            "stale": 0,
            "resyncs": 0,
        }
        self._dirty = False  # a reply may still be in flight from a failed try: send a barrier first
        self._barriers = 0

    # -- port -----------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.ser is not None

    def open(self) -> MotorBus:
        self.ser = open_serial(
            self.port_name,
            self.baudrate,
            "Is the adapter plugged in, and are you in the dialout group? (loopylab arm find-port lists ports)",
            write_timeout=1,
        )
        self._fd = self.ser.fileno()
        self.ser.reset_input_buffer()
        self._dirty = False
        return self

    def close(self) -> None:
        close_serial(self.ser)
        self.ser, self._fd = None, -1

    def set_baudrate(self, baudrate: int) -> None:
        self.baudrate = baudrate
        if self.ser is not None:
            self.ser.baudrate = baudrate

    def __enter__(self):
        return self.open() if self.ser is None else self

    def __exit__(self, *exc):
        self.close()

    # -- transactions --------------------------------------------------------------------
    def timeout_for(self, tx_bytes: int, rx_bytes: int, replies: int) -> float:
        byte_s = 10.0 / self.baudrate  # 8N1: 10 bits a byte
        return (tx_bytes + rx_bytes) * byte_s + replies * self.return_delay_s + self.latency_s

    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            raise PortLostError(f"{self.port_name} is not open")
        try:
            os.write(self._fd, data)
        except OSError as e:
            raise PortLostError(f"{self.port_name} went away while writing: {e}") from e

    def _flush_input(self) -> None:
        try:
            while select.select([self._fd], [], [], 0)[0]:
                if not os.read(self._fd, 4096):
                    raise PortLostError(f"{self.port_name} went away (device disconnected)")
        except OSError as e:
            raise PortLostError(f"{self.port_name} went away: {e}") from e

    def _collect(
        self,
        expect: list[tuple[int, int]],
        timeout: float,
        what: str,
        barrier: tuple[int, int] | None = None,
        received: bytes = b"",
    ) -> tuple[dict[int, StatusPacket], list[str]]:
        """Read status packets until every (id, data length) in `expect` has answered, or every expected
        packet has come (some corrupt), or the deadline. Returns (good replies, what was corrupt).
        Everything before the `barrier`'s answer, and any packet that does not match (another motor, a
        second answer, another length without an error), is stale: skipped. `received`: bytes already read
        for this request (the cyclic read's fast path), parsed first."""
        deadline = time.monotonic() + timeout
        want = dict(expect)
        got: dict[int, StatusPacket] = {}
        corrupt: list[str] = []
        buf, start = bytearray(received), 0
        fd, parse = self._fd, self.proto.parse
        last_look, fresh = False, bool(buf)
        while len(got) + len(corrupt) < len(want) and not last_look:
            if fresh:  # parse what the fast path read before reading more
                fresh = False
            else:
                # past the deadline, still look once: on a busy host this thread may wake up late, with the
                # answers already waiting (a host stall is not a motor that did not answer)
                left = deadline - time.monotonic()
                last_look = left <= 0
                left = max(0.0, left)
                try:
                    if not select.select([fd], [], [], left)[0]:
                        break
                    chunk = os.read(fd, 4096)
                except OSError as e:
                    raise PortLostError(f"{self.port_name} went away while reading: {e}") from e
                if not chunk:
                    raise PortLostError(f"{self.port_name} went away (device disconnected)")
                buf += chunk
            while True:
                try:
                    pkt, start = parse(buf, start)
                except CorruptPacket as e:  # skip it; the other motors' answers still count
                    start = e.resume
                    if barrier is not None:  # most likely the barrier's answer: what follows is ours
                        barrier = None
                    else:
                        corrupt.append(str(e))
                    continue
                if pkt is None:
                    break
                if barrier is not None:  # (a motor may answer the barrier with an error and no data)
                    if pkt.id == barrier[0] and (len(pkt.params) == barrier[1] or (pkt.error and not pkt.params)):
                        barrier = None
                    else:
                        self.stats["stale"] += 1
                    continue
                n = want.get(pkt.id)
                # an error status may come without its data; anything else of the wrong size is stale
                if n is None or pkt.id in got or (len(pkt.params) != n and not (pkt.error and not pkt.params)):
                    self.stats["stale"] += 1
                    continue
                got[pkt.id] = pkt
        return got, corrupt

    def _barrier(self, id: int) -> tuple[bytes, tuple[int, int], int]:
        """The barrier READ to `id`: (packet, (id, its answer's length), bytes on the wire both ways)."""
        self.stats["resyncs"] += 1
        n = BARRIER_LENGTHS[self._barriers % len(BARRIER_LENGTHS)]
        self._barriers += 1
        pkt = self.proto.read(id, 0, n)
        return pkt, (id, n), len(pkt) + self.proto.status_size(n)

    def _describe(self, ids: list[int]) -> str:
        return ", ".join(f"motor {i}" + (f" ({self.names[i]})" if i in self.names else "") for i in ids)

    def transact(
        self,
        packet: bytes,
        expect: list[tuple[int, int]],
        what: str,
        subset: Callable[[list[int]], bytes] | None = None,
        prefix: bytes = b"",
        received: tuple[bytes, float] | None = None,
    ) -> dict[int, StatusPacket]:
        """Send `packet`, collect the expected replies; retry transient failures `retries` times. With
        `subset` (ids -> the same request for those motors only, e.g. a SYNC READ), a retry asks only the
        motors whose answer is still missing. `prefix` (packets that need no reply, e.g. a SYNC WRITE) goes
        out first in the same write: one system call per control cycle. `received` = (bytes, seconds left):
        the first try was already sent and this much of its answer read (`cycle.CyclicSyncRead`, which
        counted the transaction): it is collected from there."""
        if received is None:
            self.stats["transactions"] += 1
        done: dict[int, StatusPacket] = {}
        pending = list(expect)
        last: MotorBusError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                log.debug("retrying %s after %s: %s", what, last.label if last else "", last)
                if subset is not None:
                    packet = subset([i for i, _ in pending])
            if received is not None and not attempt:
                data, timeout = received
                replies, corrupt = self._collect(pending, timeout, what, None, data)
            else:
                self._flush_input()
                out, barrier, extra = b"" if attempt else prefix, None, 0
                if self._dirty and pending:
                    pkt, barrier, extra = self._barrier(pending[0][0])
                    out += pkt
                self._write(out + packet)
                if not pending:
                    return {}
                timeout = self.timeout_for(
                    len(packet) + extra,
                    sum(self.proto.status_size(n) for _, n in pending),
                    len(pending) + (barrier is not None),
                )
                replies, corrupt = self._collect(pending, timeout, what, barrier)
            protocol = self._check_errors(replies, what)  # raises at once on a hardware error
            done.update({i: p for i, p in replies.items() if i not in protocol})
            pending = [(i, n) for i, n in pending if i not in done]
            if not pending:
                self._dirty = False
                return done
            self._dirty = True
            missing = [i for i, _ in pending if i not in protocol]
            if protocol and not missing:
                self.stats["protocol_errors"] += 1
                last = next(iter(protocol.values()))
            elif corrupt:
                self.stats["corrupt"] += 1
                last = CorruptResponseError(f"{what}: corrupted reply ({corrupt[0]})")
            else:
                self.stats["timeouts"] += 1
                last = NoResponseError(
                    f"{self._describe(missing)} did not answer {what} within "
                    f"{timeout * 1e3:.1f} ms on {self.port_name} at {self.baudrate} baud",
                    missing,
                )
        if isinstance(last, NoResponseError):
            raise NoResponseError(
                f"{last} (after {self.retries + 1} tries). Check the cable, the power "
                f"supply and that the motor was set up (loopylab arm setup-motors)",
                last.motor_ids,
            )
        if isinstance(last, ProtocolError):
            raise ProtocolError(f"{last} (after {self.retries + 1} tries)", last.motor_id, last.code)
        raise CorruptResponseError(f"{last} (after {self.retries + 1} tries)")

    def _check_errors(self, replies: dict[int, StatusPacket], what: str) -> dict[int, ProtocolError]:
        """Raise a hardware error (any motor) at once, never retried; return the protocol errors by motor
        (those answers do not count: the request is retried)."""
        protocol = {}
        for id, pkt in replies.items():
            if not pkt.error:
                continue
            code, bits = self.proto.split_error(pkt.error)
            if bits:
                detail = self.proto.describe_error(pkt.error)
                if self.kind == "dynamixel":  # the alert bit only says "look at Hardware_Error_Status"
                    from loopylab.firmware_bridge.servo.dynamixel import describe_hardware_error

                    hw = self._hardware_error_bits(id)
                    if hw == 0:
                        continue  # cleared since (the answer to a REBOOT)
                    if hw is not None:
                        bits, detail = hw, f"hardware error: {describe_hardware_error(hw)}"
                raise MotorFaultError(f"{what}: {self._describe([id])} reports {detail}", id, pkt.error, bits)
            if code:
                protocol[id] = ProtocolError(
                    f"{what}: {self._describe([id])} answered {self.proto.describe_error(code)} (0x{code:02X})",
                    id,
                    code,
                )
        return protocol

    def _hardware_error_bits(self, id: int) -> int | None:
        reg = self.proto.table["Hardware_Error_Status"]
        self._flush_input()
        self._write(self.proto.read(id, reg.address, 1))
        got, _ = self._collect([(id, 1)], self.timeout_for(14, 12, 1), "read Hardware_Error_Status")
        pkt = got.get(id)
        return pkt.params[0] if pkt is not None and pkt.params else None

    # -- instructions ---------------------------------------------------------------------------
    def _id(self, motor: str | int) -> int:
        if isinstance(motor, str):
            if motor not in self.ids:
                raise KeyError(f"no motor named {motor!r}; this bus has {sorted(self.ids)}")
            return self.ids[motor]
        return motor

    def reg(self, name: str) -> Register:
        if name not in self.proto.table:
            raise KeyError(f"{self.proto.name} has no register {name!r}")
        return self.proto.table[name]

    def ping(self, motor: str | int) -> int:
        """Model number of the motor (raises NoResponseError if it does not answer)."""
        id = self._id(motor)
        if self.kind == "dynamixel":
            r = self.transact(self.proto.ping(id), [(id, 3)], "PING")
            return int.from_bytes(r[id].params[:2], "little")
        self.transact(self.proto.ping(id), [(id, 0)], "PING")
        return self.read("Model_Number", id)

    def broadcast_ping(self, timeout: float = 0.05) -> dict[int, int]:
        """{id: model number} of every motor that answers a broadcast ping (motor setup, scans)."""
        self._flush_input()
        self._write(self.proto.ping(BROADCAST_ID))
        found, buf, start = {}, bytearray(), 0
        deadline = time.monotonic() + timeout + self.latency_s
        while time.monotonic() < deadline:
            if select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(self._fd, 4096)
                if not chunk:
                    raise PortLostError(f"{self.port_name} went away")
                buf += chunk
                while True:
                    try:
                        pkt, start = self.proto.parse(buf, start)
                    except CorruptPacket as e:
                        start = e.resume
                        continue
                    if pkt is None:
                        break
                    found[pkt.id] = int.from_bytes(pkt.params[:2], "little") if pkt.params else 0
        if self.kind == "feetech":
            found = {i: self.read("Model_Number", i) for i in found}
        return found

    def read_raw(self, id: int, address: int, length: int) -> bytes:
        r = self.transact(self.proto.read(id, address, length), [(id, length)], f"READ @{address}+{length}")
        return r[id].params

    def read(self, name: str, motor: str | int) -> int:
        reg, id = self.reg(name), self._id(motor)
        return self.proto.decode_value(reg, self.read_raw(id, reg.address, reg.size))

    def write(self, name: str, motor: str | int, value: int) -> None:
        """Write one register. Feetech EEPROM registers are unlocked first and locked again after."""
        reg, id = self.reg(name), self._id(motor)
        if not reg.writable:
            raise ValueError(f"register {name} is read-only")
        data = self.proto.encode_value(reg, value)
        if self.kind == "feetech" and reg.eeprom:
            self.write("Lock", id, 0)
        what = f"WRITE {name}={value}"
        try:
            self.transact(self.proto.write(id, reg.address, data), [(id, 0)], what)
        except ProtocolError as e:
            if reg.eeprom and e.code == 7:
                raise ProtocolError(
                    f"{e}; EEPROM registers need torque off (bus.torque_disabled())", e.motor_id, e.code
                ) from None
            raise
        if self.kind == "feetech" and reg.eeprom:
            self.write("Lock", id, 1)

    def write_broadcast(self, name: str, value: int) -> None:
        reg = self.reg(name)
        self.transact(
            self.proto.write(BROADCAST_ID, reg.address, self.proto.encode_value(reg, value)),
            [],
            f"broadcast WRITE {name}",
        )

    def block(self, names: list[str]) -> tuple[int, int]:
        """(address, length) of the contiguous span covering the named registers."""
        regs = [self.reg(n) for n in names]
        lo = min(r.address for r in regs)
        return lo, max(r.address + r.size for r in regs) - lo

    def sync_read_raw(
        self, address: int, length: int, ids: list[int], what: str = "", prefix: bytes = b""
    ) -> dict[int, bytes]:
        """SYNC READ of `length` bytes at `address` from `ids`; `prefix` goes out first (see transact)."""
        r = self.transact(
            self.proto.sync_read(address, length, ids),
            [(i, length) for i in ids],
            what or f"SYNC READ @{address}+{length}",
            lambda some: self.proto.sync_read(address, length, some),
            prefix,
        )
        return {i: r[i].params for i in ids}

    def sync_read(self, names: str | list[str], motors: list[str] | None = None) -> dict[str, dict[str, int] | int]:
        """Sync read of one register ({motor: value}) or several ({motor: {register: value}})."""
        single = isinstance(names, str)
        regs = [names] if single else list(names)
        motors = motors or list(self.motors)
        address, length = self.block(regs)
        raw = self.sync_read_raw(address, length, [self.ids[m] for m in motors], f"SYNC READ {','.join(regs)}")
        out = {}
        dec = self.proto.decode_value
        table = self.proto.table
        for m in motors:
            data = raw[self.ids[m]]
            vals = {
                r: dec(table[r], data[table[r].address - address : table[r].address - address + table[r].size])
                for r in regs
            }
            out[m] = vals[regs[0]] if single else vals
        return out

    def sync_write_packet(self, name: str, values: dict[str, int]) -> bytes:
        reg = self.reg(name)
        enc = self.proto.encode_value
        return self.proto.sync_write(reg.address, reg.size, {self.ids[m]: enc(reg, v) for m, v in values.items()})

    def sync_write(self, name: str, values: dict[str, int]) -> None:
        self.transact(self.sync_write_packet(name, values), [], f"SYNC WRITE {name}")

    def bulk_read(self, items: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Dynamixel BULK READ of (motor, register) pairs: different registers per motor, one packet."""
        ids = [(self.ids[m], self.reg(r)) for m, r in items]
        pkt = self.proto.bulk_read([(i, r.address, r.size) for i, r in ids])
        replies = self.transact(pkt, [(i, r.size) for i, r in ids], "BULK READ")
        return {(m, r): self.proto.decode_value(reg, replies[i].params) for (m, r), (i, reg) in zip(items, ids)}

    def reboot(self, motor: str | int) -> None:
        """REBOOT one motor: clears its hardware error (torque comes back off; EEPROM is kept). Its
        answer still carries the error it is clearing."""
        id = self._id(motor)
        try:
            self.transact(self.proto.reboot(id), [(id, 0)], "REBOOT")
        except MotorFaultError:
            pass

    # -- whole-arm helpers ------------------------------------------------------------------------
    def connect(self) -> dict[str, int]:
        """Open the port, ping every motor, check models. Raises NoResponseError naming every missing one."""
        if not self.is_open:
            self.open()
        models, missing = {}, []
        for name, m in self.motors.items():
            try:
                models[name] = self.ping(m.id)
            except NoResponseError:
                missing.append(m.id)
        if missing:
            raise NoResponseError(
                f"missing motors on {self.port_name}: {self._describe(missing)} "
                f"(found {sorted(models)}). Check cables and power, or run "
                f"`loopylab arm setup-motors`",
                missing,
            )
        wrong = []
        for name, number in models.items():
            want = self.motors[name].model
            have = self.proto.models.get(number, f"model {number}")
            if want and want != have:
                wrong.append(f"{self._describe([self.motors[name].id])} is a {have}, expected {want}")
        if wrong:
            raise MotorBusError(
                "; ".join(wrong) + ": describe the motors fitted (`--motors joint=model,...` or "
                "the arm node's `motors` table)"
            )
        self.check_modes()
        return models

    def check_modes(self) -> None:
        """Refuse motors whose Operating_Mode is not the one described (e.g. left in extended position by
        another tool: their position limits are then inactive)."""
        from loopylab.firmware_bridge.servo.models import mode_name, mode_value

        wrong = []
        for name, m in self.motors.items():
            if m.mode:
                have = self.read("Operating_Mode", name)
                if have != mode_value(self.kind, m.mode):
                    wrong.append(f"{self._describe([m.id])} is in {mode_name(self.kind, have)} mode, expected {m.mode}")
        if wrong:
            raise MotorBusError(
                "; ".join(wrong) + ": run `loopylab arm setup-motors --configure-only` to write the described modes"
            )

    def set_torque(self, on: bool, motors: list[str] | None = None) -> None:
        self.sync_write("Torque_Enable", {m: int(on) for m in (motors or self.motors)})

    @contextmanager
    def torque_disabled(self, motors: list[str] | None = None):
        self.set_torque(False, motors)
        try:
            yield
        finally:
            self.set_torque(True, motors)
