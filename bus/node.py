"""The Node runtime: a participant of a graph that owns its publishers, subscriptions, services, timers and
heartbeat (`pubsub`, `services`, `timer` hold those; this module holds the node that ties them together).

Threads of a node (each owns its sockets; ZeroMQ sockets are never shared without a lock):
- the caller's threads publish directly (one lock per publisher: no hand-off, no added latency);
- the I/O thread (`loopylab.bus.receiver`) owns every SUB socket, decodes and runs subscription callbacks in
  arrival order;
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

import logging
import os
import signal
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

import msgpack
import zmq

from loopylab.bus import access, shm
from loopylab.bus.config import BusConfig, _local_ip
from loopylab.bus.directory import (
    ANNOUNCE_S,
    Directory,
    DirectoryClient,
    DirectoryUnavailable,
    ensure_directory,
    release_directory,
)
from loopylab.bus.messages import Heartbeat
from loopylab.bus.pubsub import Publisher, Subscription, _has_more
from loopylab.bus.receiver import Receiver
from loopylab.bus.services import AccessDenied, Service, ServiceClient, ServiceError, ServiceTimeout
from loopylab.bus.stopflag import StopFlag
from loopylab.bus.timer import Timer

# The names other packages import from here (the classes live in their own modules now).
__all__ = [
    "AccessDenied",
    "Node",
    "Publisher",
    "Service",
    "ServiceClient",
    "ServiceError",
    "ServiceTimeout",
    "Subscription",
    "Timer",
]

_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class Node:
    """A participant of a graph. Create publishers/subscriptions/services, then `spin()` or just use it."""

    def __init__(
        self,
        name: str,
        config: BusConfig | str | None = None,
        heartbeat_hz: float = 10.0,
        start_directory: bool = True,
        keys: access.GraphKeys | None = None,
    ):
        """`start_directory=False` for tools that only look at a running graph (topics, echo). `keys`: a
        sealed graph's keys as this process holds them (else the config's; see `loopylab.bus.access`)."""
        self.name = name
        self.uid = uuid.uuid4().hex[:8]  # tells apart two nodes that share a name
        self.config = BusConfig.parse(config) if isinstance(config, str) else (config or BusConfig.from_env())
        if keys is not None:
            self.config = self.config.with_keys(keys)
        self.log = logging.getLogger(f"loopylab.{name}")
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        # messages dropped and counted; shm_late: a shared-memory slot was reused before this node took it
        self.stats: dict[str, int] = {"malformed": 0, "unknown_type": 0, "wrong_type": 0, "shm_late": 0}
        self._last_warn: dict[str, float] = {}
        self._stop = StopFlag()
        self._hk_wake = StopFlag()  # readable: a new latched publisher for the housekeeping thread to watch
        self._publishers: list[Publisher] = []
        self._subs: list[Subscription] = []
        self._services: list[Service] = []
        self._timers: list[Timer] = []
        self._clients: dict[str, ServiceClient] = {}
        # every client made for this node, also outside client() (a lab runner's): closed by close(), never
        # left to the garbage collector (which closes a socket on whatever thread it happens to run)
        self._client_refs: weakref.WeakSet[ServiceClient] = weakref.WeakSet()
        self._announce_lock = threading.Lock()
        self._old_handlers: dict[int, _SignalHandler] = {}
        self._closed = False
        self._directory = DirectoryClient(self.config)  # one socket for all of this node's requests
        self._start_directory = start_directory
        self._owned_directory: Directory | None = None
        if start_directory:
            try:
                self._owned_directory = ensure_directory(self.config)
            except DirectoryUnavailable as e:  # e.g. a tcp graph whose main host is not up yet
                self.log.warning("%s; carrying on and trying again every %.0f s", e, ANNOUNCE_S)
        self._receiver = Receiver(self.ctx, name, self._stop, self.log)
        self._io = self._receiver.thread
        self._hb_period = 1.0 / heartbeat_hz if heartbeat_hz > 0 else 0.0
        self._hb_pub = self.publisher(f"heartbeat/{name}", Heartbeat) if heartbeat_hz > 0 else None
        self._hk = threading.Thread(target=self._housekeeping, name=f"{name}:hk", daemon=True)
        self._hk.start()
        self._dir = threading.Thread(target=self._directory_chores, name=f"{name}:dir", daemon=True)
        self._dir.start()

    # -- creation ----------------------------------------------------------
    def publisher(self, topic: str, msg_type: type | None = None, latched: bool = False, hwm: int = 1000) -> Publisher:
        pub = Publisher(self, topic, msg_type, latched, hwm)
        self._publishers.append(pub)
        if latched:  # the housekeeping thread watches its socket's events from now on
            self._hk_wake.set()
        self._announce()
        return pub

    def subscribe(
        self,
        topic: str,
        msg_type: type | None = None,
        callback: Callable[..., Any] | None = None,
        mode: str = "queue",
        queue_size: int = 100,
        raw: bool = False,
        polled: bool = False,
        fields: bool = False,
    ) -> Subscription:
        """`polled=True`: no background receiving; the one thread that reads it calls `sub.poll()` (see
        `Subscription`). A callback runs on that thread, inside `poll()`. `fields=True`: messages arrive as the
        dicts of their fields (`codec.decode_fields`), not as messages."""
        sub = Subscription(self, topic, msg_type, callback, mode, queue_size, raw, polled, fields)
        self._subs.append(sub)
        self._receiver.add(sub)
        try:
            eps = self.lookup("topic", topic)
        except DirectoryUnavailable as e:
            self.log.warning("%s; will connect when publishers appear", e)
            eps = []
        self._receiver.connect(sub, eps)
        return sub

    def service(self, name: str, handler: Callable[[Any], Any], allow: Iterable[str] | None = None) -> Service:
        """Serve `name`. `allow`: the roles that may call it (None: every member of the graph); the graph
        file's [access] table overrides it. Others get `AccessDenied` (see `loopylab.bus.access`)."""
        srv = Service(self, name, handler, allow)
        self._services.append(srv)
        self._announce()
        return srv

    def client(self, name: str, role: str | None = None) -> ServiceClient:
        """A client of service `name`, calling as `role` (one this process holds; default: the node's)."""
        key = f"{name}\0{role or ''}"
        if key not in self._clients:
            self._clients[key] = ServiceClient(self, name, role)
        return self._clients[key]

    def call(self, name: str, request: Any = None, timeout: float = 5.0, role: str | None = None) -> Any:
        return self.client(name, role).call(request, timeout)

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles this node may call as (none on an unsealed graph)."""
        return tuple(self.config.keys.held) if self.config.keys else ()

    def _join(self, sock: zmq.Socket[Any], role: str | None = None) -> None:
        """Make `sock` a client of this graph (as `role`) before it connects."""
        access.join(sock, self.config.keys, self.config.transport, role)

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
        eps: list[str] = self._directory.request({"op": "lookup", "kind": kind, "names": [name]}, timeout)["endpoints"][
            name
        ]
        return eps

    def graph(self) -> dict[str, Any]:
        """Everything the directory knows: topics, services, nodes."""
        return self._directory.request({"op": "list"})

    def _entries(self) -> list[dict[str, str]]:
        return [
            {
                "kind": "topic",
                "name": p.topic,
                "endpoint": p.endpoint,
                "type": p.msg_type.__name__ if p.msg_type else "",
            }
            for p in self._publishers
        ] + [{"kind": "service", "name": s.name, "endpoint": s.endpoint, "type": ""} for s in self._services]

    def _announce(self) -> bool:
        with self._announce_lock:
            try:
                self._directory.request(
                    {
                        "op": "announce",
                        "node": self.name,
                        "uid": self.uid,
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "entries": self._entries(),
                    },
                )
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

    def _bind(self, sock: zmq.Socket[Any], kind: str) -> str:
        """Bind `sock` to a new endpoint of this graph; returns the address other nodes connect to."""
        ep = self.config.new_endpoint(kind)
        access.serve(sock, self.config.keys, self.config.transport)  # a sealed graph's members only
        sock.bind(ep)
        if not ep.endswith(":*"):
            return ep
        bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if "://0.0.0.0:" in bound:  # bound on every interface: advertise the one that reaches the directory
            bound = bound.replace(
                "0.0.0.0", _local_ip(self.config.host if self.config.host != "0.0.0.0" else "127.0.0.1")
            )
        return bound

    # -- background threads ------------------------------------------------------
    def _housekeeping(self) -> None:
        """Fast chores that never wait on the directory: its change feed, latched replies, heartbeats."""
        feed = self.ctx.socket(zmq.SUB)
        feed.setsockopt(zmq.LINGER, 0)
        feed.setsockopt(zmq.SUBSCRIBE, b"topic/")
        self._join(feed)
        feed.connect(self.config.directory_endpoints()[1])
        poller = zmq.Poller()
        poller.register(feed, zmq.POLLIN)
        poller.register(self._stop.fd, zmq.POLLIN)
        poller.register(self._hk_wake.fd, zmq.POLLIN)
        latched: list[Publisher] = []
        next_hb = time.monotonic()
        while not self._stop.is_set():
            # wake for the feed, the next heartbeat, a new latched publisher, and a latched publisher's socket
            # events (a new subscriber gets the last value now; the publisher's socket belongs to the threads
            # that publish, so only its events fd is watched here, and it is read under the publisher's lock)
            wait = next_hb - time.monotonic() if self._hb_pub is not None else 1.0
            events = dict(poller.poll(max(1, int(wait * 1000) + 1)))
            if feed in events:
                self._read_feed(feed)
            if self._hk_wake.fd in events:
                self._hk_wake.clear()
            for p in latched:
                if p.events_fd in events:
                    p.poll_subscriptions()
            for p in [p for p in self._publishers if p.latched and p not in latched]:
                latched.append(p)  # watched from now on; looked at once (it may have subscribers already)
                poller.register(p.events_fd, zmq.POLLIN)
                p.poll_subscriptions()
            shm.reader.collect()  # let go of the mappings of shared memory whose publisher went away
            now = time.monotonic()
            if self._hb_pub is not None and now >= next_hb:
                try:
                    self._hb_pub.publish(Heartbeat(node=self.name, pid=os.getpid(), period_s=self._hb_period))
                except zmq.ZMQError:  # closing: the publisher went first
                    break
                next_hb = now + self._hb_period
        feed.close()

    def _read_feed(self, feed: zmq.Socket[Any]) -> None:
        """Connect our subscriptions to the publishers the directory's change feed announces."""
        while _has_more(feed):
            try:
                key, body = feed.recv_multipart(zmq.NOBLOCK)
                topic, eps = key.decode()[len("topic/") :], msgpack.unpackb(body)
            except (ValueError, UnicodeDecodeError, zmq.Again):
                continue
            for sub in list(self._subs):
                if sub.topic == topic:
                    self._receiver.connect(sub, eps)

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
                    eps = self._directory.request({"op": "lookup", "kind": "topic", "names": names}, 0.5)
                    for sub in list(self._subs):
                        self._receiver.connect(sub, eps["endpoints"].get(sub.topic, []))
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
            self._receiver.remove(sub)

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
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        try:
            self._receiver.wake()  # the I/O thread sees the stop now, not at its next poll timeout
        except zmq.ZMQError:
            pass
        for t in self._timers:
            t.cancel()
        try:
            self._directory.request({"op": "bye", "node": self.name, "uid": self.uid}, 0.5)
        except DirectoryUnavailable:
            pass
        threads = [
            self._io,
            self._hk,
            self._dir,
            *[s._thread for s in self._services],
            *[t._thread for t in self._timers],
        ]
        for th in threads:
            if th is not threading.current_thread():
                th.join(2)
        for p in self._publishers:
            p.close()
        for sub in self._subs:
            if sub.polled:
                sub._close_polled()
        shm.reader.collect(force=True)
        for c in list(self._client_refs):
            c.close()
        self._directory.close()
        self._receiver.close()
        if not any(th.is_alive() for th in threads if th is not threading.current_thread()):
            self._stop.close()  # no thread polls its pipe any more
            self._hk_wake.close()
        if self._start_directory:
            release_directory(self.config)
        if self._old_handlers and threading.current_thread() is threading.main_thread():
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)
        # A directory this node started stays up while the process lives: other nodes may use it.

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
