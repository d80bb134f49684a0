"""Benchmark of the scientific loop: the EIG expert against the random baseline on seeded worlds.

Targets (issue 4): on 50 worlds per question kind the `eig` agent succeeds in >= 90 %, needs <= 0.5x
the experiments `random` needs to reach the same tolerance (median over worlds), and one decision
(EIG over the candidate grid) takes <= 1 s on 2 cores.

"Experiments to reach the tolerance" of one world = the first k after which the belief engine's
answer stays within tolerance of the truth and the investigation ends correct; budget + 1 when it
never does (censored). `random` gets twice the default budget so that it is censored less.

    .venv/bin/python benchmarks/lab_eval.py                 # 50 worlds per kind (the target setting)
    .venv/bin/python benchmarks/lab_eval.py --worlds 10     # fewer, for a quick look
    .venv/bin/python benchmarks/lab_eval.py --worlds 60 --kinds mass,restitution --agents eig --no-regret
                                                            # coverage on many worlds: the expert alone

It also grades honestly (lab/grading.py): `coverage90` of the eig expert's stated 90 % intervals per kind (with
n and a 95 % Wilson interval; target 0.85-0.95, `coverage90_worst_miss` == 0), the mean `interval_score`
(Gneiting & Raftery) and `crps` of the belief per kind for eig and random, `regret_vs_random_best` (EIG
regret against the best of 100 random designs, by the evaluator's own estimate) and `executed_rate`
(experiment calls that executed; failed calls count as experiments).

Each finished world is appended to OUT/rows.jsonl; running the command again resumes from it (delete the
file for a fresh run).

The worlds are the first N of the test split (`loopylab.world.splits`: seeds("test", N)); nothing is
tuned on them. `--split dev --dev-run` runs on dev worlds for tuning; the JSON says which split it used. Last line: a JSON object with eig_success
(per kind), eig_success_min, eig_vs_random_experiments, decision_s and the rest; `cheat_routes_open` (target 0):
how many routes to the truth (lab/cheaters.py: seed, scene, gc, node, foreign, spoof) a cheating agent found open
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
from loopylab.lab.evaluation import EvalConfig, benchmark_seeds, run_eval
from loopylab.lab.grading import score_summary
from loopylab.lab.questions import KINDS
from loopylab.lab.report import summary_markdown, write_eval_report
from loopylab.lab.scoring import worst_miss
from loopylab.world.notebook import DEFAULT_BUDGET
from loopylab.world.splits import seeds as seeds_of


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


def _r(v, nd=4):
    return None if v is None else round(float(v), nd)


def model_figures(by: dict, kinds: list[str]) -> dict:
    """Per kind that asks which model explains an object (rows with `model_truth`, lab/slides.py), per agent:
    `model_id_accuracy` (the conclusion's model is the world's true structure; target >= 0.9) and
    `falsified_true_model` (share of worlds whose notebook rejected the true model; target <= 0.02) and
    `explanation_pred_error` (BoxingGym's communication measure, lab/slides.explanation_check)."""
    out: dict = {"model_id_accuracy": {}, "falsified_true_model": {}, "unexplained": {}, "explanation_pred_error": {}}
    for a in ("eig", "random"):
        for k in kinds:
            rows = [r for r in by.get((a, k), []) if "model_truth" in r]
            if rows:
                for name, col in (
                    ("model_id_accuracy", "model_correct"),
                    ("falsified_true_model", "falsified_true_model"),
                    ("unexplained", "unexplained"),
                ):
                    out[name].setdefault(a, {})[k] = round(float(np.mean([bool(r[col]) for r in rows])), 3)
                # |prediction from the explanation alone - held-out outcome| / the kind's unit, median over worlds
                # (a world whose conclusion explains nothing counts as infinitely wrong; one whose held-out
                # experiment failed on the hidden world is not scored: that is no fault of the explanation)
                errs = [
                    r.get("explanation_pred_error")
                    for r in rows
                    if r.get("explanation_pred_error") is not None or r.get("explanation_pred") is None
                ]
                errs = [float("inf") if e is None else e for e in errs]
                if errs:
                    out["explanation_pred_error"].setdefault(a, {})[k] = round(float(np.median(errs)), 3)
                out.setdefault("explanation_unscored", {}).setdefault(a, {})[k] = len(rows) - len(errs)
    return out if out["model_id_accuracy"] else {}


def honest_figures(by: dict, kinds: list[str]) -> dict:
    """Proper scores, coverage of the stated 90 % intervals (eig; rank has none), regret against the best
    of 100 random designs and the share of experiment calls that executed (lab/grading.py)."""
    s = {(a, k): score_summary(by.get((a, k), [])) for a in ("eig", "random") for k in kinds}
    graded = [k for k in kinds if s[("eig", k)]["coverage90"] is not None]
    cov = {k: _r(s[("eig", k)]["coverage90"], 3) for k in graded}
    regrets = {
        a: [x for k in kinds for r in by.get((a, k), []) for x in r.get("regrets") or ()] for a in ("eig", "random")
    }
    calls = {a: [r for k in kinds for r in by.get((a, k), []) if not r.get("crashed")] for a in ("eig", "random")}
    return {
        "coverage90": cov,
        "coverage90_n": {k: s[("eig", k)]["coverage90_n"] for k in graded},
        "coverage90_ci95": {k: [_r(x, 3) for x in s[("eig", k)]["coverage90_ci95"]] for k in graded},
        "coverage90_random": {k: _r(s[("random", k)]["coverage90"], 3) for k in graded},
        "coverage90_worst_miss": _r(worst_miss(cov), 3),
        "interval_score": {a: {k: _r(s[(a, k)]["interval_score"]) for k in graded} for a in ("eig", "random")},
        "crps": {a: {k: _r(s[(a, k)]["crps"]) for k in graded} for a in ("eig", "random")},
        "interval_not_belief": {a: sum(s[(a, k)]["interval_not_belief"] for k in kinds) for a in ("eig", "random")},
        "regret_vs_random_best": {a: _r(np.mean(v)) if v else None for a, v in regrets.items()},
        "regret_vs_random_best_per_kind": {k: _r(s[("eig", k)]["regret_vs_random_best"]) for k in kinds},
        "executed_rate": {
            a: _r(sum(r.get("executed", 0) for r in rs) / max(1, sum(r["experiments"] for r in rs)), 3) if rs else None
            for a, rs in calls.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", type=int, default=50, help="worlds per question kind (target: 50)")
    ap.add_argument("--split", default="test", help="world split (loopylab.world.splits); reports use test")
    ap.add_argument("--seeds", default=None, help="explicit seeds, e.g. 2000000:2000010 (must be in --split)")
    ap.add_argument("--dev-run", action="store_true", help="allow a split other than test (tuning, not a result)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kinds", default=",".join((*KINDS, "rank_friction", "predict_stop")))
    ap.add_argument("--agents", default="eig,random", help="eig alone suffices for coverage (many worlds)")
    ap.add_argument("--no-regret", action="store_true", help="skip the regret figure (100 random designs a step)")
    ap.add_argument("--cheat-worlds", type=int, default=2, help="test-split worlds each cheating agent tries")
    ap.add_argument("--out", type=Path, default=Path("reports/bench-lab-eval"))
    ap.add_argument(
        "--journal",
        type=Path,
        default=None,
        help="rows.jsonl to append each finished world to and to resume from (default OUT/rows.jsonl)",
    )
    args = ap.parse_args()
    kinds, agents = args.kinds.split(","), args.agents.split(",")
    if not set(agents) <= {"eig", "random"} or "eig" not in agents:
        ap.error(f"--agents: eig, optionally with random (got {args.agents!r})")
    seeds = benchmark_seeds(args.worlds, args.split, args.seeds, args.dev_run)
    t0 = time.perf_counter()
    cfg = EvalConfig(
        agents=agents,
        kinds=kinds,
        seeds=seeds,
        workers=args.workers,
        budget={"random": 2 * DEFAULT_BUDGET},
        record_regret=not args.no_regret,
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
    # a world whose held-out action the safety gate disturbed in every try is not graded (lab/held_out.py)
    graded = {key: [x for x in rs if not x.get("ungradable")] for key, rs in by.items()}
    eig_success = {k: round(float(np.mean([x["success"] for x in graded.get(("eig", k), [])])), 3) for k in kinds}
    ratios = {}
    for k in kinds if "random" in agents else ():  # the ratio needs the baseline in the same run
        e = np.median([x.get("to_tolerance", DEFAULT_BUDGET + 1) for x in graded.get(("eig", k), [])])
        r = np.median([x.get("to_tolerance", 2 * DEFAULT_BUDGET + 1) for x in graded.get(("random", k), [])])
        ratios[k] = round(float(e / max(r, 1e-9)), 3)
    dec = [d for x in rows if x["agent"] == "eig" for d in (x.get("decision_s") or [])]
    crashed = sum(bool(x.get("crashed")) for x in rows)
    result = {
        "split": args.split,
        "worlds_per_kind": len(seeds),
        "eig_success": eig_success,
        "eig_success_min": min(eig_success.values()),
        "eig_vs_random_experiments_per_kind": ratios,
        "eig_vs_random_experiments": round(float(np.median(list(ratios.values()))), 3) if ratios else None,
        "eig_experiments_median": {
            k: float(np.median([x["experiments"] for x in by.get(("eig", k), [])])) for k in kinds
        },
        "random_success": {
            k: round(float(np.mean([x["success"] for x in graded[("random", k)]])), 3)
            for k in kinds
            if graded.get(("random", k))
        },
        "ungradable": sum(bool(x.get("ungradable")) for x in rows),
        **honest_figures(by, kinds),
        **model_figures(by, kinds),
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
