"""A 6-motor bus-servo arm (Dynamixel X-series or Feetech STS3215) on a pty.

Each motor holds its control table as bytes (EEPROM persists across `power_cycle()` only when it was
written unlocked / with torque off), a hidden actual position that moves toward the goal at a fixed
speed while torque is on, and reports position, velocity and load/current from it. The conventions
are the real ones: Dynamixel Present = Actual + Homing_Offset (two's complement), Feetech
Present = Actual - Homing_Offset (sign-magnitude); goals are clamped to the position limits.

As strict as the motors: REG_WRITE only takes effect on ACTION; REBOOT reloads EEPROM and resets RAM
(torque off, hardware error cleared); Dynamixel FACTORY_RESET (all / all but ID / all but ID and baud)
and CLEAR (multi-turn count); an unknown instruction is answered with the instruction error (Dynamixel
error 2, Feetech bit 0x40); a broadcast READ (which no motor answers) is ignored.

A motor's `body` hook puts something else behind its registers (the hardware-in-the-loop rig gives it a
simulated joint): called on every access with the goal as an actual position (ticks; None with torque off
or a hardware error), it returns (actual ticks, velocity ticks/s, load in the effort register's units).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from loopylab.firmware_bridge.emulators.pty_device import Faults, PtyDevice
from loopylab.firmware_bridge.servo.codecs import get_protocol
from loopylab.firmware_bridge.servo.feetech import INSTRUCTION_ERROR as FEETECH_INSTRUCTION_ERROR
from loopylab.firmware_bridge.servo.protocol import (
    ACTION,
    BROADCAST_ID,
    BULK_READ,
    FACTORY_RESET,
    PING,
    READ,
    REBOOT,
    REG_WRITE,
    SYNC_READ,
    SYNC_WRITE,
    WRITE,
    CorruptPacket,
)

log = logging.getLogger("loopylab.emulator.servo")

DEFAULT_MODELS = {"dynamixel": 1060, "feetech": 777}  # XL430-W250, STS3215
FACTORY_BAUD_CODE = {"dynamixel": 1, "feetech": 0}  # 57600 / 1M
SPEED_TICKS_PER_S = 3000.0  # ~4.6 rad/s: brisk but finite
POSITION_MODE = {"dynamixel": 3, "feetech": 0}
CLEAR = 0x10  # Dynamixel: clear the multi-turn count
CLEAR_MULTI_TURN = bytes((0x01, 0x44, 0x58, 0x4C, 0x22))
# status error codes per family: (instruction error, CRC error as sent for a damaged instruction)
INSTRUCTION_ERROR = {"dynamixel": 2, "feetech": FEETECH_INSTRUCTION_ERROR}
CRC_ERROR = {"dynamixel": 3, "feetech": FEETECH_INSTRUCTION_ERROR}


class EmulatedMotor:
    def __init__(self, kind: str, id: int, model: int, baud_code: int, actual: float):
        self.kind, self.proto = kind, get_protocol(kind)
        self.t = self.proto.table
        self.mem = bytearray(256)
        self.actual = float(actual)
        self.velocity = 0.0
        self.hw_error = 0  # Dynamixel hardware error bits / Feetech status bits
        self.pending: tuple[int, bytes] | None = None  # a REG_WRITE waiting for ACTION
        self.torque_offs = 0  # times torque went from on to off (benchmarks count drops)
        self.body: Callable[[float | None], tuple[float, float, float]] | None = None  # see the module docstring
        self.load: float | None = None  # effort register value from the body (None: a stand-in from velocity)
        self.model = model
        self._last = time.monotonic()
        self._set("Model_Number", model)
        self._set("ID", id)
        self._set("Baud_Rate", baud_code)
        self._set("Return_Delay_Time", 0)
        self._set("Max_Position_Limit", 4095)
        self._set("Min_Position_Limit", 0)
        if kind == "dynamixel":
            self._set("Firmware_Version", 45)
            self._set("Operating_Mode", 3)
            self._set("Status_Return_Level", 2)
        else:
            self._set("Firmware_Major_Version", 3)
            self._set("Firmware_Minor_Version", 10)
            self._set("Lock", 1)
        self._set("Goal_Position", self.present_position())
        self.saved = bytearray(self.mem)  # EEPROM contents that survive a power cycle

    # -- registers ---------------------------------------------------------------
    def _get(self, name: str) -> int:
        r = self.t[name]
        return self.proto.decode_value(r, self.mem[r.address : r.address + r.size])

    def _set(self, name: str, value: int) -> None:
        r = self.t[name]
        self.mem[r.address : r.address + r.size] = self.proto.encode_value(r, value)

    @property
    def id(self) -> int:
        return self._get("ID")

    @property
    def baud(self) -> int:
        return self.proto.baud_codes.get(self._get("Baud_Rate"), 0)

    @property
    def torque(self) -> bool:
        return self._get("Torque_Enable") != 0

    def present_position(self) -> int:
        off = self._get("Homing_Offset")
        if self.kind == "dynamixel":
            return round(self.actual) + off
        return (round(self.actual) - off) % 4096

    # -- dynamics ---------------------------------------------------------------------
    def update(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        if self.body is not None:
            target = None
            if self.torque and not self.hw_error:
                goal, off = self._get("Goal_Position"), self._get("Homing_Offset")
                target = float(goal - off if self.kind == "dynamixel" else goal + off)
            self.actual, self.velocity, self.load = self.body(target)
        elif self.torque and not self.hw_error:
            goal, off = self._get("Goal_Position"), self._get("Homing_Offset")
            target = goal - off if self.kind == "dynamixel" else goal + off
            step = max(-SPEED_TICKS_PER_S * dt, min(SPEED_TICKS_PER_S * dt, target - self.actual))
            self.actual += step
            self.velocity = step / dt if dt > 0 else 0.0
        else:
            self.velocity = 0.0
        self._refresh()

    def _refresh(self) -> None:
        self._set("Present_Position", self.present_position())
        if self.kind == "dynamixel":
            self._set("Present_Velocity", round(self.velocity / 4096 * 60 / 0.229))  # 0.229 rpm units
            load = self.velocity * 0.05 if self.load is None else self.load  # a stand-in without a body
            self._set("Present_Current", max(-32767, min(32767, round(load))))
            self._set("Hardware_Error_Status", self.hw_error)
        else:
            self._set("Present_Velocity", max(-32767, min(32767, round(self.velocity))))  # ticks/s
            load = self.velocity * 0.2 if self.load is None else self.load  # 0.1 % units
            self._set("Present_Load", max(-1000, min(1000, round(load))))
            self._set("Present_Current", abs(round(self.velocity * 0.02)))
            self._set("Status", self.hw_error)
            self._set("Present_Temperature", 31)
            self._set("Present_Voltage", 74)

    def read(self, address: int, length: int) -> bytes:
        self.update()
        return bytes(self.mem[address : address + length])

    def write(self, address: int, data: bytes) -> int:
        """Apply a write; returns the status error byte (0 = fine)."""
        self.update()
        touched = [r for r in self.t.values() if r.address < address + len(data) and address < r.address + r.size]
        if any(not r.writable for r in touched):
            return 7 if self.kind == "dynamixel" else 0  # access error / ignored
        eeprom = any(r.eeprom for r in touched)
        if self.kind == "dynamixel" and eeprom and self.torque:
            return 7  # EEPROM needs torque off
        was_torque = self.torque
        self.mem[address : address + len(data)] = data
        # the position limits hold in position mode only (Dynamixel 3, Feetech 0), as on the motors
        if self.t["Goal_Position"] in touched and self._get("Operating_Mode") == POSITION_MODE[self.kind]:
            lo, hi = self._get("Min_Position_Limit"), self._get("Max_Position_Limit")
            self._set("Goal_Position", max(lo, min(hi, self._get("Goal_Position"))))
        if self.torque and not was_torque:
            self._last = time.monotonic()
        if was_torque and not self.torque:
            self.torque_offs += 1
        if eeprom and (self.kind == "dynamixel" or self._get("Lock") == 0):
            self.saved[:64] = self.mem[:64]
        return 0

    def status_error(self) -> int:
        if self.kind == "dynamixel":
            return 0x80 if self.hw_error else 0
        return self.hw_error

    def power_cycle(self) -> None:
        """EEPROM back from what was saved, RAM to defaults (torque off, goal = present)."""
        eeprom_end = 64 if self.kind == "dynamixel" else 40
        self.mem[:eeprom_end] = self.saved[:eeprom_end]
        self.mem[eeprom_end:] = bytes(256 - eeprom_end)
        if self.kind == "feetech":
            self._set("Lock", 1)
        self.hw_error = 0
        self._refresh()
        self._set("Goal_Position", self.present_position())

    def reboot(self) -> None:
        """What a reboot does: EEPROM reloaded, RAM back to defaults, hardware error cleared."""
        self.pending = None
        self.power_cycle()

    def reg_write(self, address: int, data: bytes) -> int:
        """Register a write for the next ACTION; refused now for what a WRITE would refuse."""
        touched = [r for r in self.t.values() if r.address < address + len(data) and address < r.address + r.size]
        if any(not r.writable for r in touched):
            return 7 if self.kind == "dynamixel" else 0
        self.pending = (address, bytes(data))
        if self.kind == "dynamixel":
            self._set("Registered_Instruction", 1)
        return 0

    def action(self) -> int:
        if self.pending is None:
            return 0
        (address, data), self.pending = self.pending, None
        if self.kind == "dynamixel":
            self._set("Registered_Instruction", 0)
        return self.write(address, data)

    def factory_reset(self, level: int) -> None:
        """Dynamixel FACTORY_RESET: 0xFF everything, 0x01 all but ID, 0x02 all but ID and baud."""
        keep_id = self.id if level in (0x01, 0x02) else 1
        keep_baud = self._get("Baud_Rate") if level == 0x02 else FACTORY_BAUD_CODE[self.kind]
        fresh = EmulatedMotor(self.kind, keep_id, self.model, keep_baud, self.actual)
        if self.kind == "dynamixel":
            fresh._set("Return_Delay_Time", 250)  # factory: 500 µs
        self.mem[:], self.saved[:] = fresh.mem, fresh.mem
        self.pending, self.hw_error = None, 0
        self._refresh()

    def clear(self, params: bytes) -> int:
        """Dynamixel CLEAR 0x01: fold the multi-turn position back into one turn (motor at rest only)."""
        if bytes(params) != CLEAR_MULTI_TURN:
            return 4
        self.update()
        if abs(self.velocity) > 0:
            return 1  # result fail: only while stopped
        self.actual %= 4096
        self._refresh()
        return 0


class ServoArmEmulator:
    """`ServoArmEmulator("feetech").start()` -> a 6-motor arm at `.path` until `.stop()`."""

    def __init__(
        self,
        kind: str = "feetech",
        ids=(1, 2, 3, 4, 5, 6),
        link: str | None = None,
        model: int | dict[int, int] | None = None,
        baud_code: int | None = None,
        check_baud: bool = True,
        positions: dict[int, float] | None = None,
        faults: Faults | None = None,
    ):
        self.kind = kind
        self.proto = get_protocol(kind)
        model = model or DEFAULT_MODELS[kind]
        models = model if isinstance(model, dict) else dict.fromkeys(ids, model)
        baud_code = {"dynamixel": 3, "feetech": 0}[kind] if baud_code is None else baud_code
        positions = positions or {}
        self.motors: dict[int, EmulatedMotor] = {
            i: EmulatedMotor(kind, i, models[i], baud_code, positions.get(i, 2048.0 + 40 * (i - 3))) for i in ids
        }
        self.check_baud = check_baud
        self.faults = faults or Faults()
        self.port = PtyDevice(link)
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_robot(cls, robot: str, **kw) -> ServoArmEmulator:
        """The catalogue arm `robot` (`loopylab.world.robots`) as set up by `loopylab arm setup-motors`: its
        motor models, IDs and operating modes."""
        from loopylab.firmware_bridge.servo.models import mode_value
        from loopylab.world.robots import robot_spec

        layout = robot_spec(robot).hardware
        if layout is None:
            raise ValueError(f"robot {robot!r} has no bus-servo motors in the catalogue")
        numbers = {name: number for number, name in get_protocol(layout.kind).models.items()}
        emu = cls(
            layout.kind,
            ids=tuple(i for i, _ in layout.motors.values()),
            model={i: numbers[m] for i, m in layout.motors.values()},
            **kw,
        )
        for joint, mode in layout.modes.items():
            m = emu.motors[layout.motors[joint][0]]
            m._set("Operating_Mode", mode_value(layout.kind, mode))
            m.saved[:] = m.mem
        return emu

    @property
    def path(self) -> str:
        return self.port.path

    def start(self) -> ServoArmEmulator:
        self._thread = threading.Thread(target=self._serve, name=f"emulator:{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        self.port.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- conveniences for tests and demos -----------------------------------------------
    def vanish(self) -> None:
        self.port.vanish()

    def restore(self) -> None:
        self.port.restore()

    def power_cycle(self) -> None:
        with self._lock:
            for m in list(self.motors.values()):
                m.power_cycle()
            self.motors = {m.id: m for m in self.motors.values()}

    def move_by_hand(self, id: int, actual: float) -> None:
        """Where a person's hand puts a joint with torque off (calibration)."""
        with self._lock:
            self.motors[id].actual = float(actual)
            self.motors[id].update()

    def set_hardware_error(self, id: int, bits: int) -> None:
        with self._lock:
            m = self.motors[id]
            m.hw_error = bits
            if bits:
                m._set("Torque_Enable", 0)  # both families drop torque on a protective shutdown
            m.update()

    def register(self, id: int, name: str) -> int:
        with self._lock:
            m = self.motors[id]
            m.update()
            return m._get(name)

    # -- serving --------------------------------------------------------------------------
    def _serve(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            if not self.port.wait_readable(0.05):
                if not self.port.present:
                    buf.clear()
                continue
            data = self.port.read()
            if not data:
                continue
            buf += data
            start = 0
            while True:
                try:
                    pkt, start = self.proto.parse(buf, start, status=False)
                except CorruptPacket as e:  # no valid ID to answer to: the host times out and retries
                    start = e.resume
                    continue
                if pkt is None:
                    break
                self.requests += 1
                try:
                    with self._lock:
                        reply = self._handle(pkt)
                except Exception:  # whatever the host sends, the motors keep serving
                    log.exception("emulator: request %r failed", pkt)
                    reply = b""
                if reply:
                    hold = self.faults.hold_s()
                    if hold:
                        time.sleep(hold)
                    self.port.write(reply)
            del buf[:start]

    def _answering(self, id: int) -> EmulatedMotor | None:
        m = self.motors.get(id)
        if m is None or id in self.faults.silent_ids:
            return None
        if self.check_baud and self.port.host_baud() != m.baud:
            return None  # wrong baud: the motor sees garbage
        return m

    def _status(self, m: EmulatedMotor, error: int, params: bytes = b"", id: int | None = None) -> bytes:
        delay = m._get("Return_Delay_Time") * 2e-6
        if delay > 1e-4:
            time.sleep(delay)
        if self.faults.protocol_error > 0:  # the instruction reached the motor damaged: it says so
            self.faults.protocol_error -= 1
            self.faults.injected += 1
            error, params = CRC_ERROR[self.kind], b""
        return self.faults.apply(self.proto.status(m.id if id is None else id, error | m.status_error(), params))

    def _handle(self, pkt) -> bytes:
        p, inst, a = pkt.params, pkt.instruction, self.proto.addr_size
        u = lambda b: int.from_bytes(b, "little")  # noqa: E731
        broadcast = pkt.id == BROADCAST_ID
        if inst in (SYNC_WRITE, SYNC_READ) or (inst == BULK_READ and self.kind == "dynamixel"):
            return self._handle_group(inst, p, a, u)
        if broadcast:
            return self._handle_broadcast(inst, p, a, u)
        m = self._answering(pkt.id)
        if m is None:
            return b""
        if inst == PING:
            info = m.read(0, 2) + m.read(6, 1) if self.kind == "dynamixel" else b""
            return self._status(m, 0, info)
        if inst == READ:
            return self._status(m, 0, m.read(u(p[:a]), u(p[a : 2 * a])))
        if inst == WRITE:
            err = m.write(u(p[:a]), p[a:])
            self.motors = {x.id: x for x in self.motors.values()}
            # the reply still carries the ID the instruction was sent to (also after an ID change)
            return self._status(m, err, id=pkt.id)
        if inst == REG_WRITE:
            return self._status(m, m.reg_write(u(p[:a]), p[a:]))
        if inst == ACTION:
            err = m.action()
            self.motors = {x.id: x for x in self.motors.values()}
            return self._status(m, err, id=pkt.id)
        if inst == REBOOT:
            reply = self._status(m, 0)  # answers first, then restarts
            m.reboot()
            return reply
        if inst == FACTORY_RESET and self.kind == "dynamixel":
            level = p[0] if p else 0xFF
            if level not in (0xFF, 0x01, 0x02):
                return self._status(m, 4)  # data range error
            reply = self._status(m, 0)  # answers with its old ID, then resets
            m.factory_reset(level)
            self.motors = {x.id: x for x in self.motors.values()}
            return reply
        if inst == CLEAR and self.kind == "dynamixel":
            return self._status(m, m.clear(p))
        return self._status(m, INSTRUCTION_ERROR[self.kind])

    def _handle_broadcast(self, inst: int, p: bytes, a: int, u) -> bytes:
        """Broadcast instructions: every motor acts, none answers (except to PING, one after another)."""
        if inst == PING:
            out = b""
            for i in sorted(self.motors):
                m = self._answering(i)
                if m is not None:
                    info = m.read(0, 2) + m.read(6, 1) if self.kind == "dynamixel" else b""
                    out += self._status(m, 0, info)
            return out
        for m in list(self.motors.values()):
            if inst == WRITE:
                m.write(u(p[:a]), p[a:])
            elif inst == REG_WRITE:
                m.reg_write(u(p[:a]), p[a:])
            elif inst == ACTION:
                m.action()
            elif inst == REBOOT:
                m.reboot()
            elif inst == CLEAR and self.kind == "dynamixel":
                m.clear(p)
            # READ, FACTORY_RESET and anything unknown: ignored (no motor answers a broadcast READ)
        self.motors = {x.id: x for x in self.motors.values()}
        return b""

    def _handle_group(self, inst: int, p: bytes, a: int, u) -> bytes:
        if inst == SYNC_WRITE:
            addr, n = u(p[:a]), u(p[a : 2 * a])
            for k in range(2 * a, len(p) - n, n + 1):
                m = self.motors.get(p[k])
                if m is not None:
                    m.write(addr, p[k + 1 : k + 1 + n])
            return b""
        out = b""
        if inst == SYNC_READ:
            addr, n = u(p[:a]), u(p[a : 2 * a])
            for i in p[2 * a :]:
                m = self._answering(i)
                if m is not None:
                    out += self._status(m, 0, m.read(addr, n))
            return out
        for k in range(0, len(p) - 4, 5):  # BULK_READ: (id, address, length) per motor
            m = self._answering(p[k])
            if m is not None:
                out += self._status(m, 0, m.read(u(p[k + 1 : k + 3]), u(p[k + 3 : k + 5])))
        return out
