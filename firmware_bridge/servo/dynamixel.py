"""Dynamixel Protocol 2.0 and the X-series control table.

Packet: FF FF FD 00 | ID | LEN_L LEN_H | INST | PARAMS | CRC_L CRC_H, LEN = 1 + len(params) + 2.
Inside INST+PARAMS every FF FF FD gets an extra FD (byte stuffing) so the header never appears in a
body; the CRC (poly 0x8005, init 0) covers the stuffed bytes. Status packets carry INST 0x55 and an
error byte: bit 7 is the hardware alert (read Hardware_Error_Status), bits 0-6 an error number.
"""

from __future__ import annotations

from loopylab.firmware_bridge.crc import crc16_dynamixel
from loopylab.firmware_bridge.servo.protocol import (
    BROADCAST_ID,
    BULK_READ,
    CorruptPacket,
    Instruction,
    ServoProtocol,
    StatusPacket,
    make_table,
)

HEADER = b"\xff\xff\xfd"
STATUS = 0x55
MAX_LEN = 1024  # longer than any packet we send or expect; guards against a corrupted length

X_SERIES_ROWS = [  # (name, address, size) — ROBOTIS e-Manual, X-series (XL330/XL430/XM430/XM540/XH430)
    ("Model_Number", 0, 2),
    ("Model_Information", 2, 4),
    ("Firmware_Version", 6, 1),
    ("ID", 7, 1),
    ("Baud_Rate", 8, 1),
    ("Return_Delay_Time", 9, 1),
    ("Drive_Mode", 10, 1),
    ("Operating_Mode", 11, 1),
    ("Secondary_ID", 12, 1),
    ("Protocol_Type", 13, 1),
    ("Homing_Offset", 20, 4),
    ("Moving_Threshold", 24, 4),
    ("Temperature_Limit", 31, 1),
    ("Max_Voltage_Limit", 32, 2),
    ("Min_Voltage_Limit", 34, 2),
    ("PWM_Limit", 36, 2),
    ("Current_Limit", 38, 2),
    ("Acceleration_Limit", 40, 4),
    ("Velocity_Limit", 44, 4),
    ("Max_Position_Limit", 48, 4),
    ("Min_Position_Limit", 52, 4),
    ("Shutdown", 63, 1),
    ("Torque_Enable", 64, 1),
    ("LED", 65, 1),
    ("Status_Return_Level", 68, 1),
    ("Registered_Instruction", 69, 1),
    ("Hardware_Error_Status", 70, 1),
    ("Velocity_I_Gain", 76, 2),
    ("Velocity_P_Gain", 78, 2),
    ("Position_D_Gain", 80, 2),
    ("Position_I_Gain", 82, 2),
    ("Position_P_Gain", 84, 2),
    ("Feedforward_2nd_Gain", 88, 2),
    ("Feedforward_1st_Gain", 90, 2),
    ("Bus_Watchdog", 98, 1),
    ("Goal_PWM", 100, 2),
    ("Goal_Current", 102, 2),
    ("Goal_Velocity", 104, 4),
    ("Profile_Acceleration", 108, 4),
    ("Profile_Velocity", 112, 4),
    ("Goal_Position", 116, 4),
    ("Realtime_Tick", 120, 2),
    ("Moving", 122, 1),
    ("Moving_Status", 123, 1),
    ("Present_PWM", 124, 2),
    ("Present_Current", 126, 2),
    ("Present_Velocity", 128, 4),
    ("Present_Position", 132, 4),
    ("Velocity_Trajectory", 136, 4),
    ("Position_Trajectory", 140, 4),
    ("Present_Input_Voltage", 144, 2),
    ("Present_Temperature", 146, 1),
]
X_SERIES = make_table(
    X_SERIES_ROWS,
    eeprom_end=64,
    read_only={
        "Model_Number",
        "Model_Information",
        "Firmware_Version",
        "Registered_Instruction",
        "Hardware_Error_Status",
        "Realtime_Tick",
        "Moving",
        "Moving_Status",
        "Present_PWM",
        "Present_Current",
        "Present_Velocity",
        "Present_Position",
        "Velocity_Trajectory",
        "Position_Trajectory",
        "Present_Input_Voltage",
        "Present_Temperature",
    },
    signed=dict.fromkeys(
        (
            "Homing_Offset",
            "Goal_PWM",
            "Goal_Current",
            "Goal_Velocity",
            "Goal_Position",
            "Present_PWM",
            "Present_Current",
            "Present_Velocity",
            "Present_Position",
            "Velocity_Trajectory",
            "Position_Trajectory",
        ),
        "twos",
    ),
)

X_MODELS = {
    1060: "xl430-w250",
    1020: "xm430-w350",
    1030: "xm430-w210",
    1120: "xm540-w270",
    1190: "xl330-m077",
    1200: "xl330-m288",
    1070: "xc430-w150",
}
# Present_Current unit (A per tick) and torque constant (N·m/A), for efforts in N·m (datasheet values).
X_CURRENT_UNIT = {"xl330-m077": 0.001, "xl330-m288": 0.001}  # others: 2.69 mA
X_TORQUE_CONSTANT = {
    "xl430-w250": 1.0,
    "xm430-w350": 1.9,
    "xm430-w210": 1.3,
    "xm540-w270": 3.1,
    "xl330-m077": 0.16,
    "xl330-m288": 0.35,
    "xc430-w150": 0.9,
}
BAUD_CODES = {0: 9600, 1: 57600, 2: 115200, 3: 1_000_000, 4: 2_000_000, 5: 3_000_000, 6: 4_000_000, 7: 4_500_000}
OPERATING_MODES = {
    "current": 0,
    "velocity": 1,
    "position": 3,
    "extended_position": 4,
    "current_based_position": 5,
    "pwm": 16,
}
ERRORS = {
    1: "result fail",
    2: "instruction error",
    3: "CRC error",
    4: "data range error",
    5: "data length error",
    6: "data limit error",
    7: "access error",
}
ALERT_BITS = 0x80  # split_error's stand-in for "hardware alert: bits in Hardware_Error_Status"
HARDWARE_ERRORS = {0: "input voltage", 2: "overheating", 3: "motor encoder", 4: "electrical shock", 5: "overload"}


def stuff(body: bytes) -> bytes:
    return body.replace(b"\xff\xff\xfd", b"\xff\xff\xfd\xfd")


def unstuff(body: bytes) -> bytes:
    return body.replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")


def describe_hardware_error(bits: int) -> str:
    names = [name for bit, name in HARDWARE_ERRORS.items() if bits & (1 << bit)]
    return ", ".join(names) or f"hardware error 0x{bits:02X}"


class DynamixelProtocol(ServoProtocol):
    name = "dynamixel"
    table = X_SERIES
    models = X_MODELS
    baud_codes = BAUD_CODES
    resolution = 4096
    addr_size = 2
    has_bulk_read = True
    min_status_len = 11

    def _frame(self, id: int, first: int, body: bytes) -> bytes:
        body = stuff(bytes((first,)) + body)
        n = len(body) + 2
        pkt = HEADER + bytes((0, id, n & 0xFF, n >> 8)) + body
        crc = crc16_dynamixel(pkt)
        return pkt + bytes((crc & 0xFF, crc >> 8))

    def instruction(self, id: int, instruction: int, params: bytes = b"") -> bytes:
        return self._frame(id, instruction, bytes(params))

    def status(self, id: int, error: int, params: bytes = b"") -> bytes:
        return self._frame(id, STATUS, bytes((error,)) + bytes(params))

    def status_size(self, n_data: int) -> int:
        return 11 + n_data

    def parse(self, buf, start=0, status=True):
        while True:
            i = buf.find(HEADER, start)
            if i < 0:
                return None, max(start, len(buf) - 2)  # a header may straddle the end
            if len(buf) < i + 7:
                return None, i
            if buf[i + 3] == 0xFD:  # FF FF FD FD is stuffed data, not a header
                start = i + 1
                continue
            n = buf[i + 5] | (buf[i + 6] << 8)
            if buf[i + 3] != 0 or n < 3 or n > MAX_LEN:
                raise CorruptPacket(f"dynamixel: bad reserved byte or length {n}", i + 1)
            end = i + 7 + n
            if len(buf) < end:
                return None, i
            crc = buf[end - 2] | (buf[end - 1] << 8)
            if crc16_dynamixel(memoryview(buf)[i : end - 2]) != crc:
                raise CorruptPacket(f"dynamixel: CRC mismatch in packet from ID {buf[i + 4]}", i + 1)
            body = unstuff(bytes(buf[i + 7 : end - 2]))
            id, first = buf[i + 4], body[0]
            if status:
                if first != STATUS or len(body) < 2:
                    raise CorruptPacket(f"dynamixel: expected a status packet, got instruction 0x{first:02X}", end)
                return StatusPacket(id, body[1], body[2:]), end
            if first == STATUS:
                raise CorruptPacket("dynamixel: expected an instruction, got a status packet", end)
            return Instruction(id, first, body[1:]), end

    def block_checker(self, ids: list[int], n: int):
        """For the exact answer to a SYNC READ of `n` bytes from `ids`: bytes -> the motors' data joined in
        order, or None unless every packet is there, error-free and unstuffed, from the right motor, in order,
        with a good CRC (then the general parser decides). The headers and their CRC are computed once."""
        size = self.status_size(n)
        spans = []
        for k, i in enumerate(ids):
            head = self.status(i, 0, bytes(n))[:9]
            spans.append((k * size, head, crc16_dynamixel(head)))
        crc = crc16_dynamixel

        def check(buf: bytes) -> bytes | None:
            out = []
            for at, head, init in spans:
                d = buf[at + 9 : at + 9 + n]
                if buf[at : at + 9] != head or crc(d, init) != buf[at + 9 + n] | buf[at + 10 + n] << 8:
                    return None
                out.append(d)
            return b"".join(out)

        return check

    def bulk_read(self, items: list[tuple[int, int, int]]) -> bytes:
        """BULK READ of (id, address, length) triples: each motor answers in turn."""
        body = b"".join(bytes((id,)) + addr.to_bytes(2, "little") + n.to_bytes(2, "little") for id, addr, n in items)
        return self.instruction(BROADCAST_ID, BULK_READ, body)

    def describe_error(self, error: int) -> str:
        parts = []
        if error & 0x7F:
            parts.append(ERRORS.get(error & 0x7F, f"error number {error & 0x7F}"))
        if error & 0x80:
            parts.append("hardware alert (see Hardware_Error_Status)")
        return ", ".join(parts)

    def is_alert_only(self, error: int) -> bool:
        return error == 0x80

    def split_error(self, error: int) -> tuple[int, int]:
        """Bits 0-6: the error number of this request; bit 7: the alert (ALERT_BITS: read
        Hardware_Error_Status for the hardware error bits)."""
        return error & 0x7F, ALERT_BITS if error & 0x80 else 0
