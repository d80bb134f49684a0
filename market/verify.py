"""The verification pipeline every submission goes through before a human sees it.

Checks, in order (each yields one `{"name", "ok", "detail"}` result, all stored and shown):
  manifest   the manifest is for this bounty, lists at most MAX_FILES distinct files uploaded by the
             contributor, and each file's stored bytes hash to the declared sha256 and size
  signature  the manifest is signed by a rig key registered to the contributor
  parse      every .mcap parses and carries the bounty's declared topics; every notebook parses under
             the lab grammar (world.notebook)
  plausible  the physical checks the bounty declared (ranges, monotonic timestamps, sensor rates,
             notebook values in range)
  duplicate  no file identical to one in an earlier submission; content not a near-copy (MinHash of
             content shingles, timestamps left out so a re-timed copy is still caught)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from web3 import Web3

from loopylab.market import manifest as mf

NOTEBOOK_SUFFIXES = (".nb", ".notebook")
MAX_FILES = 64  # per manifest; each file is hashed and parsed, so the list is the cost
MINHASH_PERMUTATIONS = 64
SHINGLE = 4
_rng = np.random.default_rng(20240611)
_A = _rng.integers(1, 2**63, MINHASH_PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 2**63, MINHASH_PERMUTATIONS, dtype=np.uint64)


@dataclass
class Context:
    """Everything the pipeline needs, looked up by the service beforehand (no DB access here)."""

    bounty_id: int
    contributor: str
    task_spec: dict
    acceptance: list
    manifest: dict
    signature: str
    blob_path: Callable[[str], Path]  # sha256 -> stored file
    owned_blobs: set[str]  # blobs this contributor uploaded
    rig_owner: Callable[[str], str | None]  # rig address -> registered owner
    duplicate_files: Callable[[list[str]], list[int]]  # sha256s -> earlier submission ids holding them
    prior_fingerprints: Iterable[tuple[int, list]] = ()
    near_threshold: float = 0.9


@dataclass
class Result:
    checks: list[dict] = field(default_factory=list)
    fingerprint: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        return ok

    def failures(self) -> str:
        return "; ".join(f"{c['name']}: {c['detail']}" for c in self.checks if not c["ok"])


# ------------------------------------------------------------------ reading recorded data


def read_mcap(path: Path) -> Iterator[tuple[str, int, Any]]:
    """(topic, log_time_ns, message) of a recording, through the bus's own reader (bus.record), which
    decodes its msgpack messages into typed bus messages and JSON channels into dicts. Without the
    bus (a market-only install) JSON and plain msgpack channels are read here."""
    try:
        from loopylab.bus.record import read_messages
    except ImportError:
        read_messages = None
    if read_messages is not None:
        yield from read_messages(path)
        return
    import msgpack
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        for _schema, channel, message in make_reader(f).iter_messages(log_time_order=True):
            if channel.message_encoding == "json":
                yield channel.topic, message.log_time, json.loads(message.data)
            elif channel.message_encoding == "msgpack":
                yield channel.topic, message.log_time, msgpack.unpackb(message.data, raw=False)
            else:
                raise ValueError(f"{channel.topic}: unsupported message encoding {channel.message_encoding!r}")


def field_value(msg: Any, path: str) -> float:
    """`force.2` -> msg.force[2] (objects, dicts, lists and numpy arrays alike)."""
    cur = msg
    if isinstance(cur, dict) and "fields" in cur and path.split(".", maxsplit=1)[0] not in cur:
        cur = cur["fields"]
    for part in path.split("."):
        if part.lstrip("-").isdigit():
            cur = cur[int(part)]
        elif isinstance(cur, dict):
            cur = cur[part]
        else:
            cur = getattr(cur, part)
    return float(cur)


class BadStamp(ValueError):
    pass


def _stamp(msg: Any, log_time: int) -> int:
    """A message's own stamp_ns, else its log time. A stamp that is not an integer (a string, NaN, a float)
    is the data's fault: the check fails, the server does not."""
    s = msg.get("stamp_ns") if isinstance(msg, dict) else getattr(msg, "stamp_ns", None)
    if s is None or s == 0:
        return int(log_time)
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
        raise BadStamp(f"stamp_ns {str(s)[:40]!r} is not an integer")
    return int(s)


def _numbers(obj: Any, out: list) -> None:
    """Numeric leaves of a message, timestamps and sequence numbers left out."""
    if isinstance(obj, dict):
        for k in sorted(obj):
            if k not in ("stamp_ns", "seq", "log_time", "time"):
                _numbers(obj[k], out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _numbers(v, out)
    elif isinstance(obj, np.ndarray):
        out.extend(float(v) for v in obj.ravel()[:64])
    elif isinstance(obj, (bool, int, float)):
        out.append(float(obj))
    elif hasattr(obj, "__dataclass_fields__"):
        _numbers({k: getattr(obj, k) for k in obj.__dataclass_fields__}, out)


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def minhash(tokens: list[int]) -> list[int]:
    """MinHash signature of the set of SHINGLE-grams of a token sequence."""
    if len(tokens) < SHINGLE:
        grams = [tuple(tokens)] if tokens else []
    else:
        grams = [tuple(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1)]
    if not grams:
        return []
    x = np.array(sorted({_h64(repr(g).encode()) for g in grams}), dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _A[:, None] * x[None, :] + _B[:, None]  # multiply-shift hashing, wraps mod 2**64
    return [int(v) for v in h.min(axis=1)]


def similarity(a: list, b: list) -> float:
    if not a or not b or len(a) != len(b):
        return 0.0
    return float(np.mean(np.array(a, dtype=np.uint64) == np.array(b, dtype=np.uint64)))


def _token(topic: str, values: list[float]) -> int:
    q = tuple(round(v, 3) if math.isfinite(v) else str(v) for v in values)
    return _h64(repr((topic, q)).encode())


# ------------------------------------------------------------------ the pipeline


def run(ctx: Context) -> Result:
    res = Result()
    m = ctx.manifest
    files = m.get("files") if isinstance(m, dict) else None
    if (
        not isinstance(files, list)
        or not files
        or not all(
            isinstance(f, dict)
            and isinstance(f.get("path"), str)
            and isinstance(f.get("sha256"), str)
            and isinstance(f.get("size"), int)
            for f in files
        )
    ):
        res.add("manifest", False, "manifest needs a non-empty 'files' list of {path, sha256, size}")
        return res
    if m.get("bounty_id") != ctx.bounty_id:
        res.add("manifest", False, f"manifest is for bounty {m.get('bounty_id')}, not {ctx.bounty_id}")
        return res
    if len(files) > MAX_FILES:
        res.add("manifest", False, f"manifest lists {len(files)} files, at most {MAX_FILES} are taken")
        return res
    if len({f["path"] for f in files}) != len(files):
        res.add("manifest", False, "manifest lists a path twice")
        return res
    if len({f["sha256"] for f in files}) != len(files):  # one file listed many times was parsed many times
        res.add("manifest", False, "manifest lists the same content twice")
        return res
    if any(not 0 < len(f["path"]) <= 500 or f["size"] < 0 for f in files):
        res.add("manifest", False, "a file's path must have 1 to 500 characters and its size be >= 0")
        return res
    paths: dict[str, Path] = {}
    for f in files:
        if f["sha256"] not in ctx.owned_blobs:
            res.add("manifest", False, f"{f['path']}: no upload with sha256 {f['sha256'][:12]}… by you")
            return res
        p = ctx.blob_path(f["sha256"])
        size = p.stat().st_size
        if size != f["size"] or mf.file_sha256(p) != f["sha256"]:
            res.add("manifest", False, f"{f['path']}: stored bytes do not match the declared hash/size")
            return res
        paths[f["path"]] = p
    res.add("manifest", True, f"{len(files)} files, hashes match")

    # rig signature
    try:
        signer = mf.signer(m, ctx.signature)
    except Exception as e:
        res.add("signature", False, f"signature does not decode: {e}")
        signer = None
    if signer is not None:
        declared = str(m.get("rig", ""))
        owner = ctx.rig_owner(signer)
        if Web3.is_address(declared) and Web3.to_checksum_address(declared) != signer:
            res.add("signature", False, f"signed by {signer}, manifest names rig {declared}")
        elif owner is None:
            res.add("signature", False, f"rig key {signer} is not registered")
        elif owner != ctx.contributor:
            res.add("signature", False, f"rig {signer} is registered to another account")
        else:
            res.add("signature", True, f"signed by registered rig {signer}")

    # parse + collect what the plausibility checks need
    spec_topics = list(ctx.task_spec.get("topics", []) or [])
    messages: dict[str, list[tuple[int, Any]]] = {}
    notebooks: list = []
    tokens: list[int] = []
    parse_ok, details = True, []
    for path, p in sorted(paths.items()):
        if path.endswith(".mcap"):
            try:
                n = 0
                for topic, log_time, msg in read_mcap(p):
                    messages.setdefault(topic, []).append((int(log_time), msg))
                    vals: list = []
                    _numbers(msg, vals)
                    tokens.append(_token(topic, vals))
                    n += 1
                details.append(f"{path}: {n} messages")
            except Exception as e:
                parse_ok = False
                details.append(f"{path}: not a readable MCAP file ({type(e).__name__}: {e})")
        elif path.endswith(NOTEBOOK_SUFFIXES):
            from loopylab.world import notebook as grammar

            try:
                text = p.read_text()
                sections = grammar.parse(text)
                notebooks.append(sections)
                for line in text.splitlines():
                    tokens.append(_h64(line.encode()))
                details.append(f"{path}: {len(sections)} notebook sections")
            except (UnicodeDecodeError, grammar.GrammarError) as e:
                parse_ok = False
                details.append(f"{path}: not a notebook under the lab grammar ({e})")
    missing = [t for t in spec_topics if t not in messages]
    if missing:
        parse_ok = False
        details.append(f"declared topics missing: {', '.join(missing)}")
    if ctx.task_spec.get("notebook") and not notebooks:
        parse_ok = False
        details.append("the bounty asks for a lab notebook (.nb) and none was submitted")
    if not messages and not notebooks:
        parse_ok = False
        details.append("no .mcap recording or .nb notebook in the submission")
    res.add("parse", parse_ok, "; ".join(details))

    # plausibility checks declared by the bounty
    for check in ctx.acceptance:
        try:
            name, ok, detail = plausibility(check, messages, notebooks)
        except (BadStamp, TypeError, ValueError, KeyError, OverflowError) as e:  # the data's values, not ours
            name, ok, detail = f"{check.get('check')} {check.get('topic', '*')}", False, f"cannot check: {e}"
        res.add(name, ok, detail)

    # duplicates
    dups = ctx.duplicate_files([f["sha256"] for f in files])
    if dups:
        res.add("duplicate", False, f"identical file already submitted in submission(s) {sorted(set(dups))}")
    else:
        res.fingerprint = minhash(tokens)
        near = [(sid, similarity(res.fingerprint, fp)) for sid, fp in ctx.prior_fingerprints]
        near = [(sid, s) for sid, s in near if s >= ctx.near_threshold]
        if near:
            sid, s = max(near, key=lambda t: t[1])
            res.add("duplicate", False, f"content {s:.0%} similar to submission {sid}")
        else:
            res.add("duplicate", True, "no identical or near-identical earlier submission")
    return res


def plausibility(check: dict, messages: dict, notebooks: list) -> tuple[str, bool, str]:
    kind = check.get("check")
    topic = check.get("topic", "*")
    topics = list(messages) if topic == "*" else [topic]
    if kind == "range":
        lo, hi, fld = float(check.get("min", -math.inf)), float(check.get("max", math.inf)), check["field"]
        name = f"range {topic}.{fld}"
        seen = 0
        for t in topics:
            for _, msg in messages.get(t, []):
                try:
                    v = field_value(msg, fld)
                except (KeyError, IndexError, AttributeError, TypeError, ValueError):
                    return name, False, f"{t}: message has no field {fld!r}"
                seen += 1
                if not (lo <= v <= hi):
                    return name, False, f"{t}: {fld} = {v:g} outside [{lo:g}, {hi:g}]"
        if not seen:
            return name, False, f"no {topic} messages to check"
        return name, True, f"{seen} values within [{lo:g}, {hi:g}]"
    if kind == "monotonic":
        name = f"monotonic {topic}"
        for t in topics:
            stamps = [_stamp(m, lt) for lt, m in messages.get(t, [])]
            bad = next((i for i in range(1, len(stamps)) if stamps[i] <= stamps[i - 1]), None)
            if bad is not None:
                return name, False, f"{t}: timestamp {stamps[bad]} at message {bad} does not increase"
        return name, True, "timestamps strictly increasing"
    if kind == "rate":
        hz, tol = float(check["hz"]), float(check.get("tolerance", 0.1))
        name = f"rate {topic}"
        for t in topics:
            stamps = sorted(_stamp(m, lt) for lt, m in messages.get(t, []))
            if len(stamps) < 3:
                return name, False, f"{t}: too few messages to measure a rate"
            rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9 or 1e-9)
            if abs(rate - hz) > tol * hz:
                return name, False, f"{t}: {rate:.1f} Hz, declared {hz:g} Hz ± {tol:.0%}"
        return name, True, f"rate {hz:g} Hz ± {tol:.0%}"
    if kind == "notebook_range":
        q, lo, hi = check["quantity"], float(check.get("min", -math.inf)), float(check.get("max", math.inf))
        name = f"notebook {q}"
        values = list(_notebook_values(notebooks, q))
        if not values:
            return name, False, f"no {q} value in any notebook"
        bad = [v for v in values if not (lo <= v <= hi)]
        if bad:
            return name, False, f"{q} = {bad[0]:g} outside [{lo:g}, {hi:g}]"
        return name, True, f"{len(values)} {q} values within [{lo:g}, {hi:g}]"
    if kind == "min_messages":
        n = int(check["count"])
        got = sum(len(messages.get(t, [])) for t in topics)
        return f"count {topic}", got >= n, f"{got} messages, at least {n} required"
    return f"check {kind}", False, f"unknown check kind {kind!r}"


def _notebook_values(notebooks: list, quantity: str) -> Iterator[float]:
    """Observed values (`force`, `moved`, `slide`...) and estimated quantities (`friction`...)."""
    for sections in notebooks:
        for s in sections:
            body = s.body
            if s.kind == "observation" and getattr(body, "error", None) is None:
                for k, v in body.values:
                    if k == quantity:
                        yield v
            elif s.kind in ("belief", "conclusion"):
                for e in getattr(body, "estimates", ()) or getattr(body, "answers", ()):
                    if getattr(e, "quantity", None) == quantity and hasattr(e, "value"):
                        yield e.value


CHECK_KINDS = ("range", "monotonic", "rate", "notebook_range", "min_messages")
