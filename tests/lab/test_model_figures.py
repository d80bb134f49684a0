"""The benchmark's model figures (benchmarks/lab_eval.model_figures) from evaluator rows."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "lab_eval", Path(__file__).resolve().parents[2] / "benchmarks" / "lab_eval.py"
)
lab_eval = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(lab_eval)  # type: ignore[union-attr]


def _row(err, pred, correct=True):
    return {
        "model_truth": "sticky",
        "model_correct": correct,
        "falsified_true_model": False,
        "unexplained": pred is None,
        "explanation_pred": pred,
        "explanation_pred_error": err,
    }


def test_a_held_out_run_that_failed_is_not_scored_but_an_empty_explanation_is():
    rows = [_row(0.2, 0.05), _row(0.4, 0.06), _row(None, 0.07)]  # the third world's held-out drop failed
    figs = lab_eval.model_figures({("eig", "bounces"): rows}, ["bounces"])
    assert figs["explanation_pred_error"]["eig"]["bounces"] == 0.3  # the median of the two scored
    assert figs["explanation_unscored"]["eig"]["bounces"] == 1
    rows.append(_row(None, None, correct=False))  # "none of my hypotheses": explains nothing, infinitely wrong
    rows.append(_row(None, None, correct=False))
    figs = lab_eval.model_figures({("eig", "bounces"): rows}, ["bounces"])
    assert math.isinf(figs["explanation_pred_error"]["eig"]["bounces"])  # 0.2, 0.4, inf, inf: the median is inf
    assert figs["model_id_accuracy"]["eig"]["bounces"] == 0.6
