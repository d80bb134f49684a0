"""Talking to an MCU bridge board over serial: handshake, targets, heartbeats, e-stop."""

from __future__ import annotations

import logging
import os
import select
import time

import serial

from loopylab.firmware_bridge.mcu import protocol as P
from loopylab.firmware_bridge.servo.bus import PortLostError, close_serial, open_serial

log = logging.getLogger("loopylab.mcu")


class McuTimeout(TimeoutError):
    pass


class McuLink:
    def __init__(self, port: str, baudrate: int = 115200, timeout_s: float = 0.1, retries: int = 2):
        self.port_name, self.baudrate, self.timeout_s, self.retries = port, baudrate, timeout_s, retries
        self.ser: serial.Serial | None = None
        self._fd = -1
        self._buf = bytearray()
        self._seq = 0
        self.info: P.HelloAck | None = None
        self.errors: list[P.McuError] = []  # every ERROR frame the board sent, oldest first
        self.bad_frames = 0

    def open(self) -> McuLink:
        self.ser = open_serial(self.port_name, self.baudrate)
        self._fd = self.ser.fileno()
        self._buf.clear()
        return self

    def close(self) -> None:
        close_serial(self.ser)
        self.ser, self._fd = None, -1

    # -- frames ---------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def send_raw(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except OSError as e:
            raise PortLostError(f"{self.port_name} went away: {e}") from e

    def _frames(self, deadline: float):
        """Yield (type, seq, body) as frames arrive, until the deadline."""
        while True:
            while True:
                end = self._buf.find(0)
                if end < 0:
                    break
                wire = bytes(self._buf[:end])
                del self._buf[: end + 1]
                if not wire:
                    continue
                try:
                    yield P.decode_frame(wire)
                except P.FrameError as e:
                    self.bad_frames += 1
                    log.debug("dropped a bad frame: %s", e)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                if not select.select([self._fd], [], [], left)[0]:
                    return
                chunk = os.read(self._fd, 1024)
            except OSError as e:
                raise PortLostError(f"{self.port_name} went away: {e}") from e
            if not chunk:
                raise PortLostError(f"{self.port_name} went away (device disconnected)")
            self._buf += chunk

    def request(self, type: int, body: bytes = b"", expect: int = P.STATE):
        """Send a frame, return the decoded answer with the same seq; retry on silence or bad frames."""
        for _attempt in range(self.retries + 1):
            seq = self._next_seq()
            self.send_raw(P.encode_frame(type, seq, body))
            for t, s, b in self._frames(time.monotonic() + self.timeout_s):
                msg = P.parse_body(t, b)
                if isinstance(msg, P.McuError):
                    self.errors.append(msg)
                    if s == seq and expect == P.HELLO_ACK:
                        raise RuntimeError(f"MCU refused the handshake: {msg}")
                    continue
                if s == seq and t == expect:
                    return msg
        raise McuTimeout(f"MCU on {self.port_name} did not answer message 0x{type:02X} after {self.retries + 1} tries")

    # -- operations ---------------------------------------------------------------------
    def hello(self) -> P.HelloAck:
        self.info = self.request(P.HELLO, bytes((P.PROTOCOL_VERSION,)), expect=P.HELLO_ACK)
        if self.info.version != P.PROTOCOL_VERSION:
            raise RuntimeError(f"MCU speaks protocol {self.info.version}, we speak {P.PROTOCOL_VERSION}")
        return self.info

    def send_targets(self, mrad: list[int]) -> P.McuState:
        import struct

        return self.request(P.TARGETS, bytes((len(mrad),)) + struct.pack(f"<{len(mrad)}h", *mrad))

    def heartbeat(self) -> P.McuState:
        return self.request(P.HEARTBEAT)

    def estop(self) -> P.McuState:
        return self.request(P.ESTOP)

    def clear(self) -> P.McuState:
        return self.request(P.CLEAR)

    def drain_errors(self, timeout: float = 0.0) -> list[P.McuError]:
        """Read whatever the board sent unprompted (e.g. the watchdog report) and return new errors."""
        n = len(self.errors)
        for t, _, b in self._frames(time.monotonic() + timeout):
            msg = P.parse_body(t, b)
            if isinstance(msg, P.McuError):
                self.errors.append(msg)
        return self.errors[n:]
