"""The Node runtime: publishers, subscriptions, services, timers, heartbeats.

Threads of a node (each owns its sockets; ZeroMQ sockets are never shared without a lock):
- the caller's threads publish directly (one lock per publisher: no hand-off, no added latency);
- the I/O thread owns every SUB socket, decodes and runs subscription callbacks in arrival order;
- the housekeeping thread follows the directory's change feed, answers new subscribers of latched
  topics with the last value (XPUB sees each subscription) and publishes the node's heartbeat; it
  never waits on the directory, so heartbeats keep their rate when the directory is gone;
- the directory thread re-announces the node every second, takes the directory over when its
  process died, and re-checks where subscribed topics are published (a safety net for the feed);
- each service and each timer has its own thread, so a slow skill never stalls sensor callbacks.
Background threads block on their sockets and the node's stop flag (`loopylab.bus.stopflag`), not on short poll
timeouts: an idle node does not wake up, and does not take the GIL from the thread doing the work.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections import deque
from typing import Any, Callable

import msgpack
import zmq

from loopylab.bus import codec
from loopylab.bus.config import BusConfig, _local_ip
from loopylab.bus.directory import ANNOUNCE_S, DirectoryUnavailable, ensure_directory, release_directory, request
from loopylab.bus.stopflag import StopFlag
from loopylab.bus.messages import Heartbeat, Message


class ServiceError(RuntimeError):
    """The service answered with an error."""


class ServiceTimeout(TimeoutError):
    """The service did not answer in time (or is not running)."""


_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: enum arithmetic costs on every publish


def _now_ns() -> int:
    return time.time_ns()


class Publisher:
    def __init__(self, node: "Node", topic: str, msg_type: type | None, latched: bool, hwm: int):
        self.node, self.topic, self.msg_type, self.latched = node, topic, msg_type, latched
        self.id = uuid.uuid4().hex[:8]
        self._prefix = f"{topic}\0{self.id}".encode()
        self._lock = threading.Lock()
        self._sock = node.ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # see every (un)subscription, also repeated ones
        self.endpoint = node._bind(self._sock, "p")
        self._seq = itertools.count(1)
        self._last: list | None = None  # latched: the last message, as a replay (see Subscription._deliver)
        self.subscribers = 0
        self.sent = 0
        self.bytes_sent = 0
        self._next_poll = 0.0  # monotonic time of the next subscription check on the publish path

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

    def publish_fields(self, **fields) -> None:
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

    def _send(self, header: bytes, buffers: list) -> None:
        sock = self._sock
        with self._lock:
            self._maybe_drain()
            if buffers:  # array frames go zero-copy
                sock.send_multipart([self._prefix, header, *buffers], copy=False)
            else:  # two small frames: plain sends skip send_multipart's per-frame bookkeeping
                sock.send(self._prefix, zmq.SNDMORE)
                sock.send(header)
            if self.latched:
                self._last = [self._prefix + b"\0r", header, *buffers]
        self.sent += 1
        self.bytes_sent += len(header) + (sum(b.nbytes for b in buffers) if buffers else 0)

    def _drain_subscriptions(self) -> None:  # caller holds the lock
        # EVENTS, not recv(NOBLOCK) + zmq.Again: an exception per publish costs more than the send
        while self._sock.get(_EVENTS) & _POLLIN:
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

    def _maybe_drain(self) -> None:  # caller holds the lock
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.POLL_S
            self._drain_subscriptions()

    def poll_subscriptions(self) -> None:
        with self._lock:
            if not self._sock.closed:
                self._drain_subscriptions()

    def has_subscribers(self) -> bool:
        """Whether anyone listens now (as of the last few ms: POLL_S): a driver can skip computing a
        message nobody would receive (ZeroMQ would drop it at the socket anyway; a subscription arriving
        later sees the next one)."""
        if time.monotonic() >= self._next_poll:  # checked without the lock first: most calls need no check
            with self._lock:
                if not self._sock.closed:
                    self._maybe_drain()
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

    def close(self):
        with self._lock:
            self._sock.close()


class Subscription:
    """Messages of one topic from every publisher of it.

    mode="queue": every message, in order; a callback runs for each, otherwise they wait for `get()`
    in a queue of `queue_size` (the oldest is dropped, and counted, when full).
    mode="latest": only the newest matters (sensor streams): a tiny receive buffer, drained to the
    newest on each wake-up; older ones are skipped and counted in `skipped`.
    raw=True hands `(topic, frames, recv_ns)` to the callback without decoding (recorders, tools).
    """

    def __init__(self, node: "Node", topic: str, msg_type: type | None, callback: Callable | None,
                 mode: str, queue_size: int, raw: bool):
        if mode not in ("queue", "latest"):
            raise ValueError(f"mode must be 'queue' or 'latest', not {mode!r}")
        self.node, self.topic, self.msg_type = node, topic, msg_type
        self.callback, self.mode, self.raw = callback, mode, raw
        self._queue: deque = deque(maxlen=max(1, queue_size))
        self._cond = threading.Condition()
        self._waiters = 0  # threads in get()/wait_for(): no notify (and its cost) when there are none
        self._latest: Any = None
        self._latest_t = 0.0
        self.count = 0          # messages accepted
        self._waited = 0        # count when wait_for last returned
        self.dropped = 0        # queue overflow
        self.skipped = 0        # latest mode: superseded before they were looked at
        self.bytes = 0
        self.endpoints: set[str] = set()
        self._seen: set[bytes] = set()  # publishers we have had a message from
        self.sock: zmq.Socket | None = None  # created by the I/O thread
        self.queue_size = queue_size

    # -- I/O thread side --------------------------------------------------
    def _deliver(self, frames: list) -> None:
        # frame 0 is "topic\0pubid", or "topic\0pubid\0r" for a latched value replayed because a
        # subscriber joined: every subscriber gets that replay, and only those that have nothing yet
        # from that publisher keep it. (Not judged by seq: a node may forward messages with their seq.)
        pub, _, flag = frames[0].bytes.partition(b"\0")[2].partition(b"\0")
        if flag == b"r" and pub in self._seen:
            return
        self.bytes += sum(map(len, frames))
        if self.raw:
            self._seen.add(pub)
            self._accept(frames, pub, None)
            return
        try:
            _, msg = codec.from_frames(frames)
        except codec.UnknownType as e:
            self.node._count("unknown_type", f"{self.topic}: {e}")
            return
        except codec.DecodeError as e:
            self.node._count("malformed", f"{self.topic}: {e}")
            return
        if self.msg_type is not None and not isinstance(msg, self.msg_type):
            self.node._count("wrong_type", f"{self.topic}: got {type(msg).__name__}, "
                                           f"expected {self.msg_type.__name__}")
            return
        self._seen.add(pub)
        self._accept(msg, pub, frames)

    def _accept(self, msg, pub, frames):
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
                    lambda: self._latest is not None and (predicate(self._latest) if predicate is not None
                                                          else self.count > seen), timeout)
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


class Service:
    """Answers requests on its own thread; the handler takes a dict and returns a dict."""

    def __init__(self, node: "Node", name: str, handler: Callable[[Any], Any]):
        self.node, self.name, self.handler = node, name, handler
        self._sock = node.ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = node._bind(self._sock, "s")
        self.calls = 0
        self._thread = threading.Thread(target=self._run, name=f"{node.name}:{name}", daemon=True)
        self._thread.start()

    def _run(self):
        sock, stop = self._sock, self.node._stop
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(stop.fd, zmq.POLLIN)  # no timeout to wake for: close() makes this readable
        while not stop.is_set():
            try:
                if sock not in dict(poller.poll()):  # the stop flag wakes it: no timeout needed
                    continue
                frames = sock.recv_multipart(copy=False)
            except zmq.ZMQError:
                break
            ident, rid = frames[0].bytes, frames[2].bytes if len(frames) > 2 else b""
            try:
                if len(frames) < 4:
                    raise codec.DecodeError("short request")
                request = codec.decode(frames[3].bytes, frames[4:])
                reply = self.handler(request)
                header, bufs = codec.encode(reply)
                out = [ident, b"", rid, b"ok", header, *bufs]
            except Exception as e:
                self.node.log.warning("service %s: %s: %s", self.name, type(e).__name__, e)
                out = [ident, b"", rid, b"error", msgpack.packb(f"{type(e).__name__}: {e}")]
            self.calls += 1
            try:
                sock.send_multipart(out, copy=False)
            except zmq.ZMQError:
                break
        sock.close()


class ServiceClient:
    """Calls a service; safe from several threads. A timeout never leaves the client unusable."""

    def __init__(self, node: "Node", name: str):
        self.node, self.name = node, name
        self._lock = threading.Lock()
        self._sock: zmq.Socket | None = None
        self._endpoints: set[str] = set()
        self._ids = itertools.count(1)

    def _connect(self, deadline: float) -> None:
        why = "is not offered by any node"
        while True:
            try:
                eps = set(self.node.lookup("service", self.name,
                                           max(0.05, min(1.0, deadline - time.monotonic()))))
            except DirectoryUnavailable as e:  # a caller of call() needs to catch ServiceTimeout only
                eps, why = set(), f"cannot be looked up: {e}"
            if eps:
                break
            if time.monotonic() > deadline:
                raise ServiceTimeout(f"service {self.name!r} {why}")
            time.sleep(0.01)
        if self._sock is None or eps != self._endpoints:
            if self._sock is not None:
                self._sock.close()
            self._sock = self.node.ctx.socket(zmq.DEALER)
            self._sock.setsockopt(zmq.LINGER, 0)
            for ep in eps:
                self._sock.connect(ep)
            self._endpoints = eps

    def call(self, request: Any = None, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._sock is None:
                self._connect(deadline)
            rid = next(self._ids).to_bytes(8, "little")
            header, bufs = codec.encode({} if request is None else request)
            self._sock.send_multipart([b"", rid, header, *bufs], copy=False)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                    self._endpoints = set()  # look the service up again next time (it may have moved)
                    self._sock.close()
                    self._sock = None
                    raise ServiceTimeout(f"service {self.name!r} did not answer within {timeout:.2f} s")
                frames = self._sock.recv_multipart(copy=False)
                if len(frames) < 4 or frames[1].bytes != rid:
                    continue  # a late answer to an earlier, timed-out call
                status = frames[2].bytes
                if status == b"ok":
                    return codec.decode(frames[3].bytes, frames[4:])
                raise ServiceError(f"{self.name}: {msgpack.unpackb(frames[3].bytes)}")

    def close(self):
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class Timer:
    """Calls `fn()` at a fixed rate on its own thread; overruns skip ticks (counted), never bunch up."""

    def __init__(self, node: "Node", hz: float, fn: Callable[[], Any], name: str = ""):
        self.period, self.fn, self.node = 1.0 / hz, fn, node
        self.ticks = self.overruns = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{node.name}:timer:{name}", daemon=True)
        self._thread.start()

    def _run(self):
        next_t = time.monotonic()
        while not (self._stop.is_set() or self.node._stop.is_set()):
            try:
                self.fn()
            except Exception:
                self.node.log.exception("timer callback failed")
            self.ticks += 1
            next_t += self.period
            now = time.monotonic()
            if now > next_t:
                missed = int((now - next_t) / self.period) + 1
                self.overruns += missed
                next_t += missed * self.period
            self._stop.wait(next_t - now)

    def cancel(self):
        self._stop.set()


class Node:
    """A participant of a graph. Create publishers/subscriptions/services, then `spin()` or just use it."""

    def __init__(self, name: str, config: BusConfig | str | None = None, heartbeat_hz: float = 10.0,
                 start_directory: bool = True):
        """`start_directory=False` for tools that only look at a running graph (topics, echo)."""
        self.name = name
        self.uid = uuid.uuid4().hex[:8]  # tells apart two nodes that share a name
        self.config = BusConfig.parse(config) if isinstance(config, str) else (config or BusConfig.from_env())
        self.log = logging.getLogger(f"loopylab.{name}")
        self.ctx = zmq.Context.instance()
        self.stats: dict[str, int] = {"malformed": 0, "unknown_type": 0, "wrong_type": 0}
        self._last_warn: dict[str, float] = {}
        self._stop = StopFlag()
        self._publishers: list[Publisher] = []
        self._subs: list[Subscription] = []
        self._services: list[Service] = []
        self._timers: list[Timer] = []
        self._clients: dict[str, ServiceClient] = {}
        self._cmds: queue.Queue = queue.Queue()
        self._announce_lock = threading.Lock()
        self._old_handlers: dict = {}
        self._start_directory = start_directory
        self._owned_directory = None
        if start_directory:
            try:
                self._owned_directory = ensure_directory(self.config)
            except DirectoryUnavailable as e:  # e.g. a tcp graph whose main host is not up yet
                self.log.warning("%s; carrying on and trying again every %.0f s", e, ANNOUNCE_S)
        # I/O thread wake-up pipe
        self._wake_addr = f"inproc://loopylab-wake-{uuid.uuid4().hex}"
        self._wake_rx = self.ctx.socket(zmq.PAIR)
        self._wake_rx.bind(self._wake_addr)
        self._wake_tx = self.ctx.socket(zmq.PAIR)
        self._wake_tx.connect(self._wake_addr)
        self._wake_lock = threading.Lock()
        self._io = threading.Thread(target=self._io_loop, name=f"{name}:io", daemon=True)
        self._io.start()
        self._hb_period = 1.0 / heartbeat_hz if heartbeat_hz > 0 else 0.0
        self._hb_pub = self.publisher(f"heartbeat/{name}", Heartbeat) if heartbeat_hz > 0 else None
        self._hk = threading.Thread(target=self._housekeeping, name=f"{name}:hk", daemon=True)
        self._hk.start()
        self._dir = threading.Thread(target=self._directory_chores, name=f"{name}:dir", daemon=True)
        self._dir.start()

    # -- creation ----------------------------------------------------------
    def publisher(self, topic: str, msg_type: type | None = None, latched: bool = False,
                  hwm: int = 1000) -> Publisher:
        pub = Publisher(self, topic, msg_type, latched, hwm)
        self._publishers.append(pub)
        self._announce()
        return pub

    def subscribe(self, topic: str, msg_type: type | None = None, callback: Callable | None = None,
                  mode: str = "queue", queue_size: int = 100, raw: bool = False) -> Subscription:
        sub = Subscription(self, topic, msg_type, callback, mode, queue_size, raw)
        self._subs.append(sub)
        done = threading.Event()
        self._command(("add", sub, done))
        done.wait(5)
        try:
            eps = self.lookup("topic", topic)
        except DirectoryUnavailable as e:
            self.log.warning("%s; will connect when publishers appear", e)
            eps = []
        self._command(("connect", sub, eps))
        return sub

    def service(self, name: str, handler: Callable[[Any], Any]) -> Service:
        srv = Service(self, name, handler)
        self._services.append(srv)
        self._announce()
        return srv

    def client(self, name: str) -> ServiceClient:
        if name not in self._clients:
            self._clients[name] = ServiceClient(self, name)
        return self._clients[name]

    def call(self, name: str, request: Any = None, timeout: float = 5.0) -> Any:
        return self.client(name).call(request, timeout)

    def timer(self, hz: float, fn: Callable[[], Any], name: str = "") -> Timer:
        t = Timer(self, hz, fn, name)
        self._timers.append(t)
        return t

    def watch(self, node_name: str) -> Subscription:
        """Follow another node's heartbeat; `sub.is_stale(3 * period)` says it has gone quiet."""
        return self.subscribe(f"heartbeat/{node_name}", Heartbeat, mode="latest")

    # -- directory -----------------------------------------------------------
    def lookup(self, kind: str, name: str, timeout: float = 1.0) -> list[str]:
        """Endpoints of a topic's publishers (kind="topic") or of a service's servers ("service")."""
        return request(self.config, {"op": "lookup", "kind": kind, "names": [name]}, timeout)["endpoints"][name]

    def graph(self) -> dict:
        """Everything the directory knows: topics, services, nodes."""
        return request(self.config, {"op": "list"})

    def _entries(self) -> list[dict]:
        return ([{"kind": "topic", "name": p.topic, "endpoint": p.endpoint,
                  "type": p.msg_type.__name__ if p.msg_type else ""} for p in self._publishers]
                + [{"kind": "service", "name": s.name, "endpoint": s.endpoint, "type": ""}
                   for s in self._services])

    def _announce(self) -> bool:
        with self._announce_lock:
            try:
                request(self.config, {"op": "announce", "node": self.name, "uid": self.uid, "pid": os.getpid(),
                                      "host": socket.gethostname(), "entries": self._entries()})
                return True
            except DirectoryUnavailable as e:
                self._warn("directory", str(e))
                return False

    def _take_over_directory(self) -> None:
        """The directory's process is gone: one surviving node serves it again (file lock / port bind
        elects it) and everybody re-announces within ANNOUNCE_S, so the graph heals by itself."""
        if not self._start_directory or self.config.transport == "inproc":  # inproc: nobody else could
            return
        try:
            d = ensure_directory(self.config, wait_s=0.5)
            if d is not None:
                self._owned_directory = d
                self.log.warning("the graph's directory had gone: %s serves it now", self.name)
                self._announce()
        except (DirectoryUnavailable, zmq.ZMQError) as e:
            self._warn("directory", f"cannot take over the directory: {e}")

    def _bind(self, sock: zmq.Socket, kind: str) -> str:
        ep = self.config.new_endpoint(kind)
        sock.bind(ep)
        if not ep.endswith(":*"):
            return ep
        bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if "://0.0.0.0:" in bound:  # bound on every interface: advertise the one that reaches the directory
            bound = bound.replace("0.0.0.0", _local_ip(self.config.host if self.config.host != "0.0.0.0"
                                                       else "127.0.0.1"))
        return bound

    # -- threads ---------------------------------------------------------------
    def _command(self, cmd) -> None:
        self._cmds.put(cmd)
        with self._wake_lock:
            if not self._wake_tx.closed:
                try:
                    self._wake_tx.send(b"", zmq.NOBLOCK)
                except zmq.Again:  # the I/O thread has ended (node stopping): nobody to wake
                    pass

    def _io_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_rx, zmq.POLLIN)
        poller.register(self._stop.fd, zmq.POLLIN)
        by_sock: dict[zmq.Socket, Subscription] = {}
        while not self._stop.is_set():
            try:
                events = poller.poll()  # the stop flag wakes it: no timeout needed
            except zmq.ZMQError:
                break
            if self._stop.is_set():  # closing: read no more. Peers close too, and a multipart read whose
                break                # pipe terminates halfway is where libzmq can abort (fq.cpp:80)
            for sock, _ in events:
                if sock is self._wake_rx:
                    while True:
                        try:
                            self._wake_rx.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    self._run_commands(poller, by_sock)
                    continue
                sub = by_sock.get(sock)
                if sub is None:
                    continue
                try:
                    self._read(sock, sub)
                except zmq.Again:  # readable went away (a racing disconnect): nothing to read
                    pass
                except Exception:  # never let one topic's trouble stop the node's I/O thread
                    self.log.exception("reading %s failed", sub.topic)
        for s in by_sock:  # this thread's sockets die with it: libzmq sockets must not change hands
            s.close()
        self._wake_rx.close()

    @staticmethod
    def _read(sock: zmq.Socket, sub: Subscription) -> None:
        """Poll said readable, so one message is there; EVENTS says whether more are (cheaper than a
        recv that ends in zmq.Again, which costs an exception per wake-up)."""
        if sub.mode == "latest":
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            while sock.get(_EVENTS) & _POLLIN:  # drain to the newest
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                sub.skipped += 1
            sub._deliver(frames)
        else:
            for _ in range(1000):  # a bounded burst, then the other sockets get their turn
                sub._deliver(sock.recv_multipart(zmq.NOBLOCK, copy=False))
                if not sock.get(_EVENTS) & _POLLIN:
                    break

    def _run_commands(self, poller: zmq.Poller, by_sock: dict) -> None:
        while True:
            try:
                cmd = self._cmds.get_nowait()
            except queue.Empty:
                return
            op, sub = cmd[0], cmd[1]
            if op == "add":
                s = self.ctx.socket(zmq.SUB)
                s.setsockopt(zmq.LINGER, 0)
                s.setsockopt(zmq.RCVHWM, 2 if sub.mode == "latest" else max(1000, sub.queue_size))
                s.setsockopt(zmq.SUBSCRIBE, f"{sub.topic}\0".encode())
                sub.sock = s
                by_sock[s] = sub
                poller.register(s, zmq.POLLIN)
                cmd[2].set()
            elif op == "connect" and sub.sock is not None:
                eps = set(cmd[2])
                for ep in eps - sub.endpoints:
                    sub.sock.connect(ep)
                for ep in sub.endpoints - eps:
                    try:
                        sub.sock.disconnect(ep)
                    except zmq.ZMQError:
                        pass
                sub.endpoints = eps
            elif op == "remove" and sub.sock is not None:
                poller.unregister(sub.sock)
                by_sock.pop(sub.sock, None)
                sub.sock.close()
                sub.sock = None

    # how soon a new subscriber of a latched topic gets its last value (XPUB subscriptions are read by
    # polling: the publisher's socket belongs to the threads that publish)
    LATCHED_POLL_S = 0.02

    def _housekeeping(self) -> None:
        """Fast chores that never wait on the directory: its change feed, latched replies, heartbeats."""
        feed = self.ctx.socket(zmq.SUB)
        feed.setsockopt(zmq.LINGER, 0)
        feed.setsockopt(zmq.SUBSCRIBE, b"topic/")
        feed.connect(self.config.directory_endpoints()[1])
        poller = zmq.Poller()
        poller.register(feed, zmq.POLLIN)
        poller.register(self._stop.fd, zmq.POLLIN)
        next_hb = time.monotonic()
        while not self._stop.is_set():
            # wake for the feed, the next heartbeat, and (only with latched topics) new subscribers
            wait = min(next_hb - time.monotonic() if self._hb_pub is not None else 1.0,
                       self.LATCHED_POLL_S if any(p.latched for p in self._publishers) else 1.0)
            if feed in dict(poller.poll(max(1, int(wait * 1000) + 1))):
                while feed.get(_EVENTS) & _POLLIN:
                    try:
                        key, body = feed.recv_multipart(zmq.NOBLOCK)
                        topic, eps = key.decode()[len("topic/"):], msgpack.unpackb(body)
                    except (ValueError, UnicodeDecodeError, zmq.Again):
                        continue
                    for sub in list(self._subs):
                        if sub.topic == topic:
                            self._command(("connect", sub, eps))
            for p in list(self._publishers):
                if p.latched:
                    p.poll_subscriptions()
            now = time.monotonic()
            if self._hb_pub is not None and now >= next_hb:
                try:
                    self._hb_pub.publish(Heartbeat(node=self.name, pid=os.getpid(), period_s=self._hb_period))
                except zmq.ZMQError:  # closing: the publisher went first
                    break
                next_hb = now + self._hb_period
        feed.close()

    def _directory_chores(self) -> None:
        """Slow chores that may wait on the directory (up to a second when it is gone): announce this
        node, take the directory over when its process died, re-check where our topics are."""
        while not self._stop.wait(ANNOUNCE_S):
            if not self._announce():
                self._take_over_directory()
                continue
            if self._subs:  # the feed is fast; this is the safety net
                try:
                    names = sorted({s.topic for s in self._subs})
                    eps = request(self.config, {"op": "lookup", "kind": "topic", "names": names}, 0.5)
                    for sub in list(self._subs):
                        self._command(("connect", sub, eps["endpoints"].get(sub.topic, [])))
                except DirectoryUnavailable:
                    pass

    def _count(self, what: str, detail: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1
        self._warn(what, detail)

    def _warn(self, key: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) > 5.0:  # rate-limited: a flood must not flood the log
            self._last_warn[key] = now
            self.log.warning("%s (%s, total %d)", detail, key, self.stats.get(key, 0))

    # -- lifecycle -------------------------------------------------------------------
    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._command(("remove", sub))

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def shutdown(self) -> None:
        """Ask `spin()` to return (safe from any thread or signal handler)."""
        self._stop.set()

    def handle_signals(self) -> None:
        """Make SIGINT/SIGTERM shut this node down (main thread only; `spin()` does it too). The
        previous handlers come back when the node closes."""
        if threading.current_thread() is threading.main_thread() and not self._old_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, lambda *_: self.shutdown())

    def spin(self, timeout: float | None = None) -> None:
        """Block until SIGINT/SIGTERM, `shutdown()`, or `timeout` seconds; then close the node."""
        self.handle_signals()
        self._stop.wait(timeout)
        self.close()

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._stop.set()
        try:
            self._command(("wake", None))  # the I/O thread sees the stop now, not at its next poll timeout
        except zmq.ZMQError:
            pass
        for t in self._timers:
            t.cancel()
        try:
            request(self.config, {"op": "bye", "node": self.name, "uid": self.uid}, 0.5)
        except DirectoryUnavailable:
            pass
        threads = [self._io, self._hk, self._dir, *[s._thread for s in self._services],
                   *[t._thread for t in self._timers]]
        for th in threads:
            if th is not threading.current_thread():
                th.join(2)
        for p in self._publishers:
            p.close()
        for c in self._clients.values():
            c.close()
        with self._wake_lock:
            self._wake_tx.close()
        if not any(th.is_alive() for th in threads if th is not threading.current_thread()):
            self._stop.close()  # no thread polls its pipe any more
        if self._start_directory:
            release_directory(self.config)
        if self._old_handlers and threading.current_thread() is threading.main_thread():
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)
        # A directory this node started stays up while the process lives: other nodes may use it.

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
