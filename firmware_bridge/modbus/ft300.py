"""Robotiq FT300 force/torque sensor: Modbus RTU registers (19200 8N1, device 9) and streaming mode.

Registers: 180-185 Fx Fy Fz Mx My Mz (int16; forces / 100 -> N, torques / 1000 -> N·m), firmware
version 500-502 and serial number 510-513 (ASCII). Writing 0x0200 to register 410 starts streaming:
16-byte frames `20 4E` + 6 x int16 LE + CRC-16/MODBUS (LE) over the first 14 bytes, ~100 Hz.
Fifty 0xFF bytes stop the stream and give the port back to Modbus.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import time

import numpy as np
import serial

from loopylab.bus import Node, Wrench
from loopylab.firmware_bridge.crc import crc16_modbus
from loopylab.firmware_bridge.modbus.client import Endpoint, ModbusClient, ModbusDeviceError
from loopylab.firmware_bridge.modbus.device import DeviceNode

log = logging.getLogger("loopylab.ft300")
DATA, FIRMWARE, SERIAL, STREAM = 180, 500, 510, 410
STREAM_START = 0x0200
STREAM_STOP = b"\xff" * 50
FRAME_HEADER = b"\x20\x4e"
FRAME_LEN = 16


def decode_wrench(raw: list[int] | tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    v = [x - 0x10000 if x >= 0x8000 else x for x in raw]
    return np.array(v[:3]) / 100.0, np.array(v[3:6]) / 1000.0


def encode_frame(force, torque) -> bytes:
    vals = [int(round(f * 100)) for f in force] + [int(round(t * 1000)) for t in torque]
    body = FRAME_HEADER + struct.pack("<6h", *vals)
    return body + struct.pack("<H", crc16_modbus(body))


def parse_stream(buf: bytearray) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Pull every valid frame out of `buf` (consumed bytes are removed). Returns (wrenches, bad frames)."""
    out, bad = [], 0
    while True:
        i = buf.find(FRAME_HEADER)
        if i < 0:
            del buf[: max(0, len(buf) - 1)]
            return out, bad
        if len(buf) < i + FRAME_LEN:
            del buf[:i]
            return out, bad
        frame = bytes(buf[i : i + FRAME_LEN])
        if crc16_modbus(frame[:14]) == struct.unpack("<H", frame[14:])[0]:
            out.append(decode_wrench(struct.unpack("<6h", frame[2:14])))
            del buf[: i + FRAME_LEN]
        else:
            bad += 1
            del buf[: i + 1]  # resync one byte on


class FT300:
    def __init__(self, port: str, baudrate: int = 19200, device_id: int = 9, timeout_s: float = 0.2):
        self.ep = Endpoint(transport="rtu", port=port, baudrate=baudrate, device_id=device_id, timeout_s=timeout_s)
        self.client = ModbusClient(self.ep, "FT300")
        self.ser: serial.Serial | None = None
        self._buf = bytearray()
        self.bad_frames = 0

    def connect(self) -> FT300:
        """Stop a stream left running (the sensor keeps streaming across a host restart or an unplugged
        adapter, as the ROS driver's stop-after-boot also assumes), then talk Modbus."""
        try:
            with serial.Serial(self.ep.port, self.ep.baudrate, timeout=0) as s:
                s.write(STREAM_STOP)
                s.flush()
        except (serial.SerialException, OSError) as e:
            raise ModbusDeviceError(f"FT300: cannot open {self.ep.port}: {e}") from e
        self.client.connect()
        return self

    def info(self) -> dict[str, str]:
        def text(regs):
            return b"".join(r.to_bytes(2, "big") for r in regs).rstrip(b"\x00").decode("ascii", "replace")

        return {
            "firmware": text(self.client.read_holding(FIRMWARE, 3)),
            "serial": text(self.client.read_holding(SERIAL, 4)),
        }

    def read_wrench(self) -> tuple[np.ndarray, np.ndarray]:
        return decode_wrench(self.client.read_holding(DATA, 6))

    def start_stream(self) -> None:
        self.client.write_registers(STREAM, [STREAM_START])
        self.client.close()
        self.ser = serial.Serial(self.ep.port, self.ep.baudrate, timeout=0)
        self._buf.clear()

    def read_frames(self, timeout: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Frames that arrive within `timeout` (at least one unless the stream is silent)."""
        fd = self.ser.fileno()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return []
            try:
                chunk = os.read(fd, 4096)
            except OSError as e:
                raise ModbusDeviceError(f"FT300 on {self.ep.port} went away: {e}") from e
            if not chunk:
                raise ModbusDeviceError(f"FT300 on {self.ep.port} went away (device disconnected)")
            self._buf += chunk
            frames, bad = parse_stream(self._buf)
            self.bad_frames += bad
            if frames:
                return frames

    def stop_stream(self) -> None:
        if self.ser is not None:
            try:
                self.ser.write(STREAM_STOP)
                self.ser.flush()
            except (serial.SerialException, OSError):
                pass
            self.ser.close()
            self.ser = None

    def close(self) -> None:
        self.stop_stream()
        self.client.close()


class FT300Node(DeviceNode):
    """`wrist/wrench` for every streamed frame; `wrist/fault` when the stream stops or the port goes."""

    def __init__(
        self, node: Node, sensor: FT300, frame_id: str = "ft300", silence_s: float = 0.2, reconnect_s: float = 0.5
    ):
        super().__init__(node, "wrist", "ft300:loop")
        self.sensor, self.frame_id = sensor, frame_id
        self.silence_s, self.reconnect_s = silence_s, reconnect_s
        self.pub = node.publisher("wrist/wrench", Wrench)
        self.frames = 0
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set() and self.node.running:
            try:
                self.sensor.connect()
                log.info("FT300 %s", self.sensor.info())
                self.sensor.start_stream()
                while not self._stop.is_set():
                    frames = self.sensor.read_frames(self.silence_s)
                    if not frames:
                        raise ModbusDeviceError(f"FT300 stream silent for {self.silence_s * 1e3:.0f} ms")
                    for f, t in frames:
                        self.pub.publish(Wrench(force=f, torque=t, frame_id=self.frame_id))
                    self.frames += len(frames)
                    self._report("", "")
            except ModbusDeviceError as e:
                self._report("no_response", str(e))
                self.sensor.close()
                self._stop.wait(self.reconnect_s)

    def close(self) -> None:
        super().close()
        self.sensor.close()


def run_ft300(
    node: Node, port: str = "/dev/ttyUSB2", baudrate: int = 19200, device_id: int = 9, frame_id: str = "ft300"
) -> FT300Node:
    """Graph entry point (`loopylab.firmware_bridge.modbus.ft300:run_ft300`)."""
    return FT300Node(node, FT300(port, baudrate, device_id), frame_id)
