"""`loopylab arm ...`: find the adapter's port, set up motors, calibrate, check an arm, run an emulator,
launch a hardware graph."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err = Console(stderr=True)

arm = typer.Typer(
    help="Real arms over USB serial (Feetech SO-101, Dynamixel Koch) and their emulators.", no_args_is_help=True
)

ROBOT_HELP = "Arm layout: so101 (Feetech STS3215) or koch (Dynamixel X-series)."
PORT_HELP = "Serial port of the arm's adapter, e.g. /dev/ttyUSB0 (see `loopylab arm find-port`)."


def _fail(msg: str, code: int = 1):
    # one line, never wrapped; escaped: a message may hold [brackets] (TOML tables)
    err.print(f"[red]error:[/red] {escape(msg)}", soft_wrap=True)
    raise typer.Exit(code)


MOTORS_HELP = (
    "Motors fitted that differ from the robot's catalogue entry: joint=model or joint=id:model, "
    "comma-separated (e.g. elbow_flex=xl430-w250)."
)


def parse_motors(spec: str, motors: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    """The catalogue's {joint: (id, model)} with the `--motors` overrides applied."""
    out = dict(motors)
    for item in filter(None, (x.strip() for x in spec.split(","))):
        joint, sep, value = item.partition("=")
        if not sep or joint not in out:
            raise ValueError(f"--motors {item!r}: give joint=model or joint=id:model for a joint of {list(out)}")
        id_, _, model = value.rpartition(":")
        out[joint] = (int(id_) if id_ else out[joint][0], model)
    return out


def _bus(robot: str, port: str, baudrate: int, motors: str = ""):
    from loopylab.firmware_bridge.servo.bus import Motor, MotorBus

    layout = _layout(robot)
    try:
        fitted = parse_motors(motors, layout.motors)
    except ValueError as e:
        _fail(str(e))
    # interactive tools favour patience over speed: a generous allowance for slow adapters and busy hosts
    return MotorBus(
        port,
        layout.kind,
        {n: Motor(i, m, layout.modes.get(n, "")) for n, (i, m) in fitted.items()},
        baudrate=baudrate,
        latency_s=0.1,
    )


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
        lt = (
            ""
            if p.latency_timer_ms is None
            else (
                f"{p.latency_timer_ms} ms"
                if p.latency_timer_ms <= 1
                else f"[yellow]{p.latency_timer_ms} ms (set it to 1)[/yellow]"
            )
        )
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
        console.print(
            f"[yellow]Its FTDI latency timer is {lt} ms: every read waits that long. Set it to 1 ms:[/yellow]\n"
            f"  echo 1 | sudo tee /sys/bus/usb-serial/devices/{Path(port).name}/latency_timer"
        )


@arm.command("setup-motors")
def setup_motors(
    robot: str = typer.Option("so101", help=ROBOT_HELP),
    port: str = typer.Option(..., help=PORT_HELP),
    baudrate: int = typer.Option(1_000_000, help="Baud rate to give every motor."),
    motors: str = typer.Option("", help=MOTORS_HELP),
    configure_only: bool = typer.Option(
        False,
        "--configure-only",
        help="Motors already have their IDs (e.g. set up by LeRobot): "
        "only write operating modes and gains, all at once.",
    ),
):
    """Give each motor its ID and baud rate, one motor at a time (connect only that motor when asked), then its
    operating mode and the recommended gains."""
    from loopylab.firmware_bridge.servo.bus import MotorBusError
    from loopylab.firmware_bridge.servo.setup import configure_motors, setup_motor

    bus = _bus(robot, port, baudrate, motors)
    try:
        if configure_only:
            bus.open()
            for name, what in configure_motors(bus).items():
                console.print(f"  {name}: {what or 'nothing to write'}")
        else:
            bus.open()
            for name in reversed(list(bus.motors)):
                typer.prompt(
                    f"Connect ONLY the '{name}' motor to the adapter (and power), then press Enter",
                    default="",
                    show_default=False,
                )
                old_id, old_baud = setup_motor(bus, bus.ids[name], baudrate)
                what = configure_motors(bus, [name])[name]
                console.print(
                    f"  {name}: motor {old_id} @ {old_baud} baud -> ID {bus.ids[name]} @ {baudrate} baud, "
                    f"return delay 0" + (f", {what}" if what else "")
                )
    except MotorBusError as e:
        _fail(str(e))
    finally:
        bus.close()
    console.print("[green]All motors set up.[/green] Daisy-chain them and run `loopylab arm calibrate`.")


@arm.command("calibrate")
def calibrate(
    robot: str = typer.Option("so101", help=ROBOT_HELP),
    port: str = typer.Option("", help=PORT_HELP + " With --from-lerobot: checks the file against the motors."),
    out: Path | None = typer.Option(
        None, help="Calibration file (default: ~/.cache/loopylab/calibration/<robot>.json)."
    ),
    baudrate: int = typer.Option(1_000_000),
    motors: str = typer.Option("", help=MOTORS_HELP),
    from_lerobot: Path | None = typer.Option(
        None,
        "--from-lerobot",
        help="Import this LeRobot calibration file (~/.cache/huggingface/lerobot/calibration/robots/...).",
    ),
    reversed_joints: str = typer.Option("", "--reversed", help="Comma-separated joints that turn the other way."),
    full_turn: str = typer.Option("wrist_roll", help="Comma-separated joints given the full 0..4095 range."),
):
    """Record homing offsets and joint ranges (written to the motors and to a file), or import LeRobot's."""
    from loopylab.firmware_bridge.servo import calibration as cal
    from loopylab.firmware_bridge.servo.bus import MotorBusError
    from loopylab.world.config import ConfigError

    if from_lerobot is not None:
        try:
            calib = cal.from_lerobot(from_lerobot, list(_layout(robot).motors))
            if port:
                bus = _bus(robot, port, baudrate, motors)
                try:
                    bus.connect()
                    cal.check(bus, calib)
                finally:
                    bus.close()
        except (ConfigError, MotorBusError, cal.CalibrationMismatch) as e:
            _fail(str(e))
        _show_calibration(calib, cal.save(out or cal.default_path(robot), calib), checked=bool(port))
        return
    if not port:
        _fail("--port is required to calibrate (or give --from-lerobot FILE)")
    bus = _bus(robot, port, baudrate, motors)
    stop = threading.Event()

    def centred():
        typer.prompt(
            "Torque is off. Hold the arm in its zero pose (pointing straight up, gripper closed — "
            "the URDF zero), then press Enter",
            default="",
            show_default=False,
        )

    def sweeping():
        if not hasattr(sweeping, "started"):
            sweeping.started = True
            console.print("Move every joint through its whole range, then press Enter.")
            threading.Thread(target=lambda: (input(), stop.set()), daemon=True).start()
        return stop.is_set()

    try:
        bus.connect()
        calib = cal.calibrate(
            bus,
            centred,
            sweeping,
            tuple(filter(None, reversed_joints.split(","))),
            tuple(filter(None, full_turn.split(","))),
        )
    except (MotorBusError, ValueError) as e:
        _fail(str(e))
    finally:
        bus.close()
    _show_calibration(calib, cal.save(out or cal.default_path(robot), calib), checked=True)


def _show_calibration(calib, path: Path, checked: bool) -> None:
    table = Table("joint", "id", "offset", "min", "max", "zero (ticks)", "reversed")
    for n, c in calib.items():
        table.add_row(
            n,
            str(c.id),
            str(c.homing_offset),
            str(c.range_min),
            str(c.range_max),
            f"{c.zero:g}",
            "yes" if c.drive_mode else "",
        )
    console.print(table)
    if not checked:
        console.print(
            "[yellow]Not checked against the motors (no --port): the arm node checks it at every connect.[/yellow]"
        )
    console.print(f"Saved to [bold]{path}[/bold]; the arm node reads it from there (or give it as `calibration`).")


@arm.command("reboot")
def reboot(
    robot: str = typer.Option("so101", help=ROBOT_HELP),
    port: str = typer.Option(..., help=PORT_HELP),
    baudrate: int = typer.Option(1_000_000),
    motors: str = typer.Option("", help=MOTORS_HELP),
    ids: str = typer.Option("", "--id", help="Comma-separated motor IDs (default: every motor of the arm)."),
):
    """REBOOT motors: clears a hardware error (overload, overheating...); torque comes back off. With the arm
    node running, call its `arm/reboot` service instead (it holds the port)."""
    from loopylab.firmware_bridge.servo.bus import MotorBusError

    bus = _bus(robot, port, baudrate, motors)
    try:
        targets = [int(i) for i in ids.split(",") if i.strip()] or list(bus.ids.values())
    except ValueError:
        _fail(f"--id {ids!r}: give motor IDs, e.g. --id 3,5")
    try:
        bus.open()
        for i in targets:
            bus.reboot(i)
            console.print(f"  motor {i} rebooted")
    except MotorBusError as e:
        _fail(f"{e.label}: {e}")
    finally:
        bus.close()


@arm.command("status")
def status(
    robot: str = typer.Option("so101", help=ROBOT_HELP),
    port: str = typer.Option(..., help=PORT_HELP),
    baudrate: int = typer.Option(1_000_000),
    motors: str = typer.Option("", help=MOTORS_HELP),
):
    """Ping every motor and show model, mode, position and temperature."""
    from loopylab.firmware_bridge.servo.bus import MotorBusError
    from loopylab.firmware_bridge.servo.models import mode_name

    bus = _bus(robot, port, baudrate, motors)
    try:
        models = bus.connect()
        pos = bus.sync_read("Present_Position")
        temp = {m: bus.read("Present_Temperature", m) for m in bus.motors}
        modes = {m: mode_name(bus.kind, bus.read("Operating_Mode", m)) for m in bus.motors}
    except MotorBusError as e:
        _fail(str(e))
    finally:
        bus.close()
    table = Table("joint", "id", "model", "mode", "position", "temperature")
    for n in bus.motors:
        table.add_row(
            n, str(bus.ids[n]), bus.proto.models.get(models[n], str(models[n])), modes[n], str(pos[n]), f"{temp[n]} C"
        )
    console.print(table)


def _start_emulator(kind: str, robot: str, link: str | None, faults=None):
    if kind in ("feetech", "dynamixel"):
        from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator

        robot = robot or {"feetech": "so101", "dynamixel": "koch"}[kind]
        if _layout(robot).kind != kind:
            _fail(f"robot {robot!r} is not on {kind} motors")
        return ServoArmEmulator.for_robot(robot, link=link, faults=faults).start()
    if kind == "mcu":
        from loopylab.firmware_bridge.emulators.mcu import McuEmulator

        return McuEmulator(link=link, faults=faults).start()
    if kind == "robotiq":
        from loopylab.firmware_bridge.emulators.robotiq import RobotiqEmulator

        return RobotiqEmulator("rtu", object_at=140, link=link, faults=faults).start()
    if kind == "ft300":
        from loopylab.firmware_bridge.emulators.ft300 import FT300Emulator

        return FT300Emulator(link=link, faults=faults).start()
    return _fail(f"unknown emulator kind {kind!r}; choose feetech, dynamixel, mcu, robotiq or ft300")


FAULT_HELP = (
    "Faults to inject, e.g. drop=0.05,corrupt=0.05,delay_ms=5,silent=3,port_loss_after=10s "
    "(drop: replies lost whole; corrupt: bad checksum; truncate: a byte lost; silent: motor IDs, "
    "'+'-separated)."
)


def _physics_emulator():
    """The rig's runner, found through the `loopylab.emulators` entry point (the rig sits above this package:
    it puts `loopylab.sim`'s physics behind these emulators)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="loopylab.emulators")}
    if "physics" not in found:
        _fail("no physics emulator installed (entry point loopylab.emulators: physics); reinstall loopylab")
    return found["physics"].load()


@arm.command("emulate")
def emulate(
    kind: str = typer.Option("feetech", help="feetech | dynamixel (6-motor arms), mcu, robotiq, ft300."),
    robot: str = typer.Option("", help="Motor models of this arm layout (so101, koch)."),
    link: str | None = typer.Option(None, help="Stable path for the pty (a symlink), e.g. /tmp/ttyARM."),
    fault: str = typer.Option("", help=FAULT_HELP),
    seed: int = typer.Option(0, help="Seed of the fault draws."),
    physics: bool = typer.Option(
        False,
        "--physics",
        help="The whole rig with a simulated arm and world behind the ports: the --robot's servos, a Robotiq "
        "2F-85 and an FT300 on their own ptys (--link: a folder for stable links), cameras on a bus.",
    ),
    world: int = typer.Option(0, help="With --physics: the world's seed (its objects, and the arm's assembly)."),
    gripper: str = typer.Option("robotiq", help="With --physics: robotiq (Modbus RTU) or motor (the arm's servo)."),
    bus: str = typer.Option("", help="With --physics: the bus the cameras publish on (default ipc://loopylab-rig)."),
    out: str = typer.Option("", help="With --physics: folder for the calibration and scene files."),
    sealed: bool = typer.Option(
        False,
        "--sealed",
        help="With --physics: the seed's graded world, its hidden properties keyed by the world builder's secret "
        "(LOOPYLAB_WORLD_SECRET, else graphs/world.secret), resolved in this process only; no known.toml.",
    ),
):
    """Run a device emulator on a pty and print its path; use that path as --port. Ctrl-C or SIGTERM stops
    it (and removes the --link)."""
    import signal

    from loopylab.firmware_bridge.emulators.pty_device import Faults, schedule_port_loss

    if physics:
        if fault:
            _fail("--physics takes no --fault (run a plain emulator for fault injection)")
        try:
            _physics_emulator()(
                robot=robot or "so101",
                world=world,
                link=link,
                gripper=gripper,
                bus=bus,
                out=out,
                world_secret="sealed" if sealed else None,
            )
        except ValueError as e:
            _fail(str(e))
        return

    try:
        faults = Faults.parse(fault, seed) if fault else None
    except ValueError as e:
        _fail(str(e))
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a service manager's stop: clean up too
    emu = _start_emulator(kind, robot, link, faults)
    try:
        if faults is not None:
            schedule_port_loss(emu, faults)
        console.print(f"{kind} emulator on [bold]{emu.path}[/bold] (Ctrl-C to stop)")
        if kind in ("feetech", "dynamixel"):
            default = "koch" if kind == "dynamixel" else "so101"
            console.print(f"  try: loopylab arm status --port {emu.path} --robot {robot or default}")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
        signal.signal(signal.SIGTERM, previous)


@arm.command("launch")
def launch(
    graph: Path = typer.Argument(..., help="Hardware graph, e.g. graphs/so101.toml."),
    port: str = typer.Option("", help=PORT_HELP + " Overrides the graph's arm port."),
    calibration: str = typer.Option(
        "",
        help="Calibration file; overrides the graph's (default: the one `loopylab arm calibrate` saved for the robot).",
    ),
    latency_ms: float | None = typer.Option(
        None, help="USB adapter allowance per transaction (the arm node's latency_s; FTDI timer at 1 ms: 4)."
    ),
    fault_window_ms: float | None = typer.Option(
        None, help="How long bus faults may last before a protective stop (the arm node's fault_window_s)."
    ),
    emulate_arm: bool = typer.Option(False, "--emulate", help="Run the arm emulator and use its port."),
    fault: str = typer.Option("", help="With --emulate: " + FAULT_HELP),
    duration: float | None = typer.Option(None, help="Stop after this many seconds."),
):
    """Run a hardware graph with the arm on --port (or on an emulator with --emulate)."""
    import tempfile

    from loopylab.bus.launch import GraphError, Launcher, load_graph
    from loopylab.firmware_bridge.emulators.pty_device import Faults

    try:
        spec = load_graph(graph)
        faults = Faults.parse(fault) if fault else None
    except (GraphError, ValueError) as e:
        _fail(str(e))
    emu = None
    if emulate_arm:
        from loopylab.firmware_bridge.servo import calibration as cal

        arm_node = next((n for n in spec.nodes if n.run.endswith("arm_node:run_arm")), None)
        robot = arm_node.params.get("robot", "so101") if arm_node else "so101"
        layout = _layout(robot)
        emu = _start_emulator(layout.kind, robot, None, faults)
        port = emu.path
        if not calibration:  # the emulated motors hold the factory calibration
            calibration = str(
                cal.save(
                    Path(tempfile.mkdtemp()) / f"{robot}.json",
                    cal.identity({n: i for n, (i, _) in layout.motors.items()}),
                )
            )
        console.print(f"emulated {robot} arm on {port}")
    # children inherit these; run_arm reads them
    for key, value in (
        ("PORT", port),
        ("CALIBRATION", calibration),
        ("LATENCY_S", None if latency_ms is None else latency_ms / 1000),
        ("FAULT_WINDOW_S", None if fault_window_ms is None else fault_window_ms / 1000),
    ):
        if value:
            os.environ[f"LOOPYLAB_ARM_{key}"] = str(value)
    try:
        code = Launcher(spec, duration).run()
    finally:
        if emu is not None:
            emu.stop()
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(arm, name="arm")
