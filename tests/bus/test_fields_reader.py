"""`FieldsReader` (a subscription's fields of a one-shape stream, taken from their places in the bytes) gives exactly
what `codec.decode_fields` gives, or its error, for any stream: same shape, other numbers, other shapes, damage."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.bus import GripperCommand, JointCommand, codec
from loopylab.bus.template import FieldsReader
from tests.bus.test_fields import assert_same, floats, ints, joint_commands


def read_both(reader: FieldsReader, header: bytes):
    """The reader's answer and decode_fields', as (fields, None) or (None, error class)."""
    out = []
    for f in (reader.read, lambda h: codec.decode_fields(reader.cls, h)):
        try:
            out.append((f(header), None))
        except codec.DecodeError as e:
            out.append((None, type(e)))
    return out


def assert_reads_like_decode_fields(reader: FieldsReader, header: bytes) -> None:
    (got, err), (want, want_err) = read_both(reader, header)
    assert err is want_err
    assert_same(got, want)


def same_shape(msg: JointCommand, draw) -> JointCommand:
    """`msg` with other numbers (seq and stamp of any size, the vectors' values)."""
    return JointCommand(
        name=list(msg.name),
        position=[draw(floats) for _ in msg.position],
        velocity=[draw(floats) for _ in msg.velocity],
        seq=draw(ints),
        stamp_ns=draw(ints),
        frame_id=msg.frame_id,
    )


@settings(max_examples=60, deadline=None)
@given(joint_commands(), joint_commands(), st.data())
def test_a_stream_reads_like_decode_fields(first, other, data):
    reader = FieldsReader(JointCommand)
    stream = [first] + [same_shape(first, data.draw) for _ in range(3)] + [other, other]
    stream += [same_shape(other, data.draw) for _ in range(2)]
    for msg in stream:
        header, buffers = codec.encode(msg)
        if buffers:  # a vector too long to travel inline: a frame of its own, always decode_fields
            continue
        assert_reads_like_decode_fields(reader, header)
        at = data.draw(st.integers(0, len(header) - 1))
        damaged = header[:at] + bytes([data.draw(st.integers(0, 255))]) + header[at + 1 :]
        assert_reads_like_decode_fields(reader, damaged)
        assert_reads_like_decode_fields(reader, header[: data.draw(st.integers(0, len(header)))])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.builds(GripperCommand, position=floats, speed=floats, force=floats, seq=ints, stamp_ns=ints)))
def test_messages_of_floats_only(msgs):
    reader = FieldsReader(GripperCommand)
    for msg in msgs:
        assert_reads_like_decode_fields(reader, codec.encode(msg)[0])
        assert_reads_like_decode_fields(reader, codec.encode(JointCommand(name=["a"], position=[1.0]))[0])


def test_a_one_shape_stream_takes_the_fast_path_and_hands_out_fresh_lists():
    reader = FieldsReader(JointCommand)
    got = []
    for k in range(5):
        header, _ = codec.encode(
            JointCommand(name=["a", "b"], position=[0.5 * k, -1.0], seq=k + 1, stamp_ns=10**18 + k)
        )
        got.append(reader.read(header))
        got[-1]["name"].append("mutated by the caller")
    assert reader.hits == 4 and reader.misses == 1  # learned from the first, read the rest from their places
    assert [g["position"] for g in got] == [[0.5 * k, -1.0] for k in range(5)]
    assert [g["seq"] for g in got] == [1, 2, 3, 4, 5] and got[4]["stamp_ns"] == 10**18 + 4
    assert all(g["name"] == ["a", "b", "mutated by the caller"] for g in got)  # each its own list


def test_a_changed_shape_is_learned_after_its_second_message():
    reader = FieldsReader(JointCommand)
    for names in (["a"], ["a"], ["b"], ["b"], ["b"], ["b"]):
        reader.read(codec.encode(JointCommand(name=names, position=[1.0]))[0])
    assert (reader.misses, reader.hits) == (3, 3)  # a, b (one more of the old shape's misses), b learned


def test_a_type_it_cannot_read_is_refused_at_once():
    with pytest.raises(TypeError):
        FieldsReader(int)
