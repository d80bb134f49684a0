"""Who may call what: the keys of a sealed graph, the roles they prove, and the access policy of its services.

A *sealed* graph has keys, generated for it by whoever starts it (the launcher, the evaluator):
- one server keypair that every member binds with (CurveZMQ: a socket without it cannot talk to the graph);
- one client keypair per role ("grader", "evaluator", "operator", "lab", "node", ...). A process holds the
  keypairs of the roles it may act as and nothing else: the agent's process holds "lab" only.

Across processes (ipc, tcp) every socket runs CURVE; the directory and every publisher and service are
CURVE servers whose ZAP handler admits only the graph's role keys, and a service learns its caller's role
from the key the handshake proved (ZAP `User-Id`). inproc has no handshake (libzmq runs no security
mechanism there), so the role is a capability: a client registers its socket under a role only if this
process holds that role's secret key, and the service looks the socket up. Either way a caller cannot
claim a role whose key it does not hold.

Services declare who may call them (`node.service(name, handler, allow=("grader",))`); the graph file's
`[access]` table overrides a declaration (`"sim/oracle" = ["grader"]`). Refused calls get an `AccessDenied`
error naming the roles allowed, and are logged in this process (`refusals()`) for whoever runs the graph.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack
import zmq

log = logging.getLogger("loopylab.access")

# the roles a generated graph has unless told otherwise
ROLES = ("operator", "evaluator", "grader", "lab", "node")
KEYS_FD_ENV = "LOOPYLAB_BUS_KEYS_FD"  # a launched child reads its keys from this inherited pipe


class AccessError(RuntimeError):
    """A role this process does not hold, or keys that do not belong together."""


@dataclass(frozen=True)
class Keypair:
    public: bytes  # z85, 40 bytes
    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> Keypair:
        public, secret = zmq.curve_keypair()
        return cls(public, secret)


@dataclass(frozen=True)
class GraphKeys:
    """A sealed graph's keys as one process holds them: the server keypair, every role's public key, the
    keypairs of the roles held here, the default role, and the graph's access policy."""

    domain: str  # the ZAP domain: names the graph
    server: Keypair
    roles: Mapping[str, bytes]  # role -> public key, every role of the graph
    held: Mapping[str, Keypair] = field(repr=False)  # the roles this process may act as
    role: str = "node"  # the role this process's nodes take unless told otherwise
    policy: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # service -> roles ([access])

    def __post_init__(self) -> None:
        for r, kp in self.held.items():
            if self.roles.get(r) != kp.public or zmq.curve_public(kp.secret) != kp.public:
                raise AccessError(f"the keypair held for role {r!r} is not the graph's")
        if self.role not in self.held:
            raise AccessError(f"default role {self.role!r} is not held (held: {', '.join(self.held) or 'none'})")

    @classmethod
    def generate(
        cls,
        domain: str,
        roles: Iterable[str] = ROLES,
        policy: Mapping[str, Iterable[str]] | None = None,
        role: str = "operator",
    ) -> GraphKeys:
        """Fresh keys for a graph; this process holds every role (it is the graph's owner)."""
        held = {r: Keypair.generate() for r in dict.fromkeys([*roles, role])}
        return cls(
            domain,
            Keypair.generate(),
            {r: kp.public for r, kp in held.items()},
            held,
            role,
            {s: tuple(rs) for s, rs in (policy or {}).items()},
        )

    def only(self, role: str, *more: str) -> GraphKeys:
        """The keys to hand a process that may act as `role` (and `more`) and nothing else."""
        missing = [r for r in (role, *more) if r not in self.held]
        if missing:
            raise AccessError(f"cannot hand out role(s) {missing}: not held here")
        return replace(self, held={r: self.held[r] for r in (role, *more)}, role=role)

    def with_policy(self, policy: Mapping[str, Iterable[str]]) -> GraphKeys:
        return replace(self, policy={**self.policy, **{s: tuple(rs) for s, rs in policy.items()}})

    def keypair(self, role: str | None = None) -> Keypair:
        r = role or self.role
        if r not in self.held:
            raise AccessError(f"this process does not hold the {r!r} role of graph {self.domain!r}")
        return self.held[r]

    def role_of(self, public: bytes) -> str | None:
        return next((r for r, k in self.roles.items() if k == public), None)

    def allowed(self, service: str, declared: Iterable[str] | None) -> tuple[str, ...] | None:
        """The roles that may call `service` (None: every member): the graph's [access] entry, else the
        service's own declaration."""
        if service in self.policy:
            return tuple(self.policy[service])
        return None if declared is None else tuple(declared)

    # -- handing keys to another process (never through argv, the environment or a file) ---------------
    def dumps(self) -> bytes:
        return msgpack.packb(
            {
                "domain": self.domain,
                "server": [self.server.public, self.server.secret],
                "roles": dict(self.roles),
                "held": {r: [k.public, k.secret] for r, k in self.held.items()},
                "role": self.role,
                "policy": {s: list(rs) for s, rs in self.policy.items()},
            }
        )

    @classmethod
    def loads(cls, data: bytes) -> GraphKeys:
        d = msgpack.unpackb(data)
        return cls(
            d["domain"],
            Keypair(*d["server"]),
            d["roles"],
            {r: Keypair(*k) for r, k in d["held"].items()},
            d["role"],
            {s: tuple(rs) for s, rs in d["policy"].items()},
        )


def load_or_create(path: str | os.PathLike[str], make: Callable[[], GraphKeys | None]) -> GraphKeys | None:
    """A sealed graph's keys shared by several launchers (hosts of one tcp graph): read from `path`, or made by
    `make` and written there, readable by this user only. Copy the file to the other hosts by a secure route."""
    p = Path(path)
    if p.exists():
        if p.stat().st_mode & 0o077:
            raise AccessError(f"{p} is readable by others: chmod 600 it (it holds every role's secret key)")
        return GraphKeys.loads(p.read_bytes())
    keys = make()
    if keys is not None:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(keys.dumps())
    return keys


_env_keys: list[GraphKeys | None] = []


def keys_from_env() -> GraphKeys | None:
    """The keys a launcher handed this process through the pipe `$LOOPYLAB_BUS_KEYS_FD` (read once)."""
    if not _env_keys:
        fd = os.environ.pop(KEYS_FD_ENV, None)
        keys = None
        if fd:
            with os.fdopen(int(fd), "rb") as f:
                keys = GraphKeys.loads(f.read())
        _env_keys.append(keys)
    return _env_keys[0]


# -- refusals: what the services of this process refused, for whoever runs the graph -------------------------


@dataclass(frozen=True)
class Refusal:
    domain: str  # the graph ("" for an unsealed one)
    service: str  # the service, or "join" for a handshake with an unknown key
    role: str  # the caller's role ("" when it has none)
    allowed: tuple[str, ...]
    at: float


_refusals: list[Refusal] = []
_lock = threading.Lock()


def refuse(domain: str, service: str, role: str, allowed: tuple[str, ...]) -> str:
    """Record a refusal; the error text the caller gets."""
    with _lock:
        _refusals.append(Refusal(domain, service, role, allowed, time.time()))
    who = f"role {role!r}" if role else "a caller with no role (this graph is not sealed, or the key is unknown)"
    log.warning("refused %s to %s", service, who)
    return f"{service} may be called by {' or '.join(allowed) or 'nobody'} only; refused to {who}"


def refusals(domain: str | None = None) -> list[Refusal]:
    """The refusals recorded in this process (of graph `domain`, or all)."""
    with _lock:
        return [r for r in _refusals if domain is None or r.domain == domain]


# -- sockets ----------------------------------------------------------------------------------------------------

_inproc_roles: dict[bytes, str] = {}  # routing id of an inproc client socket -> the role it proved
_authenticators: dict[int, Any] = {}  # id(context) -> its ThreadAuthenticator
_domains: dict[str, GraphKeys] = {}


class _Keyring:
    """ZAP credentials provider: admits the graph's role keys, records any other key."""

    def callback(self, domain: str, key: bytes) -> bool:
        keys = _domains.get(domain)
        if keys is not None and keys.role_of(key) is not None:
            return True
        refuse(domain, "join", "", ())
        return False


def _authenticator(ctx: zmq.Context[Any], keys: GraphKeys) -> None:
    with _lock:
        _domains.setdefault(keys.domain, keys)
        if id(ctx) not in _authenticators:
            from zmq.auth.thread import ThreadAuthenticator

            auth = ThreadAuthenticator(ctx, log=logging.getLogger("loopylab.access.zap"))
            auth.start()
            _authenticators[id(ctx)] = auth
        _authenticators[id(ctx)].configure_curve_callback(keys.domain, _Keyring())


def serve(sock: zmq.Socket[Any], keys: GraphKeys | None, transport: str) -> None:
    """Make a socket that will bind a CURVE server of the sealed graph (before bind)."""
    if keys is None or transport == "inproc":
        return
    _authenticator(sock.context, keys)
    sock.setsockopt(zmq.ZAP_DOMAIN, keys.domain.encode())
    sock.curve_secretkey = keys.server.secret
    sock.curve_publickey = keys.server.public
    sock.curve_server = True


def join(sock: zmq.Socket[Any], keys: GraphKeys | None, transport: str, role: str | None = None) -> None:
    """Make a socket that will connect a CURVE client of the sealed graph as `role` (before connect). On
    inproc, register the socket's routing id under the role (this process holds its key: it may)."""
    if keys is None:
        return
    kp = keys.keypair(role)
    if transport == "inproc":
        if sock.socket_type != zmq.DEALER:
            return  # only a service client's role is ever asked for
        rid = os.urandom(16)
        sock.setsockopt(zmq.ROUTING_ID, rid)
        with _lock:
            _inproc_roles[rid] = role or keys.role
        return
    sock.curve_serverkey = keys.server.public
    sock.curve_publickey = kp.public
    sock.curve_secretkey = kp.secret


def forget(sock: zmq.Socket[Any]) -> None:
    """Drop an inproc client socket's registration (when it closes)."""
    try:
        rid = sock.getsockopt(zmq.ROUTING_ID)
    except zmq.ZMQError:
        return
    with _lock:
        _inproc_roles.pop(bytes(rid), None)


def caller_role(ident: bytes, frame: zmq.Frame, keys: GraphKeys | None, transport: str) -> str:
    """The role of the client whose request came in on `frame` (its ROUTER identity `ident`); "" if none."""
    if keys is None:
        return ""
    if transport == "inproc":
        with _lock:
            return _inproc_roles.get(ident, "")
    try:
        user = frame.get("User-Id")
    except (zmq.ZMQError, KeyError):
        return ""
    return keys.role_of(user.encode() if isinstance(user, str) else b"") or ""
