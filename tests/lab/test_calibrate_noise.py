"""scripts/calibrate_noise.py's fit of the per-object bounce gain's tail (NoiseModel.gain_tail), on drops drawn
from a known model: it finds the tail that is there, and none where there is none."""

import argparse
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "calibrate_noise", Path(__file__).resolve().parents[2] / "scripts" / "calibrate_noise.py"
)
calibrate_noise = importlib.util.module_from_spec(spec)
spec.loader.exec_module(calibrate_noise)

CORE = 0.05  # BIAS["bounce_m"]


def _rows(share: float, sd: float, objects: int = 300, drops: int = 3, seed: int = 0) -> list[dict]:
    """Drops whose log ratio world/twin is the object's gain (core or tail) plus a 0.1 per-drop error."""
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(objects):
        gain = rng.standard_normal() * (sd if rng.random() < share else CORE)
        for _ in range(drops):
            y = 0.05 * math.exp(gain + 0.1 * rng.standard_normal())
            rows.append(dict(key="bounce_m", seed=o, object="b", y=y, pred=0.05, sigma=0.005, bias_sd=CORE))
    return rows


def test_the_fit_finds_the_tail_that_is_there():
    fit = calibrate_noise.fit_gain_tail(_rows(0.2, 0.4), broad=(0.0, 0.22))
    assert fit["objects"] == 300
    assert fit["share"] == pytest.approx(0.2, abs=0.075) and fit["sd"] == pytest.approx(0.4, abs=0.1)
    assert fit["loglik_gain_vs_none"] > 20


def test_the_fit_finds_no_tail_where_there_is_none():
    fit = calibrate_noise.fit_gain_tail(_rows(0.0, 0.4, seed=1), broad=(0.0, 0.22))
    assert fit["share"] <= 0.05 or fit["loglik_gain_vs_none"] < 3


def test_no_drops_no_fit():
    assert calibrate_noise.fit_gain_tail([dict(key="mass_kg", y=0.2, pred=0.2, sigma=0.002, bias_sd=0.0)]) == {}


def test_notebooks_of_test_worlds_are_refused_before_anything_runs(tmp_path):
    """--notebooks calibrates on an evaluation's notebooks: rows of test worlds are refused, not read."""
    from loopylab.world.splits import SplitError

    rows = tmp_path / "rows.jsonl"
    row = {
        "agent": "eig",
        "kind": "friction",
        "seed": 2000000,
        "crashed": False,
        "notebook_audit": "<|question_start|>",
    }
    rows.write_text(json.dumps(row) + "\n")
    args = argparse.Namespace(notebooks=rows, kinds="friction", workers=1, out=tmp_path / "out")
    with pytest.raises(SplitError, match="not in the dev split"):
        calibrate_noise.from_notebooks(args)
    assert not (tmp_path / "out").exists()
