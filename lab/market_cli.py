"""`loopylab lab fulfil` and `loopylab lab collect`: the two ends of a lab's bounty (docs/lab.md, "Buying data").
Added to the `lab` group by lab/twin_cli.py, which the `loopylab.cli` entry point `lab` registers.

    loopylab lab fulfil 3 --market URL --key ~/.loopylab/key --rig-key ~/.loopylab/rig --seed 1003
    loopylab lab collect reports/run-.../ --key ~/.loopylab/requester
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer

MARKET_HELP = "The market's URL (default: the one the bounty was posted on, in bounty.json)."


def fulfil_cmd(
    bounty: int = typer.Argument(
        ..., help="The bounty's id (a lab's request: task_spec protocol loopylab/experiment-v1)."
    ),
    market: str = typer.Option(..., "--market", help="The market's URL."),
    key: Path = typer.Option(..., "--key", exists=True, dir_okay=False, help="Your account's key file."),
    rig_key: Path | None = typer.Option(
        None, "--rig-key", exists=True, dir_okay=False, help="The rig's key (signs the data) [default: --key]."
    ),
    seed: int = typer.Option(0, "--seed", help="The simulated bench's world (your objects)."),
    robot: str = typer.Option("panda", "--robot", help="Simulated robot."),
    graph: Path | None = typer.Option(None, "--graph", exists=True, dir_okay=False, help="Run on this sim graph."),
    out: Path | None = typer.Option(None, "--out", help="Where to leave the recording [default: runs/bounty-ID]."),
) -> None:
    """Claim a lab's bounty, run its experiment on your bench as many times as it asks while recording, and submit
    the recording with its notebook; prints every check the market ran."""
    from loopylab.lab.bench import Bench, sim_bench
    from loopylab.lab.bounty_request import ExperimentRequest
    from loopylab.lab.fulfil import fulfil
    from loopylab.lab.market_link import reaching
    from loopylab.market.client import MarketClient, load_key_file
    from loopylab.sim.secret import SEALED

    c = MarketClient(market, load_key_file(key), load_key_file(rig_key) if rig_key else None)
    with reaching(market), contextlib.closing(c):
        c.login()
        b = c.request("GET", f"/bounties/{bounty}")
        request = ExperimentRequest.from_task_spec(b["task_spec"])
        folder = out or Path("runs") / f"bounty-{bounty}"
        c.register_rig("loopylab lab fulfil")  # again is fine: the same key for the same account
        claim = c.claim(bounty)  # the slot first: nobody records for a bounty that is full
        try:
            # the simulated rig holds the world a lab's `loopylab run --seed` builds (the builder's secret world,
            # sim/secret.py): the same objects on another bench, not the public world of the seed
            bench = Bench.from_file(graph) if graph else sim_bench(robot=robot, seed=seed, world_secret=SEALED)
            with bench:
                scene = bench.reset(seed)
                done = fulfil(request, folder, bench, scene)
            words = ", ".join(o.render() for o in done.observations)
            typer.echo(f"ran {request.experiment.render()} x{request.repetitions} on {done.object}: {words}")
            if any(o.error is not None for o in done.observations):
                raise RuntimeError(f"an experiment failed on this bench; nothing submitted ({folder})")
        except BaseException:
            c.request("DELETE", f"/claims/{claim['id']}")  # the slot goes back to the others
            raise
        sub = c.submit_folder(claim["id"], folder, bounty)
    for ch in sub["checks"]:
        typer.echo(f"  {ch.get('status', 'pass' if ch['ok'] else 'fail'):11s} {ch['name']}: {ch['detail']}")
    typer.echo(f"submission {sub['id']}: {sub['state']}")


def collect_cmd(
    report: Path = typer.Argument(..., exists=True, file_okay=False, help="The report folder of the run that posted."),
    key: Path = typer.Option(..., "--key", exists=True, dir_okay=False, help="The requester's key file."),
    market: str | None = typer.Option(None, "--market", help=MARKET_HELP),
    rigs: Path | None = typer.Option(None, "--rigs", help="The per-rig noise book [default: ~/.loopylab/rigs.json]."),
) -> None:
    """Review the bounty's submissions (approve those that passed every check: the escrow pays them), take their
    observations into the belief, flag outliers, and conclude again: notebook_bought.txt, result.json's market."""
    from loopylab.lab.collect import CollectError, collect_into
    from loopylab.lab.market_link import client, reaching, review_and_fetch
    from loopylab.lab.rig_noise import RigNoise

    path = report / "bounty.json"
    if not path.exists():
        raise CollectError(f"{report}: no bounty.json (a run of `loopylab run --without ... --market ...`)")
    posted = json.loads(path.read_text())
    if not posted.get("posted"):
        raise CollectError(f"{path}: the bounty was drafted, never posted (run with --market URL --key FILE)")
    url = market or posted["market"]
    with reaching(url):
        c = client(url, key)
        with contextlib.closing(c):
            got = review_and_fetch(c, int(posted["id"]))
    book = RigNoise.load(rigs)
    bought = {s["id"]: (s["rig"], got.notebooks.get(s["id"], [])) for s in got.approved}
    res, summary = collect_into(report, bought, book)
    book.save(rigs)
    typer.echo(
        f"{len(got.approved)} approved, {len(got.waiting)} waiting for a person, {len(got.refused)} refused; "
        f"{res.used} observations used, {res.outliers} outliers flagged"
    )
    graded = "" if "success" not in summary else f" ({'correct' if summary['success'] else 'wrong'})"
    typer.echo(f"conclusion: {res.conclusion.render()} p {res.p_within:.3f}{graded}; {summary['notebook']}")


def register(lab_app: typer.Typer) -> None:
    """Add the verbs to the `lab` group (lab/twin_cli.py registers that group through the `loopylab.cli`
    entry point `lab`)."""
    if not any(c.name == "fulfil" for c in lab_app.registered_commands):  # the app is made more than once in tests
        lab_app.command("fulfil")(fulfil_cmd)
        lab_app.command("collect")(collect_cmd)
