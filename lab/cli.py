"""The `loopylab` command line: one typer app; each package adds its commands from its own `cli.py`
(a `register(app)` function), so the command tree mirrors the package layout."""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os

import typer

app = typer.Typer(
    name="loopylab",
    help="A robot that does science: run investigations in sim or on a real arm, inspect the bus, "
         "train the policy, and trade data on the bounty market.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# (module, what it adds) in the order they appear in --help
COMMAND_MODULES = [
    "loopylab.lab.commands",            # run, eval, demo
    "loopylab.bus.cli",                 # launch, topics, echo, record, replay
    "loopylab.actuation.cli",           # skill
    "loopylab.sim.cli",                 # sim tools
    "loopylab.perception.cli",          # camera
    "loopylab.firmware_bridge.cli",     # arm
    "loopylab.nanochat.cli",            # policy
    "loopylab.market.cli",              # market, bounty
]


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")):
    logging.basicConfig(level=logging.DEBUG if verbose else os.environ.get("LOOPYLAB_LOG", "INFO"),
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S")


for _mod in COMMAND_MODULES:
    if importlib.util.find_spec(_mod) is not None:  # during development a package may not have one yet
        importlib.import_module(_mod).register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
