"""The control cycle's SYNC READ (`servo.cycle.CyclicSyncRead`): the fast path gives what the general one does,
and anything but the exact, error-free answer goes the general way (retries, matching, fault classes)."""

import os
import threading
import tty

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.firmware_bridge.servo.bus import MotorBus, MotorFaultError, NoResponseError, ProtocolError
from loopylab.firmware_bridge.servo.codecs import get_protocol
from loopylab.firmware_bridge.servo.cycle import CyclicSyncRead

BLOCK = {
    "dynamixel": ["Present_Current", "Present_Velocity", "Present_Position"],
    "feetech": ["Present_Position", "Present_Velocity", "Present_Load"],
}


def cyclic(bus, kind):
    addr, length = bus.block(BLOCK[kind])
    return CyclicSyncRead(bus, addr, length, list(range(1, 7)), "SYNC READ state"), addr, length


def test_the_fast_path_reads_what_the_general_path_reads_and_the_prefix_goes_out_first(bus, kind, emulator):
    read, addr, length = cyclic(bus, kind)
    t0 = bus.stats["transactions"]
    general = bus.sync_read_raw(addr, length, list(range(1, 7)))  # torque off: nothing moves
    assert read() == b"".join(general[i] for i in range(1, 7))
    assert read.fast == 1 and bus.stats["transactions"] == t0 + 2 and bus.stats["retries"] == 0
    bus.set_torque(True)
    read(bus.sync_write_packet("Goal_Position", {"elbow_flex": 1900, "gripper": 2200}))  # one write, both
    assert emulator.register(3, "Goal_Position") == 1900 and emulator.register(6, "Goal_Position") == 2200
    assert read.fast == 2


@pytest.mark.parametrize("fault", ["corrupt", "lose", "drop_bytes", "protocol_error"])
def test_a_transient_fault_falls_back_to_the_general_path_and_is_retried(bus, kind, emulator, fault):
    # exactly one retry: a loaded host's pty can hold bytes back for 200-600 ms (docs/hardware.md), which would
    # time out a try of its own; a lost reply costs this allowance once
    bus.latency_s = 1.0
    read, addr, length = cyclic(bus, kind)
    expected = read()
    setattr(emulator.faults, fault, 1)
    assert read() == expected  # torque off: nothing moves
    assert bus.stats["retries"] == 1 and emulator.faults.injected == 1 and read.fast == 1


def test_persistent_faults_keep_their_classes(bus, kind, emulator):
    read, _, _ = cyclic(bus, kind)
    emulator.faults.silent_ids = {4}
    with pytest.raises(NoResponseError) as e:
        read()
    assert e.value.label == "no_response(4)"
    emulator.faults.silent_ids = set()
    emulator.faults.protocol_error = 1000
    with pytest.raises(ProtocolError, match="after 3 tries"):
        read()
    emulator.faults.protocol_error = 0
    read()  # the bus answers again
    emulator.set_hardware_error(2, 0b100000)
    with pytest.raises(MotorFaultError) as e:
        read()
    assert e.value.label == "motor_error(2, 0x20)"


def test_stale_bytes_before_a_request_are_dropped_not_taken_as_its_answer(kind):
    """A pty whose far end is this test: an old answer lies waiting when the cycle starts; the cycle's answer
    is the one that follows its request. And a Dynamixel answer with stuffed data (FF FF FD in it), which is
    longer than the fast path reads, is finished by the general parser."""
    proto = get_protocol(kind)
    master, slave = os.openpty()
    tty.setraw(slave)
    bus = MotorBus(os.ttyname(slave), kind, {f"m{i}": i for i in range(1, 7)}, latency_s=0.3)
    bus.open()
    try:
        read, addr, length = cyclic(bus, kind)
        stale = b"".join(proto.status(i, 0, bytes([0x11]) * length) for i in range(1, 7))
        data = {i: bytes([i]) * length for i in range(1, 7)}
        if kind == "dynamixel":  # motor 2's current -1, velocity -3: FF FF FD FF ..., stuffed on the wire
            data[2] = b"\xff\xff\xfd\xff\xff\xff" + bytes(length - 6)
        answer = b"".join(proto.status(i, 0, d) for i, d in data.items())
        os.write(master, stale)

        def device(times):
            for _ in range(times):
                got = b""
                while read.request not in got:
                    got += os.read(master, 4096)
                os.write(master, answer)

        t = threading.Thread(target=device, args=(2,), daemon=True)
        t.start()
        assert read() == b"".join(data.values())  # stale input: the general way, which flushes and counts it
        assert bus.stats["stale"] >= 1 and read.fast == 0
        assert read() == b"".join(data.values())  # nothing stale now: the fast path, unless stuffed
        t.join(5)
        assert bus.stats["retries"] == 0 and read.fast == (kind == "feetech")
    finally:
        bus.close()
        os.close(master)
        os.close(slave)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["dynamixel", "feetech"]),
    st.lists(st.integers(1, 252), min_size=1, max_size=6, unique=True),
    st.integers(1, 12),
    st.data(),
)
def test_the_block_check_takes_exactly_the_error_free_answer_and_refuses_any_damaged_byte(kind, ids, n, data):
    proto = get_protocol(kind)
    datas = [data.draw(st.binary(min_size=n, max_size=n)) for _ in ids]
    buf = b"".join(proto.status(i, 0, d) for i, d in zip(ids, datas))
    check = proto.block_checker(ids, n)
    if len(buf) != len(ids) * proto.status_size(n):  # stuffed: not the fast path's (the general parser's)
        assert check(buf[: len(ids) * proto.status_size(n)]) is None
        return
    assert check(buf) == b"".join(datas)
    at = data.draw(st.integers(0, len(buf) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = buf[:at] + bytes([buf[at] ^ flip]) + buf[at + 1 :]
    assert check(damaged) is None
    error = data.draw(st.integers(1, 255))  # an error byte (any bit) is never the fast path's either
    k = data.draw(st.integers(0, len(ids) - 1))
    with_error = b"".join(proto.status(i, error if j == k else 0, d) for j, (i, d) in enumerate(zip(ids, datas)))
    assert check(with_error) is None
