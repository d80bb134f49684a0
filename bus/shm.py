"""Shared memory for big payloads between the processes of one host (ipc graphs).

From `THRESHOLD` bytes of array frames on, a publisher on an ipc graph copies the frames into a slot of its
own ring of shared-memory segments and sends only a descriptor over ZeroMQ (segment name, sequence number,
where each frame lies). Subscribers map the segment once and hand out read-only numpy views of it: no
kernel copy on either side and no copy at all on the subscriber. A producer that builds its payload in a
loaned slot in the first place (`Ring.loan`, `Publisher.loan`) saves the publisher's copy too.

    /dev/shm/loopylab.<pid>.<start>.<ring>.<slot>.<gen>      one segment per slot; the pid and start time of
                                                              its creator say whether it is stale

Lifetimes are explicit, and kept by the kernel, not by messages:
- A subscriber takes a shared lock on the slot (an OFD byte-range lock, `F_OFD_SETLK`) when a descriptor
  arrives and checks that the slot still holds that sequence number; it releases the lock when the last
  array viewing the slot is garbage. The publisher rewrites a slot only under an exclusive lock, so a
  reader never sees a slot change under it. The kernel drops the locks of a process that dies: a crashed
  subscriber never holds a slot, and never blocks the publisher.
- The publisher reuses the oldest unlocked slot once `grace_s` has passed since its publication (time for
  every subscriber to take it), else grows the ring (up to `max_slots` and `max_bytes`), else reuses the
  oldest unlocked slot anyway: a subscriber that had not taken it by then drops that message and counts
  it (`node.stats["shm_late"]`). A slot that a live subscriber holds for longer than `hold_s` is handed over:
  the publisher unlinks it (the holder's mapping stays valid until it lets go) and makes a new one
  (`reclaimed`). When every slot is held and none for that long, the message goes as ordinary frames
  (`fallback`). The publisher never waits.
- A loaned slot is the publisher's own (exclusively locked, sequence number 0) until the message holding the
  loaned array is published, in place, or until the array is garbage or released unpublished: then it is
  free at once. After publication the slot follows the rules above, and is not reused either while the
  publisher's own array still views it (it is a reader like the others; past `hold_s` it is handed over).
- No segment outlives the graph: a ring unlinks its segments when its publisher closes, at exit and on
  SIGTERM; segments of a process that was killed are found by their creator's pid and start time and
  removed at the next start (`sweep_stale`).

Direct files under /dev/shm (what `shm_open` does on Linux) rather than `multiprocessing.shared_memory`:
before Python 3.13 its resource tracker unlinks a segment when any process that attached it exits, and
OFD locks need the file descriptor. Linux only; elsewhere `available()` is False and frames go as before.
"""

from __future__ import annotations

import atexit
import collections
import fcntl
import logging
import mmap
import os
import signal
import struct
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import msgpack
import numpy as np

log = logging.getLogger("loopylab.bus.shm")

SHM_DIR = "/dev/shm"
PREFIX = "loopylab."
# Payloads (sum of a message's array frames) from this size go through shared memory on ipc graphs.
# Measured with `benchmarks/bus_latency.py --threshold` (docs/bus.md, "Shared memory"); override with
# LOOPYLAB_SHM_MIN=<bytes>, or LOOPYLAB_SHM_MIN=off to send every message as frames.
THRESHOLD = 256 * 1024
ENV_MIN = "LOOPYLAB_SHM_MIN"

HEADER = 128  # slot header: magic, sequence number; frames start 128-byte aligned (as Arrow does)
ALIGN = 64
_MAGIC = b"llshm\x00\x00\x01"
_SEQ = struct.Struct("<Q")
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on Linux (64-bit off_t); OFD locks need l_pid == 0
_NO_DATA = np.empty(0, np.uint8)
_GROW = 64 * 1024
NO_SPACE_S = 5.0  # after /dev/shm ran out: how long a ring makes do with the slots it has  # slot capacities are rounded up to this: a payload that grows a little reuses its slot


def available() -> bool:
    """Whether this host offers the shared-memory path (Linux: /dev/shm and OFD locks)."""
    return sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK") and os.access(SHM_DIR, os.W_OK)


def min_bytes(transport: str) -> int | None:
    """The payload size from which a publisher on `transport` uses shared memory; None when it never does.

    Only ipc: tcp may reach other hosts (the same topics then go as ordinary frames, with no change in the
    nodes), and inproc frames already travel between threads as pointers, without a copy."""
    if transport != "ipc" or not available():
        return None
    env = os.environ.get(ENV_MIN, "").strip().lower()
    if env in ("off", "no", "false", "none"):
        return None
    try:
        return max(1, int(env)) if env else THRESHOLD
    except ValueError:
        log.warning("%s=%r is not a size in bytes; using %d", ENV_MIN, env, THRESHOLD)
        return THRESHOLD


# -- locks and names ---------------------------------------------------------------------------------------


def _lock(fd: int, kind: int) -> bool:
    """Take (F_RDLCK / F_WRLCK) or drop (F_UNLCK) this open file's lock on byte 0, without waiting."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, 0, 1, 0))
        return True
    except OSError:
        return False


def _start_time(pid: int) -> str | None:
    """When a process started (clock ticks since boot): with the pid, names one process for good."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rpartition(b")")[2].split()[19].decode()


_SELF = f"{os.getpid()}.{_start_time(os.getpid()) or 0}"
_SELF_PID = os.getpid()


def _self_tag() -> str:
    global _SELF, _SELF_PID
    if os.getpid() != _SELF_PID:  # a forked child names its segments as itself
        _SELF_PID = os.getpid()
        _SELF = f"{_SELF_PID}.{_start_time(_SELF_PID) or 0}"
    return _SELF


def segments() -> list[str]:
    """Names of this user's loopylab segments under /dev/shm (live or stale)."""
    uid = os.getuid()
    try:
        with os.scandir(SHM_DIR) as it:
            return sorted(e.name for e in it if e.name.startswith(PREFIX) and _owned(e, uid))
    except OSError:
        return []


def _owned(entry: os.DirEntry, uid: int) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_uid == uid
    except OSError:
        return False


def is_stale(name: str) -> bool:
    """A segment whose creating process no longer runs (its pid is gone or belongs to a newer process)."""
    parts = name[len(PREFIX) :].split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        return True
    return _start_time(int(parts[0])) != parts[1]


def sweep_stale() -> list[str]:
    """Unlink this user's segments whose creator is gone (killed before it could clean up). Returns them."""
    removed = []
    for name in segments():
        if is_stale(name):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                removed.append(name)
            except OSError:
                pass
    if removed:
        log.info("removed %d shared-memory segments of processes that are gone", len(removed))
    return removed


_swept = False


def sweep_once() -> None:
    """`sweep_stale()` the first time a process asks (the next start after a crash cleans up)."""
    global _swept
    if not _swept:
        _swept = True
        sweep_stale()


# -- publisher side ------------------------------------------------------------------------------------


@dataclass
class _Slot:
    index: int
    gen: int
    name: str
    fd: int
    mm: mmap.mmap
    data: np.ndarray  # the whole mapping, writable, as bytes
    capacity: int
    addr: int  # where the mapping starts in this process: finds the slot a loaned array lives in
    published: float = -1e9  # monotonic time of the last publication; never: long ago
    loan: _Loan | None = None  # lent out (not yet published), or published while the loaned array lives

    def close(self, unlink: bool = True) -> None:
        if unlink:
            try:
                os.unlink(os.path.join(SHM_DIR, self.name))
            except OSError:
                pass
        self.data = _NO_DATA  # the mapping can close only once nothing exports its buffer
        self.loan = None
        try:
            self.mm.close()
        except BufferError:  # a loaned array still views it: the mapping goes with its last view
            pass
        os.close(self.fd)


@dataclass(eq=False)
class _Loan:
    """The bytes [start, end) (addresses in this process) of a slot lent to a producer."""

    slot: _Slot
    start: int
    end: int
    published: bool = False


@dataclass
class RingStats:
    published: int = 0  # messages written into the ring
    fallback: int = 0  # sent as ordinary frames: every slot was held (or no memory for one)
    reclaimed: int = 0  # slots held past hold_s, handed over to their holder and replaced
    reused_early: int = 0  # slots reused before grace_s: late subscribers drop that message (shm_late)
    loaned: int = 0  # slots lent out (`loan`)
    in_place: int = 0  # of `published`: sent from a loaned slot, with no copy
    returned: int = 0  # loans given back unpublished (garbage or released)


@dataclass(eq=False)  # compared (and hashed) by identity
class Ring:
    """A publisher's slots. Its publisher writes and lends under the publisher's lock; the ring's own mutex is
    for close() at exit or on a signal, and for loans that come back from finalizers, on any thread."""

    # A subscriber takes a slot within a millisecond of its publication on a quiet host; on a loaded one its I/O
    # thread can stall for a hundred or more. 0.25 s keeps 8 slots of a 30 Hz stream (50 MB of 1080p colour); a
    # longer grace means a bigger ring, colder slots and more slots made while a stream starts (each ~1 ms).
    grace_s: float = 0.25
    hold_s: float = 2.0
    max_slots: int = 32
    max_bytes: int = 256 * 1024 * 1024
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    stats: RingStats = field(default_factory=RingStats)

    def __post_init__(self) -> None:
        self._slots: list[_Slot] = []  # oldest publication first
        self._seq = 0
        self._count = 0  # slots ever added (names their index)
        self._grow_after = 0.0  # after /dev/shm was full: no new slot (nor a warning per message) before then
        self._closed = False
        self._mutex = threading.Lock()  # write vs close (at exit or on a signal, from another thread)
        self._loans: list[_Loan] = []  # lent out, not yet published
        self._returns: collections.deque[_Loan] = collections.deque()  # loaned arrays that became garbage
        self._pid = os.getpid()
        _register(self)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._slots]

    def write(self, buffers: list[Any]) -> bytes | None:
        """Copy the frames into a free slot (or none, when they all lie in a loaned slot already); the
        descriptor to send, or None to send them as frames."""
        with self._mutex:
            if self._closed:
                return None
            self._settle()
            if self._loans:
                desc = self._in_place(buffers)
                if desc is not None:
                    return desc
            spans, end = [], HEADER
            for b in buffers:
                spans.append((end, b.nbytes))
                end += -(-b.nbytes // ALIGN) * ALIGN
            slot = self._take(end, time.monotonic())
            if slot is None:
                self.stats.fallback += 1
                return None
            try:
                _SEQ.pack_into(slot.mm, 8, 0)  # torn while writing (readers cannot lock it now anyway)
                for (off, n), b in zip(spans, buffers):
                    slot.data[off : off + n] = _bytes_of(b)
            except BaseException:
                _lock(slot.fd, fcntl.F_UNLCK)
                raise
            return self._publish(slot, spans)

    def _publish(self, slot: _Slot, spans: list[tuple[int, int]]) -> bytes:  # caller holds the mutex
        """Stamp the slot with the next sequence number and hand it to readers; the descriptor to send."""
        self._seq += 1
        _SEQ.pack_into(slot.mm, 8, self._seq)
        _lock(slot.fd, fcntl.F_UNLCK)
        slot.published = time.monotonic()
        self._slots.remove(slot)
        self._slots.append(slot)
        self.stats.published += 1
        return msgpack.packb((slot.name, self._seq, spans))

    def loan(self, nbytes: int) -> np.ndarray | None:
        """A writable uint8 array of `nbytes` in a free slot, the caller's until a message whose frames lie in
        it is written (`write` then copies nothing), or until the array is garbage or `release`d; None when no
        slot is free (the caller makes do with its own memory). The same rules choose the slot as for `write`."""
        with self._mutex:
            if self._closed:
                return None
            self._settle()
            slot = self._take(HEADER + nbytes, time.monotonic())
            if slot is None:
                return None
            _SEQ.pack_into(slot.mm, 8, 0)  # no descriptor of its last message matches it any more
            root = np.frombuffer(slot.mm, np.uint8, nbytes, HEADER)  # views of it keep it alive (numpy bases)
            slot.loan = loan = _Loan(slot, slot.addr + HEADER, slot.addr + HEADER + nbytes)
            self._loans.append(loan)
            self.stats.loaned += 1
        weakref.finalize(root, self._returned, loan).atexit = False  # at exit the ring closes: nothing to give back
        return root

    def release(self, arr: np.ndarray) -> bool:
        """Give a loan back unpublished, now rather than when the array is garbage (which does the same). The
        array turns read-only: its slot may soon hold another message. False if `arr` is not an open loan."""
        addr = _address(arr)
        with self._mutex:
            loan = self._loan_at(addr)
            if loan is None:
                return False
            arr.flags.writeable = False
            self._returns.append(loan)
            self._settle()
            return True

    def _loan_at(self, addr: int) -> _Loan | None:  # caller holds the mutex
        return next((loan for loan in self._loans if loan.start <= addr < loan.end), None)

    def _in_place(self, buffers: list[Any]) -> bytes | None:  # caller holds the mutex
        """The descriptor for frames that all lie in one loaned slot, published where they are; else None."""
        loan, spans = None, []
        for b in buffers:
            if not isinstance(b, np.ndarray):
                return None
            addr = _address(b)
            loan = loan or self._loan_at(addr)
            if loan is None or not loan.start <= addr <= addr + b.nbytes <= loan.end:
                return None
            spans.append((addr - loan.slot.addr, b.nbytes))
        if loan is None:
            return None
        for b in buffers:  # what was sent must not change under its readers
            b.flags.writeable = False
        self._loans.remove(loan)
        loan.published = True  # the slot stays pinned until the loaned array is garbage
        self.stats.in_place += 1
        return self._publish(loan.slot, spans)

    def _returned(self, loan: _Loan) -> None:
        # A finalizer: runs when the loaned array is garbage, on whatever thread (or inside the GC, perhaps in
        # the middle of a write on this thread): queue it, settle it now only if the mutex is free.
        self._returns.append(loan)
        if self._mutex.acquire(blocking=False):
            try:
                self._settle()
            finally:
                self._mutex.release()

    def _settle(self) -> None:  # caller holds the mutex
        """Loaned arrays that are garbage (or released): an unpublished slot is free at once, a published one
        is no longer pinned by the publisher."""
        while self._returns:
            loan = self._returns.popleft()
            slot = loan.slot
            if slot.loan is not loan or self._closed:  # handed over or closed since: nothing to give back
                continue
            slot.loan = None
            if not loan.published:
                self._loans.remove(loan)
                slot.published = -1e9  # it holds no message: first in line
                self._slots.remove(slot)
                self._slots.insert(0, slot)
                _lock(slot.fd, fcntl.F_UNLCK)
                self.stats.returned += 1

    def held(self) -> int:
        """How many slots subscribers hold now."""
        with self._mutex:
            self._settle()
            # locking a slot we hold ourselves (a loan) would succeed, and unlocking it would end the loan
            ours = [s for s in self._slots if s.loan is not None and not s.loan.published]
            free = [s for s in self._slots if s.loan is None or s.loan.published]
            free = [s for s in free if _lock(s.fd, fcntl.F_WRLCK)]
            for s in free:
                _lock(s.fd, fcntl.F_UNLCK)
            return len(self._slots) - len(ours) - len(free)

    def _take(self, size: int, now: float) -> _Slot | None:
        """A slot of at least `size` bytes, exclusively locked; see the module docstring for the order."""
        # a slot lent out, or still viewed by the publisher's own loaned array, is skipped before any lock is
        # tried: the ring's own lock on it would be taken again (and then dropped) rather than refused
        for s in self._slots:  # 1. the oldest free slot whose subscribers had their time
            if s.loan is None and now - s.published >= self.grace_s and _lock(s.fd, fcntl.F_WRLCK):
                return self._fit(s, size)
        if (
            len(self._slots) < self.max_slots
            and self._bytes() + size <= self.max_bytes  # 2. grow
            and now >= self._grow_after
        ):
            self._count += 1
            return self._new(self._count - 1, 0, size)
        for s in self._slots:  # 3. the oldest free slot: subscribers that have not taken it yet drop it
            if s.loan is None and _lock(s.fd, fcntl.F_WRLCK):
                self.stats.reused_early += 1
                return self._fit(s, size)
        oldest = next((s for s in self._slots if s.loan is None or s.loan.published), None)  # not lent out
        if oldest is not None and now - oldest.published >= self.hold_s:  # 4. held too long: hand it over
            self.stats.reclaimed += 1
            return self._replace(oldest, size)
        return None  # 5. every slot is held: the caller sends frames

    def _bytes(self) -> int:
        return sum(s.capacity for s in self._slots)

    def _fit(self, s: _Slot, size: int) -> _Slot | None:
        if s.capacity >= size:
            return s
        _lock(s.fd, fcntl.F_UNLCK)
        return self._replace(s, size)

    def _replace(self, old: _Slot, size: int) -> _Slot | None:
        """A new segment in `old`'s place; `old` is unlinked (its holders keep their mapping until they let go)."""
        self._slots.remove(old)
        old.close()
        return self._new(old.index, old.gen + 1, size)

    def _new(self, index: int, gen: int, size: int) -> _Slot | None:
        capacity = -(-size // _GROW) * _GROW
        name = f"{PREFIX}{_self_tag()}.{self.tag}.{index}.{gen}"
        path = os.path.join(SHM_DIR, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            log.warning("cannot create shared memory %s: %s", name, e)
            return None
        try:
            os.posix_fallocate(fd, 0, capacity)  # reserve it now: a full /dev/shm fails here, not with SIGBUS later
            mm = mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        except OSError as e:
            log.warning("no shared memory for %d bytes (%s): sending frames for %.0f s", capacity, e, NO_SPACE_S)
            os.close(fd)
            os.unlink(path)
            self._grow_after = time.monotonic() + NO_SPACE_S
            return None
        mm[: len(_MAGIC)] = _MAGIC
        data = np.frombuffer(mm, np.uint8)
        slot = _Slot(index, gen, name, fd, mm, data, capacity, _address(data))
        _lock(fd, fcntl.F_WRLCK)  # nobody else knows its name yet
        self._slots.insert(0, slot)
        if self._closed:  # closed by a signal while writing: leave nothing behind
            os.unlink(path)
        return slot

    def close(self, wait_s: float = 1.0) -> None:
        """Unlink every segment (subscribers that still hold arrays keep their mappings until they let go)."""
        if self._closed or os.getpid() != self._pid:  # a forked child never removes its parent's segments
            return
        self._closed = True
        for s in list(self._slots):  # unlinking needs no lock: a write in flight keeps its own mapping
            try:
                os.unlink(os.path.join(SHM_DIR, s.name))
            except OSError:
                pass
        _unregister(self)
        if self._mutex.acquire(timeout=wait_s):  # a signal handler does not wait: it may have interrupted a write
            try:
                for s in self._slots:
                    s.close(unlink=False)
                self._slots.clear()
            finally:
                self._mutex.release()


def _address(a: np.ndarray) -> int:
    """Where an array's data starts in this process."""
    return int(a.__array_interface__["data"][0])


def _bytes_of(b: Any) -> np.ndarray:
    """A frame's bytes as a flat uint8 array (a view: copying it into the slot is the one copy)."""
    a = b if isinstance(b, np.ndarray) else np.frombuffer(b, np.uint8)
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


# every open ring of this process, for cleanup at exit and on SIGTERM (held strongly: a ring dropped without
# close() keeps its segments until the process ends, and they must go then)
_rings: set[Ring] = set()
_rings_lock = threading.Lock()
_hooks_installed = False


def _register(ring: Ring) -> None:
    global _hooks_installed
    with _rings_lock:
        _rings.add(ring)
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(close_all)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)  # a process nobody taught to shut down still cleans up


def _unregister(ring: Ring) -> None:
    with _rings_lock:
        _rings.discard(ring)


def close_all(wait_s: float = 1.0) -> None:
    """Close every ring of this process (at exit and on SIGTERM)."""
    with _rings_lock:
        rings = list(_rings)
    for r in rings:
        try:
            r.close(wait_s)
        except Exception:  # cleaning up at exit: one bad ring must not keep the others
            log.exception("closing a shared-memory ring failed")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    close_all(wait_s=0.0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # then die of SIGTERM as before, with the same exit status
    os.kill(os.getpid(), signal.SIGTERM)


# -- subscriber side -----------------------------------------------------------------------------------


class Gone(Exception):
    """The slot no longer holds the message (reused or unlinked before we took it): a counted drop."""


@dataclass
class _Mapping:
    fd: int
    mm: mmap.mmap
    holds: int = 0  # live messages viewing it; the shared lock is held while > 0


class Reader:
    """The subscriber side of every ring, one per process: mappings are shared by all subscriptions and
    kept while their segment exists, so a slot is mapped (and its pages faulted in) once."""

    MAX_IDLE = 64  # mappings kept with nothing viewing them
    EVICT_S = 1.0  # how often releases look for mappings of segments their publisher has unlinked

    def __init__(self) -> None:
        self._next_evict = 0.0
        self._maps: dict[str, _Mapping] = {}
        self._lock = threading.Lock()
        self._pending: collections.deque[str] = collections.deque()  # releases waiting for the lock

    def open(self, descriptor: bytes) -> list[np.ndarray]:
        """The frames a descriptor points at, as read-only uint8 views that hold the slot until they are
        garbage. Raises Gone when the slot was reused or unlinked, ValueError when the descriptor is bad."""
        try:
            name, seq, spans = msgpack.unpackb(descriptor)
            spans = [(int(o), int(n)) for o, n in spans]
        except Exception as e:
            raise ValueError(f"bad shared-memory descriptor: {e}") from None
        if not isinstance(name, str) or not name.startswith(PREFIX) or "/" in name or not spans:
            raise ValueError(f"bad shared-memory segment name {name!r}")
        start, end = min(o for o, _ in spans), max(o + n for o, n in spans)
        with self._lock:
            m = self._maps.get(name)
            if m is None:
                m = self._attach(name)
            if end > len(m.mm) or start < HEADER:
                raise ValueError(f"descriptor points outside segment {name}")
            if m.holds == 0 and not _lock(m.fd, fcntl.F_RDLCK):
                raise Gone(name)  # the publisher is rewriting it
            if _SEQ.unpack_from(m.mm, 8)[0] != seq:
                if m.holds == 0:
                    _lock(m.fd, fcntl.F_UNLCK)
                raise Gone(name)
            m.holds += 1
        if self._pending:  # releases that came in while we held the lock
            self._drain()
        root = np.frombuffer(m.mm, np.uint8, end - start, start)  # views of it keep it alive (numpy bases)
        weakref.finalize(root, self._release, name)
        return [root[o - start : o - start + n] for o, n in spans]

    def _attach(self, name: str) -> _Mapping:  # caller holds the lock
        try:
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            raise Gone(name) from None
        try:
            size = os.fstat(fd).st_size
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), prot=mmap.PROT_READ)
        except (OSError, ValueError):
            os.close(fd)
            raise Gone(name) from None
        self._evict()
        m = self._maps[name] = _Mapping(fd, mm)
        return m

    def _evict(self) -> None:  # caller holds the lock: forget idle mappings of unlinked segments
        idle = [n for n, m in self._maps.items() if m.holds == 0]
        for i, n in enumerate(idle):
            m = self._maps[n]
            if len(idle) - i > self.MAX_IDLE or os.fstat(m.fd).st_nlink == 0:
                self._forget(n)

    def _forget(self, name: str) -> None:  # caller holds the lock; the mapping goes when no array uses it
        m = self._maps.pop(name)
        os.close(m.fd)

    def _release(self, name: str) -> None:
        # Runs when a message's arrays are garbage, on whatever thread (or inside the GC) that happens:
        # queue it and release under the lock only if it is free; whoever holds it drains the queue.
        self._pending.append(name)
        self._drain()

    def _drain(self) -> None:
        while self._pending and self._lock.acquire(blocking=False):
            try:
                while self._pending:
                    name = self._pending.popleft()
                    m = self._maps.get(name)
                    if m is None:  # also "", from collect()
                        continue
                    m.holds -= 1
                    if m.holds == 0:
                        _lock(m.fd, fcntl.F_UNLCK)
                now = time.monotonic()
                if now >= self._next_evict:  # now and then, not per message: an fstat per mapping
                    self._next_evict = now + self.EVICT_S
                    self._evict()
            finally:
                self._lock.release()

    def holds(self) -> int:
        """Messages of this process that still view shared memory."""
        self._drain()
        with self._lock:
            return sum(m.holds for m in self._maps.values())

    def mapped(self) -> list[str]:
        with self._lock:
            return sorted(self._maps)

    def collect(self, force: bool = False) -> None:
        """Forget idle mappings of segments their publisher has unlinked (at most every EVICT_S unless
        `force`; a node's housekeeping calls it, so a publisher that went away leaves no memory behind)."""
        if force:
            self._next_evict = 0.0
        if self._maps and time.monotonic() >= self._next_evict:
            self._pending.append("")  # a no-op release: _drain evicts when it is due
            self._drain()

    def clear(self) -> None:
        """Forget idle mappings (a closing node); arrays still in use keep theirs."""
        self._drain()
        with self._lock:
            for n in [n for n, m in self._maps.items() if m.holds == 0]:
                self._forget(n)

    def _after_fork(self) -> None:
        """A forked child starts with no mappings (the parent's locks stay the parent's)."""
        self._maps, self._pending, self._lock = {}, collections.deque(), threading.Lock()


reader = Reader()
os.register_at_fork(after_in_child=reader._after_fork)
