"""`loopylab lab calibrate-twin`: fit the lab's twin to a rig (`loopylab.lab.twin_calibrate`). Registered through
the `loopylab.cli` entry point `lab` (lab/plugins.py), so the lab's own command module stays as it is."""

from __future__ import annotations

from pathlib import Path

import typer

from loopylab.lab import twin_fit

lab_app = typer.Typer(help="The lab's own model of a rig: fit it, inspect it.", no_args_is_help=True)


@lab_app.command("calibrate-twin")
def calibrate_twin(
    graph: Path = typer.Option(..., "--graph", exists=True, dir_okay=False, help="The hardware graph (TOML)."),
    objects: Path = typer.Option(
        ..., "--objects", exists=True, dir_okay=False, help="Known objects: [[object]] label, mass, ... (TOML)."
    ),
    sets: list[str] = typer.Option([], "--set", help="NODE.PARAM=VALUE on the graph (the rig's ports, as launch)."),
    out: Path | None = typer.Option(None, "--out", help="Where to save the figures [default: next to the graph]."),
    weighs: int = typer.Option(3, "--weighs", min=1, help="Weighs per object of known mass."),
    still_s: float = typer.Option(2.0, "--still-s", min=0.5, help="Seconds of the still F/T sensor's stream."),
    pushes: int = typer.Option(3, "--pushes", min=0, help="Pushes per object of known mass and friction (0: none)."),
    yes: bool = typer.Option(False, "--yes", help="The objects are in place already (no prompt; the emulated rig)."),
) -> None:
    """Run a short, fixed set of experiments on known objects and fit the twin's noise and bias figures (F/T
    noise, the weigh's sd and bias, the arm's tracking lag, the pushes' scatter) to this rig; the lab loads them with
    `loopylab --twin-calibration FILE run ...`."""
    from loopylab.bus.launch import apply_overrides, load_graph
    from loopylab.lab.rig_bench import HardwareBench
    from loopylab.lab.twin_calibrate import Plan, calibrate

    known = twin_fit.load_objects(objects)
    spec = apply_overrides(load_graph(graph), list(sets))
    scene = next((n.params.get("scene") for n in spec.nodes if n.name == "skills" and n.params.get("scene")), None)
    if not scene:
        raise typer.BadParameter("the graph's skills node names no scene: --set 'skills.scene=\"bench.toml\"'")
    with HardwareBench(spec, scene, place=(lambda s: None) if yes else None) as bench:
        labels = set(bench.bench_scene.labels)
        missing = [o.label for o in known if o.label not in labels]
        if missing:
            raise typer.BadParameter(
                f"{missing} are not in the bench's scene ({sorted(labels)})", param_hint="--objects"
            )
        bench.place(bench.bench_scene)
        cal = calibrate(
            bench, known, Plan(weighs=weighs, still_s=still_s, pushes=pushes), rig=spec.name, say=typer.echo
        )
    path = cal.save(out or twin_fit.default_path(graph))
    typer.echo(f"saved {path}; use it with: loopylab --twin-calibration {path} run --graph {graph} ...")


def register(app: typer.Typer) -> None:
    from loopylab.lab import market_cli  # lab fulfil / lab collect: the two ends of a lab's bounty

    market_cli.register(lab_app)
    app.add_typer(lab_app, name="lab")
