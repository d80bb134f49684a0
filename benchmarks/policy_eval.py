"""The nanochat policy against the lab's `eig` expert and the `random` agent on held-out worlds.

Every agent investigates the same held-out worlds, the first N of the test split (`loopylab.world.splits`:
training data come from train, checkpoint choice from dev; `--split dev --dev-run` for that), for each of
the lab's question kinds, on the simulated bench, graded by the lab's
evaluator against the oracle. Reported:

  success_gap_points      eig success rate minus nanochat's, in percentage points   (target <= 5)
  experiments_vs_eig      median experiments, nanochat / eig                          (target <= 1.1)
  beats_random_points     nanochat success rate minus random's, in points             (target >= 10)
  experiments_vs_random   median experiments, nanochat / random
  parse_rate              fraction of nanochat's experiment calls that parse under the grammar
                                                                                      (target 1.0)
  executed_rate           fraction of its experiment calls the arm carried out (an observation that is
                          not `failed ...`): a call refused by the grid or the skill ("cannot reach",
                          "arm cannot follow") is an experiment that failed. Failed calls count in the
                          experiments of every agent.                                 (target >= 0.97)
  decision_ms             median wall time of one nanochat experiment decision on 2 CPU threads,
                          replaying its notebooks in order (KV cache reused as in a run), the feasibility
                          mask included (its plans cached per pose after the first rep)   (target <= 50)
  mask_ms_uncached        median time of the feasibility mask in the first rep (plans not yet cached)

The eig expert's own decision time is measured in the same run as the baseline and printed as a ratio.

    .venv/bin/python benchmarks/policy_eval.py [--worlds 20] [--kinds all] [--workers 2]
        [--checkpoint nanochat/checkpoints] [--reps 3]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from loopylab.lab.experiments import candidate_experiments
from loopylab.world import notebook as g


def call_stats(notebook_text: str) -> dict:
    """Experiment calls of one notebook: how many, how many parsed, how many the arm carried out, and
    the reasons of those that failed (the observation after a call is `failed WORDS`)."""
    lines = notebook_text.splitlines()
    out = {"calls": 0, "parsed": 0, "executed": 0, "failures": Counter()}
    for i, line in enumerate(lines):
        if not line.startswith("<|experiment_start|>"):
            continue
        out["calls"] += 1
        try:
            g.parse(line + "\n")
        except g.GrammarError:
            out["failures"]["does not parse"] += 1
            continue
        out["parsed"] += 1
        nxt = ""
        for x in lines[i + 1 :]:  # this call's observation comes before the next call
            if x.startswith("<|experiment_start|>"):
                break
            if x.startswith("<|observation_start|>"):
                nxt = x
                break
        body = nxt.removeprefix("<|observation_start|>").removesuffix("<|observation_end|>")
        if nxt and not body.startswith("failed"):
            out["executed"] += 1
        else:
            out["failures"][_reason(body) if nxt else "no observation"] += 1
    return out


def _reason(failed_body: str) -> str:
    """The kind of a failure, without its numbers (`failed cannot reach position [...]` -> cannot reach)."""
    words = failed_body.removeprefix("failed").strip().split()
    return " ".join(w for w in words[:4] if not any(c.isdigit() for c in w)) or "failed"


def rates(rows: list[dict]) -> dict:
    """parse_rate, executed_rate and the failure reasons over the notebooks of `rows`."""
    total = {"calls": 0, "parsed": 0, "executed": 0, "failures": Counter()}
    for r in rows:
        st = call_stats(r.get("notebook") or "")
        for k in ("calls", "parsed", "executed"):
            total[k] += st[k]
        total["failures"].update(st["failures"])
    n = max(total["calls"], 1)
    return {**total, "parse_rate": total["parsed"] / n, "executed_rate": total["executed"] / n}


def replay_decisions(
    notebooks: list[str], checkpoint: str | None, reps: int, threads: int = 2, robot: str | None = "panda"
) -> tuple[list[float], list[float]]:
    """Time every experiment decision of the given notebooks again, in order, on `threads` CPU threads:
    the agent's code path (the feasibility mask, then the engine with a KV cache carried from decision
    to decision), without the bus. Returns (decision ms, mask ms of the first repetition, whose plans are
    not cached yet)."""
    from loopylab.nanochat.checkpoint import SHIPPED_DIR, load_cached
    from loopylab.nanochat.engine import Engine, allowed_kinds
    from loopylab.nanochat.feasible import Feasibility, feasible_candidates

    torch.set_num_threads(threads)
    model, tokenizer, _ = load_cached(checkpoint or SHIPPED_DIR)
    feasibility = Feasibility(robot) if robot else None
    times: list[float] = []
    mask_first: list[float] = []
    for rep in range(reps):
        for text in notebooks:
            sections = g.parse(text)
            question = sections[0].body
            engine = Engine(model, tokenizer)
            scene = sections[1].body
            for i, s in enumerate(sections):
                if s.kind == "scene":
                    scene = s.body
                if s.kind != "experiment":
                    continue
                prefix = sections[:i]
                left = question.max_experiments - sum(p.kind == "experiment" for p in prefix)
                grid = candidate_experiments(scene, question)
                t0 = time.perf_counter()
                feasible = feasible_candidates(prefix, question, scene, grid, feasibility)
                if rep == 0:
                    mask_first.append(1000 * (time.perf_counter() - t0))
                candidates = [c.render() for c in feasible]
                engine.propose(prefix, allowed=allowed_kinds(prefix, left, bool(candidates)), candidates=candidates)
                times.append(1000 * (time.perf_counter() - t0))
    return times, mask_first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", type=int, default=20, help="worlds per question kind: the first N of --split")
    ap.add_argument("--seeds", default=None, help="explicit seeds, e.g. 2000000:2000020 (must be in --split)")
    ap.add_argument("--split", default="test", help="world split (loopylab.world.splits); reports use test")
    ap.add_argument("--dev-run", action="store_true", help="allow a split other than test (checkpoint choice)")
    ap.add_argument("--kinds", default="all")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the decision-time replay")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for the decision-time replay")
    ap.add_argument(
        "--agents",
        default="nanochat,eig,random",
        help="agents to run now (eig,random alone only fills the baseline cache)",
    )
    ap.add_argument(
        "--baseline-cache",
        default="reports/policy_eval_baselines.jsonl",
        help="eig and random rows are reused from here (they do not depend on the checkpoint)",
    )
    ap.add_argument(
        "--notebooks-out",
        default="reports/policy_eval_notebooks.jsonl",
        help="where the policy's notebooks are saved (for --decisions-only)",
    )
    ap.add_argument(
        "--decisions-only",
        default=None,
        metavar="JSONL",
        help="only time decisions, replaying the notebooks of this file (needs torch, tiktoken, regex)",
    )
    args = ap.parse_args()
    if args.decisions_only:
        import gzip

        path = Path(args.decisions_only)
        lines = (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)).read().splitlines()
        notebooks = [(r.get("notebook") or r["text"]) for r in map(json.loads, filter(None, lines))]
        times, mask_first = replay_decisions(notebooks, args.checkpoint, args.reps, args.threads)
        print(
            f"{len(times)} decisions on {args.threads} threads: median {statistics.median(times):.2f} ms, "
            f"p90 {sorted(times)[int(0.9 * len(times))]:.2f} ms"
        )
        print(
            json.dumps(
                {
                    "decision_ms": round(statistics.median(times), 2),
                    "mask_ms_uncached": round(statistics.median(mask_first), 2) if mask_first else None,
                    "threads": args.threads,
                    "decisions": len(times),
                }
            )
        )
        return
    from loopylab.lab.evaluation import EvalConfig, benchmark_seeds, parse_kinds, run_eval

    if args.checkpoint:
        import os

        os.environ["LOOPYLAB_POLICY_CHECKPOINT"] = str(Path(args.checkpoint).resolve())  # for the workers

    agents = ["nanochat", "eig", "random"]
    kinds, seeds = parse_kinds(args.kinds), benchmark_seeds(args.worlds, args.split, args.seeds, args.dev_run)
    # the baselines do not change with the checkpoint: their rows are cached and reused
    cache = Path(args.baseline_cache)
    cached = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            cached[(r["agent"], r["kind"], r["seed"])] = r
    rows = [cached[(a, k, s)] for a in agents[1:] for k in kinds for s in seeds if (a, k, s) in cached]
    todo = [a for a in agents if a == "nanochat" or any((a, k, s) not in cached for k in kinds for s in seeds)]
    todo = [a for a in todo if a in args.agents.split(",")]
    cfg = EvalConfig(agents=todo, kinds=kinds, seeds=seeds, workers=args.workers, record_regret=False)
    tasks = [t for t in cfg.tasks() if t.agent == "nanochat" or (t.agent, t.kind, t.seed) not in cached]
    cfg.tasks = lambda: tasks  # only the worlds not in the cache
    t0 = time.time()
    done = 0
    total = len(cfg.tasks())

    def progress(row):
        nonlocal done
        done += 1
        if row["agent"] != "nanochat" and not row["crashed"]:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with open(cache, "a") as f:
                f.write(json.dumps(row) + "\n")
        if done % 5 == 0 or done == total:
            print(f"  {done}/{total} worlds ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    print(f"running {total} worlds ({', '.join(todo)}); {len(rows)} baseline rows from {cache}", file=sys.stderr)
    have = {(r["agent"], r["kind"], r["seed"]) for r in rows}
    rows += [r for r in run_eval(cfg, on_row=progress) if (r["agent"], r["kind"], r["seed"]) not in have]
    if "nanochat" not in todo:
        print(f"baselines cached in {cache}")
        return
    crashed = [r for r in rows if r["crashed"]]
    for r in crashed[:5]:
        print(f"crashed: {r['agent']} {r['kind']} {r['seed']}: {r.get('exception')}", file=sys.stderr)
    by = {a: [r for r in rows if r["agent"] == a and not r["crashed"]] for a in agents}
    summary = {}
    print(f"{'agent':<10} {'worlds':>6} {'success':>8} {'median exp':>10}   by kind (success %)")
    for a in agents:
        rs = by[a]
        succ = 100 * sum(r["success"] for r in rs) / max(1, len(rs))
        med = statistics.median([r["experiments"] for r in rs]) if rs else float("nan")
        kinds = {
            k: 100 * sum(r["success"] for r in rs if r["kind"] == k) / max(1, sum(r["kind"] == k for r in rs))
            for k in cfg.kinds
        }
        summary[a] = {"success": succ, "median_experiments": med, "worlds": len(rs), "by_kind": kinds}
        print(
            f"{a:<10} {len(rs):>6} {succ:>7.1f}% {med:>10.1f}   " + " ".join(f"{k} {v:.0f}" for k, v in kinds.items())
        )

    call = {a: rates(by[a]) for a in agents}
    parse_rate, executed_rate = call["nanochat"]["parse_rate"], call["nanochat"]["executed_rate"]

    Path(args.notebooks_out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.notebooks_out, "w") as f:
        for r in by["nanochat"]:
            f.write(json.dumps({"seed": r["seed"], "kind": r["kind"], "notebook": r["notebook"]}) + "\n")
    times, mask_first = replay_decisions(
        [r["notebook"] for r in by["nanochat"]], args.checkpoint, args.reps, args.threads
    )
    decision_ms = statistics.median(times) if times else float("nan")
    eig_ms = [1000 * s for r in by["eig"] for s in (r.get("decision_s") or [])]
    eig_decision_ms = statistics.median(eig_ms) if eig_ms else float("nan")
    n_ms = [1000 * s for r in by["nanochat"] for s in (r.get("decision_s") or [])]

    gap = summary["eig"]["success"] - summary["nanochat"]["success"]
    vs_eig = summary["nanochat"]["median_experiments"] / max(summary["eig"]["median_experiments"], 1e-9)
    vs_random = summary["nanochat"]["median_experiments"] / max(summary["random"]["median_experiments"], 1e-9)
    for a in agents:
        c = call[a]
        reasons = ", ".join(f"{k} {v}" for k, v in c["failures"].most_common(4))
        print(
            f"{a} experiment calls: {c['parsed']}/{c['calls']} parsed, {c['executed']}/{c['calls']} executed "
            f"({100 * c['executed_rate']:.1f}%)" + (f"; failed: {reasons}" if reasons else "")
        )
    beats_random = summary["nanochat"]["success"] - summary["random"]["success"]
    print(
        f"decision time on 2 threads: nanochat {decision_ms:.1f} ms (median of {len(times)}; in the eval workers "
        f"{statistics.median(n_ms) if n_ms else float('nan'):.1f} ms), eig expert {eig_decision_ms:.1f} ms "
        f"-> ratio {decision_ms / eig_decision_ms if eig_ms else float('nan'):.2f}"
    )
    print(
        f"success gap {gap:+.1f} points (target <= 5); experiments vs eig {vs_eig:.2f} (<= 1.1); beats random by "
        f"{beats_random:+.1f} points (>= 10); vs random {vs_random:.2f}; wall {time.time() - t0:.0f} s; "
        f"crashed {len(crashed)}"
    )
    print(
        json.dumps(
            {
                "success_gap_points": round(gap, 2),
                "experiments_vs_eig": round(vs_eig, 3),
                "beats_random_points": round(beats_random, 2),
                "experiments_vs_random": round(vs_random, 3),
                "parse_rate": round(parse_rate, 4),
                "executed_rate": round(executed_rate, 4),
                "executed_rate_by_agent": {a: round(call[a]["executed_rate"], 4) for a in agents},
                "decision_ms": round(decision_ms, 2),
                "mask_ms_uncached": round(statistics.median(mask_first), 2) if mask_first else None,
                "eig_decision_ms": round(eig_decision_ms, 2),
                "success": {a: round(summary[a]["success"], 1) for a in agents},
                "median_experiments": {a: summary[a]["median_experiments"] for a in agents},
                "worlds_per_agent": len(cfg.seeds) * len(cfg.kinds),
                "split": args.split,
                "crashed": len(crashed),
            }
        )
    )


if __name__ == "__main__":
    main()
