"""The pipeline every submission goes through before a human sees it (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from loopylab.market import manifest as mf
from loopylab.market.verify import bounds, dupes, twin
from loopylab.market.verify.declared import plausibility
from loopylab.market.verify.decode import BadStamp, leaves, plain, read_mcap

NOTEBOOK_SUFFIXES = (".nb", ".notebook")
MAX_FILES = 64  # per manifest; each file is hashed and parsed, so the list is the cost


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
    prior_fingerprints: Iterable[tuple[int, Any]] = ()
    # or, given the new fingerprint, the earlier ones worth comparing (the service's band index)
    prior_for: Callable[[dict], Iterable[tuple[int, Any]]] | None = None
    rig_verified: Callable[[str], str | None] | None = None  # rig -> why it may not fill a slot (None: it may)
    verifiers: dict | None = None  # twin-replay plug-ins (None: the installed ones)
    now_ns: int | None = None


@dataclass
class Result:
    checks: list[dict] = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)

    @property
    def complete(self) -> bool:
        """Every automatic check ran and passed (none unavailable): what auto-approval needs."""
        return complete(self.checks)

    def add(self, name: str, ok: bool, detail: str, status: str | None = None) -> bool:
        self.checks.append(
            {"name": name, "ok": bool(ok), "detail": detail, "status": status or ("pass" if ok else "fail")}
        )
        return ok

    def failures(self) -> str:
        return "; ".join(f"{c['name']}: {c['detail']}" for c in self.checks if not c["ok"])


def complete(checks: list[dict]) -> bool:
    """Stored check results that all ran and passed (none unavailable): what auto-approval needs. Results
    stored before checks had a status are not complete (they predate the bounds and the twin replay)."""
    return bool(checks) and all(c.get("ok") and c.get("status") == "pass" for c in checks)


@dataclass
class Decoded:
    """What the files hold, decoded once for every check."""

    messages: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    leaves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    notebooks: list = field(default_factory=list)
    chunks: set[int] = field(default_factory=set)

    def plain_streams(self) -> dict:
        """topic -> [(log_time_ns, message as plain data)]: log times order the topics against each other
        (one recorder's clock), each message keeps its own stamp_ns."""
        return {topic: [(int(lt), plain(m)) for lt, m in rows] for topic, rows in self.messages.items()}


def _manifest_files(res: Result, ctx: Context) -> dict[str, Path] | None:
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
        return None
    problem = None
    if m.get("bounty_id") != ctx.bounty_id:
        problem = f"manifest is for bounty {m.get('bounty_id')}, not {ctx.bounty_id}"
    elif len(files) > MAX_FILES:
        problem = f"manifest lists {len(files)} files, at most {MAX_FILES} are taken"
    elif len({f["path"] for f in files}) != len(files):
        problem = "manifest lists a path twice"
    elif len({f["sha256"] for f in files}) != len(files):  # one file listed many times was parsed many times
        problem = "manifest lists the same content twice"
    elif any(not 0 < len(f["path"]) <= 500 or f["size"] < 0 for f in files):
        problem = "a file's path must have 1 to 500 characters and its size be >= 0"
    if problem:
        res.add("manifest", False, problem)
        return None
    paths: dict[str, Path] = {}
    for f in files:
        if f["sha256"] not in ctx.owned_blobs:
            res.add("manifest", False, f"{f['path']}: no upload with sha256 {f['sha256'][:12]}… by you")
            return None
        p = ctx.blob_path(f["sha256"])
        if p.stat().st_size != f["size"] or mf.file_sha256(p) != f["sha256"]:
            res.add("manifest", False, f"{f['path']}: stored bytes do not match the declared hash/size")
            return None
        paths[f["path"]] = p
    res.add("manifest", True, f"{len(files)} files, hashes match")
    return paths


def _signature(res: Result, ctx: Context) -> None:
    m = ctx.manifest
    try:
        signer = mf.signer(m, ctx.signature)
    except Exception as e:
        res.add("signature", False, f"signature does not decode: {e}")
        return
    declared = str(m.get("rig", ""))
    owner = ctx.rig_owner(signer)
    if Web3.is_address(declared) and Web3.to_checksum_address(declared) != signer:
        res.add("signature", False, f"signed by {signer}, manifest names rig {declared}")
    elif owner is None:
        res.add("signature", False, f"rig key {signer} is not registered")
    elif owner != ctx.contributor:
        res.add("signature", False, f"rig {signer} is registered to another account")
    else:
        why = ctx.rig_verified(signer) if ctx.rig_verified else None
        if why:
            res.add("signature", False, why)
        else:
            res.add("signature", True, f"signed by registered rig {signer}")


def _decode(paths: dict[str, Path], task_spec: dict) -> tuple[Decoded, bool, list[str]]:
    d = Decoded()
    ok, details = True, []
    for path, p in sorted(paths.items()):
        d.chunks |= dupes.content_chunks(p.read_bytes())
        if path.endswith(".mcap"):
            try:
                n = 0
                for topic, log_time, msg in read_mcap(p):
                    d.messages.setdefault(topic, []).append((int(log_time), msg))
                    lv = leaves(msg)
                    d.leaves.setdefault(topic, []).append(lv)
                    for k, v in lv.items():
                        d.series.setdefault(f"{topic}:{k}", []).append(v)
                    n += 1
                details.append(f"{path}: {n} messages")
            except Exception as e:
                ok = False
                details.append(f"{path}: not a readable MCAP file ({type(e).__name__}: {e})")
        elif path.endswith(NOTEBOOK_SUFFIXES):
            from loopylab.world import notebook as grammar

            try:
                d.notebooks.append(grammar.parse(p.read_text()))
                details.append(f"{path}: {len(d.notebooks[-1])} notebook sections")
            except (UnicodeDecodeError, grammar.GrammarError) as e:
                ok = False
                details.append(f"{path}: not a notebook under the lab grammar ({e})")
    missing = [t for t in list(task_spec.get("topics", []) or []) if t not in d.messages]
    if missing:
        ok = False
        details.append(f"declared topics missing: {', '.join(missing)}")
    if task_spec.get("notebook") and not d.notebooks:
        ok = False
        details.append("the bounty asks for a lab notebook (.nb) and none was submitted")
    if not d.messages and not d.notebooks:
        ok = False
        details.append("no .mcap recording or .nb notebook in the submission")
    return d, ok, details


def run(ctx: Context) -> Result:
    res = Result()
    paths = _manifest_files(res, ctx)
    if paths is None:
        return res
    _signature(res, ctx)
    d, parse_ok, details = _decode(paths, ctx.task_spec)
    res.add("parse", parse_ok, "; ".join(details))

    # the market's own hard bounds, whatever the bounty declared
    if d.messages:
        res.add("bounds", *bounds.check(d.messages, d.leaves, ctx.now_ns))

    # the plausibility checks the bounty declared
    for check in ctx.acceptance:
        try:
            name, ok, detail = plausibility(check, d.messages, d.notebooks)
        except (BadStamp, TypeError, ValueError, KeyError, OverflowError) as e:  # the data's values, not ours
            name, ok, detail = f"{check.get('check')} {check.get('topic', '*')}", False, f"cannot check: {e}"
        res.add(name, ok, detail)

    # physics: the twin replays the recorded commands and compares the recorded sensors
    if d.messages:
        status, ok, detail = twin.replay(d.plain_streams(), {"task_spec": ctx.task_spec}, ctx.verifiers)
        res.add("twin", ok, detail, status)

    # duplicates: identical files, then near-copies (noise, offsets, re-timing, small edits)
    numbers = [x for sections in d.notebooks for x in dupes.notebook_numbers(sections)]
    res.fingerprint = dupes.fingerprint(d.series, numbers, d.chunks)
    shas = [f["sha256"] for f in ctx.manifest["files"]]
    dups = ctx.duplicate_files(shas)
    if dups:
        res.add("duplicate", False, f"identical file already submitted in submission(s) {sorted(set(dups))}")
        return res
    prior = ctx.prior_for(res.fingerprint) if ctx.prior_for else ctx.prior_fingerprints
    near = dupes.near_duplicates(res.fingerprint, prior)
    if near:
        sid, why = near[0]
        res.add("duplicate", False, f"a near-copy of submission {sid}: {why}")
    else:
        res.add("duplicate", True, "no identical or near-identical earlier submission")
    return res


def fingerprint_files(paths: dict[str, Path]) -> dict:
    """The near-duplicate fingerprint of a set of files (name -> path), as a submission of them gets."""
    d, _ok, _details = _decode(paths, {})
    return dupes.fingerprint(d.series, [x for s in d.notebooks for x in dupes.notebook_numbers(s)], d.chunks)
