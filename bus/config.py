"""Where a graph's sockets live: one URL picks the transport and the graph.

    inproc://NAME          nodes are threads of one process
    ipc://NAME             nodes are processes on one host (sockets under `runtime_dir()`/ipc/NAME)
    tcp://HOST:PORT        nodes on several hosts; HOST:PORT is the directory, nodes bind on --host

The URL comes from the `LOOPYLAB_BUS` environment variable (set by `loopylab launch` for its
children), else defaults to `ipc://default`. Node code never names ports.

ipc socket files outlive their sockets (libzmq unlinks them only on an explicit unbind), so this module
keeps the paths it handed out to this process and removes them when the process exits; `sweep_run_dir`
removes the files of processes that died without exiting cleanly (the launcher calls it when it stops).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from loopylab.bus.access import GraphKeys, keys_from_env

DEFAULT_URL = "ipc://default"
DEFAULT_TCP_PORT = 7447


@dataclass(frozen=True)
class BusConfig:
    transport: str = "ipc"  # inproc | ipc | tcp
    graph: str = "default"  # name of the graph (inproc/ipc); ignored for tcp
    host: str = "127.0.0.1"  # tcp: directory host
    port: int = DEFAULT_TCP_PORT  # tcp: directory port (its change feed uses port + 1)
    bind_host: str = ""  # tcp: interface this process binds and advertises; default: the directory's host
    # a sealed graph's keys as this process holds them (bus/access.py); None: an unsealed graph. Not part of
    # the graph's identity (two nodes of one graph may hold different roles), never printed.
    keys: GraphKeys | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, url: str) -> BusConfig:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("inproc", "ipc", "tcp"):
            raise ValueError(f"bus URL must be inproc://NAME, ipc://NAME or tcp://HOST:PORT, got {url!r}")
        if scheme == "tcp":
            host, _, port = rest.partition(":")
            try:
                return cls(
                    "tcp",
                    host=host or "127.0.0.1",
                    port=int(port or DEFAULT_TCP_PORT),
                    bind_host=os.environ.get("LOOPYLAB_BIND_HOST", ""),
                )
            except ValueError:
                raise ValueError(f"bad port in bus URL {url!r}") from None
        if not rest or "/" in rest:
            raise ValueError(f"graph name must be a plain word, got {rest!r} in {url!r}")
        return cls(scheme, graph=rest)

    @classmethod
    def from_env(cls) -> BusConfig:
        """The graph of `$LOOPYLAB_BUS`, with the keys a launcher handed this process (if any)."""
        return cls.parse(os.environ.get("LOOPYLAB_BUS", DEFAULT_URL)).with_keys(keys_from_env())

    def with_keys(self, keys: GraphKeys | None) -> BusConfig:
        """The same graph, joined with `keys` (a sealed graph's, as this process holds them)."""
        return replace(self, keys=keys)

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}" if self.transport == "tcp" else f"{self.transport}://{self.graph}"

    def run_dir(self) -> Path:
        """Folder holding this graph's ipc sockets (short path: ipc paths are limited to ~107 bytes)."""
        d = runtime_dir() / "ipc" / self.graph
        if not d.is_dir():
            d.mkdir(parents=True, exist_ok=True)
            _remember(d, None)  # removed at exit if nobody else uses it
        return d

    def directory_endpoints(self) -> tuple[str, str]:
        """(request endpoint, change-feed endpoint) of the graph's directory."""
        if self.transport == "inproc":
            return f"inproc://loopylab/{self.graph}/dir", f"inproc://loopylab/{self.graph}/dir-feed"
        if self.transport == "ipc":
            d = self.run_dir()
            return f"ipc://{d}/dir.sock", f"ipc://{d}/feed.sock"
        return f"tcp://{self.host}:{self.port}", f"tcp://{self.host}:{self.port + 1}"

    def new_endpoint(self, kind: str) -> str:
        """A fresh endpoint for a publisher or service to bind. tcp returns a wildcard port to resolve."""
        tag = uuid.uuid4().hex[:12]
        if self.transport == "inproc":
            return f"inproc://loopylab/{self.graph}/{kind}-{tag}"
        if self.transport == "ipc":
            d = self.run_dir()
            _remember(d, d / f"{kind[0]}{tag}.sock")
            return f"ipc://{d}/{kind[0]}{tag}.sock"
        return f"tcp://{self.bind_host or _local_ip(self.host)}:*"


def runtime_dir() -> Path:
    """This user's folder for running graphs (ipc sockets, the registry of launched graphs):
    $LOOPYLAB_RUNTIME_DIR, else $XDG_RUNTIME_DIR/loopylab, else loopylab-UID in the temp folder."""
    if os.environ.get("LOOPYLAB_RUNTIME_DIR"):
        return Path(os.environ["LOOPYLAB_RUNTIME_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "loopylab"
    return Path(tempfile.gettempdir()) / f"loopylab-{os.getuid()}"


# -- socket files: removed at exit -------------------------------------------------------------------------

_files_lock = threading.Lock()
_own_files: dict[Path, set[Path]] = {}  # run dir -> ipc socket paths this process handed out
_owner_pid = os.getpid()  # a forked child inherits the set but does not own the files


def _remember(run_dir: Path, path: Path | None) -> None:
    with _files_lock:
        files = _own_files.setdefault(run_dir, set())
        if path is not None:
            files.add(path)


def release_endpoint(endpoint: str) -> None:
    """Remove the socket file of an ipc endpoint this process bound and has closed (no-op otherwise)."""
    if not endpoint.startswith("ipc://"):
        return
    path = Path(endpoint[len("ipc://") :])
    with _files_lock:
        for files in _own_files.values():
            files.discard(path)
    path.unlink(missing_ok=True)


def _remove_own_files() -> None:
    """At exit: this process's socket files go, and each run dir it used goes too once it is empty."""
    if os.getpid() != _owner_pid:
        return
    with _files_lock:
        dirs = dict(_own_files)
        _own_files.clear()
    for d, files in dirs.items():
        for f in files:
            try:
                f.unlink(missing_ok=True)
            except OSError:
                pass
        _sweep(d)


atexit.register(_remove_own_files)


def _listening(path: Path) -> bool:
    """Whether a process accepts connections on this unix socket (a dead one's file refuses them)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError as e:
            return e.errno not in (errno.ECONNREFUSED, errno.ENOENT)


def sweep_run_dir(config: BusConfig) -> int:
    """Remove the socket files in an ipc graph's run dir that nobody listens on (nodes that were killed),
    then the folder itself once empty; returns how many files went. Call it when the graph has stopped."""
    return _sweep(runtime_dir() / "ipc" / config.graph) if config.transport == "ipc" else 0


def _sweep(d: Path) -> int:
    removed = 0
    for f in d.glob("*.sock") if d.is_dir() else ():
        if not _listening(f):
            f.unlink(missing_ok=True)
            removed += 1
    _remove_if_unused(d)
    return removed


def _remove_if_unused(d: Path) -> None:
    """Remove a run dir that holds nothing but a free directory lock (no process is electing an owner)."""
    try:
        if any(f.name != "dir.lock" for f in d.iterdir()):
            return
        lock = d / "dir.lock"
        if lock.exists():
            with open(lock, "a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # a directory is being served or elected here
                lock.unlink(missing_ok=True)
        d.rmdir()
    except OSError:
        pass  # gone already, or somebody just put a socket here


def _local_ip(directory_host: str) -> str:
    """The address of the interface that reaches the directory (127.0.0.1 for a local graph)."""
    if directory_host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((directory_host, 9))  # no packet is sent for UDP connect
            return s.getsockname()[0]
    except OSError:
        return "0.0.0.0"
