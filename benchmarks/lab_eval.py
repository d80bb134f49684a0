"""Benchmark of the scientific loop: the EIG expert against the random baseline on seeded worlds.

Targets (issue 4): on 50 worlds per question kind the `eig` agent succeeds in >= 90 %, needs <= 0.5x
the experiments `random` needs to reach the same tolerance (median over worlds), and one decision
(EIG over the candidate grid) takes <= 1 s on 2 cores.

"Experiments to reach the tolerance" of one world = the first k after which the belief engine's
answer stays within tolerance of the truth and the investigation ends correct; budget + 1 when it
never does (censored). `random` gets twice the default budget so that it is censored less.

    .venv/bin/python benchmarks/lab_eval.py                 # 50 worlds per kind (the target setting)
    .venv/bin/python benchmarks/lab_eval.py --worlds 10     # fewer, for a quick look

Each finished world is appended to OUT/rows.jsonl; running the command again resumes from it (delete the
file for a fresh run).

The seeds are the benchmark's own (1000 + i), never tuned. Last line: a JSON object with eig_success
(per kind), eig_success_min, eig_vs_random_experiments, decision_s and the rest; `cheat_routes_open` (target 0):
how many routes to the truth (lab/cheaters.py: seed, scene, gc, node, foreign) a cheating agent found open
on test-split worlds, run through the same sealed evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopylab.lab.cheaters import run_cheaters
from loopylab.lab.evaluation import EvalConfig, run_eval
from loopylab.lab.questions import KINDS
from loopylab.lab.report import summary_markdown, write_eval_report
from loopylab.world.notebook import DEFAULT_BUDGET
from loopylab.world.splits import seeds as seeds_of

SEED_BASE = 1000


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short when an earlier run was killed
    return rows


def replay_mismatches(rows: list[dict], workers: int = 2) -> int:
    """Lines that differ when every notebook the run wrote is replayed from its own records (target 0); a
    notebook missing from a row that did not crash counts as one."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from loopylab.lab.replay import mismatches

    texts = [r["notebook_audit"] for r in rows if r.get("notebook_audit")]
    missing = sum(1 for r in rows if not r.get("crashed") and not r.get("notebook_audit"))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return missing + sum(pool.map(mismatches, texts, chunksize=4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", type=int, default=50, help="worlds per question kind (target: 50)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--cheat-worlds", type=int, default=2, help="test-split worlds each cheating agent tries")
    ap.add_argument("--out", type=Path, default=Path("reports/bench-lab-eval"))
    ap.add_argument(
        "--journal",
        type=Path,
        default=None,
        help="rows.jsonl to append each finished world to and to resume from (default OUT/rows.jsonl)",
    )
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    seeds = list(range(SEED_BASE, SEED_BASE + args.worlds))
    t0 = time.perf_counter()
    cfg = EvalConfig(
        agents=["eig", "random"],
        kinds=kinds,
        seeds=seeds,
        workers=args.workers,
        budget={"random": 2 * DEFAULT_BUDGET},
        record_regret=True,
    )
    # resumable: worlds already in the journal are not run again (seeded worlds are deterministic)
    journal = args.journal or args.out / "rows.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    wanted = {(t.agent, t.kind, t.seed) for t in cfg.tasks()}
    old = [r for r in _read_rows(journal) if (r["agent"], r["kind"], r["seed"]) in wanted]
    have = {(r["agent"], r["kind"], r["seed"]) for r in old}
    # seed-major order: an interrupted run has seen every kind and both agents alike
    todo = sorted(
        (t for t in cfg.tasks() if (t.agent, t.kind, t.seed) not in have), key=lambda t: (t.seed, t.kind, t.agent)
    )
    done, total = [len(old)], len(wanted)
    if old:
        print(f"  resuming: {len(old)} of {total} worlds already in {journal}", file=sys.stderr)

    def progress(row):
        with open(journal, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        done[0] += 1
        if done[0] % 10 == 0 or done[0] == total:
            print(f"  {done[0]}/{total} worlds, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    rows = old + run_eval(cfg, progress, tasks=todo)
    rows.sort(key=lambda r: (r["agent"], r["kind"], r["seed"]))
    table = write_eval_report(args.out, rows)
    print(summary_markdown(table))
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by.setdefault((r["agent"], r["kind"]), []).append(r)
    eig_success = {k: round(float(np.mean([x["success"] for x in by.get(("eig", k), [])])), 3) for k in kinds}
    ratios = {}
    for k in kinds:
        e = np.median([x.get("to_tolerance", DEFAULT_BUDGET + 1) for x in by.get(("eig", k), [])])
        r = np.median([x.get("to_tolerance", 2 * DEFAULT_BUDGET + 1) for x in by.get(("random", k), [])])
        ratios[k] = round(float(e / max(r, 1e-9)), 3)
    dec = [d for x in rows if x["agent"] == "eig" for d in (x.get("decision_s") or [])]
    crashed = sum(bool(x.get("crashed")) for x in rows)
    result = {
        "worlds_per_kind": args.worlds,
        "eig_success": eig_success,
        "eig_success_min": min(eig_success.values()),
        "eig_vs_random_experiments_per_kind": ratios,
        "eig_vs_random_experiments": round(float(np.median(list(ratios.values()))), 3),
        "eig_experiments_median": {
            k: float(np.median([x["experiments"] for x in by.get(("eig", k), [])])) for k in kinds
        },
        "random_success": {
            k: round(float(np.mean([x["success"] for x in by.get(("random", k), [])])), 3) for k in kinds
        },
        "decision_s": round(float(np.median(dec)), 4) if dec else None,
        "decision_s_p90": round(float(np.percentile(dec, 90)), 4) if dec else None,
        "crashed": crashed,
        **run_cheaters(seeds_of("test", args.cheat_worlds), args.workers),
        "replay_mismatches": replay_mismatches(rows, args.workers),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
