"""The MCU bridge wire format (mirrors firmware/loopylab_mcu.h; the C core is the reference).

Frame = COBS(type | seq | body | crc16 LE) + 0x00, crc16 = CRC-16/CCITT-FALSE over type, seq, body.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from loopylab.firmware_bridge.crc import crc16_ccitt

PROTOCOL_VERSION = 1
MAX_BODY = 64
HELLO, TARGETS, HEARTBEAT, ESTOP, CLEAR = 0x01, 0x02, 0x03, 0x04, 0x05
HELLO_ACK, STATE, ERROR = 0x81, 0x82, 0x83
ERRORS = {
    1: "bad CRC",
    2: "bad frame",
    3: "unknown message type",
    4: "bad length",
    5: "protocol version mismatch",
    6: "not ready (no handshake yet)",
    7: "e-stop active",
    8: "watchdog: host went quiet, motion stopped",
    9: "target out of range (clamped)",
}
F_ESTOP, F_WATCHDOG, F_OUTPUTS_ON, F_READY = 1, 2, 4, 8


class FrameError(ValueError):
    """Bytes between two delimiters that are not a valid frame."""


def cobs_encode(data: bytes) -> bytes:
    out, block = bytearray(), bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out, i, n = bytearray(), 0, len(data)
    while i < n:
        code = data[i]
        i += 1
        if code == 0 or i + code - 1 > n:
            raise FrameError("malformed COBS block")
        chunk = data[i : i + code - 1]
        if 0 in chunk:
            raise FrameError("zero byte inside a COBS block")
        out += chunk
        i += code - 1
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(type: int, seq: int, body: bytes = b"") -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes exceeds {MAX_BODY}")
    raw = bytes((type, seq & 0xFF)) + body
    return cobs_encode(raw + struct.pack("<H", crc16_ccitt(raw))) + b"\x00"


def decode_frame(wire: bytes) -> tuple[int, int, bytes]:
    """One frame without its 0x00 delimiter -> (type, seq, body)."""
    raw = cobs_decode(wire)
    if len(raw) < 4:
        raise FrameError(f"frame of {len(raw)} bytes is too short")
    if crc16_ccitt(raw[:-2]) != struct.unpack("<H", raw[-2:])[0]:
        raise FrameError("CRC mismatch")
    return raw[0], raw[1], raw[2:-2]


@dataclass
class HelloAck:
    version: int
    firmware: str
    n_joints: int
    n_sensors: int
    watchdog_ms: int


@dataclass
class McuState:
    flags: int
    position_mrad: list[int] = field(default_factory=list)
    velocity_mrad_s: list[int] = field(default_factory=list)
    sensors: list[int] = field(default_factory=list)

    @property
    def estop(self) -> bool:
        return bool(self.flags & F_ESTOP)

    @property
    def watchdog_tripped(self) -> bool:
        return bool(self.flags & F_WATCHDOG)

    @property
    def outputs_on(self) -> bool:
        return bool(self.flags & F_OUTPUTS_ON)


@dataclass
class McuError:
    code: int
    detail: int

    def __str__(self) -> str:
        return f"{ERRORS.get(self.code, f'error {self.code}')} (detail {self.detail})"


def hello(seq: int) -> bytes:
    return encode_frame(HELLO, seq, bytes((PROTOCOL_VERSION,)))


def targets(seq: int, mrad: list[int]) -> bytes:
    return encode_frame(TARGETS, seq, bytes((len(mrad),)) + struct.pack(f"<{len(mrad)}h", *mrad))


def parse_body(type: int, body: bytes):
    """Decode an MCU->host body into HelloAck / McuState / McuError."""
    try:
        if type == HELLO_ACK:
            v, major, minor, nj, ns, wd = struct.unpack("<BBBBBH", body)
            return HelloAck(v, f"{major}.{minor}", nj, ns, wd)
        if type == STATE:
            flags, n = body[0], body[1]
            pos = list(struct.unpack_from(f"<{n}h", body, 2))
            vel = list(struct.unpack_from(f"<{n}h", body, 2 + 2 * n))
            m = body[2 + 4 * n]
            sensors = list(struct.unpack_from(f"<{m}H", body, 3 + 4 * n))
            if len(body) != 3 + 4 * n + 2 * m:
                raise FrameError("STATE length does not match its counts")
            return McuState(flags, pos, vel, sensors)
        if type == ERROR:
            code, detail = body
            return McuError(code, detail)
    except (struct.error, IndexError, ValueError) as e:
        raise FrameError(f"bad body for message 0x{type:02X}: {e}") from None
    raise FrameError(f"unknown message type 0x{type:02X}")
