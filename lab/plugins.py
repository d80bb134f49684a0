"""Plugins: what packages above the lab add to it, found through entry points (`[project.entry-points]` in
pyproject.toml), so that no package names one above it, by import or by string.

    loopylab.cli      NAME = "module:register"   register(app) adds that package's verbs to the command line
    loopylab.agents   NAME = "module:Factory"    Factory(seed=..., **kw) makes the agent NAME

A plugin that fails to load is reported in one log line and left out; everything else keeps working.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

CLI_GROUP = "loopylab.cli"
AGENT_GROUP = "loopylab.agents"

log = logging.getLogger("loopylab.plugins")


def plugins(group: str) -> dict[str, EntryPoint]:
    """The installed entry points of `group` by name, in name order (the metadata keeps no other)."""
    return {ep.name: ep for ep in sorted(entry_points(group=group), key=lambda ep: ep.name)}


def failure(ep: EntryPoint, e: BaseException) -> str:
    """One line saying which plugin failed and why."""
    why = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"plugin {ep.name!r} ({ep.group}: {ep.value}) failed to load: {type(e).__name__}: {why}".rstrip(": ")


def load(ep: EntryPoint) -> Any | None:
    """The object `ep` names, or None after logging one line if it cannot be loaded."""
    try:
        return ep.load()
    except Exception as e:  # a broken plugin must not take the host down with it
        log.warning(failure(ep, e))
        return None
