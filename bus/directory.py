"""The graph directory: who publishes which topic and serves which service, at which endpoint.

Why a directory rather than an XPUB/XSUB proxy: a proxy puts a second hop (and a second copy of every
camera frame) on every message; the directory is only asked when a node starts or a publisher appears,
after which publishers and subscribers talk directly. Each node announces its endpoints when they change
and every `ANNOUNCE_S` seconds (so a restarted directory fills itself again and dead nodes age out); the
directory pushes changes on a feed so subscribers connect to new publishers at once.

The directory runs inside `loopylab launch`; a node that finds none starts one in its own process
(elected with a file lock for ipc, by binding the port for tcp), so a single script needs nothing else.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import threading
import time
from typing import IO, Any

import msgpack
import zmq

from loopylab.bus import access
from loopylab.bus.config import BusConfig
from loopylab.bus.stopflag import StopFlag

log = logging.getLogger("loopylab.directory")
ANNOUNCE_S = 1.0
EXPIRE_S = 5.0 * ANNOUNCE_S
_local_lock = threading.Lock()
_local: dict[str, Directory] = {}
_inproc_users: dict[str, int] = {}  # inproc graph -> nodes of this process in it


class DirectoryUnavailable(RuntimeError):
    pass


class Directory:
    """Serves the graph's registry on a ROUTER socket and publishes changes on a PUB feed."""

    def __init__(self, config: BusConfig):
        self.config = config
        self.req_ep, self.feed_ep = config.directory_endpoints()
        # node instance (name, or name#uid) -> {name, pid, host, seen, entries: [{kind, name, endpoint, type}]}
        self.nodes: dict[str, dict[str, Any]] = {}
        self._stop = StopFlag()
        self._thread: threading.Thread | None = None
        self._lockfile: IO[str] | None = None  # the ipc owner's flock, held while it serves

    # -- lifecycle -------------------------------------------------------
    def start(self) -> Directory:
        """Serve on a thread of its own, which creates, binds, uses and closes both sockets; returns once
        they are bound (raises the bind's error, e.g. EADDRINUSE when another process serves the graph)."""
        self._bound = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"directory-{self.config.graph}", daemon=True)
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            self._thread.join()
            self._stop.close()
            raise self._error
        log.debug("directory for %s at %s", self.config.url, self.req_ep)
        return self

    def _open(self) -> bool:
        ctx: zmq.Context[Any] = zmq.Context.instance()
        self._router = ctx.socket(zmq.ROUTER)
        self._feed = ctx.socket(zmq.PUB)
        try:
            for s in (self._router, self._feed):
                s.setsockopt(zmq.LINGER, 0)
                access.serve(s, self.config.keys, self.config.transport)  # a sealed graph admits its keys only
            self._router.bind(self.req_ep)
            self._feed.bind(self.feed_ep)
            return True
        except Exception as e:
            self._error = e
            self._router.close()
            self._feed.close()
            return False
        finally:
            self._bound.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
            if not self._thread.is_alive():
                self._stop.close()
        if self.config.transport == "ipc":  # leave no socket files for the next owner to trip on
            for f in ("dir.sock", "feed.sock"):
                (self.config.run_dir() / f).unlink(missing_ok=True)
        if self._lockfile:
            self._lockfile.close()

    # -- state -----------------------------------------------------------
    def _alive(self, info: dict[str, Any], now: float) -> bool:
        if now - info["seen"] > EXPIRE_S:
            return False
        if info.get("host") == socket.gethostname() and info.get("pid"):
            try:
                os.kill(info["pid"], 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
        return True

    def _prune(self) -> None:
        now = time.monotonic()
        dead = [n for n, info in self.nodes.items() if not self._alive(info, now)]
        for n in dead:
            self._set_node(n, None)

    def table(self, kind: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for node, info in self.nodes.items():
            for e in info["entries"]:
                if e["kind"] == kind:
                    out.setdefault(e["name"], []).append({**e, "node": info.get("name", node)})
        return out

    def _set_node(self, node: str, info: dict[str, Any] | None) -> None:
        before = {(e["kind"], e["name"]) for e in self.nodes.get(node, {}).get("entries", [])}
        old_eps = {(e["kind"], e["name"], e["endpoint"]) for e in self.nodes.get(node, {}).get("entries", [])}
        if info is None:
            self.nodes.pop(node, None)
            after, new_eps = set(), set()
        else:
            self.nodes[node] = info
            after = {(e["kind"], e["name"]) for e in info["entries"]}
            new_eps = {(e["kind"], e["name"], e["endpoint"]) for e in info["entries"]}
        if old_eps == new_eps:
            return
        for kind, name in before | after:
            eps = [e["endpoint"] for e in self.table(kind).get(name, [])]
            self._feed.send_multipart([f"{kind}/{name}".encode(), msgpack.packb(eps)])

    def _offers(self, key: str, role: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """On a sealed graph a service is offered by nodes of one role: the first to offer it. Another role's
        offer of the same name (an agent posing as the oracle, or as the skills, to whoever calls them) is
        dropped, and recorded as a refusal."""
        keys = self.config.keys
        if keys is None or self.config.transport == "inproc":  # inproc: one process, one trust domain
            return entries
        offered = {
            e["name"]: i.get("role", "")
            for k, i in self.nodes.items()
            if k != key
            for e in i["entries"]
            if e["kind"] == "service"
        }
        kept = []
        for e in entries:
            owner = offered.get(e["name"])
            if e["kind"] == "service" and owner is not None and owner != role:
                access.refuse(keys.domain, f"offer of {e['name']}", role, (owner,))
                continue
            kept.append(e)
        return kept

    def _handle(self, req: dict, role: str = "") -> dict:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "announce":
            entries = [{k: e[k] for k in ("kind", "name", "endpoint", "type")} for e in req["entries"]]
            key = _key(req)
            entries = self._offers(key, role, entries)
            if key not in self.nodes and any(i["name"] == req["node"] for i in self.nodes.values()):
                log.warning(
                    "two nodes are named %r (pid %s on %s and another); both are kept",
                    req["node"],
                    req.get("pid"),
                    req.get("host"),
                )
            self._set_node(
                key,
                {
                    "name": req["node"],
                    "pid": req.get("pid", 0),
                    "host": req.get("host", ""),
                    "seen": time.monotonic(),
                    "entries": entries,
                    "extra": req.get("extra", {}),
                    "role": role,  # proven by its key (sealed ipc/tcp graphs), else ""
                },
            )
            return {"ok": True}
        if op == "bye":
            self._set_node(_key(req), None)
            return {"ok": True}
        self._prune()
        if op == "lookup":
            return {
                "ok": True,
                "endpoints": {n: [e["endpoint"] for e in self.table(req["kind"]).get(n, [])] for n in req["names"]},
            }
        if op == "list":
            nodes: dict[str, dict] = {}
            for key, i in self.nodes.items():  # by name; a duplicated name shows as name#uid
                nodes[i["name"] if i["name"] not in nodes else key] = {
                    "pid": i["pid"],
                    "host": i["host"],
                    "extra": i.get("extra", {}),
                }
            return {"ok": True, "topics": self.table("topic"), "services": self.table("service"), "nodes": nodes}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _run(self) -> None:
        if not self._open():
            return
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._stop.fd, zmq.POLLIN)
        last_prune = time.monotonic()
        while not self._stop.is_set():
            wait_ms = max(1, int(1000 * (last_prune + ANNOUNCE_S - time.monotonic())) + 1)
            if self._router in dict(poller.poll(wait_ms)):  # a request, or the stop flag, or prune time
                msg = self._router.recv_multipart(copy=False)
                frames = [f.bytes for f in msg]
                cfg = self.config
                role = access.caller_role(frames[0], msg[-1], cfg.keys, cfg.transport) if cfg.keys else ""
                try:
                    reply = self._handle(msgpack.unpackb(frames[-1]), role)
                except Exception as e:  # a bad request must not kill the directory
                    reply = {"ok": False, "error": f"bad request: {e}"}
                self._router.send_multipart([*frames[:-1], msgpack.packb(reply)])
            if time.monotonic() - last_prune > ANNOUNCE_S:
                self._prune()
                last_prune = time.monotonic()
        self._router.close()
        self._feed.close()


def _key(req: dict[str, Any]) -> str:
    """Nodes are told apart by name plus a per-instance id, so two nodes that share a name (two
    recorders, a restarted node whose old self has not expired yet) never overwrite each other."""
    return f"{req['node']}#{req['uid']}" if req.get("uid") else str(req["node"])


def request(config: BusConfig, req: dict[str, Any], timeout: float = 1.0) -> dict[str, Any]:
    """One request to the directory on a throw-away REQ socket (never left in a broken state)."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    try:
        access.join(s, config.keys, config.transport)
        s.connect(config.directory_endpoints()[0])
        s.send(msgpack.packb(req))
        if not s.poll(int(timeout * 1000)):
            raise DirectoryUnavailable(_no_answer(config, timeout))
        reply = msgpack.unpackb(s.recv(), strict_map_key=False)
    finally:
        s.close()
    if not reply.get("ok"):
        raise RuntimeError(f"directory: {reply.get('error')}")
    return reply


class DirectoryClient:
    """A node's requests to the directory on one DEALER socket, kept open. A node asks twice a second (its
    announce and the safety-net lookup); a throw-away socket each time costs a connection, a handshake and a
    close, in this process's ZeroMQ thread too: about 1.5 ms of CPU a second, on a driver's budget. Each
    request carries a number that the directory's ROUTER sends back (it returns every frame but the last), so
    an answer is only ever taken for its own request; a request that times out drops the socket (and whatever
    it still queued) and the next one opens a new one: never left in a broken state. Any thread (one lock)."""

    def __init__(self, config: BusConfig):
        self.config = config
        self._lock = threading.Lock()
        self._sock: zmq.Socket[Any] | None = None
        self._n = 0
        self._closed = False

    def request(self, req: dict[str, Any], timeout: float = 1.0) -> dict[str, Any]:
        with self._lock:
            if self._closed:
                raise DirectoryUnavailable(f"the node's directory client for {self.config.url} is closed")
            if self._sock is None:
                self._sock = zmq.Context.instance().socket(zmq.DEALER)
                self._sock.setsockopt(zmq.LINGER, 0)
                access.join(self._sock, self.config.keys, self.config.transport)
                self._sock.connect(self.config.directory_endpoints()[0])
            sock = self._sock
            self._n += 1
            tag = self._n.to_bytes(8, "little")
            deadline = time.monotonic() + timeout
            try:
                sock.send_multipart([tag, msgpack.packb(req)], zmq.NOBLOCK)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0 or not sock.poll(max(1, int(left * 1000))):
                        raise DirectoryUnavailable(_no_answer(self.config, timeout))
                    frames = sock.recv_multipart()
                    if len(frames) == 2 and frames[0] == tag:  # (an older request's late answer: dropped)
                        break
            except (DirectoryUnavailable, zmq.ZMQError) as e:
                self._sock = None
                sock.close()
                if isinstance(e, DirectoryUnavailable):
                    raise
                raise DirectoryUnavailable(f"directory at {self.config.url}: {e}") from None
        reply: dict[str, Any] = msgpack.unpackb(frames[1], strict_map_key=False)
        if not reply.get("ok"):
            raise RuntimeError(f"directory: {reply.get('error')}")
        return reply

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _no_answer(config: BusConfig, timeout: float) -> str:
    hint = "" if config.keys else " (a sealed graph answers only processes that hold its keys)"
    return f"no directory answered at {config.url} within {timeout:.1f} s{hint}"


def _ping(config: BusConfig, timeout: float) -> bool:
    try:
        request(config, {"op": "ping"}, timeout)
        return True
    except DirectoryUnavailable:
        return False


def ensure_directory(config: BusConfig, wait_s: float = 5.0) -> Directory | None:
    """Make sure the graph has a directory; start one in this process if nobody serves it.

    Returns the Directory when this process started it, else None.
    """
    if config.transport == "inproc":
        with _local_lock:
            _inproc_users[config.url] = _inproc_users.get(config.url, 0) + 1
            if config.url not in _local:
                _local[config.url] = Directory(config).start()
                return _local[config.url]
            return None
    with _local_lock:
        if config.url in _local:
            return None
        if config.transport == "ipc":
            sock = config.run_dir() / "dir.sock"
            if sock.exists() and _ping(config, 0.3):
                return None
            lock = open(config.run_dir() / "dir.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                _wait_for_other(config, wait_s)
                return None
            for f in ("dir.sock", "feed.sock"):  # stale files of a dead owner
                (config.run_dir() / f).unlink(missing_ok=True)
            d = Directory(config)
            d._lockfile = lock
            _local[config.url] = d.start()
            return d
        # tcp: whoever binds the port owns the directory
        if _ping(config, 0.3):
            return None
        try:
            d = Directory(config).start()
        except zmq.ZMQError as e:
            if e.errno == errno.EADDRINUSE:
                _wait_for_other(config, wait_s)
                return None
            if e.errno in (errno.EADDRNOTAVAIL, errno.EINVAL, errno.ENODEV):  # the directory's host is not us
                _wait_for_other(
                    config, wait_s, f"{config.host} is another machine: start the graph (loopylab launch) there first"
                )
                return None
            raise
        _local[config.url] = d
        return d


def release_directory(config: BusConfig) -> None:
    """A node of this process leaves the graph. An inproc graph lives in this process alone, so its
    directory stops with its last node (a process that runs many short graphs, like an evaluation
    worker, must not pile up directory threads and sockets). ipc/tcp directories may serve other
    processes: they live until `stop_local` or the end of the process."""
    if config.transport != "inproc":
        return
    with _local_lock:
        n = _inproc_users.get(config.url, 0) - 1
        if n > 0:
            _inproc_users[config.url] = n
            return
        _inproc_users.pop(config.url, None)
        d = _local.pop(config.url, None)
    if d is not None:
        d.stop()


def stop_local(config: BusConfig | str) -> bool:
    """Stop the directory this process serves for a graph (launcher shutdown, tests). True if it did."""
    config = BusConfig.parse(config) if isinstance(config, str) else config
    with _local_lock:
        d = _local.pop(config.url, None)
        _inproc_users.pop(config.url, None)
    if d is None:
        return False
    d.stop()
    return True


def _wait_for_other(config: BusConfig, wait_s: float, why: str = "") -> None:
    """Return once the directory another process holds answers; raise DirectoryUnavailable after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _ping(config, 0.2):
            return
    raise DirectoryUnavailable(
        f"no directory answers at {config.url}: " + (why or "another process holds it but does not answer")
    )
