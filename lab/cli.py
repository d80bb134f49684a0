"""The `loopylab` command line: one typer app. The lab's own verbs (run, eval, demo) come first; every other
package adds its verbs from its own `cli.py` through the `loopylab.cli` entry-point group
(`NAME = "loopylab.PACKAGE.cli:register"`, `register(app)`), each under a help panel named after it. The lab
names none of them: a package that is not installed is simply absent, and one that fails to load is
reported in one log line while the others keep working."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from importlib.metadata import EntryPoint

import typer

from loopylab.lab import commands
from loopylab.lab.plugins import CLI_GROUP, failure, plugins

log = logging.getLogger("loopylab.cli")

HELP = ("A robot that does science: run investigations in sim or on a real arm, inspect the bus, "
        "train the policy, and trade data on the bounty market.")


def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")):
    logging.basicConfig(level=logging.DEBUG if verbose else os.environ.get("LOOPYLAB_LOG", "INFO"),
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S")


def add_plugins(app: typer.Typer, eps: Iterable[EntryPoint]) -> list[str]:
    """Add each plugin's verbs to `app` under a help panel named after it; returns the names of those
    that failed to load (each reported in one log line, and none of its verbs kept)."""
    failed = []
    for ep in eps:
        n_cmds, n_groups = len(app.registered_commands), len(app.registered_groups)
        try:
            ep.load()(app)
        except Exception as e:  # a broken plugin must not take the whole command line down
            log.warning(failure(ep, e))
            del app.registered_commands[n_cmds:], app.registered_groups[n_groups:]
            failed.append(ep.name)
            continue
        for info in app.registered_commands[n_cmds:] + app.registered_groups[n_groups:]:
            if not isinstance(info.rich_help_panel, str):   # unset (typer's default marker): the plugin's panel
                info.rich_help_panel = ep.name
    return failed


def make_app(eps: Iterable[EntryPoint] | None = None) -> typer.Typer:
    """The command line: the lab's verbs, then each plugin's (`eps`, default the installed `loopylab.cli`
    entry points, in name order)."""
    app = typer.Typer(name="loopylab", help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_show_locals=False)
    app.callback()(_root)
    commands.register(app)
    add_plugins(app, plugins(CLI_GROUP).values() if eps is None else eps)
    return app


app = make_app()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
