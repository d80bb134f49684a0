"""Finding the adapter's port, giving each new motor its ID and baud rate (one motor at a time), and
writing the operating modes and gains the robot description asks for."""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

from loopylab.firmware_bridge.servo.bus import MotorBus, MotorBusError, NoResponseError
from loopylab.firmware_bridge.servo.models import gains, mode_value
from loopylab.firmware_bridge.servo.protocol import WRITE

log = logging.getLogger("loopylab.setup")


@dataclass
class PortInfo:
    device: str
    description: str = ""
    hwid: str = ""
    latency_timer_ms: int | None = None  # FTDI adapters only


def latency_timer(device: str) -> int | None:
    p = Path("/sys/bus/usb-serial/devices") / Path(device).name / "latency_timer"
    try:
        return int(p.read_text())
    except (OSError, ValueError):
        return None


def list_ports() -> list[PortInfo]:
    from serial.tools import list_ports

    found = {p.device: PortInfo(p.device, p.description or "", p.hwid or "") for p in list_ports.comports()}
    for dev in glob.glob("/dev/ttyUSB*") + glob.glob("/dev/ttyACM*"):
        found.setdefault(dev, PortInfo(dev))
    for info in found.values():
        info.latency_timer_ms = latency_timer(info.device)
    return sorted(found.values(), key=lambda p: p.device)


def port_difference(before: list[str], after: list[str]) -> str:
    """The port that disappeared when the user unplugged the arm."""
    gone = sorted(set(before) - set(after))
    if len(gone) != 1:
        raise RuntimeError(f"expected exactly one port to disappear, saw {gone or 'none'}: unplug only the arm")
    return gone[0]


def find_motor(bus: MotorBus, bauds: list[int] | None = None) -> tuple[int, int, int]:
    """Scan the baud rates for the one motor on the bus -> (baud, id, model). Exactly one must answer."""
    bauds = bauds or sorted(set(bus.proto.baud_codes.values()), key=lambda b: -b)
    for baud in bauds:
        bus.set_baudrate(baud)
        found = bus.broadcast_ping()
        if len(found) > 1:
            raise MotorBusError(
                f"{len(found)} motors answer at {baud} baud (IDs {sorted(found)}): connect only the motor being set up"
            )
        if found:
            ((id, model),) = found.items()
            return baud, id, model
    raise NoResponseError(f"no motor answered on {bus.port_name} at any of {bauds} baud; check power and cable", [])


def setup_motor(bus: MotorBus, new_id: int, baudrate: int = 1_000_000) -> tuple[int, int]:
    """Give the single connected motor `new_id` and `baudrate` (EEPROM, so it survives power-off).
    Returns the (old id, old baud)."""
    proto = bus.proto
    codes = {b: c for c, b in proto.baud_codes.items()}
    if baudrate not in codes:
        raise ValueError(f"{proto.name} motors cannot run at {baudrate} baud; choose one of {sorted(codes)}")
    old_baud, old_id, _ = find_motor(bus)
    t = proto.table

    def write(id, reg, value):
        r = t[reg]
        bus.transact(
            proto.instruction(id, WRITE, proto._addr(r.address) + proto.encode_value(r, value)),
            [(id, 0)],
            f"WRITE {reg}",
        )

    write(old_id, "Torque_Enable", 0)
    if bus.kind == "feetech":
        write(old_id, "Lock", 0)
    write(old_id, "Return_Delay_Time", 0)  # replies at once: the sync-read loop depends on it
    if old_id != new_id:
        write(old_id, "ID", new_id)
    write(new_id, "Baud_Rate", codes[baudrate])
    bus.set_baudrate(baudrate)
    if bus.kind == "feetech":
        write(new_id, "Lock", 1)
    log.info("motor %d @ %d baud -> ID %d @ %d baud", old_id, old_baud, new_id, baudrate)
    return old_id, old_baud


def write_gains(bus: MotorBus, ram_only: bool = False, names: list[str] | None = None) -> dict[str, dict[str, int]]:
    """The recommended position-loop gains (servo.models.GAINS) of each described motor (or of `names`).
    Dynamixel gains live in RAM (lost at power-off: the arm driver writes them at every connect); Feetech's
    in EEPROM."""
    written = {}
    for name in names or list(bus.motors):
        m = bus.motors[name]
        g = {r: v for r, v in gains(bus.kind, m.model).items() if not (ram_only and bus.reg(r).eeprom)}
        for reg, value in g.items():
            bus.write(reg, name, value)
        if g:
            written[name] = g
    return written


def configure_motors(bus: MotorBus, names: list[str] | None = None) -> dict[str, str]:
    """Write each described motor's (or `names`') operating mode (EEPROM, so torque goes off first) and its
    gains. Returns {joint: what was written}."""
    names = names or list(bus.motors)
    bus.set_torque(False, names)
    done = {}
    for name in names:
        m = bus.motors[name]
        parts = []
        if m.mode:
            bus.write("Operating_Mode", name, mode_value(bus.kind, m.mode))
            parts.append(f"{m.mode} mode")
        done[name] = ", ".join(parts)
    for name, g in write_gains(bus, names=names).items():
        done[name] = ", ".join(filter(None, [done[name], " ".join(f"{r}={v}" for r, v in g.items())]))
    return done
