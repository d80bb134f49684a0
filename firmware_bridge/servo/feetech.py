"""Feetech STS/SCS protocol and the STS3215 control table (SO-100/101 arms).

Packet: FF FF | ID | LEN | INST (or ERROR in a status) | PARAMS | CHK, LEN = len(params) + 2,
CHK = ~(ID + LEN + INST + params) & 0xFF. No stuffing, one-byte length. Values are little-endian
(STS) with sign-magnitude signs (bit 15 for positions and speeds, bit 11 for the homing offset).
The status byte is a bit field. EEPROM writes need Lock (55) = 0 first; Present = Actual - Offset.
"""

from __future__ import annotations

import struct

from loopylab.firmware_bridge.servo.protocol import CorruptPacket, Instruction, ServoProtocol, StatusPacket, make_table

HEADER = b"\xff\xff"
RESET, OFSCAL = 0x0A, 0x0B  # Feetech-only: clear multi-turn count, set current position as the middle

STS3215_ROWS = [  # (name, address, size) — Feetech STS/SMS memory table (as in LeRobot feetech/tables.py)
    ("Firmware_Major_Version", 0, 1),
    ("Firmware_Minor_Version", 1, 1),
    ("Model_Number", 3, 2),
    ("ID", 5, 1),
    ("Baud_Rate", 6, 1),
    ("Return_Delay_Time", 7, 1),
    ("Response_Status_Level", 8, 1),
    ("Min_Position_Limit", 9, 2),
    ("Max_Position_Limit", 11, 2),
    ("Max_Temperature_Limit", 13, 1),
    ("Max_Voltage_Limit", 14, 1),
    ("Min_Voltage_Limit", 15, 1),
    ("Max_Torque_Limit", 16, 2),
    ("Phase", 18, 1),
    ("Unloading_Condition", 19, 1),
    ("LED_Alarm_Condition", 20, 1),
    ("P_Coefficient", 21, 1),
    ("D_Coefficient", 22, 1),
    ("I_Coefficient", 23, 1),
    ("Minimum_Startup_Force", 24, 2),
    ("CW_Dead_Zone", 26, 1),
    ("CCW_Dead_Zone", 27, 1),
    ("Protection_Current", 28, 2),
    ("Angular_Resolution", 30, 1),
    ("Homing_Offset", 31, 2),
    ("Operating_Mode", 33, 1),
    ("Protective_Torque", 34, 1),
    ("Protection_Time", 35, 1),
    ("Overload_Torque", 36, 1),
    ("Velocity_P_Coefficient", 37, 1),
    ("Over_Current_Protection_Time", 38, 1),
    ("Velocity_I_Coefficient", 39, 1),
    ("Torque_Enable", 40, 1),
    ("Acceleration", 41, 1),
    ("Goal_Position", 42, 2),
    ("Goal_Time", 44, 2),
    ("Goal_Velocity", 46, 2),
    ("Torque_Limit", 48, 2),
    ("Lock", 55, 1),
    ("Present_Position", 56, 2),
    ("Present_Velocity", 58, 2),
    ("Present_Load", 60, 2),
    ("Present_Voltage", 62, 1),
    ("Present_Temperature", 63, 1),
    ("Status", 65, 1),
    ("Moving", 66, 1),
    ("Present_Current", 69, 2),
]
STS3215 = make_table(
    STS3215_ROWS,
    eeprom_end=40,
    read_only={
        "Firmware_Major_Version",
        "Firmware_Minor_Version",
        "Model_Number",
        "Present_Position",
        "Present_Velocity",
        "Present_Load",
        "Present_Voltage",
        "Present_Temperature",
        "Status",
        "Moving",
        "Present_Current",
    },
    signed={
        "Homing_Offset": 11,
        "Goal_Position": 15,
        "Goal_Velocity": 15,
        "Present_Position": 15,
        "Present_Velocity": 15,
        "Present_Load": 10,
    },
)

STS_MODELS = {777: "sts3215", 2825: "sts3250", 1284: "scs0009"}
STS_STALL_TORQUE = {"sts3215": 1.9, "sts3250": 4.9}  # N·m at 12 V / 7.4 V (datasheets): load % -> N·m
# Vendor SDK table (authoritative; LeRobot's codes 5-7 differ): code -> baud
BAUD_CODES = {0: 1_000_000, 1: 500_000, 2: 250_000, 3: 128_000, 4: 115_200, 5: 76_800, 6: 57_600, 7: 38_400}
STATUS_BITS = {0: "input voltage", 1: "angle sensor", 2: "overheating", 3: "overcurrent", 5: "overload"}
# Protocol 1.0's instruction-error bit, which no STS hardware status bit uses: the reply to an unknown
# instruction (the vendor SDK names only the hardware bits).
INSTRUCTION_ERROR = 0x40


class FeetechProtocol(ServoProtocol):
    name = "feetech"
    table = STS3215
    models = STS_MODELS
    baud_codes = BAUD_CODES
    resolution = 4096
    addr_size = 1
    min_status_len = 6

    @staticmethod
    def _frame(id: int, first: int, params: bytes) -> bytes:
        body = bytes((id, len(params) + 2, first)) + params
        if len(body) + 3 > 250:
            raise ValueError(f"feetech packet of {len(body) + 3} bytes exceeds 250")
        return HEADER + body + bytes((~sum(body) & 0xFF,))

    def instruction(self, id: int, instruction: int, params: bytes = b"") -> bytes:
        return self._frame(id, instruction, bytes(params))

    def status(self, id: int, error: int, params: bytes = b"") -> bytes:
        return self._frame(id, error, bytes(params))

    def status_size(self, n_data: int) -> int:
        return 6 + n_data

    def parse(self, buf, start=0, status=True):
        while True:
            i = buf.find(HEADER, start)
            if i < 0:
                return None, max(start, len(buf) - 1)
            if len(buf) < i + 5:
                return None, i
            id, n, first = buf[i + 2], buf[i + 3], buf[i + 4]
            if id == 0xFF:  # FF FF FF: the header starts one byte later
                start = i + 1
                continue
            if id > 0xFE or n < 2 or n > 248 or (status and first > 0x7F):
                raise CorruptPacket(f"feetech: bad ID {id}, length {n} or status 0x{first:02X}", i + 1)
            end = i + 4 + n
            if len(buf) < end:
                return None, i
            if (~sum(memoryview(buf)[i + 2 : end - 1]) & 0xFF) != buf[end - 1]:
                raise CorruptPacket(f"feetech: checksum mismatch in packet from ID {id}", i + 1)
            params = bytes(buf[i + 5 : end - 1])
            return (StatusPacket(id, first, params) if status else Instruction(id, first, params)), end

    def block_checker(self, ids: list[int], n: int):
        """For the exact answer to a SYNC READ of `n` bytes from `ids`: bytes -> the motors' data joined in
        order, or None unless every packet is there, error-free, from the right motor, in order, with a good
        checksum (then the general parser decides). The headers are built once."""
        heads = tuple(self.status(i, 0, bytes(n))[:5] for i in ids)
        bases = [i + n + 2 for i in ids]  # the checksum's id, length and (zero) error bytes
        whole = struct.Struct(f"{len(ids) * f'5s{n}sB'}")  # every packet's header, data and checksum at once

        def check(buf: bytes) -> bytes | None:
            try:
                vals = whole.unpack(buf)
            except struct.error:
                return None
            data = vals[1::3]
            if vals[0::3] != heads or [~(b + sum(d)) & 0xFF for b, d in zip(bases, data)] != list(vals[2::3]):
                return None
            return b"".join(data)

        return check

    def bulk_read(self, items):
        raise ValueError("Feetech STS has no BULK READ instruction; use sync_read")

    def describe_error(self, error: int) -> str:
        names = [name for bit, name in STATUS_BITS.items() if error & (1 << bit)]
        if error & INSTRUCTION_ERROR:
            names.append("instruction error")
        return ", ".join(names) or f"status 0x{error:02X}"

    def split_error(self, error: int) -> tuple[int, int]:
        return error & INSTRUCTION_ERROR, error & ~INSTRUCTION_ERROR
