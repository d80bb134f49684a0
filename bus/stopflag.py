"""A stop flag that a thread blocked in a ZeroMQ poll can wait on, so that it needs no poll timeout.

Background threads that poll with a short timeout only to notice a shutdown wake up dozens of times a
second for nothing, and each wake-up also takes the GIL from the thread doing real work (a lockstep
simulator measured 2-3 % of a core per idle node). A `StopFlag` is a `threading.Event` plus a pipe: its
`fd` turns readable when the flag is set and stays readable, so `zmq.Poller` can wait on it together with
its sockets for as long as nothing happens.
"""

from __future__ import annotations

import os
import threading


class StopFlag:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._closed = False
        self._lock = threading.RLock()  # re-entrant: a signal handler may set the flag while close() runs

    @property
    def fd(self) -> int:
        """Readable once the flag is set (register it with zmq.Poller as POLLIN)."""
        return self._r

    def set(self) -> None:
        """Set the flag and wake every poll waiting on `fd` (safe from any thread and signal handler)."""
        self._event.set()
        with self._lock:  # never write to a closed descriptor (its number may belong to a new file)
            if not self._closed:
                try:
                    os.write(self._w, b"x")
                except OSError:  # the pipe is full (set many times): it is readable anyway
                    pass

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def close(self) -> None:
        """Release the pipe; only once no thread polls `fd` any more."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._r)
                os.close(self._w)

    def __del__(self) -> None:  # a flag dropped without close() (e.g. a directory that failed to bind)
        try:
            self.close()
        except Exception:
            pass
