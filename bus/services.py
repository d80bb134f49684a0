"""Services: a Service answers requests on its own thread; a ServiceClient calls one, from any thread.

Wire: the client's DEALER sends `["", request id, header, *buffers]`; the server's ROUTER answers
`[identity, "", request id, b"ok", header, *buffers]` or `[..., b"error", msgpack(text)]`. The request id lets a
client drop a late answer to a call that already timed out.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgpack
import zmq

from loopylab.bus import access, codec
from loopylab.bus.directory import DirectoryUnavailable

if TYPE_CHECKING:
    from loopylab.bus.node import Node


class ServiceError(RuntimeError):
    """The service answered with an error."""


class AccessDenied(ServiceError):
    """The service refused the caller: its role may not call it (see `loopylab.bus.access`)."""


class ServiceTimeout(TimeoutError):
    """The service did not answer in time (or is not running)."""


class Service:
    """Answers requests on its own thread; the handler takes a dict and returns a dict. `allow`: the roles
    that may call it (None: every member of the graph); the graph's [access] policy overrides it."""

    def __init__(self, node: Node, name: str, handler: Callable[[Any], Any], allow: Iterable[str] | None = None):
        self.node, self.name, self.handler = node, name, handler
        keys = node.config.keys
        self.allow = keys.allowed(name, allow) if keys else (None if allow is None else tuple(allow))
        self.endpoint = ""
        self.calls = 0
        self.refused = 0
        self._bound = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"{node.name}:{name}", daemon=True)
        self._thread.start()
        self._bound.wait()  # the endpoint (or the bind's error) is known before anyone announces it
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        # the ROUTER socket lives and dies on this thread (created, bound, read and closed here)
        stop = self.node._stop
        sock = self.node.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            self.endpoint = self.node._bind(sock, "s")
        except Exception as e:
            self._error = e
            sock.close()
            return
        finally:
            self._bound.set()
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
                if self.allow is not None:
                    self._check(ident, frames[1])
                request = codec.decode(frames[3].bytes, frames[4:])
                reply = self.handler(request)
                header, bufs = codec.encode(reply)
                out = [ident, b"", rid, b"ok", header, *bufs]
            except AccessDenied as e:  # logged (and recorded) by access.refuse
                out = [ident, b"", rid, b"error", msgpack.packb(f"AccessDenied: {e}")]
            except Exception as e:
                self.node.log.warning("service %s: %s: %s", self.name, type(e).__name__, e)
                out = [ident, b"", rid, b"error", msgpack.packb(f"{type(e).__name__}: {e}")]
            self.calls += 1
            try:
                sock.send_multipart(out, copy=False)
            except zmq.ZMQError:
                break
        sock.close()

    def _check(self, ident: bytes, frame: zmq.Frame) -> None:
        """Raise AccessDenied unless the caller's proven role is allowed (checked before decoding)."""
        cfg = self.node.config
        role = access.caller_role(ident, frame, cfg.keys, cfg.transport)
        if role not in (self.allow or ()):
            self.refused += 1
            raise AccessDenied(access.refuse(cfg.keys.domain if cfg.keys else "", self.name, role, self.allow or ()))


class ServiceClient:
    """Calls a service; safe from several threads. A timeout never leaves the client unusable."""

    def __init__(self, node: Node, name: str, role: str | None = None):
        """`role`: the role to call as (one whose key this process holds; default: the node's)."""
        self.node, self.name, self.role = node, name, role
        if role is not None and node.config.keys is not None:
            node.config.keys.keypair(role)  # AccessError now, not at the first call
        self._lock = threading.Lock()
        self._sock: zmq.Socket[Any] | None = None
        self._endpoints: set[str] = set()
        self._ids = itertools.count(1)
        node._client_refs.add(self)

    def _connect(self, deadline: float) -> zmq.Socket[Any]:
        """A socket connected to every server of the service, looked up until `deadline`."""
        why = "is not offered by any node"
        while True:
            try:
                eps = set(self.node.lookup("service", self.name, max(0.05, min(1.0, deadline - time.monotonic()))))
            except DirectoryUnavailable as e:  # a caller of call() needs to catch ServiceTimeout only
                eps, why = set(), f"cannot be looked up: {e}"
            if eps:
                break
            if time.monotonic() > deadline:
                raise ServiceTimeout(f"service {self.name!r} {why}")
            time.sleep(0.01)
        sock = self.node.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        self.node._join(sock, self.role)
        for ep in eps:
            sock.connect(ep)
        self._sock, self._endpoints = sock, eps
        return sock

    def call(self, request: Any = None, timeout: float = 5.0) -> Any:
        """The service's answer to `request` (a dict, or anything the codec carries). Raises ServiceTimeout
        when no server answers within `timeout` s, ServiceError when the handler failed."""
        deadline = time.monotonic() + timeout
        with self._lock:
            sock = self._sock if self._sock is not None else self._connect(deadline)
            rid = next(self._ids).to_bytes(8, "little")
            header, bufs = codec.encode({} if request is None else request)
            frames: list[Any] = [b"", rid, header, *bufs]
            # A DEALER whose servers have all gone has nowhere to queue a request, and a blocking send would
            # wait for one forever, past the timeout: wait until it can send, as long as the call may take.
            try:
                left = deadline - time.monotonic()
                if left <= 0 or not sock.poll(int(left * 1000) + 1, zmq.POLLOUT):
                    raise zmq.Again()
                sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._forget(sock)
                raise ServiceTimeout(
                    f"service {self.name!r} took no request within {timeout:.2f} s (its servers have gone)"
                ) from None
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sock.poll(int(left * 1000) + 1):
                    self._forget(sock)
                    raise ServiceTimeout(f"service {self.name!r} did not answer within {timeout:.2f} s")
                frames = sock.recv_multipart(copy=False)
                if len(frames) < 4 or frames[1].bytes != rid:
                    continue  # a late answer to an earlier, timed-out call
                status = frames[2].bytes
                if status == b"ok":
                    return codec.decode(frames[3].bytes, frames[4:])
                text = msgpack.unpackb(frames[3].bytes)
                if isinstance(text, str) and text.startswith("AccessDenied: "):
                    raise AccessDenied(text[len("AccessDenied: ") :])
                raise ServiceError(f"{self.name}: {text}")

    def _forget(self, sock: zmq.Socket[Any]) -> None:  # caller holds the lock
        self._endpoints = set()  # look the service up again next time (it may have moved)
        access.forget(sock)
        sock.close()
        self._sock = None

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                access.forget(self._sock)
                self._sock.close()
                self._sock = None
