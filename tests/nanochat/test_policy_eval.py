"""The benchmark's call figures: a call the arm could not carry out is parsed but not executed."""

import importlib.util
from pathlib import Path

from loopylab.world import notebook as g
from loopylab.world.notebook import Observation, Section
from tests.nanochat.conftest import random_notebook

spec = importlib.util.spec_from_file_location(
    "policy_eval", Path(__file__).resolve().parents[2] / "benchmarks" / "policy_eval.py"
)
policy_eval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(policy_eval)


def test_failed_calls_count_as_parsed_but_not_executed():
    import random

    secs = random_notebook(random.Random(5))
    exps = [i for i, s in enumerate(secs) if s.kind == "experiment"]
    assert len(exps) >= 2
    secs[exps[0] + 1] = Section("observation", Observation.failure("cannot reach position [0.71, 0.02, 0.05]"))
    text = g.render(secs)
    st = policy_eval.call_stats(text)
    assert (st["calls"], st["parsed"], st["executed"]) == (len(exps), len(exps), len(exps) - 1)
    assert st["failures"] == {"cannot reach position": 1}
    # an unparseable call and one without an observation are failures too
    bad = text + "<|experiment_start|>juggle red_block<|experiment_end|>\n"
    r = policy_eval.rates([{"notebook": bad}, {"notebook": text}])
    assert r["calls"] == 2 * len(exps) + 1 and r["parsed"] == 2 * len(exps)
    assert r["executed"] == 2 * (len(exps) - 1)
    assert r["executed_rate"] < r["parse_rate"] < 1.0
    assert r["failures"]["does not parse"] == 1
