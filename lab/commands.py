"""`loopylab run`, `loopylab eval` and `loopylab demo`: the lab's commands (added to the root CLI)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer

from loopylab.lab.outputs import REPORTS, check_output

log = logging.getLogger("loopylab.lab")

DEMO_QUESTION = "estimate mass of red_block within 10%"
DEMO_SEED = 2


def _out_dir(out: Path | None, what: str) -> Path:
    return check_output(out or REPORTS / f"{what}-{time.strftime('%Y%m%d-%H%M%S')}")


def run_investigation(question_text: str, seed: int = 0, agent_name: str = "eig", graph: Path | None = None,
                      robot: str = "panda", out: Path | None = None, live: bool = True,
                      n_objects: int | None = None, twin_workers: int = 2) -> dict:
    """One investigation end to end on a bus graph; returns the report summary (also in result.json)."""
    from rich.console import Console

    from loopylab.lab.experiments import path_clear, strike_travel
    from loopylab.lab.agents import make_agent
    from loopylab.lab.bench import Bench, sim_bench
    from loopylab.lab.forward import ForwardModel
    from loopylab.lab.investigation import InvestigationConfig, grammar_scene, investigate
    from loopylab.lab.notebook import bus_sink, console_sink, jsonl_sink
    from loopylab.lab.questions import grade, parse_question
    from loopylab.lab.report import write_run_report
    from loopylab.lab.twin import TwinPool

    question = parse_question(question_text)
    console = Console()
    out = _out_dir(out, "run")
    if out.exists() and (out / "notebook.jsonl").exists():
        (out / "notebook.jsonl").unlink()  # the live sink appends
    bench = Bench.from_file(graph) if graph else sim_bench(robot=robot, seed=seed, n_objects=n_objects)
    twins = TwinPool(workers=twin_workers)
    try:
        if not bench.has_sim:
            raise typer.BadParameter("the graph has no sim/reset service: the lab needs a simulated bench "
                                     "(real-arm scenes are not supported by `run` yet)", param_hint="--graph")
        scene = bench.reset(seed, n_objects)
        gscene = grammar_scene(scene)
        missing = [o for o in question.objects if o not in gscene.names]
        if missing:
            raise typer.BadParameter(f"no {', '.join(missing)} in the world of seed {seed}; it has "
                                     f"{', '.join(gscene.names)}", param_hint="--question")
        if question.kind == "predict" and not path_clear(gscene, question.object, question.action.direction,
                                                         strike_travel(question.action.speed)):
            raise typer.BadParameter(f"{question.object} cannot be struck along {question.action.direction} "
                                     "in this world (path blocked or off the table)", param_hint="--question")
        sinks = [bus_sink(bench.notebook_pub), jsonl_sink(out / "notebook.jsonl")]
        if live:
            sinks.insert(0, console_sink(console))
        agent = make_agent(agent_name, seed=seed)
        with console.status("building twin tables and investigating…", spinner="dots") if not live else _nullctx():
            result = investigate(question, scene, agent, bench.runner, ForwardModel(scene, twins),
                                 InvestigationConfig(seed=seed), sinks)
        truth = bench.oracle()
        outcome = None
        if question.kind == "predict":
            bench.reset(seed, n_objects)
            reply = bench.runner.execute(question.action)
            outcome = float(reply["measurements"]["slide_m"]) if reply.get("ok") else None
        gr = grade(question, result.conclusion, truth, outcome) if (question.kind != "predict" or outcome is not None) else None
        simple_truth = {o: {k: truth[o][k] for k in ("mass", "friction", "restitution")} for o in truth}
        write_run_report(out, result, simple_truth, gr)
        summary = json.loads((out / "result.json").read_text())
        summary["report"] = str(out)
        if gr is not None:
            colour = "green" if gr.success else "red"
            console.print(f"[bold {colour}]{'correct' if gr.success else 'wrong'}[/]: answered {gr.answer} "
                          f"(truth {gr.truth}) with {result.experiments} experiments in {result.wall_s:.1f} s; "
                          f"report in {out}")
        return summary
    finally:
        twins.close()
        bench.close()


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        question: str = typer.Option(..., "--question", "-q", help='The question, in the notebook grammar, e.g. '
                                     '"estimate friction of red_block within 0.05".'),
        seed: int = typer.Option(0, "--seed", help="World seed (objects and their hidden properties)."),
        agent: str = typer.Option("eig", "--agent", help="Agent: eig, random, grid (or a registered one, e.g. nanochat)."),
        sim: bool = typer.Option(True, "--sim/--no-sim", help="Run on the simulated bench (default)."),
        graph: Path | None = typer.Option(None, "--graph", help="Run on this bus graph (TOML) instead of the "
                                          "built-in sim bench; it must serve skills/execute and sim/reset."),
        robot: str = typer.Option("panda", "--robot", help="Simulated robot: panda, kuka_iiwa, xarm6, so101."),
        out: Path | None = typer.Option(None, "--out", help="Report folder (default reports/run-TIMESTAMP)."),
        quiet: bool = typer.Option(False, "--quiet", help="Do not print the notebook live."),
    ):
        """Answer one physical question about an unknown world by running experiments on the robot."""
        from loopylab.world import notebook as g
        if not sim and graph is None:
            raise typer.BadParameter("--no-sim needs --graph FILE", param_hint="--graph")
        try:
            summary = run_investigation(question, seed, agent, graph, robot, out, live=not quiet)
        except g.GrammarError as e:
            raise typer.BadParameter(str(e), param_hint="--question") from None
        except KeyError as e:
            raise typer.BadParameter(str(e), param_hint="--agent") from None
        if quiet:
            typer.echo(json.dumps(summary))

    @app.command("eval")
    def eval_cmd(
        agent: str = typer.Option("eig", "--agent", help="Agent(s), comma-separated: eig,random,grid."),
        questions: str = typer.Option("all", "--questions", help="Question kinds, comma-separated "
                                      "(friction,mass,restitution,rank,predict) or 'all'."),
        seeds: str = typer.Option("0:50", "--seeds", help="World seeds: 0:50 (half-open), 7, or 1,5,9."),
        workers: int = typer.Option(2, "--workers", help="Parallel worlds (processes, or Ray CPUs)."),
        ray: str | None = typer.Option(None, "--ray", help="Ray cluster address, or 'local' for a local Ray instance."),
        budget: int | None = typer.Option(None, "--budget", help="Experiment budget per question (default 10)."),
        robot: str = typer.Option("panda", "--robot", help="Simulated robot."),
        out: Path | None = typer.Option(None, "--out", help="Report folder (default reports/eval-TIMESTAMP)."),
    ):
        """Measure agents on many seeded worlds: success, experiments used, error, EIG regret, wall time."""
        from rich.console import Console
        from rich.markdown import Markdown
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from loopylab.lab.evaluation import EvalConfig, parse_kinds, parse_seeds, run_eval
        from loopylab.lab.report import summary_markdown, write_eval_report
        try:
            agents = [a.strip() for a in agent.split(",") if a.strip()]
            cfg = EvalConfig(agents=agents, kinds=parse_kinds(questions), seeds=parse_seeds(seeds),
                             workers=workers, ray=ray, budget={a: budget for a in agents} if budget else {},
                             robot=robot)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        from loopylab.lab.agents import AGENTS, PLUGINS
        unknown = [a for a in agents if a not in AGENTS and a not in PLUGINS]
        if unknown:
            raise typer.BadParameter(f"unknown agent(s) {unknown}; known: {', '.join(sorted(AGENTS))}",
                                     param_hint="--agent")
        out = _out_dir(out, "eval")
        console = Console()
        n = len(cfg.tasks())
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            bar = progress.add_task(f"{n} worlds on {'Ray ' + ray if ray else f'{workers} processes'}", total=n)
            crashed = []

            def on_row(row):
                progress.advance(bar)
                if row.get("crashed"):
                    crashed.append(row)
                    progress.console.print(f"[red]crashed[/] {row['agent']} {row['kind']} seed {row['seed']}: "
                                           f"{row.get('exception')}")
            rows = run_eval(cfg, on_row)
        table = write_eval_report(out, rows)
        console.print(Markdown(summary_markdown(table)))
        console.print(f"report in {out}" + (f" ({len(crashed)} worlds crashed)" if crashed else ""))

    @app.command("demo")
    def demo_cmd(
        out: Path | None = typer.Option(None, "--out", help="Report folder (default reports/demo-TIMESTAMP)."),
    ):
        """One short investigation on the built-in sim bench: the robot weighs up an unknown block."""
        typer.echo(f"loopylab demo: seed {DEMO_SEED}, question: {DEMO_QUESTION!r}, agent: eig")
        run_investigation(DEMO_QUESTION, DEMO_SEED, "eig", out=_out_dir(out, "demo"))
