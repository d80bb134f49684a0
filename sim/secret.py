"""The world builder's secret: the key of every seed's hidden properties (world/scene.py, `keyed_rng`).

The sim node is the only holder: a graph or bench asks for `world_secret = "sealed"` and the node resolves it
here, in its own process, from

1. the environment variable LOOPYLAB_WORLD_SECRET of the builder's process (a real evaluation sets its own and
   keeps it off the agents' machines; the evaluator strips it from an agent's environment), else
2. the file graphs/world.secret of the checkout: the reproducible default, so that a seed names the same world
   on every machine for tests and benchmarks. It is data, not a module attribute: nothing an agent imports
   holds it, and the agent is never told where it is. An agent running as the same user on the same machine
   could still read the file; grading that must resist that sets the variable and runs agents elsewhere.

A graph without the parameter (or None) builds the public worlds: the seed's own stream (demos, the gym env).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LOOPYLAB_WORLD_SECRET"
SEALED = "sealed"  # the parameter value that asks for the builder's own secret
# set in an agent's process under evaluation (lab/sealed.py): a world builder is never there, so asking for the
# secret there is a cheat, refused (a guard against importing this module, not against reading the file)
AGENT_FLAG = "LOOPYLAB_SEALED_AGENT"
DEFAULT_FILE = Path(__file__).resolve().parents[1] / "graphs" / "world.secret"


def resolve(value: str | None) -> str | None:
    """The secret a world builder uses for its `world_secret` parameter: None (public worlds), SEALED (the
    builder's own: env, else the checkout's default file), or a literal secret."""
    if value != SEALED:
        return value or None
    if os.environ.get(AGENT_FLAG):
        raise PermissionError("the world secret is the world builder's: an agent's process may not ask for it")
    if os.environ.get(ENV):
        return os.environ[ENV]
    try:
        text = DEFAULT_FILE.read_text().strip()
    except OSError:
        raise RuntimeError(
            f"world_secret = {SEALED!r} but {ENV} is unset and {DEFAULT_FILE} is missing: set {ENV}"
        ) from None
    if not text:
        raise RuntimeError(f"{DEFAULT_FILE} is empty: the world secret must not be")
    return text
