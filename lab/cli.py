"""The `loopylab` command line: one typer app. The lab's own verbs (run, eval, demo, notebook) come first; every other
package adds its verbs from its own `cli.py` through the `loopylab.cli` entry-point group
(`NAME = "loopylab.PACKAGE.cli:register"`, `register(app)`), each under a help panel named after it. The lab
names none of them: a package that is not installed is simply absent, and one that fails to load is
reported in one log line while the others keep working.

Every verb shares one error boundary (`LabGroup`): an exception that reaches it becomes `error: <one line>`
on stderr and exit code 2 (bad input) or 1 (a failure while running); `--debug` shows the traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, PackageNotFoundError, version
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from loopylab.lab import commands, notebook_cmd, twin_fit
from loopylab.lab.errors import describe, exit_code
from loopylab.lab.plugins import CLI_GROUP, failure, plugins

log = logging.getLogger("loopylab.cli")

HELP = (
    "A robot that does science: run investigations in sim or on a real arm, inspect the bus, "
    "train the policy, and trade data on the bounty market."
)
LOG_FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


class LabGroup(TyperGroup):
    """The root command: runs the verb, and turns whatever it raises into one line (or, with --debug, lets
    the traceback through)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, EOFError, SystemExit):
            raise
        except Exception as e:
            if isinstance(e, typer.TyperException) or ctx.params.get("debug"):
                raise  # usage errors have typer's own message; --debug wants the traceback
            typer.echo(describe(e), err=True)
            raise typer.Exit(exit_code(e)) from None


def package_version() -> str:
    try:
        return version("loopylab")
    except PackageNotFoundError:  # running from a tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"loopylab {package_version()}")
        raise typer.Exit()


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        """logging.StreamHandler assigns its stream at creation; ours is always the current sys.stderr."""


def configure_logging(verbose: bool = False, log_file: Path | None = None) -> None:
    """Our loggers (`loopylab.*`) at INFO ($LOOPYLAB_LOG overrides), everyone else's (httpx, alembic,
    urllib3, web3, ...) at WARNING; `verbose` lowers both a step (ours DEBUG, theirs INFO). `log_file`
    gets the same lines as the terminal."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_loopylab", False)]:  # called again (tests): replace
        root.removeHandler(h)
        h.close()
    handlers: list[logging.Handler] = [_Stderr()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        h._loopylab = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    ours = logging.DEBUG if verbose else os.environ.get("LOOPYLAB_LOG", "INFO").upper()
    logging.getLogger("loopylab").setLevel(ours)


def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging (and third-party INFO)."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error."),
    log_file: Path | None = typer.Option(None, "--log-file", metavar="PATH", help="Also write the log to PATH."),
    twin_calibration: Path | None = typer.Option(
        None, "--twin-calibration", metavar="FILE", help="The twin's figures fitted to a rig (lab calibrate-twin)."
    ),
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
):
    configure_logging(verbose, log_file)
    if twin_calibration is not None:
        twin_fit.use(twin_calibration)


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
            if not isinstance(info.rich_help_panel, str):  # unset (typer's default marker): the plugin's panel
                info.rich_help_panel = ep.name
    return failed


def make_app(eps: Iterable[EntryPoint] | None = None) -> typer.Typer:
    """The command line: the lab's verbs, then each plugin's (`eps`, default the installed `loopylab.cli`
    entry points, in name order)."""
    app = typer.Typer(
        name="loopylab",
        help=HELP,
        cls=LabGroup,
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_show_locals=False,
    )
    app.callback()(_root)
    commands.register(app)
    notebook_cmd.register(app)
    add_plugins(app, plugins(CLI_GROUP).values() if eps is None else eps)
    return app


app = make_app()


def main() -> None:
    app(prog_name="loopylab")


if __name__ == "__main__":
    main()
