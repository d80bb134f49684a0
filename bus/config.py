"""Where a graph's sockets live: one URL picks the transport and the graph.

    inproc://NAME          nodes are threads of one process
    ipc://NAME             nodes are processes on one host (sockets under $XDG_RUNTIME_DIR or /tmp)
    tcp://HOST:PORT        nodes on several hosts; HOST:PORT is the directory, nodes bind on --host

The URL comes from the `LOOPYLAB_BUS` environment variable (set by `loopylab launch` for its
children), else defaults to `ipc://default`. Node code never names ports.
"""
from __future__ import annotations

import os
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "ipc://default"
DEFAULT_TCP_PORT = 7447


@dataclass(frozen=True)
class BusConfig:
    transport: str = "ipc"       # inproc | ipc | tcp
    graph: str = "default"       # name of the graph (inproc/ipc); ignored for tcp
    host: str = "127.0.0.1"      # tcp: directory host
    port: int = DEFAULT_TCP_PORT  # tcp: directory port (its change feed uses port + 1)
    bind_host: str = ""          # tcp: interface this process binds and advertises; default: the directory's host

    @classmethod
    def parse(cls, url: str) -> "BusConfig":
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("inproc", "ipc", "tcp"):
            raise ValueError(f"bus URL must be inproc://NAME, ipc://NAME or tcp://HOST:PORT, got {url!r}")
        if scheme == "tcp":
            host, _, port = rest.partition(":")
            try:
                return cls("tcp", host=host or "127.0.0.1", port=int(port or DEFAULT_TCP_PORT),
                           bind_host=os.environ.get("LOOPYLAB_BIND_HOST", ""))
            except ValueError:
                raise ValueError(f"bad port in bus URL {url!r}") from None
        if not rest or "/" in rest:
            raise ValueError(f"graph name must be a plain word, got {rest!r} in {url!r}")
        return cls(scheme, graph=rest)

    @classmethod
    def from_env(cls) -> "BusConfig":
        return cls.parse(os.environ.get("LOOPYLAB_BUS", DEFAULT_URL))

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}" if self.transport == "tcp" else f"{self.transport}://{self.graph}"

    def run_dir(self) -> Path:
        """Folder holding this graph's ipc sockets (short path: ipc paths are limited to ~107 bytes)."""
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        d = Path(base) / f"loopylab-{os.getuid()}" / self.graph
        d.mkdir(parents=True, exist_ok=True)
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
            return f"ipc://{self.run_dir()}/{kind[0]}{tag}.sock"
        return f"tcp://{self.bind_host or _local_ip(self.host)}:*"


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
