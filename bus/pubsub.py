"""Topics: a Publisher sends one topic's messages; a Subscription receives one topic from every publisher of it.

Who runs what (see `loopylab.bus.node` for the node's threads):
- a Publisher's XPUB socket belongs to the threads that publish, serialised by its lock (no hand-off, no added
  latency); the node's housekeeping thread only reads its subscription events, under the same lock;
- a Subscription's SUB socket belongs to the node's I/O thread (`loopylab.bus.receiver`), which decodes each
  message and calls `_deliver`; the user's threads read the result through `latest`, `get` and `wait_for`;
- a polled Subscription (`polled=True`) has its SUB sockets on the one thread that calls its `poll()` (a driver's
  control loop): no thread wakes up for a message, the loop takes what came once per cycle, without blocking.
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from loopylab.bus import codec, shm
from loopylab.bus.messages import Message
from loopylab.bus.template import FieldsReader

if TYPE_CHECKING:
    from loopylab.bus.node import Node
    from loopylab.bus.template import FieldsTemplate

_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: enum arithmetic costs on every publish
_RCVMORE, _SNDMORE, _NOBLOCK = int(zmq.RCVMORE), int(zmq.SNDMORE), int(zmq.NOBLOCK)
# The hot path calls the compiled socket under pyzmq's Python one (`zmq.Socket` subclasses it): the Python layer's
# send, recv_multipart and get add argument checks and Python frames that cost as much as the call itself on a
# loaded host (bus_latency.py, serial_profile.py). Only plain bytes go this way; frames and trackers use the sugar.
_zsend, _zrecv, _zget = zmq.backend.Socket.send, zmq.backend.Socket.recv, zmq.backend.Socket.get


def _now_ns() -> int:
    return time.time_ns()


def _bytes(frame: Any) -> bytes:
    """A received frame's bytes (a zmq.Frame's, or the frame itself when it was received as bytes)."""
    return frame if type(frame) is bytes else frame.bytes


def _has_more(sock: zmq.Socket[Any]) -> bool:
    """Whether a message is waiting on `sock`: EVENTS, not recv(NOBLOCK) + zmq.Again, which costs an exception."""
    return bool(_zget(sock, _EVENTS) & _POLLIN)  # type: ignore[operator]  # EVENTS is an int option, never bytes


def _recv_frames(sock: zmq.Socket[Any], copy: bool) -> list[Any]:
    """`sock.recv_multipart(zmq.NOBLOCK, copy=copy)` on the compiled socket: raises zmq.Again when nothing waits."""
    frames = [_zrecv(sock, _NOBLOCK, copy)]
    while _zget(sock, _RCVMORE):  # the rest of a message is there once its first frame is
        frames.append(_zrecv(sock, _NOBLOCK, copy))
    return frames


class Publisher:
    """Sends one topic's messages from the threads that call `publish` (one lock, no hand-off)."""

    def __init__(self, node: Node, topic: str, msg_type: type | None, latched: bool, hwm: int):
        self.node, self.topic, self.msg_type, self.latched = node, topic, msg_type, latched
        self.id = uuid.uuid4().hex[:8]
        self._prefix = f"{topic}\0{self.id}".encode()
        self._lock = threading.Lock()
        self._sock = node.ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # see every (un)subscription, also repeated ones
        self.endpoint = node._bind(self._sock, "p")
        # readable when commands reach the socket (a subscriber joins, ...): the housekeeping thread waits on it
        # for latched publishers instead of polling them (polling an fd touches nothing of the socket's)
        self.events_fd: int = self._sock.getsockopt(zmq.FD)
        self._seq = itertools.count(1)
        self._last: list[Any] | None = None  # latched: the last message, as a replay (see Subscription._deliver)
        self.subscribers = 0
        self.sent = 0
        self.bytes_sent = 0
        self._drained_at = -1e9  # monotonic time of the last subscription check
        # Big payloads on an ipc graph go through shared memory (`loopylab.bus.shm`), into a ring made at the
        # first one; below the threshold, and on tcp and inproc, messages are frames as always.
        shm_min = shm.min_bytes(node.config.transport)
        self._shm_min = shm_min if shm_min is not None else sys.maxsize
        self._shm_prefix = self._prefix + b"\0s"
        self.shm: shm.Ring | None = None
        if shm_min is not None:
            shm.sweep_once()  # the first start after a crash removes the segments the crashed process left

    def publish(self, msg: Any, stamp_ns: int | None = None) -> None:
        """Send a message. `seq` and `stamp_ns` are filled in when left at 0."""
        if self.msg_type is not None and not isinstance(msg, self.msg_type):
            raise TypeError(f"{self.topic} carries {self.msg_type.__name__}, not {type(msg).__name__}")
        if isinstance(msg, Message):
            if not msg.seq:
                msg.seq = next(self._seq)
            if not msg.stamp_ns:
                msg.stamp_ns = stamp_ns or _now_ns()
        header, buffers = codec.encode(msg)
        self._send(header, buffers)

    def loan(self, shape: int | tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A writable array to build a big payload in, for a message published next (`Image(data=...)`,
        `Image.from_array(...)`): on an ipc graph, from the shared-memory threshold on, it lies in a slot of this
        publisher's ring, and `publish` sends it where it is, with no copy. Otherwise (tcp, inproc, a smaller
        payload, `LOOPYLAB_SHM_MIN=off`, every slot held) it is a plain `np.empty`, published as always.

        The slot is the publisher's until the message is published, or until the array is garbage or
        `release`d unpublished. Once published, the array is read-only (its readers see it as sent), and its
        slot is not reused while the array lives: keep it no longer than the message would be kept."""
        dt = np.dtype(dtype)
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        nbytes = math.prod(dims) * dt.itemsize
        if nbytes >= self._shm_min and not dt.hasobject:
            with self._lock:
                ring = self._ring()
                raw = ring.loan(nbytes) if ring is not None else None
            if raw is not None:
                return raw.view(dt).reshape(dims)
        return np.empty(dims, dt)

    def release(self, arr: np.ndarray) -> bool:
        """Give back a loan that will not be published, now (dropping the array does it too). The array turns
        read-only and must not be used after. False when `arr` is no open loan (a plain array, or published)."""
        return self.shm is not None and self.shm.release(arr)

    def publish_fields(self, **fields: Any) -> None:
        """`publish(msg_type(**fields))` without building the message: the same bytes on the wire, for a
        driver's hot path (a sim arm's joint state every tick). Vector fields may be plain tuples of floats,
        which are packed without numpy. `seq` and `stamp_ns` are filled in when left out."""
        if self.msg_type is None:
            raise TypeError(f"{self.topic} has no message type: use publish()")
        if not fields.get("seq"):
            fields["seq"] = next(self._seq)
        if not fields.get("stamp_ns"):
            fields["stamp_ns"] = _now_ns()
        header, buffers = codec.encode_fields(self.msg_type, fields)
        self._send(header, buffers)

    def publish_template(self, template: FieldsTemplate, values: Sequence[Any], stamp_ns: int = 0) -> None:
        """`publish_fields` of a stream whose messages differ only in their numbers: `template`
        (`loopylab.bus.template.FieldsTemplate`) holds the rest, packed once; `values` are its dynamic fields'."""
        if template.cls is not self.msg_type:
            raise TypeError(
                f"{self.topic} carries {getattr(self.msg_type, '__name__', None)}, not {template.cls.__name__}"
            )
        self._send(template.encode(next(self._seq), stamp_ns or _now_ns(), values), [])

    def _send(self, header: bytes, buffers: list[Any]) -> None:
        sock = self._sock
        size = len(header)
        with self._lock:
            self._maybe_drain(self.SEND_POLL_S)
            if buffers:
                nbytes = sum(b.nbytes for b in buffers)
                size += nbytes
                desc = self._to_shm(buffers) if nbytes >= self._shm_min else None  # the one size check
                if desc is not None:  # only a descriptor travels; subscribers map the slot
                    sock.send_multipart([self._shm_prefix, header, desc])
                else:  # array frames go zero-copy
                    sock.send_multipart([self._prefix, header, *buffers], copy=False)
            else:  # two small frames: plain sends skip send_multipart's per-frame bookkeeping
                _zsend(sock, self._prefix, _SNDMORE)
                _zsend(sock, header)
            if self.latched:  # a replay goes as frames: by then the slot may hold another message
                self._last = [self._prefix + b"\0r", header, *buffers]
                # the send may have taken the commands that made `events_fd` readable, leaving a subscription
                # unread that nothing would wake the housekeeping thread for: read it now
                self._drain_subscriptions()
        self.sent += 1
        self.bytes_sent += size

    def _to_shm(self, buffers: list[Any]) -> bytes | None:  # caller holds the lock
        """The payload written into the ring (or found there: a loan), as the descriptor to send; None: send it
        as frames."""
        ring = self._ring()
        return ring.write(buffers) if ring is not None else None

    def _ring(self) -> shm.Ring | None:  # caller holds the lock
        """The shared-memory ring, made at its first use; None once the publisher is closed."""
        if self.shm is None:
            if self._sock.closed:
                return None
            self.shm = shm.Ring()
        return self.shm

    def _drain_subscriptions(self) -> None:  # caller holds the lock
        # EVENTS, not recv(NOBLOCK) + zmq.Again: an exception per publish costs more than the send
        while _zget(self._sock, _EVENTS) & _POLLIN:  # type: ignore[operator]  # (an int option)
            ev = self._sock.recv(zmq.NOBLOCK)
            if ev[:1] == b"\x01":
                self.subscribers += 1
                if self._last is not None:  # last-value cache: the new subscriber gets the state now
                    self._sock.send_multipart(self._last, copy=False)
            elif ev[:1] == b"\x00":
                self.subscribers = max(0, self.subscribers - 1)

    # Subscriptions come and go rarely, but a driver asks on every tick and every publish: checking the
    # socket (a getsockopt, ~4 us) at most every POLL_S keeps the answer fresh to a few ms for a
    # fraction of the cost. A subscriber joining in between misses at most that long of a stream,
    # which ZeroMQ's slow-joiner behaviour allows anyway; wait_for_subscribers always checks.
    POLL_S = 0.005
    # Publishing alone needs the events read only so that they do not pile up (ZeroMQ sends to whoever
    # subscribed, counted or not): every SEND_POLL_S. Each check is two system calls (a poll, a getpid),
    # every cycle of a 100 Hz driver at POLL_S; `has_subscribers` still checks every POLL_S.
    SEND_POLL_S = 0.1

    def _maybe_drain(self, period: float) -> None:  # caller holds the lock
        now = time.monotonic()
        if now >= self._drained_at + period:
            self._drained_at = now
            self._drain_subscriptions()

    def poll_subscriptions(self) -> None:
        with self._lock:
            if not self._sock.closed:
                self._drain_subscriptions()

    def has_subscribers(self) -> bool:
        """Whether anyone listens now (as of the last few ms: POLL_S): a driver can skip computing a
        message nobody would receive (ZeroMQ would drop it at the socket anyway; a subscription arriving
        later sees the next one)."""
        if time.monotonic() >= self._drained_at + self.POLL_S:  # without the lock first: most calls need no check
            with self._lock:
                if not self._sock.closed:
                    self._maybe_drain(self.POLL_S)
        return self.subscribers > 0

    def wait_for_subscribers(self, n: int = 1, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.poll_subscriptions()
            if self.subscribers >= n:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)

    def close(self) -> None:
        with self._lock:
            self._sock.close()
            if self.shm is not None:
                self.shm.close()


class Subscription:
    """Messages of one topic from every publisher of it.

    mode="queue": every message, in order; a callback runs for each, otherwise they wait for `get()`
    in a queue of `queue_size` (the oldest is dropped, and counted, when full).
    mode="latest": only the newest matters (sensor streams): a tiny receive buffer, drained to the
    newest on each wake-up; older ones are skipped and counted in `skipped`.
    raw=True hands `(topic, frames, recv_ns)` to the callback without decoding (recorders, tools).
    polled=True: nothing receives in the background; one thread (always the same: it owns the sockets) calls
    `poll()`, which takes what has arrived without blocking, then reads `latest()` or `get(timeout=0)`. For a
    loop that looks at its inputs once a cycle anyway (a driver): waking the node's I/O thread for each message
    costs more than the message (tens of µs on a busy host). `age()` counts from the poll that took it. A loop
    with several reads them together with a `loopylab.bus.polled.PollGroup` (one system call for all).
    fields=True: each message is handed over as the dict of its fields that `codec.decode_fields` gives (vectors
    as lists of floats), never built as a message: for a driver that reads a few numbers out of it.
    """

    def __init__(
        self,
        node: Node,
        topic: str,
        msg_type: type | None,
        callback: Callable[..., Any] | None,
        mode: str,
        queue_size: int,
        raw: bool,
        polled: bool = False,
        fields: bool = False,
    ):
        if mode not in ("queue", "latest"):
            raise ValueError(f"mode must be 'queue' or 'latest', not {mode!r}")
        if fields:
            if raw or msg_type is None:
                raise ValueError(f"{topic}: fields=True needs a message type and raw=False")
            codec.decode_fields_plan(msg_type)  # a TypeError now for a type whose fields it cannot give
        # fields: a stream of one shape (a gate's commands) is read without unpacking it (see FieldsReader)
        self._reader = FieldsReader(msg_type) if fields and msg_type is not None else None
        self.node, self.topic, self.msg_type = node, topic, msg_type
        self.callback, self.mode, self.raw = callback, mode, raw
        self._queue: deque[Any] = deque(maxlen=max(1, queue_size))
        self._cond = threading.Condition()
        self._waiters = 0  # threads in get()/wait_for(): no notify (and its cost) when there are none
        self._latest: Any = None
        self._latest_t = 0.0
        self.count = 0  # messages accepted
        self._waited = 0  # count when wait_for last returned
        self.dropped = 0  # queue overflow
        self.skipped = 0  # latest mode: superseded before they were looked at
        self.bytes = 0
        self.endpoints: set[str] = set()
        self._seen: set[bytes] = set()  # publishers we have had a message from
        # the I/O thread's: one SUB socket per publisher endpoint (see loopylab.bus.receiver)
        self.socks: dict[str, zmq.Socket[Any]] = {}
        self._registered = False
        self.queue_size = queue_size
        self.polled = polled
        self._want: set[str] | None = None  # polled: the endpoints to connect at the next poll (set by any thread)
        self._want_lock = threading.Lock()
        self.fields = fields
        # polled: sockets that may hold messages no wake-up will announce (new ones, a burst cut short); every other
        # socket was read until ZeroMQ said it was empty, so its ZMQ_FD turns readable when the next one comes
        self._undrained: set[zmq.Socket[Any]] = set()
        self.sockets_changed = 0  # polled: bumped when the sockets change (a PollGroup registers them anew)

    def _open(self, endpoint: str) -> zmq.Socket[Any]:
        """A SUB socket for this topic, connected to one publisher (on the thread that will read it)."""
        s = self.node.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        # latest mode keeps a tiny buffer, drained on every wake-up; a polled one is looked at once a cycle or
        # after a stall, and a full buffer would hold back the newer messages (ZeroMQ keeps the oldest, the
        # rest wait in the kernel): it takes all that came, and the poll drains them to the newest
        s.setsockopt(zmq.RCVHWM, 2 if self.mode == "latest" and not self.polled else max(1000, self.queue_size))
        s.setsockopt(zmq.SUBSCRIBE, f"{self.topic}\0".encode())
        self.node._join(s)  # a client of the graph: its keys, on a sealed graph
        s.connect(endpoint)
        return s

    def _read(self, sock: zmq.Socket[Any]) -> bool:
        """One message is waiting on `sock` (poll or EVENTS said so): take it, and in latest mode drain to the
        newest; EVENTS says whether more are (cheaper than a recv that ends in zmq.Again, an exception).
        Returns whether the socket was read empty (False: a bounded burst left some for the next look)."""
        copy = self.fields  # a few hundred bytes decoded at once: copies cost less than zmq.Frame objects
        if self.mode == "latest":
            frames = _recv_frames(sock, copy)
            while _has_more(sock):  # drain to the newest
                frames = _recv_frames(sock, copy)
                self.skipped += 1
            self._deliver(frames)
            return True
        for _ in range(1000):  # a bounded burst, then the other sockets get their turn
            self._deliver(_recv_frames(sock, copy))
            if not _has_more(sock):
                return True
        return False

    # -- polled subscriptions: the polling thread's side ----------------------------------
    def _connect_later(self, endpoints: set[str]) -> None:
        """(any thread) Connect to exactly `endpoints` at the next `poll()`."""
        with self._want_lock:
            if not self.node._closed:
                self._want = endpoints

    def poll(self) -> int:
        """Take what has arrived since the last poll, without blocking (polled subscriptions; always from the same
        thread). Returns how many of its sockets had messages; then `latest()`, `get(timeout=0)` see them."""
        if not self.polled:
            raise RuntimeError(f"{self.topic}: poll() is for subscriptions made with polled=True")
        with self._want_lock:  # (uncontended but for a connect or the node's close: their sockets stay whole)
            self._take_endpoints()
            return self._look(list(self.socks.values()), woke=False)

    def _take_endpoints(self) -> None:  # the polling thread, holding _want_lock
        want, self._want = self._want, None
        if want is not None:  # the directory named other publishers: (re)connect on this thread
            for ep in want - self.endpoints:
                self.socks[ep] = sock = self._open(ep)
                self._undrained.add(sock)
            for ep in self.endpoints - want:  # the publisher has gone: close its socket (no disconnect)
                sock = self.socks.pop(ep)
                self._undrained.discard(sock)
                sock.close()
            self.endpoints = want
            self.sockets_changed += 1

    def _look(self, socks: list[zmq.Socket[Any]], woke: bool) -> int:  # the polling thread, holding _want_lock
        """Read what waits on `socks` (of this subscription's, open ones); how many had messages. `woke`: their
        descriptors said something came (a message, most likely: receive at once, no ZMQ_EVENTS first)."""
        n = 0
        for sock in socks:
            if sock.closed:
                continue
            if not woke and not _has_more(sock):
                self._undrained.discard(sock)
                continue
            try:
                drained = self._read(sock)
                n += 1
            except zmq.Again:  # nothing to read after all (readable went away, or the wake-up was another event)
                drained = True
            if drained:
                self._undrained.discard(sock)
            else:
                self._undrained.add(sock)
        return n

    def _close_polled(self) -> None:
        """The node is closing: close the sockets (a poll after this finds none)."""
        with self._want_lock:
            for sock in self.socks.values():
                sock.close()
            self.socks, self.endpoints, self._want = {}, set(), None
            self._undrained.clear()
            self.sockets_changed += 1

    # -- I/O thread side --------------------------------------------------
    def _deliver(self, frames: list[Any]) -> None:
        # frame 0 is "topic\0pubid", or "topic\0pubid\0r" for a latched value replayed because a
        # subscriber joined: every subscriber gets that replay, and only those that have nothing yet
        # from that publisher keep it. (Not judged by seq: a node may forward messages with their seq.)
        # "topic\0pubid\0s": the payload is in shared memory, and frame 2 says where.
        pub, _, flag = _bytes(frames[0]).partition(b"\0")[2].partition(b"\0")
        if flag:
            if flag == b"r":
                if pub in self._seen:
                    return
            elif flag == b"s":
                resolved = self._from_shm(frames)
                if resolved is None:
                    return
                frames = resolved
        self.bytes += sum(map(len, frames))
        if self.raw:
            self._seen.add(pub)
            self._accept(frames, pub, None)
            return
        try:
            if self.fields:
                if len(frames) < 2:
                    raise codec.DecodeError(f"expected at least 2 frames, got {len(frames)}")
                msg = self._reader.read(_bytes(frames[1]), frames[2:])  # type: ignore[union-attr]
            else:
                _, msg = codec.from_frames(frames)
        except codec.WrongType as e:
            self.node._count("wrong_type", f"{self.topic}: {e}")
            return
        except codec.UnknownType as e:
            self.node._count("unknown_type", f"{self.topic}: {e}")
            return
        except codec.DecodeError as e:
            self.node._count("malformed", f"{self.topic}: {e}")
            return
        if self.msg_type is not None and not self.fields and not isinstance(msg, self.msg_type):
            self.node._count("wrong_type", f"{self.topic}: got {type(msg).__name__}, expected {self.msg_type.__name__}")
            return
        self._seen.add(pub)
        self._accept(msg, pub, frames)

    def _from_shm(self, frames: list[zmq.Frame]) -> list[Any] | None:
        """The frames as they would have come over the socket: [b"topic\0pubid", header, *read-only views of
        the slot] (raw subscribers, the recorder and `topics` see the same). None, counted, when the slot
        was reused before we took it (`shm_late`) or the descriptor is garbage (`malformed`)."""
        try:
            if len(frames) != 3:
                raise ValueError(f"a shared-memory message has 3 frames, not {len(frames)}")
            views = shm.reader.open(_bytes(frames[2]))
        except shm.Gone:
            self.node._count("shm_late", f"{self.topic}: the publisher reused a slot before we took it")
            return None
        except ValueError as e:
            self.node._count("malformed", f"{self.topic}: {e}")
            return None
        return [_bytes(frames[0])[:-2], _bytes(frames[1]), *views]

    def _accept(self, msg: Any, pub: bytes, frames: list[Any] | None) -> None:
        with self._cond:
            self._latest, self._latest_t = msg, time.monotonic()
            self.count += 1
            if self.callback is None and self.mode == "queue":
                if len(self._queue) == self._queue.maxlen:
                    self.dropped += 1
                self._queue.append(msg)
            if self._waiters:
                self._cond.notify_all()
        if self.callback is not None:
            try:
                if self.raw:
                    self.callback(self.topic, msg, time.time_ns())
                else:
                    self.callback(msg)
            except Exception:
                self.node.log.exception("callback for %s failed", self.topic)

    # -- user side ---------------------------------------------------------
    def latest(self) -> Any:
        """The newest message, or None before the first one."""
        return self._latest

    def age(self) -> float:
        """Seconds since the newest message arrived (inf before the first)."""
        return time.monotonic() - self._latest_t if self.count else float("inf")

    def is_stale(self, max_age_s: float) -> bool:
        return self.age() > max_age_s

    def get(self, timeout: float | None = None) -> Any:
        """Next message in arrival order (queue mode without callback). Raises TimeoutError."""
        with self._cond:
            self._waiters += 1
            try:
                ok = self._cond.wait_for(lambda: self._queue, timeout)
            finally:
                self._waiters -= 1
            if not ok:
                raise TimeoutError(f"no message on {self.topic} within {timeout} s")
            return self._queue.popleft()

    def wait_for(self, predicate: Callable[[Any], bool] | None = None, timeout: float = 5.0) -> Any:
        """Wait until the newest message satisfies `predicate`, and return it.

        Without a predicate: a message that no earlier `wait_for` returned (the first call returns at
        once if something arrived since subscribing: no race between `subscribe` and `wait_for`).
        """
        with self._cond:
            seen = self._waited
            self._waiters += 1
            try:
                ok = self._cond.wait_for(
                    lambda: (
                        self._latest is not None
                        and (predicate(self._latest) if predicate is not None else self.count > seen)
                    ),
                    timeout,
                )
            finally:
                self._waiters -= 1
            if not ok:
                raise TimeoutError(f"no matching message on {self.topic} within {timeout} s")
            self._waited = self.count
            return self._latest

    def publisher_count(self) -> int:
        return len(self.endpoints)

    def wait_for_publishers(self, n: int = 1, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.endpoints) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True
