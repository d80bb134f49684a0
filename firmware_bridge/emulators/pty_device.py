"""The device end of a pseudo-terminal, and the faults an emulator can inject on it.

The host opens `path`: a symlink we own (like `socat ... link=`) to the current /dev/pts/N, so the
name stays the same when the port "vanishes" (both ends closed, link removed — what an unplugged
USB adapter looks like to the host) and comes back (a new pty behind the same link).
"""

from __future__ import annotations

import os
import pty
import random
import select
import shutil
import tempfile
import termios
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

# termios speed constants -> baud (ptys keep the host's setting; the device can see it on the master)
_SPEEDS = {
    getattr(termios, f"B{b}"): b
    for b in (
        9600,
        19200,
        38400,
        57600,
        115200,
        230400,
        460800,
        500000,
        576000,
        921600,
        1000000,
        1152000,
        1500000,
        2000000,
        2500000,
        3000000,
        3500000,
        4000000,
    )
    if hasattr(termios, f"B{b}")
}


@dataclass
class Faults:
    """What goes wrong next. Counters are consumed one reply at a time; rates draw from a seeded RNG.
    `Faults.parse("drop=0.05,corrupt=0.05,delay_ms=5,silent=3,port_loss_after=10s")` reads the
    `loopylab arm emulate --fault` spec."""

    drop_bytes: int = 0  # the next N replies each lose one byte
    corrupt: int = 0  # the next N replies each get a flipped checksum byte
    silent_ids: set[int] = field(default_factory=set)  # devices that no longer answer
    latency_s: float = 0.0  # added before every reply
    drop_rate: float = 0.0  # probability that a reply loses a byte
    corrupt_rate: float = 0.0  # probability that a reply is corrupted
    lose: int = 0  # the next N replies are lost whole
    lose_rate: float = 0.0  # probability that a reply is lost whole
    late: int = 0  # the next N replies come `late_s` late (after the host gave up)
    late_s: float = 0.0
    protocol_error: int = 0  # servo emulators: the next N replies say "your instruction had a bad CRC"
    port_loss_after_s: float | None = None  # the port vanishes this long after the emulator starts
    seed: int = 0
    injected: int = 0  # how many faults were actually applied

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def apply(self, reply: bytes) -> bytes:
        """Return the reply as it will reach the host."""
        if not reply:
            return reply
        if self.lose > 0 or (self.lose_rate and self._rng.random() < self.lose_rate):
            self.lose = max(0, self.lose - 1)
            self.injected += 1
            return b""
        if self.drop_bytes > 0 or (self.drop_rate and self._rng.random() < self.drop_rate):
            self.drop_bytes = max(0, self.drop_bytes - 1)
            self.injected += 1
            i = len(reply) // 2
            reply = reply[:i] + reply[i + 1 :]
        if self.corrupt > 0 or (self.corrupt_rate and self._rng.random() < self.corrupt_rate):
            self.corrupt = max(0, self.corrupt - 1)
            self.injected += 1
            reply = reply[:-1] + bytes((reply[-1] ^ 0x5A,))
        return reply

    def hold_s(self) -> float:
        """How long to hold the next answer back (latency, plus `late_s` while `late` lasts)."""
        if self.late > 0:
            self.late -= 1
            self.injected += 1
            return self.latency_s + self.late_s
        return self.latency_s

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> Faults:
        """`drop=P` (replies lost whole), `corrupt=P` (bad checksum), `truncate=P` (a byte lost),
        `delay_ms=MS`, `silent=ID[+ID...]`, `port_loss_after=S[s]`; comma-separated."""
        f = cls(seed=seed)
        for item in filter(None, (x.strip() for x in spec.split(","))):
            key, sep, value = item.partition("=")
            try:
                if not sep:
                    raise ValueError("no value")
                if key == "drop":
                    f.lose_rate = _rate(value)
                elif key == "corrupt":
                    f.corrupt_rate = _rate(value)
                elif key == "truncate":
                    f.drop_rate = _rate(value)
                elif key == "delay_ms":
                    f.latency_s = float(value) / 1000.0
                elif key == "silent":
                    f.silent_ids = {int(v) for v in value.split("+")}
                elif key == "port_loss_after":
                    f.port_loss_after_s = float(value.removesuffix("s"))
                else:
                    raise ValueError("unknown fault; use drop, corrupt, truncate, delay_ms, silent, port_loss_after")
            except ValueError as e:
                raise ValueError(f"fault {item!r}: {e}") from None
        return f


def _rate(value: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability is 0..1, got {p}")
    return p


class PtyDevice:
    """A pty whose master we hold. `read()`/`write()` talk to whoever opened `path`."""

    def __init__(self, link: str | os.PathLike | None = None):
        self._tmp = ""  # the folder made for the link, removed on close
        if link is None:
            self._tmp = tempfile.mkdtemp(prefix="loopylab-pty-")
            link = Path(self._tmp) / "tty"
        self.path = str(link)
        self.master = self.slave = -1
        self.lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()  # vanish/restore wake a reader blocked in select
        self.open()

    def open(self) -> None:
        with self.lock:
            self.master, self.slave = pty.openpty()
            tty.setraw(self.slave)  # no echo, no line editing: a byte is a byte
            self.pts = os.ttyname(self.slave)
            tmp = self.path + ".new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.pts, tmp)
            os.replace(tmp, self.path)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    @property
    def present(self) -> bool:
        return self.master >= 0

    def vanish(self) -> None:
        """Unplug: both ends close, the link disappears; the host's next I/O fails."""
        with self.lock:
            if self.master < 0:
                return
            for fd in (self.master, self.slave):
                os.close(fd)
            self.master = self.slave = -1
            if os.path.lexists(self.path):
                os.unlink(self.path)
        self._wake()

    def restore(self) -> None:
        """Replug: a fresh pty behind the same path."""
        if self.master < 0:
            self.open()

    def host_baud(self) -> int | None:
        """The baud rate the host configured on its end (None if unknown or closed)."""
        try:
            return _SPEEDS.get(termios.tcgetattr(self.master)[4])
        except (termios.error, OSError):
            return None

    def wait_readable(self, timeout: float) -> bool:
        fd = self.master
        try:
            ready = select.select([fd, self._wake_r] if fd >= 0 else [self._wake_r], [], [], timeout)[0]
        except (OSError, ValueError):
            return False
        if self._wake_r in ready:
            os.read(self._wake_r, 64)
            return False
        return fd in ready and fd == self.master

    def read(self, n: int = 4096) -> bytes:
        try:
            return os.read(self.master, n)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        if data and self.master >= 0:
            try:
                os.write(self.master, data)
            except OSError:
                pass

    def close(self) -> None:
        self.vanish()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        if self._tmp:  # an empty folder per emulator used to pile up in /tmp
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = ""


class PtyRelay:
    """A faulty cable between two ptys: the host opens `path`; the device side is either an existing
    pty slave we open (`device_path`, e.g. the C firmware's pty) or a fresh pty whose slave the device
    opens (`device_path=None`: a pymodbus serial server opens `.device_side`). `faults` apply to what
    the device sends (`silent_ids` non-empty swallows its answers), `host_faults` to what the host sends.
    Subclasses may override `from_host` / `from_device` / `idle` to play a part in the conversation."""

    def __init__(
        self,
        device_path: str | None = None,
        link: str | None = None,
        faults: Faults | None = None,
        host_faults: Faults | None = None,
        idle_s: float = 0.05,
    ):
        self.faults, self.host_faults = faults or Faults(), host_faults or Faults()
        self.idle_s = idle_s
        self.host = PtyDevice(link)
        if device_path is None:
            self.device = PtyDevice()
            self.device_side = self.device.path
            self._dev = self.device.master
        else:
            self.device = None
            self.device_side = device_path
            self._dev = os.open(device_path, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(self._dev)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-relay", daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        return self.host.path

    def to_host(self, data: bytes) -> None:
        self.host.write(data)

    def from_device(self, data: bytes) -> None:
        if self.faults.silent_ids:
            return
        hold = self.faults.hold_s()
        if hold:
            time.sleep(hold)
        self.to_host(self.faults.apply(data))

    def from_host(self, data: bytes) -> None:
        try:
            os.write(self._dev, self.host_faults.apply(data))
        except OSError:
            pass

    def idle(self) -> None:
        """Called at least every `idle_s` (streaming devices send from here)."""

    def _run(self) -> None:
        while not self._stop.is_set():
            fds = [self._dev] + ([self.host.master] if self.host.master >= 0 else [])
            try:
                ready = select.select(fds + [self.host._wake_r], [], [], self.idle_s)[0]
            except (OSError, ValueError):
                continue
            if self.host._wake_r in ready:
                os.read(self.host._wake_r, 64)
            if self._dev in ready:
                try:
                    data = os.read(self._dev, 4096)
                except OSError:
                    data = b""
                if data:
                    self.from_device(data)
            if self.host.master >= 0 and self.host.master in ready:
                data = self.host.read()
                if data:
                    self.from_host(data)
            self.idle()

    def vanish(self) -> None:
        self.host.vanish()

    def restore(self) -> None:
        self.host.restore()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        if self.device is not None:
            self.device.close()
        else:
            os.close(self._dev)
        self.host.close()


def schedule_port_loss(emulator, faults: Faults) -> threading.Timer | None:
    """Vanish `emulator`'s port `faults.port_loss_after_s` from now (the unplugged-cable fault)."""
    if faults.port_loss_after_s is None:
        return None
    timer = threading.Timer(faults.port_loss_after_s, emulator.vanish)
    timer.daemon = True
    timer.start()
    return timer
