"""`loopylab notebook replay` and `loopylab notebook rerun`: audit a notebook `loopylab run` wrote."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    name="notebook",
    help="Audit a notebook: replay its beliefs from its records, or rerun its experiments on a world.",
    no_args_is_help=True,
)


@app.command("replay")
def replay_cmd(
    file: Path = typer.Argument(..., help="notebook.txt or notebook.jsonl, as `loopylab run` writes them."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
):
    """Recompute every belief, answer and the stopping decision from the recorded observations (the same
    particles, from the run's recorded seed) and report each line that differs. Exit code 1 if any does."""
    from loopylab.lab.replay import ReplayError, replay_file

    try:
        report = replay_file(file)
    except ReplayError as e:
        raise typer.BadParameter(str(e), param_hint="FILE") from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "path": report.path,
                    "lines": report.lines,
                    "checked": report.checked,
                    "differences": [vars(d) for d in report.differences],
                    "notes": report.notes,
                }
            )
        )
    else:
        typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@app.command("rerun")
def rerun_cmd(
    file: Path = typer.Argument(..., help="notebook.txt or notebook.jsonl, as `loopylab run` writes them."),
    graph: Path | None = typer.Option(None, "--graph", help="Run on this bus graph (TOML) instead of the sim bench."),
    seed: int | None = typer.Option(
        None, "--seed", help="The world to run on (sim bench, or a graph with sim/reset); the notebook never holds it."
    ),
    robot: str = typer.Option("panda", "--robot", help="Simulated robot of the sim bench."),
    objects: int | None = typer.Option(None, "--objects", help="Objects in the simulated world (default: the seed's)."),
):
    """Run the notebook's experiments again, in order, on a world and compare observations and answers."""
    from rich.console import Console
    from rich.table import Table

    from loopylab.lab.bench import Bench, sim_bench
    from loopylab.lab.replay import ReplayError, read_sections
    from loopylab.lab.rerun import rerun_sections
    from loopylab.sim.secret import SEALED

    if graph is None and seed is None:
        raise typer.BadParameter("name the world: --seed N (the sim bench) or --graph FILE", param_hint="--seed")
    try:
        sections = read_sections(file)
    except ReplayError as e:
        raise typer.BadParameter(str(e), param_hint="FILE") from None
    bench = (
        Bench.from_file(graph) if graph else sim_bench(robot=robot, seed=seed, n_objects=objects, world_secret=SEALED)
    )
    try:
        report = rerun_sections(sections, bench, seed, objects, where=str(file))
    except ReplayError as e:
        raise typer.BadParameter(str(e), param_hint="FILE") from None
    finally:
        bench.close()
    table = Table(title=f"rerun of {file}")
    for col in ("step", "experiment", "recorded", "rerun", "difference", "answer recorded", "answer now"):
        table.add_column(col)
    for s in report.steps:
        table.add_row(str(s.step), s.experiment, s.recorded, s.rerun, s.delta, s.recorded_answer, s.rerun_answer)
    console = Console()
    console.print(table)
    console.print(f"recorded conclusion: {report.recorded_conclusion}; answer after the rerun: {report.rerun_answer}")
    console.print(f"{report.same_observations} of {len(report.steps)} observations the same")
    for n in report.notes:
        console.print(f"note: {n}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="notebook")
