"""Where generated files go: never into the installed package.

The rule: every verb writes under the folder you run it from, unless `--out` says otherwise —
`reports/` for investigations and evaluations (`run`, `eval`, `demo`), `runs/` for the policy's
training data and checkpoints (`policy data`, `policy train`). The files shipped inside the package
(training shards, the checkpoint, robot models, graphs) are read-only inputs: a verb asked to write
among them refuses with one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

RUNS = Path("runs")  # policy data and checkpoints
REPORTS = Path("reports")  # investigation and evaluation reports


def package_dirs() -> list[Path]:
    """The folders of the installed `loopylab` packages that are loaded (every package with a verb is:
    the command line imports them all); resolved, without duplicates."""
    dirs = []
    for name, module in list(sys.modules.items()):
        if name == "loopylab" or (name.startswith("loopylab.") and name.count(".") == 1):
            for p in getattr(module, "__path__", None) or []:
                d = Path(p).resolve()
                if d not in dirs:
                    dirs.append(d)
    return dirs


def inside_package(path: str | Path) -> Path | None:
    """The package folder that `path` lies in, or None."""
    p = Path(path).resolve()
    return next((d for d in package_dirs() if p == d or d in p.parents), None)


def check_output(path: str | Path, option: str = "--out") -> Path:
    """`path` if it lies outside the installed package; else a ValueError naming it."""
    pkg = inside_package(path)
    if pkg is not None:
        raise ValueError(
            f"{option} {path} lies inside the installed package ({pkg}), whose files are read-only "
            f"inputs: pass {option} somewhere else (or run from another folder)"
        )
    return Path(path)
