"""The shared-memory path for big payloads: real segments under /dev/shm, real processes, real locks.

Every test checks that it leaves no segment behind (`no_leaks`)."""
from __future__ import annotations

import gc
import os
import signal
import time

import numpy as np
import pytest

from loopylab.bus import shm
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not shm.available(), reason="needs Linux shared memory (/dev/shm, OFD locks)")


@pytest.fixture(autouse=True)
def no_leaks():
    """No test may leave a segment under /dev/shm, nor a mapping in this process."""
    before = set(shm.segments())
    yield
    gc.collect()
    shm.reader.clear()
    assert wait_until(lambda: not (set(shm.segments()) - before), 10), set(shm.segments()) - before
    assert shm.reader.holds() == 0


def frames(i: int, n: int = 300_000) -> list[np.ndarray]:
    return [np.full(n, i % 251, np.uint8), np.arange(n // 8, dtype=">f8") + i]  # non-native dtype too


def check(views: list[np.ndarray], i: int, n: int = 300_000) -> None:
    assert (views[0] == i % 251).all()
    assert (np.frombuffer(views[1], ">f8") == np.arange(n // 8) + i).all()


# -- child processes (spawned: fresh interpreters) ---------------------------------------------------

def hold_slot(descriptor: bytes, ready, gate) -> None:
    """Map a message, say so, and keep its arrays until `gate` is set (or the process is killed)."""
    views = shm.reader.open(descriptor)
    ready.set()
    gate.wait(60)
    del views


def publish_ring(queue, gate, handle_term: bool) -> None:
    """Write into a ring, hand its segment names to the parent, then wait to be stopped (or killed)."""
    if not handle_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # pretend the process has a handler: ours must not replace it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ring = shm.Ring(grace_s=0.0)
    queue.put((ring.write(frames(1)), ring.names))
    gate.wait(60)


def publish_and_return(queue) -> None:
    """Write into a ring and return without closing it: atexit must clean up."""
    ring = shm.Ring()
    queue.put(ring.names if ring.write(frames(1)) else [])


# -- the ring and the reader in one process ------------------------------------------------------------

def test_a_message_round_trips_as_read_only_views_of_one_segment():
    ring = shm.Ring()
    try:
        desc = ring.write(frames(3))
        assert desc is not None and len(desc) < 200  # only the descriptor travels
        assert ring.names and set(ring.names) <= set(shm.segments())
        views = shm.reader.open(desc)
        check(views, 3)
        assert not views[0].flags.writeable
        with pytest.raises(ValueError):
            views[0][0] = 1
        assert shm.reader.holds() == 1
        del views
        assert shm.reader.holds() == 0
    finally:
        ring.close()
    assert not set(ring.names) & set(shm.segments())


def test_a_held_slot_is_never_rewritten_and_is_reused_once_released():
    ring = shm.Ring(grace_s=0.0)
    try:
        views = shm.reader.open(ring.write(frames(1)))
        first = ring.names[0]
        for i in range(2, 6):  # every later message needs another slot: the first one is held
            ring.write(frames(i))
            check(views, 1)
        assert first in ring.names and len(ring.names) == 2
        del views
        ring.write(frames(6))
        ring.write(frames(7))
        assert len(ring.names) == 2  # released: back in use, no new slot
        assert ring.stats.fallback == ring.stats.reclaimed == 0
    finally:
        ring.close()


def test_a_slot_is_kept_for_late_subscribers_for_the_grace_time_only():
    ring = shm.Ring(grace_s=60.0, max_slots=2)
    try:
        first = ring.write(frames(1))
        ring.write(frames(2))  # within the grace time: a second slot rather than the first one
        assert len(ring.names) == 2 and ring.stats.reused_early == 0
        ring.write(frames(3))  # the ring is full: the oldest is reused early, and a late reader sees that
        assert ring.stats.reused_early == 1
        with pytest.raises(shm.Gone):
            shm.reader.open(first)
    finally:
        ring.close()


def test_a_slot_held_too_long_is_handed_over_and_the_holder_keeps_its_data():
    ring = shm.Ring(grace_s=0.0, hold_s=0.05, max_slots=1)
    try:
        views = shm.reader.open(ring.write(frames(1)))
        held = ring.names[0]
        assert ring.write(frames(2)) is None  # every slot held, none for long: frames instead
        assert ring.stats.fallback == 1
        time.sleep(0.06)
        assert ring.write(frames(3)) is not None  # held past hold_s: replaced by a new segment
        assert ring.stats.reclaimed == 1
        assert held not in shm.segments() and held not in ring.names
        check(views, 1)  # the holder's mapping outlives the unlinked segment
        del views
        shm.reader.clear()
        assert held not in shm.reader.mapped()
    finally:
        ring.close()


def test_a_bigger_payload_gets_a_bigger_segment():
    ring = shm.Ring(grace_s=0.0)
    try:
        ring.write(frames(1, 100_000))
        small = ring.names[0]
        check(shm.reader.open(ring.write(frames(2, 2_000_000))), 2, 2_000_000)
        assert small not in shm.segments() and len(ring.names) == 1
    finally:
        ring.close()


def test_bad_descriptors_are_refused():
    for bad in (b"", b"\xc1garbage", b"\x93\xa3abc\x01\x90", b"\x93\xb0loopylab.../etc\x01\x91\x92\x80\x01"):
        with pytest.raises(ValueError):
            shm.reader.open(bad)
    ring = shm.Ring()
    try:
        import msgpack
        name = ring.names[0] if ring.write(frames(1)) and ring.names else ""
        with pytest.raises(ValueError):  # spans past the end of the segment
            shm.reader.open(msgpack.packb((name, 1, [(shm.HEADER, 1 << 40)])))
        with pytest.raises(shm.Gone):  # a segment that does not exist
            shm.reader.open(msgpack.packb((shm.PREFIX + "1.1.x.0.0", 1, [(shm.HEADER, 10)])))
    finally:
        ring.close()


def test_only_ipc_uses_shared_memory(monkeypatch):
    monkeypatch.delenv(shm.ENV_MIN, raising=False)
    assert shm.min_bytes("ipc") == shm.THRESHOLD
    assert shm.min_bytes("tcp") is None and shm.min_bytes("inproc") is None
    monkeypatch.setenv(shm.ENV_MIN, "off")
    assert shm.min_bytes("ipc") is None
    monkeypatch.setenv(shm.ENV_MIN, "1000")
    assert shm.min_bytes("ipc") == 1000


# -- across processes -------------------------------------------------------------------------------------

def test_a_killed_reader_releases_its_slot(spawn):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    ready, gate = ctx.Event(), ctx.Event()
    ring = shm.Ring(grace_s=0.0, max_slots=1, hold_s=60)
    try:
        child = spawn(hold_slot, ring.write(frames(1)), ready, gate)
        assert ready.wait(30)
        assert ring.write(frames(2)) is None  # held by the child (and the ring may not grow)
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert ring.write(frames(3)) is not None  # the kernel dropped the dead reader's lock
        assert ring.stats.fallback == 1 and ring.stats.reclaimed == 0
    finally:
        ring.close()


def test_segments_of_a_killed_process_are_removed_at_the_next_start(spawn):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    q, gate = ctx.Queue(), ctx.Event()
    child = spawn(publish_ring, q, gate, True)
    desc, names = q.get(timeout=30)
    views = shm.reader.open(desc)  # a subscriber still viewing it when the publisher dies
    assert set(names) <= set(shm.segments()) and not any(shm.is_stale(n) for n in names)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert all(shm.is_stale(n) for n in names)
    assert set(names) <= set(shm.sweep_stale())
    assert not set(names) & set(shm.segments())
    check(views, 1)  # the mapping outlives the segment's name


def test_sigterm_removes_the_segments_and_still_kills(spawn):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    q, gate = ctx.Queue(), ctx.Event()
    child = spawn(publish_ring, q, gate, False)
    _, names = q.get(timeout=30)
    assert set(names) <= set(shm.segments())
    os.kill(child.pid, signal.SIGTERM)
    child.join(10)
    assert child.exitcode == -signal.SIGTERM
    assert not set(names) & set(shm.segments())


def test_exit_removes_the_segments_of_rings_left_open(spawn):
    import multiprocessing as mp
    q = mp.get_context("spawn").Queue()
    child = spawn(publish_and_return, q)
    names = q.get(timeout=30)
    child.join(10)
    assert names and child.exitcode == 0
    assert not set(names) & set(shm.segments())
