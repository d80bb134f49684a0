"""`loopylab skill`: run one experiment skill and print its measurements.

    loopylab skill push red_block +x 0.1 --sim          # the sim bench graph, in-process (seed 0)
    loopylab skill weigh red_block                      # on a running graph (skills/execute on $LOOPYLAB_BUS)
"""
from __future__ import annotations

import json
import logging
import time

import typer
from rich.console import Console
from rich.table import Table

log = logging.getLogger("loopylab.skill")
SKILLS = ("move_to", "push", "lift", "weigh", "drop", "strike", "place")


def _args(skill: str, target: str | None, direction: str | None, amount: float | None, speed: float | None,
          z: float | None) -> dict:
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
    @app.command("skill")
    def skill_cmd(
        skill: str = typer.Argument(..., help=f"One of: {', '.join(SKILLS)}."),
        target: str = typer.Argument(None, help="Object label (red_block …), or 'x y z' for move_to."),
        direction: str = typer.Argument(None, help="push/strike direction: +x -x +y -y (robot base frame); place: x."),
        amount: float = typer.Argument(None, help="push: distance m; lift/drop: height m; strike: speed m/s; place: y."),
        speed: float = typer.Option(None, "--speed", help="push speed (m/s, default 0.05) or strike speed."),
        sim: bool = typer.Option(False, "--sim", help="Run on an in-process simulated bench (no graph needed)."),
        robot: str = typer.Option("panda", "--robot", help="Simulated robot: panda, kuka_iiwa, xarm6, so101."),
        seed: int = typer.Option(0, "--seed", help="Simulated world (same seed, same objects and physics)."),
        as_json: bool = typer.Option(False, "--json", help="Print the raw reply as JSON."),
        timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the skill."),
    ):
        """Run one experiment skill (push, lift, weigh, drop, strike, place, move_to) and print its measurements."""
        if skill not in SKILLS:
            raise typer.BadParameter(f"unknown skill {skill!r}; choose from {', '.join(SKILLS)}")
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
            from loopylab.bus import Node
            with Node("skill_cli") as node, console.status(f"{skill} {json.dumps(args)} on {node.config.url}…"):
                reply = node.call("skills/execute", {"skill": skill, "args": args}, timeout=timeout)
        if as_json:
            typer.echo(json.dumps(reply, default=float))
        else:
            _print(reply, skill, time.monotonic() - t0)
        if not reply.get("ok"):
            raise typer.Exit(1)


def _print(reply: dict, skill: str, wall: float) -> None:
    out = Console()
    if not reply.get("ok"):   # one line, no table of what little was measured
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
