"""A driver's hot path without messages or numpy: `codec.decode_fields` (a message's fields, vectors as plain
floats) against the normal decode, `FieldsTemplate` against `encode_fields` byte for byte, and polled
subscriptions that hand over fields, read together by a `PollGroup`; garbage on the wire is counted and the
reading goes on."""

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.bus import GripperCommand, GripperState, JointCommand, JointState, Node, SafetyState, codec
from loopylab.bus import pubsub as pubsub_mod
from loopylab.bus.polled import PollGroup
from loopylab.bus.template import FieldsTemplate
from tests.bus.test_malformed import TOPIC, _rogue_publisher
from tests.waiting import wait_until

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
names = st.lists(st.text(max_size=12), max_size=8)
ints = st.integers(min_value=0, max_value=2**64 - 1)


def expected_fields(msg) -> dict:
    """What decode_fields must give: the decoded message's fields, vectors as their `tolist()`."""
    return {
        f: (getattr(msg, f).tolist() if f in type(msg).VECTORS else getattr(msg, f))
        for f in codec._names(type(msg))  # every field, in order
    }


def assert_same(a, b) -> None:
    assert repr(a) == repr(b)  # (repr: nan equals nan, -0.0 differs from 0.0, float differs from int)


def assert_fields_match_decode(cls, header: bytes, buffers=()) -> None:
    """decode_fields gives the decoded message's fields, or a DecodeError exactly where the normal path
    (decode, then the subscriber's type check) refuses the message."""
    try:
        msg = codec.decode(header, buffers)
        ok = isinstance(msg, cls)
    except codec.DecodeError:
        ok = False
    if not ok:
        with pytest.raises(codec.DecodeError):
            codec.decode_fields(cls, header, buffers)
        return
    got = codec.decode_fields(cls, header, buffers)
    assert_same(got, expected_fields(msg))
    for f in cls.VECTORS:  # plain floats, no numpy anywhere (rows of floats for a 2-D array)
        flat = got[f] if getattr(msg, f).ndim == 1 else [x for row in got[f] for x in row]
        assert type(got[f]) is list and all(type(x) is float for x in flat)


@st.composite
def joint_commands(draw):
    n = draw(st.integers(0, 8))
    return JointCommand(
        name=draw(names),
        position=draw(st.lists(floats, min_size=n, max_size=n)),
        velocity=draw(st.lists(floats, max_size=8)),
        seq=draw(ints),
        stamp_ns=draw(ints),
        frame_id=draw(st.text(max_size=8)),
    )


@settings(max_examples=200, deadline=None)
@given(joint_commands())
def test_decode_fields_matches_decode_for_any_joint_command(msg):
    header, buffers = codec.encode(msg)
    assert_fields_match_decode(JointCommand, header, buffers)


@settings(max_examples=100, deadline=None)
@given(st.builds(GripperCommand, position=floats, speed=floats, force=floats, seq=ints, stamp_ns=ints))
def test_decode_fields_matches_decode_for_messages_without_vectors(msg):
    assert_fields_match_decode(GripperCommand, *codec.encode(msg))
    assert_fields_match_decode(JointCommand, *codec.encode(msg))  # another type: refused like the normal path


@settings(max_examples=300, deadline=None)
@given(joint_commands(), st.data())
def test_decode_fields_refuses_truncated_and_damaged_headers_like_decode(msg, data):
    header, _ = codec.encode(msg)
    cut = data.draw(st.integers(0, len(header)))
    assert_fields_match_decode(JointCommand, header[:cut])
    at = data.draw(st.integers(0, len(header) - 1))
    damaged = header[:at] + bytes([data.draw(st.integers(0, 255))]) + header[at + 1 :]
    assert_fields_match_decode(JointCommand, damaged)


def test_decode_fields_on_odd_but_valid_and_on_hostile_wire_forms():
    def wire(**fields):
        return msgpack.packb({"__m__": "JointCommand", **fields}, use_bin_type=True)

    cases = [
        wire(position=[1, 2.5]),  # a plain list: the message converts it
        wire(position={"__nd__": ["<f4", [2], np.array([1.5, 2], "<f4").tobytes()]}),  # another dtype
        wire(position={"__nd__": [">f8", [2], np.array([1.5, 2], ">f8").tobytes()]}),  # big-endian
        wire(position={"__nd__": ["<f8", [-1], np.array([1.5, 2]).tobytes()]}),  # numpy infers the length
        wire(position={"__nd__": ["<f8", [2, 1], np.array([1.5, 2]).tobytes()]}),  # 2-D
        wire(position={"__nd__": ["<f8", [3], np.array([1.5, 2]).tobytes()]}),  # too few bytes
        wire(position={"__nd__": ["<f8", [1], b"\x00" * 7]}),  # not a whole float
        wire(position={"__nd__": ["<f8", [1], 0]}),  # a frame that is not there
        wire(position={"__nd__": ["|O", [1], b"x"]}),  # object dtype
        wire(position="not numbers"),
        wire(position=None),
        wire(name=["a"], future_field={"__nd__": ["<f8", [1], b"\x00" * 8]}, position=[0.5]),  # a newer sender's
        wire(future_field={"__nd__": ["<f8", [2], b"\x00"]}),  # ... whose array is broken
        wire(name=[{"__m__": "WarpDrive"}]),  # an unknown type inside
        msgpack.packb({"__m__": "WarpDrive"}),
        msgpack.packb({"position": [1.0]}),  # no type at all
        msgpack.packb([1, 2, 3]),
        b"",
        b"\xc1",
    ]
    for header in cases:
        assert_fields_match_decode(JointCommand, header)
    frames = [np.arange(600, dtype="<f8")]  # a vector big enough to travel as a frame of its own
    header, buffers = codec.encode(JointCommand(position=frames[0]))
    assert buffers and codec.decode_fields(JointCommand, header, buffers)["position"] == frames[0].tolist()
    with pytest.raises(codec.UnknownType):
        codec.decode_fields(JointCommand, msgpack.packb({"__m__": "WarpDrive"}))
    with pytest.raises(codec.WrongType, match="got JointState, expected JointCommand"):
        codec.decode_fields(JointCommand, codec.encode(JointState())[0])
    with pytest.raises(TypeError):  # a type with conversions of its own
        codec.decode_fields_plan(codec.MESSAGE_TYPES["CameraInfo"])


def test_left_out_fields_take_fresh_defaults():
    header = msgpack.packb({"__m__": "JointCommand", "seq": 3})
    a, b = codec.decode_fields(JointCommand, header), codec.decode_fields(JointCommand, header)
    assert a == {"seq": 3, "stamp_ns": 0, "frame_id": "", "name": [], "position": [], "velocity": []}
    a["name"].append("x")
    assert b["name"] == [] and codec.decode_fields(JointCommand, header)["name"] == []


vec = st.lists(st.floats(width=64), min_size=5, max_size=5)


@settings(max_examples=200, deadline=None)
@given(ints, ints, vec, vec, vec)
def test_a_template_packs_exactly_what_encode_fields_packs(seq, stamp, pos, vel, eff):
    joints = ["a", "b", "c", "d", "é"]
    t = FieldsTemplate(JointState, {"position": 5, "velocity": 5, "effort": 5}, name=joints, frame_id="base")
    fields = dict(name=joints, frame_id="base", seq=seq, stamp_ns=stamp, position=pos, velocity=vel, effort=eff)
    assert t.encode(seq, stamp, (pos, vel, eff)) == codec.encode_fields(JointState, fields)[0]
    g = FieldsTemplate(GripperState, {"position": None, "effort": None}, ready=True)
    ref = codec.encode_fields(GripperState, dict(seq=seq, stamp_ns=stamp, position=pos[0], effort=eff[0], ready=True))
    assert g.encode(seq, stamp, (pos[0], eff[0])) == ref[0]


def test_a_template_hands_values_of_another_kind_to_encode_fields():
    g = FieldsTemplate(GripperState, {"position": None, "effort": None})
    for values in ((1, 2.0), (np.float64(0.5), 2.0)):  # an int packs as an int; a numpy scalar as a float
        ref = codec.encode_fields(GripperState, dict(seq=1, stamp_ns=2, position=values[0], effort=values[1]))[0]
        assert g.encode(1, 2, values) == ref
    t = FieldsTemplate(JointState, {"position": 2})
    ref = codec.encode_fields(JointState, dict(seq=1, stamp_ns=2, position=[1.0, 2.0, 3.0]))[0]
    assert t.encode(1, 2, ([1.0, 2.0, 3.0],)) == ref  # another length
    assert codec.decode(t.encode(1, 2, ([1.0, 2.0, 3.0],))).position.tolist() == [1.0, 2.0, 3.0]
    for bad in (dict(dynamic={"position": None}), dict(dynamic={"nope": 1}), dict(dynamic={}, seq=3)):
        with pytest.raises(TypeError):
            FieldsTemplate(JointState, **bad)


def _connected(pub, group) -> bool:
    group.poll()  # the polling thread opens the sockets
    pub.poll_subscriptions()
    return pub.subscribers >= 1


def test_fields_subscriptions_in_a_poll_group(inproc_url, monkeypatch):
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        cmd_pub, grip_pub = (
            a.publisher("arm/joint_command", JointCommand),
            a.publisher("gripper/command", GripperCommand),
        )
        quiet_pub = a.publisher("safety/state", SafetyState)
        cmd = b.subscribe("arm/joint_command", JointCommand, mode="latest", polled=True, fields=True)
        grip = b.subscribe("gripper/command", GripperCommand, mode="latest", polled=True, fields=True)
        quiet = b.subscribe("safety/state", SafetyState, mode="latest", polled=True)
        group = PollGroup([quiet, cmd, grip])
        assert wait_until(lambda: _connected(cmd_pub, group) and _connected(grip_pub, group), 5)
        assert wait_until(lambda: _connected(quiet_pub, group), 5)
        cmd_pub.publish(JointCommand(name=["j1", "j2"], position=[0.25, -1.5]))
        grip_pub.publish(GripperCommand(position=0.03))
        assert wait_until(lambda: group.poll() >= 0 and cmd.count and grip.count, 5)
        assert cmd.latest()["position"] == [0.25, -1.5] and cmd.latest()["name"] == ["j1", "j2"]
        assert grip.latest()["position"] == 0.03 and quiet.latest() is None
        # nothing came: the group asks no socket (one poll of their descriptors, no ZMQ_EVENTS each)
        looks = []
        monkeypatch.setattr(pubsub_mod, "_has_more", lambda s: looks.append(s) or bool(s.get(pubsub_mod._EVENTS) & 1))
        assert group.poll() == 0 and looks == []
        quiet_pub.publish(SafetyState(estop=True))
        assert wait_until(lambda: group.poll() >= 0 and quiet.latest() is not None, 5)
        assert quiet.latest().estop and cmd.count == 1 and grip.count == 1


def test_a_burst_past_one_look_is_read_whole_without_another_wake_up(inproc_url):
    """A queue-mode subscription reads at most 1000 messages a look; the rest must not wait for a message that
    may never come (nothing wakes the descriptor for what was already there)."""
    n = 2500
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("arm/joint_command", JointCommand, hwm=10 * n)
        sub = b.subscribe("arm/joint_command", JointCommand, polled=True, fields=True, queue_size=10 * n)
        group = PollGroup([sub])
        assert wait_until(lambda: _connected(pub, group), 5)
        for i in range(n):
            pub.publish(JointCommand(position=[float(i)]))
        assert wait_until(lambda: group.poll() >= 0 and sub.count == n, 10)
        assert [sub.get(timeout=0)["position"][0] for _ in range(n)] == [float(i) for i in range(n)]


def test_garbage_on_a_fields_subscription_is_counted_and_reading_goes_on(inproc_url):
    with Node("victim", inproc_url) as node:
        sub = node.subscribe(TOPIC, JointState, mode="queue", polled=True, fields=True)
        group = PollGroup([sub])
        rogue = _rogue_publisher(inproc_url)
        assert wait_until(lambda: group.poll() >= 0 and rogue.poll(0), 5)
        assert rogue.recv().startswith(b"\x01" + TOPIC.encode())
        prefix = f"{TOPIC}\0rogue".encode()
        good, _ = codec.encode(JointState(name=["j"], position=[1.0], seq=7))
        for frames in (
            [prefix],  # no header
            [prefix, good[: len(good) // 2]],  # truncated
            [prefix, msgpack.packb({"__m__": "JointState", "position": "not numbers"})],
            [prefix, msgpack.packb({"__m__": "WarpDrive"})],
            [prefix, codec.encode(JointCommand())[0]],  # another type
            [prefix, good],
        ):
            rogue.send_multipart(frames)
        assert wait_until(lambda: group.poll() >= 0 and sub.count == 1, 5)
        assert sub.get(timeout=0)["position"] == [1.0]
        assert node.stats["malformed"] == 3 and node.stats["unknown_type"] == 1 and node.stats["wrong_type"] == 1
        rogue.close()


def test_fields_needs_a_message_type_it_can_read(inproc_url):
    with Node("x", inproc_url) as node:
        for kwargs in (dict(msg_type=None), dict(msg_type=JointState, raw=True)):
            with pytest.raises(ValueError, match="fields=True"):
                node.subscribe("t", fields=True, **kwargs)
        with pytest.raises(TypeError):
            node.subscribe("t", codec.MESSAGE_TYPES["CameraInfo"], fields=True)
