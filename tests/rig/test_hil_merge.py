"""benchmarks/hil_lab.py --merge: several runs' logs, summed into the benchmark's figures; a rerun of some kinds
after a fix replaces those kinds of the worlds it covers, and keeps the rest."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "hil_lab", Path(__file__).resolve().parents[2] / "benchmarks" / "hil_lab.py"
)
hil_lab = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(hil_lab)  # type: ignore[union-attr]


def _world(seed: int, **kinds: bool) -> dict:
    out = {"seed": seed, "oracle": 0, "reset": 0, "pose_err_mm": 1.5, "wrench_err_n": 0.05, "ok": True}
    out.update({k: {"success": ok, "error": 0.0, "experiments": 2, "s_per_experiment": 5.0} for k, ok in kinds.items()})
    return out


def _log(path: Path, worlds: list[dict]) -> str:
    lines = ["noise a log carries", *(f"{p} {json.dumps(w)}" for w in worlds for p in ("hil", "sim"))]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_rerun_replaces_its_kinds_and_keeps_the_rest(tmp_path):
    first = _log(tmp_path / "a.log", [_world(1, mass=True, slides=False), _world(2, mass=False, slides=False)])
    other = _log(tmp_path / "b.log", [_world(3, mass=True, slides=True)])
    rerun = _log(tmp_path / "c.log", [_world(1, slides=True), _world(2, slides=True)])
    before = hil_lab.merge([first, other])
    assert before["worlds"] == [1, 2, 3]
    assert before["hil_success"]["slides"] == 1 / 3 and before["hil_success"]["mass"] == 2 / 3
    after = hil_lab.merge([first, other, rerun])
    assert after["worlds"] == [1, 2, 3]
    assert after["hil_success"]["slides"] == 1.0  # worlds 1 and 2 rerun, 3 as it was
    assert after["hil_success"]["mass"] == 2 / 3  # not rerun: kept from the first log
    assert after["asked"] == {"mass": 3, "slides": 3}
