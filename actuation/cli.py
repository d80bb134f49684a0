"""`loopylab skill`: run one experiment skill and print its measurements.

    loopylab skill push red_block +x 0.1 --sim          # the sim bench graph, in-process (seed 0)
    loopylab skill weigh red_block                      # on the running graph (`loopylab launch`), or --bus URL
    loopylab skill push red_block -x 0.1                # signed directions: -x, +y, or --direction -x

Directions start with a sign, which the command line would take for an option: the command lets unknown
`-x`-like words through as arguments (negative numbers too, e.g. `place red_block 0.55 -0.10`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from loopylab.world.protocols import DIRECTIONS

log = logging.getLogger("loopylab.skill")
SKILLS = ("move_to", "push", "lift", "weigh", "drop", "strike", "place")
SERVICE = "skills/execute"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _direction(
    skill: str, direction: str | None, option: str | None, amount: float | None
) -> tuple[str | None, float | None]:
    """(direction, amount) from the positional words and --direction. `push red_block 0.1` is a distance
    (default direction); with --direction, the word in the direction's place is the amount."""
    if option is not None:
        if direction is not None:
            if amount is not None or _number(direction) is None:
                raise typer.BadParameter(f"--direction {option} was given, so {direction!r} is one argument too many")
            amount = _number(direction)
        direction = option
    if skill not in ("push", "strike") or direction is None:
        return direction, amount
    if amount is None and _number(direction) is not None:
        return None, _number(direction)
    signed = direction if direction[:1] in "+-" else "+" + direction
    if signed not in DIRECTIONS:
        raise typer.BadParameter(f"{skill} direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    return signed, amount


def _args(
    skill: str, target: str | None, direction: str | None, amount: float | None, speed: float | None, z: float | None
) -> dict:
    if skill == "move_to":
        try:
            xyz = [float(v) for v in (target or "").replace(",", " ").split()]
        except ValueError:
            xyz = []
        if len(xyz) != 3:
            raise typer.BadParameter("move_to takes a position: loopylab skill move_to '0.5 0.0 0.3'")
        return {"position": xyz}
    if not target:
        raise typer.BadParameter(f"{skill} needs an object label, e.g. red_block")
    if direction is not None and skill in ("lift", "drop"):  # `lift red_block 0.05`: no direction here
        try:
            amount, direction = float(direction), None
        except ValueError:
            raise typer.BadParameter(f"{skill} takes a height in metres, not {direction!r}") from None
    args: dict = {"object": target}
    if skill == "place":  # `place red_block 0.55 0.10`: where on the table
        try:
            args["position"] = [float(direction), float(amount)]
        except (TypeError, ValueError):
            raise typer.BadParameter("place takes a table position: loopylab skill place red_block 0.55 0.10") from None
        return args
    if skill in ("push", "strike"):
        args["direction"] = direction or "+x"
    if skill == "push":
        args["distance"] = 0.1 if amount is None else amount
        args["speed"] = 0.05 if speed is None else speed
    elif skill == "strike":
        args["speed"] = speed if speed is not None else (0.3 if amount is None else amount)
    elif skill in ("lift", "drop"):
        args["height"] = amount if amount is not None else (z if z is not None else 0.05 if skill == "lift" else 0.1)
    return args


def register(app: typer.Typer) -> None:
    # unknown `-x`-like words are arguments: signed directions and negative numbers
    @app.command("skill", context_settings={"ignore_unknown_options": True})
    def skill_cmd(
        skill: str = typer.Argument(..., help=f"One of: {', '.join(SKILLS)}."),
        target: str = typer.Argument(None, help="Object label (red_block …), or 'x y z' for move_to."),
        direction: str = typer.Argument(None, help="push/strike direction: +x -x +y -y (robot base frame); place: x."),
        amount: float = typer.Argument(
            None, help="push: distance m; lift/drop: height m; strike: speed m/s; place: y."
        ),
        direction_opt: str = typer.Option(
            None, "--direction", "-d", help="push/strike direction, as an option: --direction -x."
        ),
        speed: float = typer.Option(None, "--speed", help="push speed (m/s, default 0.05) or strike speed."),
        sim: bool = typer.Option(False, "--sim", help="Run on an in-process simulated bench (no graph needed)."),
        robot: str = typer.Option("panda", "--robot", help="Simulated robot: panda, kuka_iiwa, xarm6, so101."),
        seed: int = typer.Option(0, "--seed", help="Simulated world (same seed, same objects and physics)."),
        as_json: bool = typer.Option(False, "--json", help="Print the raw reply as JSON."),
        timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the skill."),
        wait: float = typer.Option(30.0, "--wait", help="Seconds to wait for a starting graph's skills node."),
        bus: str = typer.Option(
            None,
            "--bus",
            envvar="LOOPYLAB_BUS",
            show_envvar=False,
            help="Bus URL of the graph (default: $LOOPYLAB_BUS, else the graph that `loopylab launch` runs).",
        ),
    ):
        """Run one experiment skill (push, lift, weigh, drop, strike, place, move_to) and print its measurements."""
        if skill not in SKILLS:
            raise typer.BadParameter(f"unknown skill {skill!r}; choose from {', '.join(SKILLS)}")
        direction, amount = _direction(skill, direction, direction_opt, amount)
        args = _args(skill, target, direction, amount, speed, None)
        console = Console(stderr=True)
        t0 = time.monotonic()
        if sim:
            from loopylab.actuation.graphs import sim_bench_graph
            from loopylab.bus.launch import start_graph

            with console.status(f"starting the simulated bench ({robot}, seed {seed})…"):
                graph = start_graph(sim_bench_graph(robot=robot, seed=seed), wait_for=["skills/execute"])
            with graph, console.status(f"{skill} {json.dumps(args)}…"):
                reply = graph.call("skills/execute", {"skill": skill, "args": args}, timeout=timeout)
        else:
            reply = _on_graph(console, bus, skill, args, timeout, wait)
        if as_json:
            typer.echo(json.dumps(reply, default=float))
        else:
            _print(reply, skill, time.monotonic() - t0)
        if not reply.get("ok"):
            raise typer.Exit(1)


def _on_graph(console: Console, bus: str | None, skill: str, args: dict, timeout: float, wait: float) -> Any:
    """Call the skill on a running graph, failing with one line when there is no graph or no skills node
    (the old way waited out the whole --timeout for a service that nobody offered)."""
    from loopylab.bus import Node, ServiceError, ServiceTimeout
    from loopylab.bus.cli import find_graph

    config = find_graph(bus)
    with Node(f"skill_cli-{int(time.time() * 1000) % 100000}", config, heartbeat_hz=0, start_directory=False) as node:
        deadline = time.monotonic() + wait
        with console.status(f"waiting for {SERVICE} on {config.url}…"):
            while not _offered(node):
                if time.monotonic() > deadline:
                    names = sorted(n for n in _nodes(node) if not n.startswith("skill_cli"))
                    raise _fail(
                        f"the graph at {config.url} offers no {SERVICE} after {wait:g} s (its nodes: "
                        f"{', '.join(names) or 'none'}); a graph with a skills node, e.g. "
                        f"`loopylab launch graphs/sim_bench.toml`, serves it"
                    )
                time.sleep(0.2)
        try:
            with console.status(f"{skill} {json.dumps(args)} on {config.url}…"):
                return node.call(SERVICE, {"skill": skill, "args": args}, timeout=timeout)
        except ServiceTimeout:
            raise _fail(f"{skill} did not finish within --timeout {timeout:g} s on {config.url}") from None
        except ServiceError as e:
            raise _fail(str(e)) from None


def _offered(node: Any) -> bool:
    from loopylab.bus.directory import DirectoryUnavailable

    try:
        return bool(node.lookup("service", SERVICE))
    except DirectoryUnavailable:
        return False


def _nodes(node: Any) -> list[str]:
    from loopylab.bus.directory import DirectoryUnavailable

    try:
        return list(node.graph()["nodes"])
    except DirectoryUnavailable:
        return []


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _print(reply: dict, skill: str, wall: float) -> None:
    out = Console()
    if not reply.get("ok"):  # one line, no table of what little was measured
        Console(stderr=True).print(f"[red]error:[/red] {skill} failed: {reply.get('error')}", highlight=False)
        return
    table = Table(title=f"{skill}: measurements", show_header=True)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in reply.get("measurements", {}).items():
        if isinstance(v, list) and len(v) > 6:
            v = f"[{len(v)} samples, max {max(v):.3f}]"
        elif isinstance(v, float):
            v = f"{v:.4f}"
        elif isinstance(v, list):
            v = "[" + ", ".join(f"{x:.4f}" for x in v) + "]"
        table.add_row(k, str(v))
    out.print(table)
    out.print(f"wall time {wall:.2f} s")
