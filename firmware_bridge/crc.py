"""The three 16-bit checksums of the devices we speak to."""

from __future__ import annotations

import binascii


def _table(poly: int) -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_DXL_TABLE = _table(0x8005)


def crc16_dynamixel(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16/BUYPASS (poly 0x8005, init 0, no reflection): Dynamixel Protocol 2.0."""
    t = _DXL_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ b]
    return crc


def _modbus_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_MODBUS_TABLE = _modbus_table()


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF); sent low byte first."""
    crc, t = 0xFFFF, _MODBUS_TABLE
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


def crc16_ccitt(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): the MCU bridge frames (cheap on an AVR)."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)
