"""The hot path's calls on the compiled socket (`pubsub._recv_frames`, `_has_more`, a publisher's small sends) do
what pyzmq's Python layer did: whole messages, frames in order, zmq.Again when nothing waits."""

from __future__ import annotations

import uuid

import pytest
import zmq

from loopylab.bus import pubsub


@pytest.fixture
def pair():
    ctx = zmq.Context()
    url = f"inproc://hot-{uuid.uuid4().hex[:8]}"
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    push.bind(url)
    pull.connect(url)
    yield push, pull
    push.close(0)
    pull.close(0)
    ctx.term()


def _wait_readable(sock: zmq.Socket) -> None:
    assert sock.poll(5000, zmq.POLLIN), "nothing arrived within 5 s"


@pytest.mark.parametrize("copy", [True, False])
def test_recv_frames_takes_whole_messages_in_order(pair, copy):
    push, pull = pair
    messages = [[b"t\0a", b"header"], [b"t\0a", b"h", b"x" * 100_000, b""], [b"single"]]
    for m in messages:
        push.send_multipart(m)
    got = []
    _wait_readable(pull)
    while len(got) < len(messages):
        _wait_readable(pull)
        got.append([bytes(f) if not copy else f for f in pubsub._recv_frames(pull, copy)])
    assert got == messages
    assert not pubsub._has_more(pull)
    with pytest.raises(zmq.Again):
        pubsub._recv_frames(pull, copy)


def test_recv_frames_gives_frames_without_copy_and_bytes_with(pair):
    push, pull = pair
    push.send_multipart([b"a", b"b"])
    push.send_multipart([b"c", b"d"])
    _wait_readable(pull)
    assert all(type(f) is bytes for f in pubsub._recv_frames(pull, True))
    _wait_readable(pull)
    assert all(isinstance(f, zmq.Frame) for f in pubsub._recv_frames(pull, False))


def test_has_more_sees_a_waiting_message(pair):
    push, pull = pair
    assert not pubsub._has_more(pull)
    push.send(b"x")
    _wait_readable(pull)
    assert pubsub._has_more(pull)
    pubsub._recv_frames(pull, True)
    assert not pubsub._has_more(pull)
