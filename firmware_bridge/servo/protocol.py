"""What Dynamixel 2.0 and Feetech STS have in common: packets, registers, instruction builders.

A protocol object turns instructions into bytes and finds packets in a byte stream. It never touches
a port (that is `servo.bus`), so the codecs are pure functions that can be property-tested and
compared byte for byte with the vendor SDKs. The codecs themselves (`dynamixel`, `feetech`) build on this
module; `servo.codecs` picks one by family name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar


class CorruptPacket(ValueError):
    """Bytes framed like a packet that fail the checksum or the layout rules. `resume` is where to
    look for the next header (one byte past the bad one)."""

    def __init__(self, message: str, resume: int = 0):
        super().__init__(message)
        self.resume = resume


@dataclass(frozen=True)
class Instruction:
    id: int
    instruction: int
    params: bytes = b""


@dataclass(frozen=True)
class StatusPacket:
    id: int
    error: int
    params: bytes = b""


@dataclass(frozen=True)
class Register:
    """One control-table entry. `signed` is the sign convention: None (unsigned), "twos" (Dynamixel)
    or the sign bit index of a sign-magnitude value (Feetech: 15 for positions, 11 for the offset)."""

    name: str
    address: int
    size: int
    eeprom: bool = False
    writable: bool = True
    signed: str | int | None = None


def make_table(
    rows: list[tuple], eeprom_end: int, read_only: set[str], signed: dict[str, str | int]
) -> dict[str, Register]:
    return {
        name: Register(name, addr, size, addr < eeprom_end, name not in read_only, signed.get(name))
        for name, addr, size in rows
    }


# Instruction codes shared by both families (Feetech has no BULK_READ, Dynamixel no RESET/OFSCAL).
PING, READ, WRITE, REG_WRITE, ACTION, FACTORY_RESET, REBOOT = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08
SYNC_READ, SYNC_WRITE, BULK_READ, BULK_WRITE = 0x82, 0x83, 0x92, 0x93
BROADCAST_ID = 0xFE
INSTRUCTION_NAMES = {
    PING: "PING",
    READ: "READ",
    WRITE: "WRITE",
    REG_WRITE: "REG_WRITE",
    ACTION: "ACTION",
    FACTORY_RESET: "FACTORY_RESET",
    REBOOT: "REBOOT",
    SYNC_READ: "SYNC_READ",
    SYNC_WRITE: "SYNC_WRITE",
    BULK_READ: "BULK_READ",
    BULK_WRITE: "BULK_WRITE",
}


class ServoProtocol(ABC):
    """Base of the two codecs. Subclasses set the class attributes and the framing methods."""

    name: str = ""
    table: ClassVar[dict[str, Register]] = {}
    models: ClassVar[dict[int, str]] = {}  # model number -> model name
    baud_codes: ClassVar[dict[int, int]] = {}  # register code -> baud rate
    resolution: int = 4096  # ticks per turn
    addr_size: int = 1  # bytes of an address / length field in SYNC_* params
    has_bulk_read: bool = False
    min_status_len: int = 6

    # -- framing (subclasses) -----------------------------------------------------
    @abstractmethod
    def instruction(self, id: int, instruction: int, params: bytes = b"") -> bytes:
        """An instruction packet, framed and checksummed."""

    @abstractmethod
    def status(self, id: int, error: int, params: bytes = b"") -> bytes:
        """A status (reply) packet, framed and checksummed (emulators send these)."""

    @abstractmethod
    def parse(self, buf: bytes | bytearray, start: int = 0, status: bool = True):
        """Find the next packet in `buf[start:]`. Returns `(packet, end)`, or `(None, keep)` when more
        bytes are needed (`keep` = first byte worth keeping). Raises CorruptPacket on a bad packet."""

    @abstractmethod
    def status_size(self, n_data: int) -> int:
        """Bytes on the wire of a status packet carrying n_data bytes (before any stuffing)."""

    @abstractmethod
    def block_checker(self, ids: list[int], n: int) -> Callable[[bytes], bytes | None]:
        """A fast check of the exact, error-free answer to a SYNC READ of `n` bytes from `ids` (the control
        cycle's): bytes -> the motors' data joined in order, or None (the general parser then decides)."""

    # -- exact decoding (tests, emulators) ------------------------------------------
    def decode(self, data: bytes, status: bool = True):
        """`data` must be exactly one valid packet; anything else raises CorruptPacket."""
        pkt, end = self.parse(data, 0, status)
        if pkt is None:
            raise CorruptPacket(f"{self.name}: incomplete or unframed packet ({len(data)} bytes)")
        if end != len(data):
            raise CorruptPacket(f"{self.name}: packet is {end} bytes but {len(data)} were given")
        return pkt

    # -- values ---------------------------------------------------------------------
    def encode_value(self, reg: Register, value: int) -> bytes:
        value = int(value)
        if reg.signed == "twos":
            return value.to_bytes(reg.size, "little", signed=True)
        if isinstance(reg.signed, int):
            mag = abs(value)
            if mag >= 1 << reg.signed:
                raise ValueError(f"{reg.name}: magnitude {mag} does not fit {reg.signed} bits")
            value = mag | (1 << reg.signed) if value < 0 else mag
        return value.to_bytes(reg.size, "little")

    def decode_value(self, reg: Register, raw: bytes) -> int:
        if reg.signed == "twos":
            return int.from_bytes(raw, "little", signed=True)
        value = int.from_bytes(raw, "little")
        if isinstance(reg.signed, int) and value & (1 << reg.signed):
            return -(value & ((1 << reg.signed) - 1))
        return value

    # -- instruction builders ----------------------------------------------------------
    def _addr(self, a: int) -> bytes:
        return a.to_bytes(self.addr_size, "little")

    def ping(self, id: int) -> bytes:
        return self.instruction(id, PING)

    def read(self, id: int, address: int, length: int) -> bytes:
        return self.instruction(id, READ, self._addr(address) + self._addr(length))

    def write(self, id: int, address: int, data: bytes) -> bytes:
        return self.instruction(id, WRITE, self._addr(address) + bytes(data))

    def sync_read(self, address: int, length: int, ids: list[int]) -> bytes:
        return self.instruction(BROADCAST_ID, SYNC_READ, self._addr(address) + self._addr(length) + bytes(ids))

    def sync_write(self, address: int, length: int, data: dict[int, bytes]) -> bytes:
        body = bytearray(self._addr(address) + self._addr(length))
        for id, d in data.items():
            if len(d) != length:
                raise ValueError(f"sync write to motor {id}: {len(d)} bytes given, {length} expected")
            body.append(id)
            body += d
        return self.instruction(BROADCAST_ID, SYNC_WRITE, bytes(body))

    def reboot(self, id: int) -> bytes:
        return self.instruction(id, REBOOT)

    # -- status meaning -------------------------------------------------------------
    def describe_error(self, error: int) -> str:
        return f"error 0x{error:02X}"

    def is_alert_only(self, error: int) -> bool:
        """True when the status error means 'data valid, but the motor has a hardware problem'."""
        return False

    def split_error(self, error: int) -> tuple[int, int]:
        """(protocol error code: the motor could not carry out this request, hardware error bits)."""
        return 0, error
