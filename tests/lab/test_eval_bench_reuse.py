"""A worker runs world after world on one sealed bench (lab/evaluation.py `run_world_reusing_bench`): each world
is graded as on a fresh bench, a crashed world takes its bench with it, and the bench ends with the run."""

from loopylab.lab import evaluation
from loopylab.lab.evaluation import EvalConfig, WorldTask, run_eval, run_world_reusing_bench


def test_worlds_in_a_row_share_one_bench_and_are_graded_as_on_a_fresh_one():
    tasks = [WorldTask("eig", "mass", s, record_regret=False, run_seed=7) for s in (3, 4)]
    try:
        first = run_world_reusing_bench(tasks[0])
        bench = evaluation._worker_benches["panda"]
        second = run_world_reusing_bench(tasks[1])
        assert evaluation._worker_benches["panda"] is bench  # not started again
        assert (first["bench_world"], second["bench_world"]) == (1, 2)
        # the second world is its own: its question, truth and notebook are of seed 4, not of seed 3's leftovers
        assert first["truth_value"] != second["truth_value"]
        fresh = evaluation.run_world(tasks[1])  # the same world on a bench of its own
        assert fresh["question"] == second["question"] and fresh["truth_value"] == second["truth_value"]
        for r in (first, second, fresh):
            assert not r["crashed"], r.get("traceback")
            assert r["executed_rate"] == 1.0 and "<|conclusion_start|>mass red_block" in r["notebook"]
            # graded as the question says, and as near as one weigh gets: its scatter (~3 g on these 90 g blocks;
            # the FT noise is seeded by the world, but under load the samples land elsewhere: 0.083 vs 0.088 kg on a
            # busy machine, 0.088 on a quiet one) may miss the 10 % now and then, never by a quarter
            assert r["success"] == (r["error"] <= 0.10 + 1e-9) and r["error"] <= 0.25, r["notebook"][-1500:]
    finally:
        evaluation.close_worker_benches()
    assert not evaluation._worker_benches


def test_a_crashed_world_closes_its_bench_and_a_serial_run_leaves_none_behind():
    cfg = EvalConfig(agents=["no_such_agent", "eig"], kinds=["mass"], seeds=[5], workers=1, record_regret=False)
    crashed, ok = sorted(run_eval(cfg), key=lambda r: r["agent"] == "eig")
    assert crashed["crashed"] and "agent's process failed" in crashed["exception"]
    # the crashed world's bench was closed: the next world ran on a fresh one
    assert not ok["crashed"] and ok["bench_world"] == 1 and crashed["bench_world"] == 1
    assert ok["success"] == (ok["error"] <= 0.10 + 1e-9) and ok["error"] <= 0.25  # a weigh's scatter, as above
    assert not evaluation._worker_benches  # an idle bench still ticks: none outlives its run
