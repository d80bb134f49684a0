"""`loopylab arm ...`: find the adapter's port, set up motors, calibrate, check an arm, run an emulator,
launch a hardware graph."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err = Console(stderr=True)

arm = typer.Typer(help="Real arms over USB serial (Feetech SO-101, Dynamixel Koch) and their emulators.",
                  no_args_is_help=True)

ROBOT_HELP = "Arm layout: so101 (Feetech STS3215) or koch (Dynamixel X-series)."
PORT_HELP = "Serial port of the arm's adapter, e.g. /dev/ttyUSB0 (see `loopylab arm find-port`)."


def _fail(msg: str, code: int = 1):
    err.print(f"[red]error:[/red] {escape(msg)}")   # escaped: a message may hold [brackets] (TOML tables)
    raise typer.Exit(code)


def _bus(robot: str, port: str, baudrate: int):
    from loopylab.firmware_bridge.servo.bus import Motor, MotorBus
    layout = _layout(robot)
    # interactive tools favour patience over speed: a generous allowance for slow adapters and busy hosts
    return MotorBus(port, layout.kind, {n: Motor(i, m) for n, (i, m) in layout.motors.items()}, baudrate=baudrate,
                    latency_s=0.1)


def _layout(robot: str):
    """The catalogue's motor layout of `robot` (exits with the arms there are when it has none)."""
    from loopylab.world.robots import CATALOGUE, hardware_robots
    layout = CATALOGUE[robot].hardware if robot in CATALOGUE else None
    if layout is None:
        _fail(f"unknown robot {robot!r}; choose one of {hardware_robots()}")
    return layout


@arm.command("find-port")
def find_port(list_only: bool = typer.Option(False, "--list", help="Only list the serial ports and exit.")):
    """Find the arm's port: lists ports, asks you to unplug the arm, and names the one that went away."""
    from loopylab.firmware_bridge.servo.setup import list_ports, port_difference
    ports = list_ports()
    table = Table("port", "description", "hardware id", "latency timer")
    for p in ports:
        lt = "" if p.latency_timer_ms is None else (f"{p.latency_timer_ms} ms" if p.latency_timer_ms <= 1 else
                                                     f"[yellow]{p.latency_timer_ms} ms (set it to 1)[/yellow]")
        table.add_row(p.device, p.description, p.hwid, lt)
    console.print(table if ports else "no serial ports found (is the adapter plugged in?)")
    if list_only:
        return
    before = [p.device for p in ports]
    typer.prompt("Unplug the arm's USB cable, then press Enter", default="", show_default=False)
    time.sleep(0.5)  # give udev a moment to remove the device node
    try:
        port = port_difference(before, [p.device for p in list_ports()])
    except RuntimeError as e:
        _fail(str(e))
    console.print(f"The arm is on [bold]{port}[/bold]. Plug it back in.")
    lt = next((p.latency_timer_ms for p in ports if p.device == port), None)
    if lt is not None and lt > 1:
        console.print(f"[yellow]Its FTDI latency timer is {lt} ms: every read waits that long. Set it to 1 ms:[/yellow]\n"
                      f"  echo 1 | sudo tee /sys/bus/usb-serial/devices/{Path(port).name}/latency_timer")


@arm.command("setup-motors")
def setup_motors(robot: str = typer.Option("so101", help=ROBOT_HELP), port: str = typer.Option(..., help=PORT_HELP),
                 baudrate: int = typer.Option(1_000_000, help="Baud rate to give every motor.")):
    """Give each motor its ID and baud rate, one motor at a time (connect only that motor when asked)."""
    from loopylab.firmware_bridge.servo.bus import MotorBusError
    from loopylab.firmware_bridge.servo.setup import setup_motor
    bus = _bus(robot, port, baudrate)
    try:
        bus.open()
        for name in reversed(list(bus.motors)):
            typer.prompt(f"Connect ONLY the '{name}' motor to the adapter (and power), then press Enter",
                         default="", show_default=False)
            old_id, old_baud = setup_motor(bus, bus.ids[name], baudrate)
            console.print(f"  {name}: motor {old_id} @ {old_baud} baud -> ID {bus.ids[name]} @ {baudrate} baud, "
                          f"return delay 0")
    except MotorBusError as e:
        _fail(str(e))
    finally:
        bus.close()
    console.print("[green]All motors set up.[/green] Daisy-chain them and run `loopylab arm calibrate`.")


@arm.command("calibrate")
def calibrate(robot: str = typer.Option("so101", help=ROBOT_HELP), port: str = typer.Option(..., help=PORT_HELP),
              out: Optional[Path] = typer.Option(None, help="Calibration file (default: ~/.cache/loopylab/calibration/<robot>.json)."),
              baudrate: int = typer.Option(1_000_000),
              reversed_joints: str = typer.Option("", "--reversed", help="Comma-separated joints that turn the other way."),
              full_turn: str = typer.Option("wrist_roll", help="Comma-separated joints given the full 0..4095 range.")):
    """Record homing offsets and joint ranges (written to the motors and to a file)."""
    from loopylab.firmware_bridge.servo import calibration as cal
    from loopylab.firmware_bridge.servo.bus import MotorBusError
    bus = _bus(robot, port, baudrate)
    stop = threading.Event()

    def centred():
        typer.prompt("Torque is off. Hold the arm in its zero pose (pointing straight up, gripper closed — "
                     "the URDF zero), then press Enter", default="", show_default=False)

    def sweeping():
        if not hasattr(sweeping, "started"):
            sweeping.started = True
            console.print("Move every joint through its whole range, then press Enter.")
            threading.Thread(target=lambda: (input(), stop.set()), daemon=True).start()
        return stop.is_set()

    try:
        bus.connect()
        calib = cal.calibrate(bus, centred, sweeping, tuple(filter(None, reversed_joints.split(","))),
                              tuple(filter(None, full_turn.split(","))))
    except (MotorBusError, ValueError) as e:
        _fail(str(e))
    finally:
        bus.close()
    path = cal.save(out or cal.default_path(robot), calib)
    table = Table("joint", "id", "offset", "min", "max", "reversed")
    for n, c in calib.items():
        table.add_row(n, str(c.id), str(c.homing_offset), str(c.range_min), str(c.range_max), "yes" if c.drive_mode else "")
    console.print(table)
    console.print(f"Saved to [bold]{path}[/bold]; pass it as the arm node's `calibration` parameter.")


@arm.command("status")
def status(robot: str = typer.Option("so101", help=ROBOT_HELP), port: str = typer.Option(..., help=PORT_HELP),
           baudrate: int = typer.Option(1_000_000)):
    """Ping every motor and show model, position and temperature."""
    from loopylab.firmware_bridge.servo.bus import MotorBusError
    bus = _bus(robot, port, baudrate)
    try:
        models = bus.connect()
        pos = bus.sync_read("Present_Position")
        temp = {m: bus.read("Present_Temperature", m) for m in bus.motors}
    except MotorBusError as e:
        _fail(str(e))
    finally:
        bus.close()
    table = Table("joint", "id", "model", "position", "temperature")
    for n in bus.motors:
        table.add_row(n, str(bus.ids[n]), bus.proto.models.get(models[n], str(models[n])), str(pos[n]), f"{temp[n]} C")
    console.print(table)


def _start_emulator(kind: str, robot: str, link: Optional[str]):
    if kind in ("feetech", "dynamixel"):
        from loopylab.firmware_bridge.arm_node import PRESET_MODEL_NUMBERS
        from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
        robot = robot or {"feetech": "so101", "dynamixel": "koch"}[kind]
        return ServoArmEmulator(kind, link=link, model=PRESET_MODEL_NUMBERS.get(robot)).start()
    if kind == "mcu":
        from loopylab.firmware_bridge.emulators.mcu import McuEmulator
        return McuEmulator(link=link).start()
    if kind == "robotiq":
        from loopylab.firmware_bridge.emulators.robotiq import RobotiqEmulator
        return RobotiqEmulator("rtu", object_at=140, link=link).start()
    if kind == "ft300":
        from loopylab.firmware_bridge.emulators.ft300 import FT300Emulator
        return FT300Emulator(link=link).start()
    _fail(f"unknown emulator kind {kind!r}; choose feetech, dynamixel, mcu, robotiq or ft300")


@arm.command("emulate")
def emulate(kind: str = typer.Option("feetech", help="feetech | dynamixel (6-motor arms), mcu, robotiq, ft300."),
            robot: str = typer.Option("", help="Motor models of this arm layout (so101, koch)."),
            link: Optional[str] = typer.Option(None, help="Stable path for the pty (a symlink), e.g. /tmp/ttyARM.")):
    """Run a device emulator on a pty and print its path; use that path as --port. Ctrl-C stops it."""
    emu = _start_emulator(kind, robot, link)
    console.print(f"{kind} emulator on [bold]{emu.path}[/bold] (Ctrl-C to stop)")
    console.print(f"  try: loopylab arm status --port {emu.path} --robot {robot or ('koch' if kind == 'dynamixel' else 'so101')}"
                  if kind in ("feetech", "dynamixel") else "")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()


@arm.command("launch")
def launch(graph: Path = typer.Argument(..., help="Hardware graph, e.g. graphs/so101.toml."),
           port: str = typer.Option("", help=PORT_HELP + " Overrides the graph's arm port."),
           emulate_arm: bool = typer.Option(False, "--emulate", help="Run the arm emulator and use its port."),
           duration: Optional[float] = typer.Option(None, help="Stop after this many seconds.")):
    """Run a hardware graph with the arm on --port (or on an emulator with --emulate)."""
    from loopylab.bus.launch import GraphError, Launcher, load_graph
    try:
        spec = load_graph(graph)
    except GraphError as e:
        _fail(str(e))
    emu = None
    if emulate_arm:
        arm_node = next((n for n in spec.nodes if n.run.endswith("arm_node:run_arm")), None)
        robot = (arm_node.params.get("robot", "so101") if arm_node else "so101")
        emu = _start_emulator(_layout(robot).kind, robot, None)
        port = emu.path
        console.print(f"emulated {robot} arm on {port}")
    if port:
        os.environ["LOOPYLAB_ARM_PORT"] = port  # children inherit it; run_arm reads it
    try:
        code = Launcher(spec, duration).run()
    finally:
        if emu is not None:
            emu.stop()
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(arm, name="arm")
