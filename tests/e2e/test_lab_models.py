"""A model-identification question end to end: the sealed evaluation on the simulated bench, a world whose block
has direction-dependent friction, graded on its structure, with the explanation's held-out prediction."""

import math

from loopylab.lab.evaluation import EvalConfig, run_eval
from loopylab.world import notebook as g


def test_the_expert_finds_the_direction_dependent_friction_of_a_world():
    (row,) = run_eval(EvalConfig(agents=["eig"], kinds=["slides"], seeds=[3], workers=1))
    assert not row["crashed"], row.get("traceback")
    assert row["question"] == "which model explains how red_block slides"
    assert row["model_truth"] == "anisotropic"  # seed 3: y is 0.57 as grippy as x
    assert row["model_correct"] and row["success"] and not row["falsified_true_model"]
    sections = g.parse(row["notebook"])
    axes = {s.body.direction[1] for s in sections if s.kind == "experiment" and s.body.direction}
    assert axes == {"x", "y"}  # it pushed or struck along both axes
    beliefs = [s.body for s in sections if s.kind == "belief"]
    assert any(isinstance(c, g.ModelProb) for b in beliefs for c in b.estimates)
    assert math.isfinite(row["explanation_pred_error"]) and row["held_out"].startswith("strike red_block")
