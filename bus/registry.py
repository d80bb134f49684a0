"""The running graphs of this user, so tools find a graph instead of guessing its URL.

`loopylab launch` writes one small JSON file per running graph into `runtime_dir()/graphs/` (name, url, pid,
graph file, start time) and removes it when it stops, SIGTERM included. A launcher killed outright leaves
its file behind: readers skip entries whose process is gone (or is another process under a reused pid)
and delete them.

The tools (topics, echo, nodes, record, skill) pick their bus with `resolve_bus`: `--bus` if given, else
$LOOPYLAB_BUS, else the one graph that runs; several running graphs or none is a `GraphNotFound` whose
message says what to do.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from loopylab.bus.access import GraphKeys
from loopylab.bus.config import BusConfig, runtime_dir


class GraphNotFound(RuntimeError):
    """No graph, or more than one, to talk to; the message says what to pass."""


@dataclass(frozen=True)
class GraphEntry:
    name: str
    url: str
    pid: int
    graph_file: str = ""  # the TOML it was launched from ("" when built in code)
    started: float = 0.0  # wall-clock time (time.time())
    proc_start: str = ""  # the process's start time in /proc (tells a reused pid apart)

    def describe(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.started))
        source = f" from {self.graph_file}" if self.graph_file else ""
        return f"{self.url}  ({self.name}{source}, pid {self.pid}, since {since})"


def registry_dir() -> Path:
    return runtime_dir() / "graphs"


def _proc_start(pid: int) -> str:
    """Field 22 of /proc/PID/stat (start time in clock ticks); "" where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # fields after the command name, which may hold spaces


def _alive(entry: GraphEntry) -> bool:
    try:
        os.kill(entry.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not entry.proc_start or _proc_start(entry.pid) in ("", entry.proc_start)


def register(name: str, url: str, graph_file: str = "", keys: GraphKeys | None = None) -> Path:
    """Record this process as running graph `name` at `url`; returns the file to `unregister`. `keys`: of a
    sealed graph, the ones this user's tools may use (the operator's), kept beside the entry, owner-only."""
    d = registry_dir()
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    pid = os.getpid()
    entry = GraphEntry(name, url, pid, str(graph_file), time.time(), _proc_start(pid))
    path = d / f"{name}.{pid}.json"
    if keys is not None:
        fd = os.open(path.with_suffix(".keys"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(keys.dumps())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(entry)))
    os.replace(tmp, path)  # readers never see half a file
    return path


def unregister(path: Path) -> None:
    path.with_suffix(".keys").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def tool_keys(url: str) -> GraphKeys | None:
    """The keys a launched sealed graph at `url` left for this user's tools (None: none, or not sealed)."""
    for f in sorted(registry_dir().glob("*.keys")) if registry_dir().is_dir() else ():
        entry = f.with_suffix(".json")
        try:
            if json.loads(entry.read_text()).get("url") == url:
                return GraphKeys.loads(f.read_bytes())
        except (OSError, ValueError, KeyError):
            continue
    return None


def running() -> list[GraphEntry]:
    """The graphs that run now, oldest first; stale entries are deleted on the way."""
    d = registry_dir()
    out = []
    for f in sorted(d.glob("*.json")) if d.is_dir() else ():
        try:
            entry = GraphEntry(**json.loads(f.read_text()))
        except (OSError, ValueError, TypeError):
            entry = None  # unreadable: a crash mid-write, or an older format
        if entry is None or not _alive(entry):
            f.with_suffix(".keys").unlink(missing_ok=True)
            f.unlink(missing_ok=True)
            continue
        out.append(entry)
    return sorted(out, key=lambda e: e.started)


def resolve_bus(bus: str | None) -> str:
    """The bus a tool talks to: `bus` (from --bus or $LOOPYLAB_BUS), else the one running graph."""
    if bus:
        BusConfig.parse(bus)  # a bad URL fails here, with the URL in the message
        return bus
    graphs = running()
    if len(graphs) == 1:
        return graphs[0].url
    if not graphs:
        raise GraphNotFound(
            "no graph is running: start one with `loopylab launch GRAPH.toml` "
            "(e.g. graphs/sim_bench.toml), or pass --bus URL"
        )
    listing = "\n".join(f"  {g.describe()}" for g in graphs)
    raise GraphNotFound(f"{len(graphs)} graphs are running; pick one with --bus URL (or $LOOPYLAB_BUS):\n{listing}")
