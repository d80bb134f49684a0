"""Timers: a function called at a fixed rate on its own thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopylab.bus.node import Node


class Timer:
    """Calls `fn()` at a fixed rate on its own thread; overruns skip ticks (counted), never bunch up."""

    def __init__(self, node: Node, hz: float, fn: Callable[[], Any], name: str = ""):
        self.period, self.fn, self.node = 1.0 / hz, fn, node
        self.ticks = self.overruns = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{node.name}:timer:{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
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

    def cancel(self) -> None:
        self._stop.set()
