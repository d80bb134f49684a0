"""The node's I/O thread: it owns every SUB socket of the node, decodes and runs subscription callbacks in
arrival order.

ZeroMQ sockets must not change threads, so the others never touch these sockets: they queue a command (add a
subscription's socket, connect it to the publishers' endpoints, remove it) and wake the thread through an
inproc pipe. The thread blocks on its sockets and the node's stop flag, with no poll timeout: an idle node
does not wake up.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Iterable
from typing import Any

import zmq

from loopylab.bus.pubsub import Subscription, _has_more
from loopylab.bus.stopflag import StopFlag

# ("add", sub, done event) | ("connect", sub, endpoints) | ("remove", sub) | ("wake", None)
Command = tuple[Any, ...]


class Receiver:
    """The I/O thread of node `name` and the SUB sockets it owns; commands come from any thread."""

    def __init__(self, ctx: zmq.Context[Any], name: str, stop: StopFlag, log: logging.Logger):
        self.ctx, self._stop, self.log = ctx, stop, log
        self._cmds: queue.Queue[Command] = queue.Queue()
        # the wake-up pipe: the tx end is shared by the commanding threads (under the lock), rx is the thread's
        wake_addr = f"inproc://loopylab-wake-{uuid.uuid4().hex}"
        self._wake_rx = ctx.socket(zmq.PAIR)
        self._wake_rx.bind(wake_addr)
        self._wake_tx = ctx.socket(zmq.PAIR)
        self._wake_tx.connect(wake_addr)
        self._wake_lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=f"{name}:io", daemon=True)
        self.thread.start()

    # -- any thread ------------------------------------------------------------
    def add(self, sub: Subscription, timeout: float = 5.0) -> None:
        """Create `sub`'s socket on the I/O thread; returns once it exists (or after `timeout`)."""
        done = threading.Event()
        self._command(("add", sub, done))
        done.wait(timeout)

    def connect(self, sub: Subscription, endpoints: Iterable[str]) -> None:
        """Connect `sub` to exactly `endpoints` (the publishers of its topic now)."""
        self._command(("connect", sub, endpoints))

    def remove(self, sub: Subscription) -> None:
        self._command(("remove", sub))

    def wake(self) -> None:
        """Wake the thread (it sees the stop flag now, not at its next message)."""
        self._command(("wake", None))

    def close(self) -> None:
        """Close the commanding end of the wake-up pipe (the thread closes its own sockets as it ends)."""
        with self._wake_lock:
            self._wake_tx.close()

    def _command(self, cmd: Command) -> None:
        self._cmds.put(cmd)
        with self._wake_lock:
            if not self._wake_tx.closed:
                try:
                    self._wake_tx.send(b"", zmq.NOBLOCK)
                except zmq.Again:  # the I/O thread has ended (node stopping): nobody to wake
                    pass

    # -- the I/O thread ----------------------------------------------------------
    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_rx, zmq.POLLIN)
        poller.register(self._stop.fd, zmq.POLLIN)
        by_sock: dict[zmq.Socket[Any], Subscription] = {}
        while not self._stop.is_set():
            try:
                events = poller.poll()  # the stop flag wakes it: no timeout needed
            except zmq.ZMQError:
                break
            if self._stop.is_set():  # closing: read no more. Peers close too, and a multipart read whose
                break  # pipe terminates halfway is where libzmq can abort (fq.cpp:80)
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
    def _read(sock: zmq.Socket[Any], sub: Subscription) -> None:
        """Poll said readable, so one message is there; EVENTS says whether more are (cheaper than a
        recv that ends in zmq.Again, which costs an exception per wake-up)."""
        if sub.mode == "latest":
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            while _has_more(sock):  # drain to the newest
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                sub.skipped += 1
            sub._deliver(frames)
        else:
            for _ in range(1000):  # a bounded burst, then the other sockets get their turn
                sub._deliver(sock.recv_multipart(zmq.NOBLOCK, copy=False))
                if not _has_more(sock):
                    break

    def _run_commands(self, poller: zmq.Poller, by_sock: dict[zmq.Socket[Any], Subscription]) -> None:
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
