"""The control cycle's SYNC READ, with its work done once: the same block from the same motors every period.

`CyclicSyncRead` builds the request's bytes, the exact length of the answer and the check of its headers and
checksums when it is made. Each cycle it drops stale input (one non-blocking read: the port's descriptor
never blocks), sends any prefix (the cycle's SYNC WRITE) and the request in one write, reads exactly the
expected length (a poll, then a read of what is still missing), and checks it in one pass. An answer that is anything but exactly what was asked (an error
byte, a missing, late, stale or corrupt packet, a stuffed byte) is handed, bytes and time left, to the
general path (`MotorBus.transact`): the same matching, barrier, retries and fault classes as every other
request. A port that needs a barrier first (a try failed before) goes the general way from the start.
"""

from __future__ import annotations

import os
import select
import time

from loopylab.firmware_bridge.servo.bus import MotorBus, PortLostError


class CyclicSyncRead:
    def __init__(self, bus: MotorBus, address: int, length: int, ids: list[int], what: str = ""):
        self.bus, self.address, self.length, self.ids = bus, address, length, list(ids)
        self.what = what or f"SYNC READ @{address}+{length}"
        proto = bus.proto
        self.request = proto.sync_read(address, length, self.ids)
        self.expect = [(i, length) for i in self.ids]
        self.total = len(self.ids) * proto.status_size(length)
        self.timeout = bus.timeout_for(len(self.request), self.total, len(self.ids))
        self.check = proto.block_checker(self.ids, length)
        self._subset = lambda some: proto.sync_read(address, length, some)
        self._poll: select.poll | None = None
        self._poll_fd = -1
        self.fast = 0  # cycles answered on the fast path

    def __call__(self, prefix: bytes = b"") -> bytes:
        """The motors' data joined in `ids` order. `prefix` (packets that need no reply) goes out first."""
        bus, fd = self.bus, self.bus._fd
        if bus._dirty or fd < 0 or not self._drop_stale(fd):
            return self._general(prefix, None)
        bus.stats["transactions"] += 1
        bus._write(prefix + self.request if prefix else self.request)
        deadline = time.monotonic() + self.timeout
        if self._poll_fd != fd:
            self._poll, self._poll_fd = select.poll(), fd
            self._poll.register(fd, select.POLLIN)
        poll, total, buf = self._poll, self.total, b""
        last_look = False
        while len(buf) < total and not last_look:
            left = deadline - time.monotonic()
            last_look = left <= 0  # past the deadline, still look once (a late-woken thread finds its answers)
            try:
                if not poll.poll(max(0.0, left) * 1000.0):
                    break
                chunk = os.read(fd, total - len(buf))
            except BlockingIOError:
                continue
            except OSError as e:
                raise PortLostError(f"{bus.port_name} went away while reading: {e}") from e
            if not chunk:
                raise PortLostError(f"{bus.port_name} went away (device disconnected)")
            buf += chunk
        if len(buf) == total:
            data = self.check(buf)
            if data is not None:
                self.fast += 1
                return data
        return self._general(prefix, (buf, max(0.0, deadline - time.monotonic())))

    def _drop_stale(self, fd: int) -> bool:
        """Look for what came since the last cycle (nothing, normally) with one read that never blocks (pyserial's
        timeout 0 sets VMIN = VTIME = 0: an empty read is "nothing there", a gone port shows at the write or
        the poll). False if something came: the general path flushes the rest and counts it."""
        try:
            stale = os.read(fd, 4096)
        except BlockingIOError:
            return True
        except OSError as e:
            raise PortLostError(f"{self.bus.port_name} went away: {e}") from e
        if not stale:
            return True
        self.bus.stats["stale"] += 1
        return False

    def _general(self, prefix: bytes, received: tuple[bytes, float] | None) -> bytes:
        r = self.bus.transact(self.request, self.expect, self.what, self._subset, prefix, received)
        return b"".join(r[i].params for i in self.ids)
