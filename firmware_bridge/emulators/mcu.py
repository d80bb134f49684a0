"""The MCU board emulator: the firmware's C protocol core compiled for the host with gcc, serving on
a pty, behind a `PtyRelay` so faults can be injected on the cable."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from loopylab.firmware_bridge.emulators.pty_device import Faults, PtyRelay

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
SOURCES = ("loopylab_mcu.c", "host_main.c")


class BuildError(RuntimeError):
    pass


def build_firmware(out_dir: str | Path | None = None, cc: str = "gcc") -> Path:
    """Compile the firmware for the host (strict C99, warnings are errors). Returns the binary."""
    if shutil.which(cc) is None:
        raise BuildError(f"{cc} not found: install a C compiler to build the MCU emulator")
    srcs = [FIRMWARE_DIR / s for s in SOURCES]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in srcs + [FIRMWARE_DIR / "loopylab_mcu.h"])).hexdigest()[:12]
    out_dir = Path(out_dir or Path(tempfile.gettempdir()) / "loopylab-mcu")
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / f"loopylab_mcu_host-{digest}"
    if binary.exists():
        return binary
    cmd = [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", str(binary), *map(str, srcs)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)  # the error is reported below
    if r.returncode != 0:
        raise BuildError(f"building the MCU firmware failed:\n{' '.join(cmd)}\n{r.stderr}")
    return binary


class McuEmulator:
    """`McuEmulator().start()`: the firmware running on the host; the host side opens `.path`."""

    def __init__(
        self,
        joints: int = 4,
        sensors: int = 2,
        watchdog_ms: int = 200,
        binary: Path | None = None,
        link: str | None = None,
        faults: Faults | None = None,
    ):
        self.faults_at_start = faults
        self.args = ["--joints", str(joints), "--sensors", str(sensors), "--watchdog", str(watchdog_ms)]
        self.binary = binary
        self.link = link
        self.proc: subprocess.Popen | None = None
        self.relay: PtyRelay | None = None

    def start(self) -> McuEmulator:
        self.binary = self.binary or build_firmware()
        self.proc = subprocess.Popen([str(self.binary), *self.args], stdout=subprocess.PIPE, text=True)
        device_path = self.proc.stdout.readline().strip()
        if not device_path:
            raise BuildError(f"the MCU emulator exited with code {self.proc.wait()}")
        self.relay = PtyRelay(device_path, self.link, faults=self.faults_at_start)
        return self

    @property
    def path(self) -> str:
        return self.relay.path

    @property
    def faults(self) -> Faults:
        return self.relay.faults

    @property
    def host_faults(self) -> Faults:
        return self.relay.host_faults

    def vanish(self) -> None:
        self.relay.vanish()

    def restore(self) -> None:
        self.relay.restore()

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
