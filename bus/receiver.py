"""The node's I/O thread: it owns every SUB socket of the node, decodes and runs subscription callbacks in
arrival order.

ZeroMQ sockets must not change threads, so the others never touch these sockets: they queue a command (add a
subscription, connect it to the publishers' endpoints, remove it) and wake the thread through a pipe (an OS
pipe, not a ZeroMQ socket: nothing of ZeroMQ's is shared). The thread blocks on its sockets, the wake-up pipe
and the node's stop flag, with no poll timeout: an idle node does not wake up.

One SUB socket per (subscription, publisher endpoint), and never `disconnect()`: a publisher that goes away
has its socket closed. libzmq 4.3.5 aborts (`Assertion failed: !_more (src/fq.cpp:80)`) when a SUB socket
that disconnected one of its pipes goes on reading multipart messages from its other pipes: the termination's
acknowledgement is processed in the middle of a message (every 100th recv), `fq_t::pipe_terminated` moves the
pipe being read to another slot but points `_current` at slot 0, and the next part is looked for in the wrong
pipe. A socket with one pipe that it never terminates itself cannot get there (tests/bus/test_stress.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any

import zmq

from loopylab.bus.pubsub import Subscription
from loopylab.bus.stopflag import StopFlag

# ("add", sub, done event) | ("connect", sub, endpoints) | ("remove", sub) | ("wake", None)
Command = tuple[Any, ...]


class Receiver:
    """The I/O thread of node `name` and the SUB sockets it owns; commands come from any thread."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        name: str,
        stop: StopFlag,
        log: logging.Logger,
    ):
        self.ctx, self._stop, self.log = ctx, stop, log
        self._cmds: queue.Queue[Command] = queue.Queue()
        self._wake = StopFlag()  # a pipe the thread polls: readable while commands wait
        self.thread = threading.Thread(target=self._loop, name=f"{name}:io", daemon=True)
        self.thread.start()

    # -- any thread ------------------------------------------------------------
    def add(self, sub: Subscription, timeout: float = 5.0) -> None:
        """Register `sub` with the I/O thread; returns once it has (or after `timeout`). A polled subscription
        is its poller's, not the thread's: it only takes the endpoints at its next poll."""
        if sub.polled:
            sub._registered = True
            return
        done = threading.Event()
        self._command(("add", sub, done))
        done.wait(timeout)

    def connect(self, sub: Subscription, endpoints: Iterable[str]) -> None:
        """Connect `sub` to exactly `endpoints` (the publishers of its topic now)."""
        if sub.polled:
            if sub._registered:
                sub._connect_later(set(endpoints))
            return
        self._command(("connect", sub, list(endpoints)))

    def remove(self, sub: Subscription) -> None:
        if sub.polled:  # its sockets close at its next poll (or when the node closes)
            sub._connect_later(set())
            sub._registered = False
            return
        self._command(("remove", sub))

    def wake(self) -> None:
        """Wake the thread (it sees the stop flag now, not at its next message)."""
        self._command(("wake", None))

    def close(self) -> None:
        """Nothing of ZeroMQ's to close here (the thread closes its sockets as it ends); the wake-up pipe
        is released by the thread itself."""

    def _command(self, cmd: Command) -> None:
        self._cmds.put(cmd)
        self._wake.set()

    # -- the I/O thread ----------------------------------------------------------
    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake.fd, zmq.POLLIN)
        poller.register(self._stop.fd, zmq.POLLIN)
        by_sock: dict[zmq.Socket[Any], Subscription] = {}
        try:
            while not self._stop.is_set():
                try:
                    events = poller.poll()  # the stop flag wakes it: no timeout needed
                except zmq.ZMQError:
                    break
                if self._stop.is_set():  # closing: read no more
                    break
                for sock, _ in events:
                    if sock == self._wake.fd:
                        self._wake.clear()
                        self._run_commands(poller, by_sock)
                        continue
                    sub = by_sock.get(sock)
                    if sub is None:
                        continue
                    try:
                        sub._read(sock)
                    except zmq.Again:  # readable went away: nothing to read
                        pass
                    except Exception:  # never let one topic's trouble stop the node's I/O thread
                        self.log.exception("reading %s failed", sub.topic)
        finally:
            for s in by_sock:  # this thread's sockets die with it: libzmq sockets must not change hands
                s.close()
            for sub in set(by_sock.values()):
                sub.socks = {}
            self._wake.close()

    def _run_commands(self, poller: zmq.Poller, by_sock: dict[zmq.Socket[Any], Subscription]) -> None:
        while True:
            try:
                cmd = self._cmds.get_nowait()
            except queue.Empty:
                return
            op, sub = cmd[0], cmd[1]
            if op == "add":
                sub._registered = True
                cmd[2].set()
            elif op == "connect" and sub._registered:
                eps = set(cmd[2])
                for ep in eps - sub.endpoints:
                    s = sub.socks[ep] = sub._open(ep)
                    by_sock[s] = sub
                    poller.register(s, zmq.POLLIN)
                for ep in sub.endpoints - eps:  # the publisher has gone: close its socket (no disconnect)
                    self._close(sub.socks.pop(ep), poller, by_sock)
                sub.endpoints = eps
            elif op == "remove" and sub._registered:
                sub._registered = False
                for s in sub.socks.values():
                    self._close(s, poller, by_sock)
                sub.socks = {}

    @staticmethod
    def _close(s: zmq.Socket[Any], poller: zmq.Poller, by_sock: dict[zmq.Socket[Any], Subscription]) -> None:
        poller.unregister(s)
        by_sock.pop(s, None)
        s.close()
