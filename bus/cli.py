"""Bus commands of the `loopylab` CLI: launch, topics, echo, nodes, record, replay, demo-bus.

The tools that look at a graph (topics, echo, nodes, record; `skill` too) find it: `--bus`, else $LOOPYLAB_BUS,
else the one graph `loopylab launch` runs (`loopylab.bus.registry`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from loopylab.bus.config import BusConfig
    from loopylab.bus.node import Node

BUS_HELP = (
    "Bus URL: inproc://NAME, ipc://NAME or tcp://HOST:PORT (default: $LOOPYLAB_BUS, else the graph "
    "that `loopylab launch` runs)."
)
REPLAY_BUS_HELP = "Bus URL: inproc://NAME, ipc://NAME or tcp://HOST:PORT (default: $LOOPYLAB_BUS, else ipc://default)."
console = Console()
err_console = Console(stderr=True)


def _bus_option(help: str = BUS_HELP) -> Any:
    return typer.Option(None, "--bus", envvar="LOOPYLAB_BUS", help=help, show_envvar=False)


def _fail(message: str) -> typer.Exit:
    """Print `message` as one `error:` line (a listing may follow on its own lines); the Exit to raise."""
    from rich.markup import escape

    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def find_graph(bus: str | None) -> BusConfig:
    """The running graph a tool talks to (see the module docstring); exits with one clear line when there
    is none, when several run and no --bus picks one, or when nothing answers at the URL given."""
    from loopylab.bus.config import BusConfig
    from loopylab.bus.directory import DirectoryUnavailable, request
    from loopylab.bus.registry import GraphNotFound, resolve_bus, tool_keys

    try:
        config = BusConfig.parse(resolve_bus(bus))
    except (GraphNotFound, ValueError) as e:
        raise _fail(str(e)) from None
    # a sealed graph launched by this user left the operator's keys for its tools (else $LOOPYLAB_BUS_KEYS_FD)
    config = config.with_keys(tool_keys(config.url) or BusConfig.from_env().keys)
    try:
        request(config, {"op": "ping"}, timeout=1.0)
    except DirectoryUnavailable:
        raise _fail(
            f"no graph is running at {config.url} (no directory answered); start one with "
            f"`loopylab launch GRAPH.toml`, or pass the --bus it prints"
        ) from None
    return config


def _tool_node(bus: str | None, name: str) -> Node:
    """A node for looking at a graph: no heartbeat, and it does not start a directory of its own."""
    from loopylab.bus.node import Node

    config = find_graph(bus)
    return Node(f"{name}-{int(time.time() * 1000) % 100000}", config, heartbeat_hz=0, start_directory=False)


def _close(node: Node) -> None:
    """Close the command's node; an ipc/tcp directory it started in this process (replay on its own bus, a
    recorder that outlived its graph) goes too, socket files included. An inproc graph's directory stops
    with its last node by itself, and may serve other nodes of this process."""
    from loopylab.bus.directory import stop_local

    node.close()
    if node.config.transport != "inproc":
        stop_local(node.config)


def launch(
    graph: Path = typer.Argument(
        ..., help="Graph file (TOML): a graph table and one nodes.NAME table per node (docs/bus.md)."
    ),
    duration: float | None = typer.Option(None, "--duration", help="Stop the graph after S seconds."),
    bus: str | None = typer.Option(
        None,
        "--bus",
        help="Run on this bus URL instead of the file's transport (inproc://NAME turns every node into a thread).",
    ),
    set_: list[str] | None = typer.Option(
        None,
        "--set",
        metavar="NODE.PARAM=VALUE",
        help="Override a node parameter, e.g. --set arm.port=/dev/ttyUSB0 (repeatable).",
    ),
    keys: Path | None = typer.Option(
        None,
        "--keys",
        help="A sealed graph's keys file: read if it exists, else made (mode 600). Launchers of one tcp graph "
        "on several hosts share it; by default a sealed graph gets fresh keys every run.",
    ),
) -> None:
    """Run a graph: nodes as processes or threads, restarts by policy, output prefixed by node name.

    Exits non-zero, naming the node, when a node without a restart policy fails. Ctrl-C stops all.
    """
    from loopylab.bus.launch import GraphError, Launcher, apply_overrides, load_graph

    try:
        spec = apply_overrides(load_graph(graph), set_ or [])
        if bus:
            spec = spec.with_bus(bus)
    except (GraphError, ValueError) as e:  # ValueError: a bad --bus URL
        typer.echo(f"error: {e}", err=True)  # plain: rich markup would eat [nodes.NAME]
        raise typer.Exit(2) from None
    try:
        launcher = Launcher(spec, duration, keys=keys)
    except (OSError, RuntimeError, ValueError) as e:  # an unreadable or too-open keys file
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    code = launcher.run()
    raise typer.Exit(code)


def topics(
    bus: str | None = _bus_option(),
    window: float = typer.Option(1.0, "--window", "-w", help="Seconds to measure each round."),
    watch: bool = typer.Option(False, "--watch", help="Keep measuring until Ctrl-C."),
    heartbeats: bool = typer.Option(False, "--heartbeats", help="Include heartbeat/* topics."),
) -> None:
    """List live topics with type, publishers, message rate (Hz) and bandwidth."""
    from loopylab.bus.introspect import human_bytes, measure_topics

    node = _tool_node(bus, "topics")

    def table() -> Table:
        t = Table(title=f"topics on {node.config.url} ({window:g} s window)")
        columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
            ("topic", "left"),
            ("type", "left"),
            ("pubs", "right"),
            ("rate", "right"),
            ("bandwidth", "right"),
            ("msg size", "right"),
        )
        for col, just in columns:
            t.add_column(col, justify=just)
        for r in measure_topics(node, window, heartbeats):
            t.add_row(
                r.topic,
                r.type,
                str(r.publishers),
                f"{r.hz:.1f} Hz" if r.messages > 1 else "-",
                f"{human_bytes(r.bytes_per_s)}/s" if r.messages else "-",
                human_bytes(r.mean_size) if r.messages else "-",
            )
        return t

    try:
        if not watch:
            console.print(table())
            return
        with Live(table(), console=console, auto_refresh=False) as live:
            while True:
                live.update(table(), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        node.close()


def echo(
    topic: str = typer.Argument(..., help="Topic to print, e.g. arm/joint_state."),
    count: int | None = typer.Option(None, "--count", "-n", help="Stop after N messages."),
    bus: str | None = _bus_option(),
) -> None:
    """Print the messages of a topic as they arrive (large arrays are summarised)."""
    from loopylab.bus.introspect import format_message

    node = _tool_node(bus, "echo")
    sub = node.subscribe(topic, queue_size=100)
    seen = 0
    try:
        while count is None or seen < count:
            try:
                msg = sub.get(timeout=0.5)
            except TimeoutError:
                continue
            seen += 1
            console.print(f"--- {topic} [{type(msg).__name__}]", markup=False, highlight=False)
            console.print(format_message(msg), markup=False, highlight=False)
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
    if sub.dropped:
        err_console.print(f"({sub.dropped} messages dropped: printing is slower than the topic)")


def nodes(bus: str | None = _bus_option()) -> None:
    """List the graph's nodes with their pid, host, topics and services."""
    node = _tool_node(bus, "nodes")
    try:
        g = node.graph()
    finally:
        node.close()
    t = Table(title=f"nodes on {node.config.url}")
    for col in ("node", "pid", "host", "publishes", "serves"):
        t.add_column(col)
    for name, info in sorted(g["nodes"].items()):
        if name == node.name:
            continue
        pubs = sorted(
            tp for tp, es in g["topics"].items() for e in es if e["node"] == name and not tp.startswith("heartbeat/")
        )
        srvs = sorted(s for s, es in g["services"].items() for e in es if e["node"] == name)
        t.add_row(name, str(info["pid"]), info["host"], "\n".join(pubs) or "-", "\n".join(srvs) or "-")
    console.print(t)


def record(
    output: Path = typer.Option(..., "--output", "-o", help="MCAP file to write."),
    topics_: list[str] | None = typer.Argument(
        None, metavar="TOPICS", help="Topics or globs (camera/*); default: all."
    ),
    duration: float | None = typer.Option(None, "--duration", help="Stop after S seconds."),
    queue: int = typer.Option(2000, "--queue", help="Messages buffered for the writer before drops."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Write the file even when no message was recorded."),
    bus: str | None = _bus_option(),
) -> None:
    """Record topics to MCAP (images as foxglove.RawImage) until Ctrl-C or --duration."""
    import os

    from loopylab.bus.introspect import human_bytes
    from loopylab.bus.node import Node
    from loopylab.bus.record import Recorder

    config = find_graph(bus)
    # written aside and moved into place at the end: a refused or failed recording leaves OUTPUT as it was
    partial = output.with_name(output.name + ".part")
    node = Node("recorder", config)
    node.handle_signals()  # Ctrl-C or SIGTERM end the recording cleanly: the file gets its summary
    try:
        rec = Recorder(node, partial, topics_ or None, queue_size=queue)
    except OSError as e:
        node.close()
        raise _fail(f"cannot write {output}: {e.strerror or e}") from None
    deadline = time.monotonic() + duration if duration else None
    try:
        with console.status("") as status:
            while node.running and (deadline is None or time.monotonic() < deadline):
                s = rec.summary()
                status.update(
                    f"recording {len(s['topics'])} topics to {output}: {s['messages']} messages, "
                    f"{human_bytes(sum(t['bytes'] for t in s['topics'].values()))}, "
                    f"dropped {s['dropped_queue'] + s['dropped_transit']}"
                )
                node._stop.wait(0.25)
    except KeyboardInterrupt:
        pass
    finally:
        s = rec.close()
        _close(node)
    if not s["messages"] and not allow_empty:
        partial.unlink(missing_ok=True)
        what = f"on {', '.join(topics_)} " if topics_ else ""
        raise _fail(
            f"nothing was published {what}at {config.url} while recording: {output} not written "
            f"(--allow-empty writes it anyway)"
        )
    os.replace(partial, output)
    t = Table(title=f"{output}: {s['messages']} messages")
    for col in ("topic", "type", "messages", "size", "dropped in transit"):
        t.add_column(col)
    for name, ts in s["topics"].items():
        t.add_row(name, ts["type"], str(ts["messages"]), human_bytes(ts["bytes"]), str(ts["dropped_transit"]))
    console.print(t)
    if s["dropped_queue"]:
        err_console.print(
            f"[yellow]{s['dropped_queue']} messages dropped: the writer could not keep up "
            f"(raise --queue, record fewer topics, or use a faster disk)[/yellow]"
        )


def replay(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="MCAP file recorded by loopylab."),
    rate: float = typer.Option(1.0, "--rate", "-r", help="Speed factor (2 = twice as fast; 0 = no waiting)."),
    topic: list[str] | None = typer.Option(None, "--topic", "-t", help="Only these topics (repeatable)."),
    wait_subscribers: int = typer.Option(
        0, "--wait-subscribers", help="Wait (up to 5 s) for N subscribers per topic first."
    ),
    restamp: bool = typer.Option(False, "--restamp", help="Stamp messages with the replay time."),
    bus: str | None = _bus_option(REPLAY_BUS_HELP),
) -> None:
    """Republish a recording with its original timing (or --rate X).

    It plays onto its own bus (ipc://default unless --bus or $LOOPYLAB_BUS say otherwise), not onto the running
    graph: recorded joint states mixed into a live arm's would mislead its safety gate.
    """
    from rich.progress import Progress

    from loopylab.bus.config import BusConfig
    from loopylab.bus.node import Node
    from loopylab.bus.record import replay as do_replay

    node = Node("replay", BusConfig.parse(bus) if bus else None)
    node.handle_signals()
    try:
        with Progress(console=console) as progress:
            task = progress.add_task(f"replaying {path.name} at x{rate:g} on {node.config.url}", total=None)
            result = do_replay(
                path,
                node,
                rate,
                topic or None,
                wait_subscribers,
                restamp=restamp,
                on_progress=lambda n, total: progress.update(task, completed=n, total=total or None),
            )
    except KeyboardInterrupt:
        result = None
    finally:
        _close(node)
    if result:
        console.print(
            f"replayed {result['messages']} of {result['total']} messages on {len(result['topics'])} topics "
            f"at {node.config.url}"
        )


def demo_bus(
    duration: float = typer.Option(5.0, "--duration", help="Seconds to run."),
    bus: str | None = typer.Option(None, "--bus", help="Run on this bus URL (default ipc://demo)."),
) -> None:
    """Run the bus demo graph (synthetic arm at 100 Hz, camera at 30 Hz, a rate monitor) and exit."""
    import tomllib

    from loopylab.bus.demo import DEMO_TOML, demo_graph_path
    from loopylab.bus.launch import Launcher, load_graph, parse_graph

    path = demo_graph_path()
    spec = load_graph(path) if path else parse_graph(tomllib.loads(DEMO_TOML), "demo")
    raise typer.Exit(Launcher(spec.with_bus(bus) if bus else spec, duration).run())


def register(app: typer.Typer) -> None:
    app.command("launch")(launch)
    app.command("topics")(topics)
    app.command("echo")(echo)
    app.command("nodes")(nodes)
    app.command("record")(record)
    app.command("replay")(replay)
    app.command("demo-bus")(demo_bus)
