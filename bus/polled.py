"""Several polled subscriptions read together, with one system call when nothing has come.

A control loop looks at its inputs once a cycle (`Subscription(polled=True)`). Asking each of their ZeroMQ
sockets whether a message waits (ZMQ_EVENTS) costs a poll and a getpid system call per socket, every cycle,
mostly for nothing (an e-stop topic that never speaks). ZeroMQ's ZMQ_FD of a socket turns readable when
something happens to it (a message comes to a socket that was read empty); so a `PollGroup` keeps every
socket's ZMQ_FD in one `select.poll` and asks only the sockets whose descriptor woke, plus those that may still
hold messages without a wake-up to come (new ones, a burst cut short): those are read as `Subscription.poll`
reads them, until ZeroMQ says they are empty.
"""

from __future__ import annotations

import select
from typing import Any

import zmq

from loopylab.bus.pubsub import Subscription


class PollGroup:
    """`poll()` takes what came on any of `subs` (polled subscriptions) since the last look, without blocking.
    Always from the same thread, the one that owns their sockets."""

    def __init__(self, subs: list[Subscription]):
        for sub in subs:
            if not sub.polled:
                raise RuntimeError(f"{sub.topic}: a PollGroup reads subscriptions made with polled=True")
        self.subs = list(subs)
        self._seen = [-1] * len(self.subs)  # each subscription's `sockets_changed` when registered
        self._poller = select.poll()
        self._by_fd: dict[int, tuple[Subscription, zmq.Socket[Any]]] = {}

    def _register(self) -> None:
        """(Re)register every open socket's ZMQ_FD (after a subscription's sockets changed)."""
        self._poller, self._by_fd = select.poll(), {}
        for k, sub in enumerate(self.subs):
            with sub._want_lock:
                self._seen[k] = sub.sockets_changed
                for sock in sub.socks.values():
                    fd = int(sock.get(zmq.FD))  # (an int option: never bytes)
                    self._by_fd[fd] = (sub, sock)
                    self._poller.register(fd, select.POLLIN)
                    sub._undrained.add(sock)  # looked at once: what came before registering woke nobody

    def poll(self) -> int:
        """How many sockets had messages; then each subscription's `latest()` / `get(timeout=0)` has them."""
        subs, changed = self.subs, False
        for k, sub in enumerate(subs):
            if sub._want is not None:  # (read without the lock: a change seen late is taken at the next poll)
                with sub._want_lock:
                    sub._take_endpoints()
            changed = changed or sub.sockets_changed != self._seen[k]
        if changed:
            self._register()
        ready = self._poller.poll(0) if self._by_fd else ()
        look: dict[Subscription, list[zmq.Socket[Any]]] = {}
        for fd, _ in ready:
            item = self._by_fd.get(fd)
            if item is not None:
                look.setdefault(item[0], []).append(item[1])
        for sub in subs:
            if sub._undrained:
                socks = look.setdefault(sub, [])
                socks.extend(s for s in sub._undrained if s not in socks)
        n = 0
        for sub, socks in look.items():
            with sub._want_lock:  # the node's close may have closed them meanwhile: `_look` skips those
                n += sub._look(socks, woke=True)
        return n
