"""`loopylab run`, `loopylab eval` and `loopylab demo`: the lab's commands (added to the root CLI)."""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import typer

from loopylab.lab.outputs import REPORTS, check_output

log = logging.getLogger("loopylab.lab")

# The demo's question: the expert needs experiments of three kinds to answer it (a strike for a first
# look at mu, then a push, whose force is mu times the weight, and weighing to tell the two apart); about
# 15 s of investigation on a 2-core machine. Seed 2's red block: mu 0.389.
DEMO_QUESTION = "estimate friction of red_block within 0.10"
DEMO_SEED = 2


def _out_dir(out: Path | None, what: str) -> Path:
    return check_output(out or REPORTS / f"{what}-{time.strftime('%Y%m%d-%H%M%S')}")


def run_investigation(
    question_text: str,
    seed: int = 0,
    agent_name: str = "eig",
    graph: Path | None = None,
    robot: str = "panda",
    out: Path | None = None,
    live: bool = True,
    n_objects: int | None = None,
    story: bool = False,
    run_seed: int | None = None,
    sets: list[str] | None = None,
    scene_file: Path | None = None,
    place=None,
    bus: str | None = None,
    lacks: tuple[str, ...] = (),
    buy=None,
    market: str | None = None,
    key: Path | None = None,
    attach: str | None = None,
    bench_keys: Path | None = None,
) -> dict:
    """One investigation end to end on a bus graph; returns the report summary (also in result.json).

    Sealed as `loopylab eval` is (lab/sealed.py): this process holds the bench and grades; the agent and the
    belief engine run in a child process with the lab's keys only, the question, the perceived scene and the
    run's own RNG seed `run_seed` (drawn when None, recorded in result.json), never the world's seed. On a
    hardware graph (no simulator node) the bench is a HardwareBench: the person at the bench places the
    objects of `scene_file` (`place`, default a console prompt), the camera measures them, and nothing is
    graded: nobody here knows the truth. `story`: tell it in words a newcomer follows (the demo).

    `lacks`: skills this rig does not have (its candidates leave them out, the bench refuses them). `buy` (a
    lab.buying.BuyConfig): draft a bounty for what it cannot run when that is worth more (bounty.json in the report);
    with `market` (URL) and `key` (the requester's key file) it is posted and funded (lab/market_link.py).

    `attach` (a URL) with `bench_keys` (its keys file): run on a sim bench another process serves
    (lab.bench.serve_bench) instead of starting one; its world is loaded with sim/reset, and it runs on after."""
    from rich.console import Console

    from loopylab.lab import kinds
    from loopylab.lab.bench import Bench, sim_bench
    from loopylab.lab.notebook import bus_sink, console_sink, jsonl_sink, story_sink
    from loopylab.lab.questions import parse_question
    from loopylab.lab.sealed import AgentProcess
    from loopylab.sim.secret import SEALED

    question = parse_question(question_text)
    if n_objects is None:  # a kind may fix its worlds' size (an attachment question's A and B)
        n_objects = kinds.of(question).n_objects(seed)
    _known_agent(agent_name)
    console = Console()
    spec, hardware = _graph_spec(graph, sets, bus, scene_file)
    out = _out_dir(out, "run")
    if out.exists() and (out / "notebook.jsonl").exists():
        (out / "notebook.jsonl").unlink()  # the live sink appends
    run_seed = secrets.randbits(32) if run_seed is None else int(run_seed)
    graph_name = str(graph) if graph else f"sim_bench:{robot}"  # the notebook's provenance (attached: the same graph)
    agent_proc = AgentProcess.start()  # first: it imports while the bench starts
    try:
        if hardware:
            from loopylab.lab.rig_bench import HardwareBench, console_prompt

            bench = HardwareBench(spec, scene_file, place=place or console_prompt)
        elif attach:
            from loopylab.lab.bench import AttachedBench

            if bench_keys is None:
                raise ValueError("attach needs bench_keys: the served bench's keys file")
            bench = AttachedBench(attach, bench_keys, robot=robot)
        else:
            bench = Bench(spec) if spec else sim_bench(robot=robot, seed=seed, n_objects=n_objects, world_secret=SEALED)
        try:
            scene = _check_world(bench, question, seed, n_objects)
            sinks = [bus_sink(bench.notebook_pub), jsonl_sink(out / "notebook.jsonl")]
            if live:
                sinks.insert(0, story_sink(console, 0.9) if story else console_sink(console))
            with console.status("investigating…", spinner="dots") if not live else _nullctx():
                result, refused = _investigate_sealed(
                    bench, question, scene, agent_name, run_seed, agent_proc, sinks, graph_name, lacks, buy
                )
            if refused:
                summary = _report_refused(question, result, refused, out, console)
            elif hardware:
                summary = _report_ungraded(result, out, console)
            else:
                summary = _grade_and_report(bench, question, result, seed, n_objects, out, console, story)
        finally:
            bench.close()
    finally:
        agent_proc.kill()
    summary.update(agent=agent_name, run_seed=run_seed, graph=str(graph) if graph else "sim_bench")
    _write_result(out, summary)
    if buy is not None:  # after the report is safe: a market that refuses the bounty loses none of it
        from loopylab.lab.market_link import after_run

        summary["bounty"] = after_run(result.bounty, out, market, key, console)
        _write_result(out, summary)
    return summary


def _write_result(out: Path, summary: dict) -> None:
    (out / "result.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "report"}, indent=2) + "\n")


def _graph_spec(graph: Path | None, sets: list[str] | None, bus: str | None, scene_file: Path | None):
    """(the graph file's spec with --set and --bus applied, whether it is a rig's: no simulator node); (None,
    False) for the built-in sim bench."""
    from loopylab.bus.launch import apply_overrides, load_graph

    if graph is None:
        return None, False
    spec = apply_overrides(load_graph(graph), list(sets or []))
    if bus:
        try:
            spec = spec.with_bus(bus)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--bus") from None
    hardware = not any(n.run.startswith("loopylab.sim") for n in spec.nodes)
    if hardware and scene_file is None:
        raise typer.BadParameter(
            "a hardware graph needs the objects on the bench: --scene bench.toml (labels, shapes, sizes)",
            param_hint="--scene",
        )
    return spec, hardware


def _known_agent(name: str) -> None:
    """Named before anything starts (the agent itself is made in its own process)."""
    from loopylab.lab.agents import AGENTS, PLUGINS, agent_names

    if name not in AGENTS and name not in PLUGINS and ":" not in name:  # or package.module:factory
        raise KeyError(f"unknown agent {name!r}; known: {', '.join(agent_names())}")


def _investigate_sealed(
    bench, question, scene, agent_name: str, run_seed: int, agent_proc, sinks, graph_name: str, lacks=(), buy=None
):
    """The investigation in the agent's process, through a LabGateway; its notebook entries reach `sinks` as
    they are written. Returns (the result as the report needs it, the agent's refused bus calls)."""
    from loopylab.bus.access import refusals
    from loopylab.lab.sealed import AgentJob, LabGateway, ReceivedNotebook, ReceivedPosterior
    from loopylab.lab.stopping import Stop

    entries = []

    def on_entry(entry) -> None:
        entries.append(entry)
        for sink in sinks:
            sink(entry)

    with LabGateway(bench, lacks=tuple(lacks)) as gateway:
        job = AgentJob(
            agent_name,
            run_seed,
            question,
            scene.to_dict(),
            gateway.url,
            gateway.keys.only("lab").dumps(),
            bench.runner.epoch_ns,
            graph=graph_name,
            stream=True,
            posterior=True,
            lacks=tuple(lacks),
            buy=buy.to_dict() if buy is not None else None,
        )
        report = agent_proc.run(job, on_entry=on_entry)
        refused = refusals(gateway.keys.domain)
    notebook = ReceivedNotebook(question, entries, report.notebook_text, report.notebook_audit)
    result = _SealedResult(
        question,
        report.conclusion,
        report.experiments,
        report.wall_s,
        report.decision_s,
        Stop(**report.stop) if report.stop else None,
        notebook,
        ReceivedPosterior(report.posterior) if report.posterior else None,
        report.bounty,
    )
    return result, refused


@dataclass
class _SealedResult:
    """An investigation as the agent's process reported it (what the run report reads)."""

    question: object
    conclusion: object
    experiments: int
    wall_s: float
    decision_s: list
    stop: object
    notebook: object
    posterior: object = None
    bounty: dict = field(default_factory=dict)  # the bounty the lab drafted (lab.buying), if any


def _report_refused(question, result, refused, out: Path, console) -> dict:
    """The agent asked the bus for what a lab may not have: the run is reported, not graded."""
    from loopylab.lab.report import write_run_report

    write_run_report(out, result)
    what = sorted({f"{r.service} as {r.role or 'no role'}" for r in refused})
    console.print(f"[bold red]not graded[/]: the agent's process was refused {', '.join(what)}; report in {out}")
    summary = json.loads((out / "result.json").read_text())
    summary.update(report=str(out), cheated=True, refusals=what, success=False)
    return summary


def _report_ungraded(result, out: Path, console) -> dict:
    """A rig's run: the answer is the lab's, and nobody here holds the truth to grade it against."""
    from loopylab.lab.report import write_run_report

    write_run_report(out, result)
    console.print(
        f"answer: {result.conclusion.render()} after {result.experiments} experiments in {result.wall_s:.1f} s. "
        "[bold]Not graded[/]: on a rig nobody reads the truth (no sim/oracle); the answer is the lab's. "
        f"Report in {out}"
    )
    summary = json.loads((out / "result.json").read_text())
    summary.update(report=str(out), graded=False, success=None)
    return summary


def _check_world(bench, question, seed: int, n_objects: int | None):
    """Reset the bench to the world of `seed` and check that the question can be asked there; the scene."""
    from loopylab.lab import kinds
    from loopylab.lab.experiments import path_clear, strike_travel, workspace
    from loopylab.lab.investigation import grammar_scene
    from loopylab.lab.rig_bench import HardwareBench

    if isinstance(bench, HardwareBench):
        scene = bench.reset()  # the person places the objects; the camera measures them
    elif not bench.has_sim:
        raise typer.BadParameter(
            "the graph has a simulator node but no sim/reset service; a rig's graph has no simulator node "
            "(graphs/so101.toml: run it with --scene bench.toml)",
            param_hint="--graph",
        )
    else:
        scene = bench.reset(seed, n_objects, structure=kinds.of(question).structure)
    gscene = grammar_scene(scene)
    missing = [o for o in question.objects if o not in gscene.names]
    if missing:
        raise typer.BadParameter(
            f"no {', '.join(missing)} in the world{'' if isinstance(bench, HardwareBench) else f' of seed {seed}'}; it has {', '.join(gscene.names)}",
            param_hint="--question",
        )
    robot = getattr(scene, "robot", None)
    ws = workspace(robot)  # the table this arm reaches, not a Panda's
    struck = question.action is not None and question.action.skill == "strike"  # predict, predict_stop
    if struck and not ws.strike_speeds:
        raise typer.BadParameter(
            f"the {robot} does not strike, so a {question.kind} question (about a strike) cannot be asked on it",
            param_hint="--question",
        )
    if struck and not path_clear(
        gscene, question.object, question.action.direction, strike_travel(question.action.speed), ws
    ):
        raise typer.BadParameter(
            f"{question.object} cannot be struck along {question.action.direction} "
            "in this world (path blocked or off the table)",
            param_hint="--question",
        )
    return scene


def _grade_and_report(
    bench, question, result, seed: int, n_objects: int | None, out: Path, console, story: bool
) -> dict:
    """The evaluator's part: read the truth through the oracle, grade, write the report, say how it went."""
    from loopylab.lab import kinds
    from loopylab.lab.questions import grade
    from loopylab.lab.report import write_run_report

    truth = bench.oracle()
    outcome = None
    if kinds.of(question).needs_outcome:
        from loopylab.lab.held_out import on_bench

        try:  # a try the safety gate disturbed runs again (lab/held_out.py)
            reset = lambda: bench.reset(seed, n_objects, structure=kinds.of(question).structure)  # noqa: E731
            outcome = on_bench(question, bench, reset).outcome
        except RuntimeError as e:  # not graded (failed, or disturbed in every try): say why
            console.print(f"[bold yellow]not graded:[/] {e}")
    gradable = not kinds.of(question).needs_outcome or outcome is not None
    gr = grade(question, result.conclusion, truth, outcome) if gradable else None
    simple_truth = {o: {k: truth[o][k] for k in ("mass", "friction", "restitution")} for o in truth}
    write_run_report(out, result, simple_truth, gr)
    summary = json.loads((out / "result.json").read_text())
    summary["report"] = str(out)
    if story:
        _tell_ending(console, question, result, gr, out)
    elif gr is not None:
        colour = "green" if gr.success else "red"
        console.print(
            f"[bold {colour}]{'correct' if gr.success else 'wrong'}[/]: answered {gr.answer} "
            f"(truth {gr.truth}) with {result.experiments} experiments in {result.wall_s:.1f} s; "
            f"report in {out}"
        )
    if not story and result.stop is not None:
        from rich.markup import escape

        console.print(f"[{'dim' if result.stop.met else 'bold yellow'}]stopped:[/] because {escape(result.stop.text)}.")
    return summary


def _tell_ending(console, question, result, gr, out: Path) -> None:
    """The demo's last lines: the grader's check against the hidden truth, and where the plot is."""
    from rich.markup import escape

    from loopylab.lab import story

    if gr is not None and isinstance(gr.truth, (int, float)):
        qty = "slide" if question.kind == "predict" else question.kind
        unit = story.QUANTITIES[qty].unit
        true = f"{gr.truth:.3f}" + (f" {unit}" if unit else "")
        off = f"{gr.error:.1%}" if question.kind == "mass" else f"{gr.error:.3f}" + (f" {unit}" if unit else "")
        verdict = "[bold green]met the tolerance[/]" if gr.success else "[bold red]missed the tolerance[/]"
        console.print(
            f"[bold]Grader's check[/] (reads the simulator's hidden truth, which the robot never saw): "
            f"true {story.quantity_of(question).symbol} = {escape(true)}; "
            f"the answer is off by {escape(off)}, tolerance {escape(story.tolerance_text(question))}: "
            f"{verdict}."
        )
    elif gr is not None:
        order = isinstance(gr.truth, tuple) and all(isinstance(t, str) for t in gr.truth)
        truth = f"order {' > '.join(gr.truth)}" if order else f"answer {escape(str(gr.truth))}"
        verdict = "[bold green]right[/]" if gr.success else "[bold red]wrong[/]"
        console.print(f"[bold]Grader's check[/] (the hidden truth): true {truth}: {verdict}.")
    plot = out / "belief.png"
    console.print(
        f"{result.experiments} experiments in {result.wall_s:.1f} s."
        + (f" Plot of the belief over the experiments: {plot}" if plot.exists() else "")
    )
    console.print(f"Report (notebook, plots, result.json): {out}")


def _buying_options(without: str | None, market: str | None, budget: float, key: Path | None):
    """(the skills the rig lacks, a lab.buying.BuyConfig or None) from `run`'s options."""
    from loopylab.lab.buying import BuyConfig
    from loopylab.world import notebook as g

    lacks = tuple(s.strip() for s in (without or "").split(",") if s.strip())
    unknown = [s for s in lacks if s not in g.SKILLS]
    if unknown:
        raise typer.BadParameter(f"unknown skills {unknown}; known: {', '.join(g.SKILLS)}", param_hint="--without")
    if market is not None and not lacks:
        raise typer.BadParameter("--market needs --without SKILLS (what the lab would buy)", param_hint="--market")
    if market is not None and key is None:
        raise typer.BadParameter("--market needs --key FILE (the requester's key)", param_hint="--key")
    if not (math.isfinite(budget) and budget > 0):
        raise typer.BadParameter(f"{budget} is not a positive amount of ETH", param_hint="--budget")
    return lacks, (BuyConfig(budget_eth=budget) if lacks else None)


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        question: str = typer.Option(
            ...,
            "--question",
            "-q",
            help='The question, in the notebook grammar, e.g. "estimate friction of red_block within 0.05".',
        ),
        seed: int = typer.Option(0, "--seed", help="World seed (objects and their hidden properties)."),
        agent: str = typer.Option(
            "eig", "--agent", help="Agent: eig, random, grid (or a registered one, e.g. nanochat)."
        ),
        sim: bool = typer.Option(True, "--sim/--no-sim", help="Run on the simulated bench (default)."),
        graph: Path | None = typer.Option(
            None,
            "--graph",
            help="Run on this bus graph (TOML) instead of the built-in sim bench: a sim graph (serves sim/reset; "
            "graded) or a rig's (graphs/so101.toml: needs --scene; the answer is the lab's, not graded).",
        ),
        sets: list[str] = typer.Option(
            [], "--set", help="NODE.PARAM=VALUE for the graph's nodes, e.g. arm.port=/dev/ttyUSB0 (repeatable)."
        ),
        bus: str | None = typer.Option(
            None, "--bus", help="Run the graph on this bus URL instead of its own (inproc://NAME: every node a thread)."
        ),
        port: str | None = typer.Option(None, "--port", help="The arm's serial port (the same as --set arm.port=...)."),
        scene: Path | None = typer.Option(
            None, "--scene", help="On a rig: the objects on the bench (scene TOML: labels, shapes, sizes)."
        ),
        run_seed: int | None = typer.Option(
            None,
            "--run-seed",
            help="The run's own RNG seed (the agent's; never the world's). Default: drawn, recorded.",
        ),
        robot: str = typer.Option("panda", "--robot", help="Simulated robot: panda, kuka_iiwa, xarm6, so101."),
        out: Path | None = typer.Option(None, "--out", help="Report folder (default reports/run-TIMESTAMP)."),
        quiet: bool = typer.Option(False, "--quiet", help="Do not print the notebook live."),
        without: str | None = typer.Option(
            None,
            "--without",
            help="Skills this rig lacks, comma-separated (no gripper: weigh,lift,drop,place); the lab then drafts a "
            "bounty for one when it is worth more than its own experiments (bounty.json in the report).",
        ),
        market: str | None = typer.Option(None, "--market", help="Post the drafted bounty on this market (URL)."),
        budget: float = typer.Option(0.05, "--budget", help="ETH the lab may spend on the bounty (all slots)."),
        key: Path | None = typer.Option(None, "--key", help="The requester's key file (with --market)."),
        attach: str | None = typer.Option(
            None,
            "--attach",
            help="Run on a sim bench another process serves at this URL (lab.bench.serve_bench) instead of "
            "starting one: its world is reset to --seed, and it runs on after (one run at a time).",
        ),
        bench_keys: Path | None = typer.Option(
            None, "--bench-keys", help="With --attach: the served bench's keys file (owner-only)."
        ),
    ):
        """Answer one physical question about an unknown world by running experiments on the robot."""
        from loopylab.bus.launch import GraphError
        from loopylab.world import notebook as g

        if not sim and graph is None:
            raise typer.BadParameter("--no-sim needs --graph FILE", param_hint="--graph")
        if (sets or port or scene or bus) and graph is None:
            raise typer.BadParameter("--set, --port, --scene and --bus need --graph FILE", param_hint="--graph")
        if attach is not None and graph is not None:
            raise typer.BadParameter(
                "--attach joins a running bench; --graph starts one: not both", param_hint="--attach"
            )
        if (attach is None) != (bench_keys is None):
            raise typer.BadParameter("--attach URL and --bench-keys FILE go together", param_hint="--attach")
        sets = list(sets) + ([f'arm.port="{port}"'] if port else [])
        lacks, buy = _buying_options(without, market, budget, key)
        try:
            summary = run_investigation(
                question,
                seed,
                agent,
                graph,
                robot,
                out,
                live=not quiet,
                run_seed=run_seed,
                sets=sets,
                scene_file=scene,
                bus=bus,
                lacks=lacks,
                buy=buy,
                market=market,
                key=key,
                attach=attach,
                bench_keys=bench_keys,
            )
        except (FileNotFoundError, PermissionError) as e:  # the bench keys file
            raise typer.BadParameter(str(e), param_hint="--bench-keys") from None
        except ConnectionError as e:  # nothing serves a bench there
            raise typer.BadParameter(str(e), param_hint="--attach") from None
        except GraphError as e:
            raise typer.BadParameter(str(e), param_hint="--graph/--set") from None
        except g.GrammarError as e:
            raise typer.BadParameter(str(e), param_hint="--question") from None
        except KeyError as e:
            raise typer.BadParameter(str(e), param_hint="--agent") from None
        if quiet:
            typer.echo(json.dumps(summary))

    @app.command("eval")
    def eval_cmd(
        agent: str = typer.Option("eig", "--agent", help="Agent(s), comma-separated: eig,random,grid."),
        questions: str = typer.Option(
            "all",
            "--questions",
            help="Question kinds, comma-separated (friction,mass,restitution,rank,predict,slides) or 'all'.",
        ),
        seeds: str = typer.Option("0:50", "--seeds", help="World seeds: 0:50 (half-open), 7, or 1,5,9."),
        workers: int = typer.Option(2, "--workers", help="Parallel worlds (processes, or Ray CPUs)."),
        ray: str | None = typer.Option(None, "--ray", help="Ray cluster address, or 'local' for a local Ray instance."),
        budget: int | None = typer.Option(None, "--budget", help="Experiment budget per question (default 10)."),
        robot: str = typer.Option("panda", "--robot", help="Simulated robot."),
        out: Path | None = typer.Option(None, "--out", help="Report folder (default reports/eval-TIMESTAMP)."),
        run_seed: int | None = typer.Option(
            None,
            "--run-seed",
            help="The run's own seed (the agents' RNG seeds come from it). Default: drawn, recorded.",
        ),
    ):
        """Measure agents on many seeded worlds: success, experiments used, error, EIG regret, wall time."""
        from rich.console import Console
        from rich.markdown import Markdown
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from loopylab.lab.evaluation import EvalConfig, parse_kinds, parse_seeds, run_eval
        from loopylab.lab.report import summary_markdown, write_eval_report

        try:
            agents = [a.strip() for a in agent.split(",") if a.strip()]
            cfg = EvalConfig(
                agents=agents,
                kinds=parse_kinds(questions),
                seeds=parse_seeds(seeds),
                workers=workers,
                ray=ray,
                budget=dict.fromkeys(agents, budget) if budget else {},
                robot=robot,
                **({"run_seed": run_seed} if run_seed is not None else {}),
            )
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        from loopylab.lab.agents import AGENTS, PLUGINS

        unknown = [a for a in agents if a not in AGENTS and a not in PLUGINS]
        if unknown:
            raise typer.BadParameter(
                f"unknown agent(s) {unknown}; known: {', '.join(sorted(AGENTS))}", param_hint="--agent"
            )
        out = _out_dir(out, "eval")
        console = Console()
        n = len(cfg.tasks())
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            bar = progress.add_task(f"{n} worlds on {'Ray ' + ray if ray else f'{workers} processes'}", total=n)
            crashed = []

            def on_row(row):
                progress.advance(bar)
                if row.get("crashed"):
                    crashed.append(row)
                    progress.console.print(
                        f"[red]crashed[/] {row['agent']} {row['kind']} seed {row['seed']}: {row.get('exception')}"
                    )

            rows = run_eval(cfg, on_row)
        table = write_eval_report(out, rows)
        console.print(Markdown(summary_markdown(table)))
        console.print(
            f"report in {out} (run seed {cfg.run_seed})" + (f" ({len(crashed)} worlds crashed)" if crashed else "")
        )

    @app.command("demo")
    def demo_cmd(
        out: Path | None = typer.Option(None, "--out", help="Report folder (default reports/demo-TIMESTAMP)."),
    ):
        """One short investigation on the sim bench, told as a story for newcomers.

        The robot measures how slippery an unknown block is, choosing each experiment by how much it expects
        to learn; each step is explained, and the answer is checked against the simulator's hidden truth."""
        typer.echo(
            f"loopylab demo: a simulated Panda arm and one block (world seed {DEMO_SEED}); the expert "
            f"agent (eig) chooses the experiments. The notebook's question: {DEMO_QUESTION!r}"
        )
        run_investigation(DEMO_QUESTION, DEMO_SEED, "eig", out=_out_dir(out, "demo"), story=True)
