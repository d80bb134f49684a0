"""`loopylab launch GRAPH.toml`: run a graph of nodes as processes or threads.

The launcher owns the graph's directory, gives every child the graph's URL in `LOOPYLAB_BUS`, prefixes
every output line with `[node] `, restarts nodes by policy (never | on-failure | always), stops the
whole graph cleanly on SIGINT/SIGTERM, and exits non-zero naming the node when a node without a
restart policy fails. The graph file format is in docs/contracts.md ("Graph files").

While it runs, a launched ipc/tcp graph is listed in this user's registry of running graphs
(`loopylab.bus.registry`), which is how `loopylab topics`, `echo`, `record`, `nodes` and `skill` find it
without `--bus`. When it stops (SIGTERM included) it leaves no registry entry and no socket files.

In-process mode, for programs that run a graph and talk to it (tests, benchmarks, the lab, `loopylab
skill --sim`): `start_graph(spec)` runs the launcher on a background thread, leaves this process's stdout,
signals and environment alone, and returns a `RunningGraph` handle with a client node on the graph:

    with start_graph(spec, wait_for=["skills/execute"]) as graph:   # inproc graphs: every node a thread
        reply = graph.call("skills/execute", {"skill": "move_to", "args": {...}})
        sim = graph.result("sim_arm")                                # what a thread node's function returned
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from loopylab.bus import registry
from loopylab.bus.access import KEYS_FD_ENV, ROLES, GraphKeys, load_or_create
from loopylab.bus.config import BusConfig, sweep_run_dir
from loopylab.bus.directory import DirectoryUnavailable, ensure_directory, release_directory, stop_local
from loopylab.world.config import ConfigError, check_keys, read_document

if TYPE_CHECKING:
    from loopylab.bus.node import Node

log = logging.getLogger("loopylab.launch")
RESTART_POLICIES = ("never", "on-failure", "always")
GRAPH_KEYS = {"name", "transport", "directory", "description"}
NODE_KEYS = {"run", "process", "restart", "params", "env", "role"}
STOP_GRACE_S = 5.0  # SIGTERM -> SIGKILL
BACKOFF_S = (0.2, 5.0)  # restart delay: first, longest (doubles on each quick failure)


class GraphError(ConfigError):
    """The graph file is not valid; the message says where."""


@dataclass
class NodeSpec:
    name: str
    run: str  # "package.module:function", called as function(node, **params)
    process: bool = True
    restart: str = "never"
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    role: str = "node"  # on a sealed graph: the one role this node's keys prove (bus/access.py)


@dataclass
class GraphSpec:
    name: str
    transport: str = "ipc"  # inproc | ipc | tcp
    directory: str = "127.0.0.1:7447"  # tcp only: HOST:PORT of the directory
    nodes: list[NodeSpec] = field(default_factory=list)
    source: str = ""  # the graph file it was loaded from, if any
    # [access]: service -> the roles that may call it. A graph with an access policy is sealed: the launcher
    # generates its keys, and only processes it hands them to can join (see loopylab.bus.access).
    access: dict[str, list[str]] = field(default_factory=dict)

    @property
    def sealed(self) -> bool:
        return bool(self.access)

    def new_keys(self) -> GraphKeys | None:
        """Fresh keys for one run of this graph (None when it is not sealed); this process holds every role."""
        if not self.sealed:
            return None
        roles = [*ROLES, *(n.role for n in self.nodes), *(r for rs in self.access.values() for r in rs)]
        return GraphKeys.generate(f"{self.name}-{uuid.uuid4().hex[:12]}", roles, self.access)

    @property
    def url(self) -> str:
        return f"tcp://{self.directory}" if self.transport == "tcp" else f"{self.transport}://{self.name}"

    def with_bus(self, url: str) -> GraphSpec:
        """The same graph on another transport (`--bus`): inproc turns every node into a thread."""
        cfg = BusConfig.parse(url)
        nodes = [NodeSpec(**{**n.__dict__, "process": n.process and cfg.transport != "inproc"}) for n in self.nodes]
        return GraphSpec(
            name=cfg.graph if cfg.transport != "tcp" else self.name,
            transport=cfg.transport,
            directory=f"{cfg.host}:{cfg.port}",
            nodes=nodes,
            source=self.source,
            access=self.access,
        )


def load_graph(path: str | Path) -> GraphSpec:
    try:
        doc = read_document(path, "graph file")
    except ConfigError as e:
        raise GraphError(str(e)) from None
    spec = parse_graph(doc, str(path))
    spec.source = str(path)
    return spec


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    try:
        check_keys(table, allowed, where)
    except ConfigError as e:
        raise GraphError(str(e)) from None


def parse_graph(doc: dict, where: str = "graph") -> GraphSpec:
    g = doc.get("graph", {})
    _check_keys(g, GRAPH_KEYS, f"{where}: [graph]")
    transport = g.get("transport", "ipc")
    if transport not in ("inproc", "ipc", "tcp"):
        raise GraphError(f"{where}: [graph].transport must be inproc, ipc or tcp, not {transport!r}")
    spec = GraphSpec(
        name=str(g.get("name") or Path(where).stem),
        transport=transport,
        directory=str(g.get("directory", "127.0.0.1:7447")),
    )
    try:
        BusConfig.parse(spec.url)
    except ValueError as e:
        raise GraphError(f"{where}: {e}") from None
    spec.access = _parse_access(doc.get("access", {}), where)
    tables = doc.get("nodes", {})
    if not tables:
        raise GraphError(f"{where}: no [nodes.NAME] tables")
    for name, t in tables.items():
        _check_keys(t, NODE_KEYS, f"{where}: [nodes.{name}]")
        if ":" not in str(t.get("run", "")):
            raise GraphError(f"{where}: [nodes.{name}].run must be 'package.module:function', got {t.get('run')!r}")
        restart = t.get("restart", "never")
        if restart not in RESTART_POLICIES:
            raise GraphError(f"{where}: [nodes.{name}].restart must be one of {RESTART_POLICIES}, not {restart!r}")
        process = bool(t.get("process", transport != "inproc"))
        if process and transport == "inproc":
            raise GraphError(
                f"{where}: [nodes.{name}] asks for a process, but inproc graphs run nodes as threads "
                f"(use transport = 'ipc')"
            )
        if not isinstance(t.get("params", {}), dict) or not isinstance(t.get("env", {}), dict):
            raise GraphError(f"{where}: [nodes.{name}].params and .env must be tables")
        spec.nodes.append(
            NodeSpec(
                name=name,
                run=t["run"],
                process=process,
                restart=restart,
                params=dict(t.get("params", {})),
                env={k: str(v) for k, v in t.get("env", {}).items()},
                role=str(t.get("role", "node")),
            )
        )
    return spec


def _parse_access(table: Any, where: str) -> dict[str, list[str]]:
    """`[access]`: `"SERVICE" = ["ROLE", ...]` (who may call it; an empty list: nobody)."""
    if not isinstance(table, dict):
        raise GraphError(f"{where}: [access] must be a table of SERVICE = [ROLE, ...]")
    out = {}
    for service, roles in table.items():
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise GraphError(f'{where}: [access] "{service}" must be a list of role names, got {roles!r}')
        out[service] = list(roles)
    return out


def apply_overrides(spec: GraphSpec, assignments: list[str]) -> GraphSpec:
    """`NODE.PARAM=VALUE` from the command line (`--set arm.port=/dev/ttyUSB0`). VALUE is read as a TOML
    value when it parses as one (numbers, booleans, arrays, quoted strings), else taken as a string."""
    by_name = {n.name: n for n in spec.nodes}
    for a in assignments:
        target, eq, raw = a.partition("=")
        node, dot, key = target.partition(".")
        if not eq or not dot or not key:
            raise GraphError(f"--set wants NODE.PARAM=VALUE, got {a!r}")
        if node not in by_name:
            raise GraphError(f"--set {a!r}: no node named {node!r} (nodes: {', '.join(by_name)})")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        by_name[node].params[key] = value
    return spec


def resolve(run: str) -> Callable:
    module, _, attr = run.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise GraphError(f"cannot load node function {run!r}: {e}") from None
    if not callable(fn):
        raise GraphError(f"{run!r} is not callable")
    return fn


def _close_result(result: Any, name: str) -> None:
    close = getattr(result, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            log.exception("[%s] close() failed", name)


# -- output prefixing -----------------------------------------------------------------------------------------

_COLORS = ["36", "33", "35", "32", "34", "91", "96", "93"]


class _Prefixer:
    """Writes whole lines as `[node] line`; thread-safe; optional colour on a terminal."""

    def __init__(self, stream: IO[str], color: bool):
        self.stream, self.color = stream, color
        self.lock = threading.Lock()
        self.names: dict[str, str] = {}

    def tag(self, name: str) -> str:
        if name not in self.names:
            code = _COLORS[len(self.names) % len(_COLORS)]
            self.names[name] = f"\x1b[{code}m[{name}]\x1b[0m " if self.color else f"[{name}] "
        return self.names[name]

    def line(self, name: str, text: str) -> None:
        with self.lock:
            self.stream.write(self.tag(name) + text.rstrip("\n") + "\n")
            self.stream.flush()


class _ThreadStream(io.TextIOBase):
    """Stands in for sys.stdout/stderr while thread nodes run: lines written by a node's threads (named
    `node:...`) get that node's prefix."""

    def __init__(self, prefixer: _Prefixer, nodes: set[str]):
        self.prefixer, self.nodes = prefixer, nodes
        self.partial: dict[int, str] = {}

    def _who(self) -> str:
        name = threading.current_thread().name.split(":", 1)[0]
        return name if name in self.nodes else "launch"

    def write(self, s: str) -> int:
        key = threading.get_ident()
        buf = self.partial.pop(key, "") + s
        *lines, rest = buf.split("\n")
        who = self._who()
        for ln in lines:
            self.prefixer.line(who, ln)
        if rest:
            self.partial[key] = rest
        return len(s)

    def flush(self) -> None:
        self.prefixer.stream.flush()


# -- running nodes --------------------------------------------------------------------------------------------


class _Running:
    """One node of the graph, as a child process or a thread of the launcher."""

    def __init__(self, spec: NodeSpec, launcher: Launcher):
        self.spec, self.launcher = spec, launcher
        self.proc: subprocess.Popen | None = None
        self.pumps: list[threading.Thread] = []  # copy the child's stdout/stderr, prefixed
        self.thread: threading.Thread | None = None
        self.node: Node | None = None
        self.result: Any = None
        self.error = ""  # a thread node's exception, for the failure message
        self.exit_code: int | None = None  # set when it ended
        self.started_at = 0.0
        self.starts = 0
        self.restart_at: float | None = None
        self.backoff = BACKOFF_S[0]
        self.finished = False  # ended cleanly and will not be restarted

    def start(self) -> None:
        self.starts += 1
        self.started_at = time.monotonic()
        self.exit_code = None
        self.restart_at = None
        if self.spec.process:
            self._start_process()
        else:
            self._start_thread()

    def _start_process(self) -> None:
        env = {**os.environ, **self.spec.env, "LOOPYLAB_BUS": self.launcher.url, "PYTHONUNBUFFERED": "1"}
        env.pop(KEYS_FD_ENV, None)
        payload = json.dumps({"name": self.spec.name, "run": self.spec.run, "params": self.spec.params})
        keys, fds = self.launcher.keys, cast(tuple[int, ...], ())
        if keys is not None:  # the child's own role's keys, through a pipe it inherits (never argv, env or a file)
            r, w = os.pipe()
            os.write(w, keys.only(self.spec.role).dumps())
            os.close(w)
            env[KEYS_FD_ENV], fds = str(r), (r,)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", "-m", "loopylab.bus.launch", "--child", payload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
                bufsize=1,
                start_new_session=True,
                pass_fds=fds,
            )
        finally:
            for fd in fds:
                os.close(fd)
        self.pumps = [
            threading.Thread(
                target=self._pump, args=(pipe, prefixer), daemon=True, name=f"launch:pump:{self.spec.name}"
            )
            for pipe, prefixer in ((self.proc.stdout, self.launcher.out), (self.proc.stderr, self.launcher.err))
        ]
        for t in self.pumps:
            t.start()

    def flush_output(self, timeout: float = 2.0) -> None:
        """Wait until everything the ended child wrote has been copied out."""
        for t in self.pumps:
            t.join(timeout)

    def _pump(self, pipe: IO[str], prefixer: _Prefixer) -> None:
        for ln in pipe:
            prefixer.line(self.spec.name, ln)

    def _start_thread(self) -> None:
        from loopylab.bus.node import Node

        fn = resolve(self.spec.run)
        keys = self.launcher.keys.only(self.spec.role) if self.launcher.keys else None
        self.node = Node(self.spec.name, self.launcher.config.with_keys(keys))

        def body() -> None:
            try:
                self.result = fn(self.node, **self.spec.params)
            except Exception as e:
                traceback.print_exc()
                self.error = f"{type(e).__name__}: {e}"
                self.exit_code = 1

        self.thread = threading.Thread(target=body, name=f"{self.spec.name}:main", daemon=True)
        self.thread.start()

    def poll(self) -> int | None:
        """The exit code once the node has ended (a thread node 'ends' only by raising)."""
        if self.proc is not None:
            code = self.proc.poll()
            if code is not None:
                self.flush_output()  # its last words (a traceback) come before our verdict
            return code
        if self.thread is not None and self.exit_code is not None:
            self._stop_thread()
            return self.exit_code
        return None

    def _stop_thread(self) -> None:
        if self.node is not None:
            self.node.shutdown()
            if self.thread is not None and self.thread is not threading.current_thread():
                self.thread.join(STOP_GRACE_S)
            _close_result(self.result, self.spec.name)
            self.node.close()
            self.node = None

    def signal_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        elif self.node is not None:
            self.node.shutdown()

    def wait_stopped(self, deadline: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.launcher.err.line(
                    "launch", f"{self.spec.name} ignored SIGTERM for {STOP_GRACE_S:.0f} s: killing it"
                )
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
            self.flush_output()
        else:
            self._stop_thread()


class Launcher:
    """Runs a GraphSpec until SIGINT/SIGTERM, `duration` seconds, `stop()`, or a fatal node failure."""

    def __init__(
        self,
        spec: GraphSpec,
        duration: float | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        in_process: bool = False,
        keys: str | Path | None = None,
    ):
        """`in_process=True` embeds the launcher in a program with its own use of this process (see
        `start_graph`): sys.stdout, signal handlers and $LOOPYLAB_BUS are left alone (thread nodes' lines
        then carry no `[node]` prefix, and several graphs may run side by side). `keys`: a file holding a sealed
        graph's keys, read if it exists, else made and written (launchers of one tcp graph on several hosts
        share it); by default a sealed graph gets fresh keys every run."""
        self.spec, self.duration = spec, duration
        self.in_process = in_process
        self.url = spec.url
        # a sealed graph's keys: the launcher holds every role
        self.keys = spec.new_keys() if keys is None else load_or_create(keys, spec.new_keys)
        self.config = BusConfig.parse(self.url).with_keys(self.keys)
        color = (stdout or sys.stdout).isatty() if hasattr(stdout or sys.stdout, "isatty") else False
        self.out = _Prefixer(stdout or sys.stdout, color)
        self.err = _Prefixer(stderr or sys.stderr, color)
        self.failed_node: str | None = None
        self.failure: str = ""
        self.exit_code: int | None = None
        self._stop = threading.Event()
        self.started = threading.Event()  # every node has been started (or the run ended before)
        self.nodes = [_Running(n, self) for n in spec.nodes]

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """0 when the graph stopped cleanly, 1 when a node failed without a restart policy."""
        config = self.config
        old_env = os.environ.get("LOOPYLAB_BUS")
        if not self.in_process:
            os.environ["LOOPYLAB_BUS"] = self.url  # for nodes that thread nodes create themselves
        try:
            owned = ensure_directory(config)
            where = "" if owned else ", directory served by another process"
        except DirectoryUnavailable as e:  # a tcp graph whose main host is not up yet: nodes keep trying
            owned, where = None, f"; {e}; the nodes will keep trying"
        self.err.line("launch", f"graph {self.spec.name!r} on {self.url} ({len(self.nodes)} nodes{where})")
        old_handlers = self._install_signals()  # first: a SIGTERM from here on stops the graph cleanly
        entry = self._register()
        restore = self._capture_thread_output()
        try:
            for r in self.nodes:
                self._start(r)
            self.started.set()
            return self._supervise()
        finally:
            self.started.set()
            self._shutdown()
            restore()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            if owned is not None:
                stop_local(config)
            else:
                release_directory(config)
            if entry is not None:
                registry.unregister(entry)
            sweep_run_dir(config)  # socket files of nodes that were killed rather than stopped
            if not self.in_process:
                if old_env is None:
                    os.environ.pop("LOOPYLAB_BUS", None)
                else:
                    os.environ["LOOPYLAB_BUS"] = old_env

    def _register(self) -> Path | None:
        """List a launched graph in the registry of running graphs and say how tools reach it. Graphs run
        in-process (tests, the lab) and inproc graphs (no other process can join them) are not listed."""
        if self.in_process or self.spec.transport == "inproc":
            return None
        others = [g for g in registry.running() if g.url != self.url]
        try:
            # the operator's keys go beside the entry (this user only) for the tools: never the grader's
            tools = self.keys.only("operator") if self.keys else None
            entry = registry.register(self.spec.name, self.url, self.spec.source, tools)
        except OSError as e:
            self.err.line(
                "launch", f"cannot list the graph in {registry.registry_dir()} ({e}): tools need --bus {self.url}"
            )
            return None
        if others:
            self.err.line(
                "launch",
                f"{len(others)} other graph{'s' if len(others) > 1 else ''} running: point tools "
                f"at this one with --bus {self.url} (or export LOOPYLAB_BUS={self.url})",
            )
        else:
            self.err.line(
                "launch",
                f"tools find it by itself (loopylab topics, echo TOPIC, nodes, record, skill); "
                f"or point them at it with --bus {self.url} / LOOPYLAB_BUS={self.url}",
            )
        return entry

    def _start(self, r: _Running) -> None:
        try:
            r.start()
            self.err.line("launch", f"started {r.spec.name} ({'pid ' + str(r.proc.pid) if r.proc else 'thread'})")
        except Exception as e:
            # a thread node whose function cannot be loaded fails like a crashing process would
            self.err.line(r.spec.name, f"{type(e).__name__}: {e}")
            r.error = f"{type(e).__name__}: {e}"
            r.exit_code = 1

    def _supervise(self) -> int:
        deadline = time.monotonic() + self.duration if self.duration else None
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.err.line("launch", f"--duration {self.duration:g} s reached")
                break
            for r in self.nodes:
                if r.finished:
                    continue
                if r.restart_at is not None:
                    if now >= r.restart_at:
                        self.err.line("launch", f"restarting {r.spec.name} (start {r.starts + 1})")
                        self._start(r)
                    continue
                code = r.exit_code if (r.proc is None and r.thread is None) else r.poll()
                if code is None:
                    continue
                if not self._ended(r, code, now):
                    return 1
            if all(r.finished for r in self.nodes):
                self.err.line("launch", "every node has finished")
                break
            self._stop.wait(0.05)
        return 0

    def _ended(self, r: _Running, code: int, now: float) -> bool:
        """A node ended with `code`: restart it, let it be, or fail the graph (returns False)."""
        failed = code != 0
        what = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        policy = r.spec.restart
        if policy == "always" or (failed and policy == "on-failure"):
            if now - r.started_at > 10.0:
                r.backoff = BACKOFF_S[0]  # it ran for a while: a fresh failure, not a crash loop
            r.restart_at = now + r.backoff
            self.err.line("launch", f"{r.spec.name} ended ({what}); restart = {policy}: again in {r.backoff:.1f} s")
            r.backoff = min(BACKOFF_S[1], r.backoff * 2)
            r.proc = None
            r.thread = None
            return True
        if failed:
            self.failed_node = r.spec.name
            self.failure = (
                f"node {r.spec.name!r} failed ({what}{': ' + r.error if r.error else ''}) and its "
                f"restart policy is {policy!r}"
            )
            self.err.line("launch", self.failure + ": stopping the graph")
            r.finished = True
            return False
        self.err.line("launch", f"{r.spec.name} finished")
        r.finished = True
        return True

    def _shutdown(self) -> None:
        live = [r for r in self.nodes if (r.proc is not None and r.proc.poll() is None) or r.node is not None]
        for r in live:
            r.signal_stop()
        deadline = time.monotonic() + STOP_GRACE_S
        for r in live:
            r.wait_stopped(deadline)
        if live:
            self.err.line("launch", f"stopped {', '.join(r.spec.name for r in live)}")

    def _install_signals(self) -> dict:
        if self.in_process or threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda *_: self._stop.set())
        return old

    def _capture_thread_output(self) -> Callable[[], None]:
        threads = {n.name for n in self.spec.nodes if not n.process}
        if not threads or self.in_process:
            return lambda: None
        saved = sys.stdout, sys.stderr
        out, err = _ThreadStream(self.out, threads), _ThreadStream(self.err, threads)
        handlers = [
            h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and h.stream in saved
        ]
        old_streams = [h.stream for h in handlers]
        for h in handlers:
            h.setStream(out if h.stream is saved[0] else err)
        sys.stdout, sys.stderr = out, err

        def restore() -> None:
            sys.stdout, sys.stderr = saved
            for h, s in zip(handlers, old_streams):
                h.setStream(s)

        return restore


def launch(
    path: str | Path,
    duration: float | None = None,
    bus: str | None = None,
    overrides: list[str] | None = None,
    keys: str | Path | None = None,
) -> Launcher:
    """Load and run a graph file; returns the finished Launcher (see `.failed_node`)."""
    spec = apply_overrides(load_graph(path), overrides or [])
    if bus:
        spec = spec.with_bus(bus)
    launcher = Launcher(spec, duration, keys=keys)
    launcher.exit_code = launcher.run()
    return launcher


# -- in-process mode -----------------------------------------------------------------------------------------


class _Discard(io.TextIOBase):
    """A quiet graph's launcher lines go nowhere."""

    def write(self, s: str) -> int:
        return len(s)


class RunningGraph:
    """A graph run by a launcher on a background thread of this process (see `start_graph`), with a client
    node of its own on the graph. A context manager; `close()` stops the client, then the graph."""

    def __init__(self, spec: GraphSpec, quiet: bool = True, client: str = "client"):
        sink = cast(IO[str], _Discard()) if quiet else None  # a text stream that writes nowhere
        self.spec = spec
        self.launcher = Launcher(spec, stdout=sink, stderr=sink, in_process=True)
        self._thread = threading.Thread(target=self._run, name=f"launch:{spec.name}", daemon=True)
        self._thread.start()
        self.launcher.started.wait()  # the directory is up and every node has been started
        from loopylab.bus.node import Node

        # the program that started the graph owns it: its node holds every role (and calls as the one a
        # service's [access] entry names: see call)
        self.keys = self.launcher.keys
        self.node = Node(client, self.launcher.config)
        self._closed = False

    def _run(self) -> None:
        self.launcher.exit_code = self.launcher.run()

    @property
    def failure(self) -> str:
        """Why the graph stopped (a node failed), or "" while it runs."""
        if self.launcher.failure:
            return self.launcher.failure
        return "" if self._thread.is_alive() else "the graph has stopped"

    def has_service(self, name: str) -> bool:
        try:
            return bool(self.node.lookup("service", name))
        except DirectoryUnavailable:
            return False

    def wait_for_services(self, names: list[str] | tuple[str, ...], timeout: float = 60.0) -> None:
        """Return once each service is announced; raise RuntimeError if a node fails first or time runs out."""
        deadline = time.monotonic() + timeout
        missing = list(names)
        while missing:
            if self.failure:
                raise RuntimeError(f"graph {self.spec.name!r} failed: {self.failure}")
            missing = [n for n in missing if not self.has_service(n)]
            if missing and time.monotonic() > deadline:
                raise RuntimeError(
                    f"graph {self.spec.name!r} has no {', '.join(missing)} after {timeout:.0f} s "
                    f"(nodes: {', '.join(n.name for n in self.spec.nodes)})"
                )
            if missing:
                time.sleep(0.05)  # the services announce themselves to the directory

    def call(self, service: str, request: Any = None, timeout: float = 30.0, role: str | None = None) -> Any:
        """A service call that rides out the graph directory's slow answers on a loaded host. `role`: the
        role to call as (default: the first one the graph's [access] allows for `service`, else operator)."""
        if role is None and self.keys is not None:
            role = next(iter(self.keys.policy.get(service, ())), None)
        for attempt in range(4):
            try:
                return self.node.call(service, request, timeout=timeout, role=role)
            except DirectoryUnavailable:
                time.sleep(0.2 * (attempt + 1))
        return self.node.call(service, request, timeout=timeout, role=role)

    def result(self, name: str, timeout: float = 10.0) -> Any:
        """What thread node `name`'s function returned (its node object: for tests and benchmarks), once
        it has returned; None for a process node or a function that runs until shutdown."""
        r = next((r for r in self.launcher.nodes if r.spec.name == name), None)
        if r is None:
            raise KeyError(f"no node {name!r} in graph {self.spec.name!r}")
        if r.thread is not None and r.thread is not threading.current_thread():
            r.thread.join(timeout)
        return r.result

    def close(self) -> None:
        """Subscribers before publishers: the client first, then the graph's nodes."""
        if self._closed:
            return
        self._closed = True
        self.node.close()
        self.launcher.stop()
        self._thread.join(STOP_GRACE_S * 3)

    def __enter__(self) -> RunningGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_graph(
    spec: GraphSpec,
    wait_for: list[str] | tuple[str, ...] = (),
    timeout: float = 60.0,
    quiet: bool = True,
    client: str = "client",
) -> RunningGraph:
    """Run `spec` in this process (in-process mode) and return its handle once the services `wait_for`
    are announced. An inproc graph's nodes are threads; another transport's process nodes are children.
    `quiet` discards the launcher's own lines (node output is never redirected)."""
    graph = RunningGraph(spec, quiet, client)
    try:
        graph.wait_for_services(wait_for, timeout)
    except BaseException:
        graph.close()
        raise
    return graph


# -- the child side of a process node -------------------------------------------------------------------------


def _child(payload: str) -> int:
    spec = json.loads(payload)
    logging.basicConfig(
        level=os.environ.get("LOOPYLAB_LOG", "INFO"), format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr
    )
    from loopylab.bus.node import Node

    early = threading.Event()  # a stop request that comes while the node is still being built
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: early.set())
    node = Node(spec["name"])
    node.handle_signals()
    if early.is_set():
        node.shutdown()

    def orphan_guard() -> None:  # the launcher holds our stdin: EOF means it is gone, so stop too
        sys.stdin.read()
        node.shutdown()

    threading.Thread(target=orphan_guard, name=f"{spec['name']}:guard", daemon=True).start()
    result, code = None, 0
    try:
        result = resolve(spec["run"])(node, **spec["params"])
        while node.running:  # the function set the node up and returned: keep it alive until shutdown
            node._stop.wait(1.0)
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        _close_result(result, spec["name"])
        node.close()
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loopylab.bus.launch", description="Run a loopylab graph file.")
    ap.add_argument("graph", nargs="?", help="GRAPH.toml")
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--bus", default=None, help="run on this bus URL instead of the file's transport")
    ap.add_argument(
        "--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override a node parameter (repeatable)"
    )
    ap.add_argument("--keys", default=None, help="a sealed graph's keys file (made if missing; for multi-host graphs)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child)
    if not args.graph:
        ap.error("GRAPH.toml is required")
    logging.basicConfig(
        level=os.environ.get("LOOPYLAB_LOG", "INFO"),
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        launcher = launch(args.graph, args.duration, args.bus, args.set, args.keys)
    except GraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return launcher.exit_code or 0  # run() set it; sys.exit(None) meant 0 too


if __name__ == "__main__":
    sys.exit(main())
