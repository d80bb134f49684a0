"""The twin replay, through plug-ins: the market may not import the simulator (a sibling layer), so a package
that can replay a recording registers a verifier in the `loopylab.verifiers` entry-point group (the sim
registers `twin`). A verifier is a plain-data function:

    verify(streams, context) -> {"ok": True | False | None, "detail": str}

`streams`: topic -> [(log_time_ns, message as plain dicts/lists/numbers)], in recorded order (log times:
the recorder's one clock, which orders topics against each other; messages keep their stamp_ns); `context`: the
bounty's task_spec under "task_spec". ok None: the recording holds nothing this verifier can check (no
recorded commands, say). Without any verifier installed the check reads "unavailable": shown on the
submission, never a pass, and such a submission is not auto-approved (it waits for its reviewer)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points

log = logging.getLogger(__name__)

GROUP = "loopylab.verifiers"
Verifier = Callable[[dict, dict], dict]
_loaded: dict[str, Verifier] | None = None


def verifiers() -> dict[str, Verifier]:
    """name -> verifier of every installed plug-in (loaded once; one that fails to load is logged, not used)."""
    global _loaded
    if _loaded is None:
        found: dict[str, Verifier] = {}
        for ep in entry_points(group=GROUP):
            try:
                found[ep.name] = ep.load()
            except Exception as e:  # a broken plug-in must not take the market down
                log.warning("verifier plug-in %s does not load: %s", ep.name, e)
        _loaded = found
    return _loaded


def replay(streams: dict, context: dict, installed: dict[str, Verifier] | None = None) -> tuple[str, bool, str]:
    """(status, ok, detail): status pass | fail | unavailable. A bounty whose task_spec says `twin: true`
    requires the replay: then unavailable or not applicable fails the submission."""
    required = bool((context.get("task_spec") or {}).get("twin"))
    found = verifiers() if installed is None else installed
    if not found:
        detail = (
            f"twin replay unavailable: no verifier plug-in installed (entry-point group {GROUP}; "
            "the simulator package registers one)"
        )
        return ("fail", False, detail) if required else ("unavailable", True, detail)
    lines, status = [], "pass"
    ran = False
    for name, fn in sorted(found.items()):
        try:
            out = fn(streams, context)
            ok, detail = out.get("ok"), str(out.get("detail", ""))[:500]
        except Exception as e:  # the plug-in's fault, not the data's: no verdict
            log.exception("verifier %s failed", name)
            ok, detail = None, f"error ({type(e).__name__}: {e})"
        lines.append(f"{name}: {detail}")
        if ok is False:
            status = "fail"
        elif ok is True:
            ran = True
    if status == "pass" and not ran:
        status = "fail" if required else "unavailable"
    return status, status != "fail", "; ".join(lines)
