"""Servo packet codecs: round trips, single-byte corruption, value encodings, vendor-SDK byte identity."""

import os
import pty
import select

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.firmware_bridge.servo import CorruptPacket, Instruction, StatusPacket, get_protocol
from loopylab.firmware_bridge.servo.dynamixel import X_SERIES, describe_hardware_error
from loopylab.firmware_bridge.servo.feetech import STS3215

KINDS = ["dynamixel", "feetech"]
ids = st.integers(0, 0xFD)
payload = st.binary(max_size=60)
# Dynamixel bodies rich in FF FF FD so that stuffing is exercised
dxl_payload = st.lists(
    st.sampled_from([b"\xff", b"\xfd", b"\x00", b"\xff\xff\xfd"]) | st.binary(max_size=3), max_size=20
).map(b"".join)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None)
@given(id=ids, inst=st.sampled_from([1, 2, 3, 4, 5, 8, 0x82, 0x83]), params=payload | dxl_payload)
def test_instruction_round_trip(kind, id, inst, params):
    proto = get_protocol(kind)
    assert proto.decode(proto.instruction(id, inst, params), status=False) == Instruction(id, inst, params)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None)
@given(id=ids, error=st.integers(0, 0x7F), params=payload | dxl_payload)
def test_status_round_trip(kind, id, error, params):
    proto = get_protocol(kind)
    assert proto.decode(proto.status(id, error, params)) == StatusPacket(id, error, params)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150, deadline=None)
@given(id=ids, error=st.integers(0, 0x7F), params=payload | dxl_payload, data=st.data())
def test_any_single_corrupted_byte_is_rejected(kind, id, error, params, data):
    proto = get_protocol(kind)
    pkt = bytearray(proto.status(id, error, params))
    pos = data.draw(st.integers(0, len(pkt) - 1))
    pkt[pos] = data.draw(st.integers(0, 255).filter(lambda b: b != pkt[pos]))
    with pytest.raises(CorruptPacket):
        proto.decode(bytes(pkt))


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None)
@given(
    packets=st.lists(st.tuples(ids, st.integers(0, 0x7F), payload | dxl_payload), min_size=1, max_size=5),
    noise=st.binary(max_size=8),
)
def test_stream_parsing_skips_noise_and_finds_every_packet(kind, packets, noise):
    """Leading garbage (noise from a half-sent packet) never hides or alters the packets after it."""
    proto = get_protocol(kind)
    noise = noise.replace(b"\xff", b"\x00")  # noise without header bytes cannot start a packet
    stream = noise + b"".join(proto.status(*p) for p in packets)
    found, start = [], 0
    while True:
        pkt, start = proto.parse(stream, start)
        if pkt is None:
            break
        found.append((pkt.id, pkt.error, pkt.params))
    assert found == packets


@settings(max_examples=200, deadline=None)
@given(value=st.integers(-(2**31), 2**31 - 1))
def test_dynamixel_values_are_twos_complement(value):
    proto = get_protocol("dynamixel")
    reg = X_SERIES["Goal_Position"]
    raw = proto.encode_value(reg, value)
    assert raw == value.to_bytes(4, "little", signed=True)
    assert proto.decode_value(reg, raw) == value


@settings(max_examples=200, deadline=None)
@given(value=st.integers(-2047, 2047))
def test_feetech_values_are_sign_magnitude(value):
    proto = get_protocol("feetech")
    reg = STS3215["Homing_Offset"]  # sign bit 11
    raw = proto.encode_value(reg, value)
    word = int.from_bytes(raw, "little")
    assert word == (abs(value) | (0x800 if value < 0 else 0))
    assert proto.decode_value(reg, raw) == value


def test_feetech_magnitude_overflow_is_a_clear_error():
    with pytest.raises(ValueError, match="Homing_Offset: magnitude 2073"):
        get_protocol("feetech").encode_value(STS3215["Homing_Offset"], -2073)


def test_known_packets_from_the_reference():
    assert get_protocol("dynamixel").ping(1) == bytes.fromhex("FFFFFD0001030001194E")
    assert get_protocol("feetech").ping(1) == bytes.fromhex("FFFF010201FB")
    assert get_protocol("feetech").decode(bytes.fromhex("FFFF010200FC")) == StatusPacket(1, 0, b"")


def test_error_descriptions():
    dxl = get_protocol("dynamixel")
    assert dxl.describe_error(0x83) == "CRC error, hardware alert (see Hardware_Error_Status)"
    assert dxl.is_alert_only(0x80) and not dxl.is_alert_only(0x81)
    assert describe_hardware_error(0b100100) == "overheating, overload"
    assert get_protocol("feetech").describe_error(0x24) == "overheating, overload"


# ---- byte identity with the vendor SDKs (they write to a real pty; we read the master side) ----


def _capture(open_port, send) -> bytes:
    master, slave = pty.openpty()
    path = os.ttyname(slave)
    port = open_port(path)
    try:
        send(port)
        out = b""
        while select.select([master], [], [], 0.05)[0]:
            out += os.read(master, 4096)
        return out
    finally:
        port.closePort()
        os.close(master)
        os.close(slave)


def _dxl_port(path):
    import dynamixel_sdk as sdk

    port = sdk.PortHandler(path)
    assert port.openPort()
    return port


def _ft_port(path):
    import scservo_sdk as sdk

    port = sdk.PortHandler(path)
    assert port.openPort()
    return port


def test_dynamixel_packets_match_the_vendor_sdk():
    import dynamixel_sdk as sdk

    ph, ours = sdk.PacketHandler(2.0), get_protocol("dynamixel")
    goal = {1: 2048, 2: 1000, 3: -5}

    def sync_write(port):
        g = sdk.GroupSyncWrite(port, ph, 116, 4)
        for i, v in goal.items():
            g.addParam(i, list((v & 0xFFFFFFFF).to_bytes(4, "little")))
        g.txPacket()

    def sync_read(port):
        g = sdk.GroupSyncRead(port, ph, 126, 10)
        for i in (1, 2, 3, 4, 5, 6):
            g.addParam(i)
        g.txPacket()

    def bulk_read(port):
        g = sdk.GroupBulkRead(port, ph)
        g.addParam(1, 132, 4)
        g.addParam(7, 70, 1)
        g.txPacket()

    cases = [
        (lambda p: ph.readTx(p, 3, 132, 4), ours.read(3, 132, 4)),
        (lambda p: ph.writeTxOnly(p, 5, 116, 4, [0x00, 0xFF, 0xFD, 0x00]), ours.write(5, 116, b"\x00\xff\xfd\x00")),
        (lambda p: ph.write1ByteTxOnly(p, 254, 64, 1), ours.write(254, 64, b"\x01")),
        (sync_write, ours.sync_write(116, 4, {i: (v & 0xFFFFFFFF).to_bytes(4, "little") for i, v in goal.items()})),
        (sync_read, ours.sync_read(126, 10, [1, 2, 3, 4, 5, 6])),
        (bulk_read, ours.bulk_read([(1, 132, 4), (7, 70, 1)])),
        (lambda p: ph.txPacket(p, [0] * 4 + [1, 3, 0, 1] + [0, 0]), ours.ping(1)),
        (lambda p: ph.txPacket(p, [0] * 4 + [2, 3, 0, 8] + [0, 0]), ours.reboot(2)),
    ]
    for send, expected in cases:
        assert _capture(_dxl_port, send) == expected


def test_feetech_packets_match_the_vendor_sdk():
    import scservo_sdk as sdk

    ph, ours = sdk.PacketHandler(0), get_protocol("feetech")

    def sync_write(port):
        g = sdk.GroupSyncWrite(port, ph, 42, 2)
        for i, v in {1: 2048, 2: 100, 6: 4095}.items():
            g.addParam(i, [v & 0xFF, v >> 8])
        g.txPacket()

    def sync_read(port):
        g = sdk.GroupSyncRead(port, ph, 56, 6)
        for i in range(1, 7):
            g.addParam(i)
        g.txPacket()

    cases = [
        (lambda p: ph.readTx(p, 3, 56, 2), ours.read(3, 56, 2)),
        (lambda p: ph.write2ByteTxOnly(p, 4, 42, 3000), ours.write(4, 42, (3000).to_bytes(2, "little"))),
        (lambda p: ph.write1ByteTxOnly(p, 1, 55, 0), ours.write(1, 55, b"\x00")),
        (sync_write, ours.sync_write(42, 2, {1: b"\x00\x08", 2: b"\x64\x00", 6: b"\xff\x0f"})),
        (sync_read, ours.sync_read(56, 6, [1, 2, 3, 4, 5, 6])),
        (lambda p: ph.txPacket(p, [0, 0, 1, 2, 1, 0]), ours.ping(1)),
    ]
    for send, expected in cases:
        assert _capture(_ft_port, send) == expected


def test_dynamixel_stuffing_follows_the_spec_where_the_python_sdk_does_not():
    """The vendor's Python SDK (4.1.0) drops its own stuffing: `addStuffing` builds a new list that
    `txPacket` discards, so FF FF FD goes out unstuffed with the CRC over the unstuffed bytes. We follow
    the protocol (and the vendor's C SDK); this test pins both so a fixed SDK shows up here."""
    import dynamixel_sdk as sdk

    from loopylab.firmware_bridge.crc import crc16_dynamixel

    ph, ours = sdk.PacketHandler(2.0), get_protocol("dynamixel")
    sent = _capture(_dxl_port, lambda p: ph.writeTxOnly(p, 5, 116, 4, [0xFF, 0xFF, 0xFD, 0x00]))
    ours_pkt = ours.write(5, 116, b"\xff\xff\xfd\x00")
    assert ours_pkt[5:7] == b"\x0a\x00" and ours_pkt[10:15] == b"\xff\xff\xfd\xfd\x00"  # LEN 10, stuffed
    crc = crc16_dynamixel(ours_pkt[:-2])
    assert ours_pkt[-2:] == bytes((crc & 0xFF, crc >> 8))
    assert ours.decode(ours_pkt, status=False).params == b"\x74\x00\xff\xff\xfd\x00"
    unstuffed = b"\xff\xff\xfd\x00\x05\x09\x00\x03\x74\x00\xff\xff\xfd\x00"
    c = crc16_dynamixel(unstuffed)
    assert sent == unstuffed + bytes((c & 0xFF, c >> 8))


def test_the_protocol_base_never_imports_a_codec_back():
    """servo.protocol is what the codecs build on; the registry by name lives in servo.codecs (no module cycle)."""
    import ast

    from loopylab.firmware_bridge.servo import protocol

    tree = ast.parse(open(protocol.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m and m.startswith("loopylab")}
    with pytest.raises(ValueError, match="unknown servo kind 'can'"):
        get_protocol("can")
