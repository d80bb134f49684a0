"""Report folders: one investigation (`loopylab run`) or a whole evaluation (`loopylab eval`).

run report:   notebook.jsonl, notebook.txt, posterior.png, belief.png (the answer and its interval after
              each experiment, against the tolerance band and the truth), result.json (conclusion vs truth)
eval report:  results.jsonl (one line per world and agent), summary.md / summary.json (a table per
              question kind), error_vs_experiments.png (median error after k experiments, per agent)
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np

from loopylab.lab import kinds, story
from loopylab.lab.forward import PARAM_INDEX
from loopylab.lab.grading import score_summary
from loopylab.world import notebook as g

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_posterior(posterior, path: Path, truth: dict | None = None) -> Path:
    """Weighted histograms of each parameter of each object in question, the truth as a line."""
    objs = list(posterior.objects)
    fig, axes = plt.subplots(len(objs), 3, figsize=(10, 2.4 * len(objs)), squeeze=False)
    for r, o in enumerate(objs):
        post = posterior.objects[o]
        for c, p in enumerate(PARAM_INDEX):
            ax = axes[r][c]
            lo, hi = post.box[PARAM_INDEX[p]]
            ax.hist(post.natural(p), bins=40, range=(lo, hi), weights=post.weights, color="tab:blue", alpha=0.8)
            if truth and o in truth and p in truth[o]:
                ax.axvline(truth[o][p], color="tab:red", lw=2, label="truth")
            ax.set_title(f"{o} {p}", fontsize=9)
            ax.set_xlabel(f"{p} ({story.QUANTITIES[p].unit or 'no unit'})", fontsize=8)
            ax.set_ylabel("belief (particle weight)", fontsize=8)
            ax.set_yticks([])
    fig.suptitle("The final belief about each hidden property" + (" (red: the truth)" if truth else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def belief_trace(entries) -> list[dict]:
    """The belief engine's answer before any experiment and after each: [{label, answer, half_width,
    p_within}], from the notebook's records (hypothesis and belief entries)."""
    trace, label, n = [], "prior", 0
    for e in entries:
        if e.kind == "experiment":
            label, n = e.text[len(g.start_token("experiment")) :].split()[0], n + 1
        elif e.kind in ("hypothesis", "belief") and "half_width" in e.data:
            trace.append({"n": n, "label": label, **{k: e.data[k] for k in ("answer", "half_width", "p_within")}})
    return trace


def plot_belief(
    entries, question: g.Question, path: Path, truth_value: float | None = None, level: float = 0.9
) -> Path | None:
    """The answer and its interval (holding `level` of the belief) before any experiment and after each,
    with the tolerance band around the truth (where an answer counts as correct). None for a ranking."""
    trace = belief_trace(entries)
    if (
        not trace
        or not all(isinstance(t["answer"], (int, float)) for t in trace)
        or kinds.of(question).ranks is not None
    ):
        return None  # a ranking, or answers that are no one number (a centre of mass's two offsets, a position)
    qty = story.quantity_of(question)
    hyp = next(
        (
            g.parse_body("hypothesis", e.text[len(g.start_token(e.kind)) : -len(g.end_token(e.kind))])
            for e in entries
            if e.kind == "hypothesis"
        ),
        None,
    )
    bounds = story.prior_bounds(hyp, question) if hyp is not None else None
    x = np.array([t["n"] for t in trace])
    y = np.array([t["answer"] for t in trace], float)
    lo, hi = np.array([story.interval(t["answer"], t["half_width"], bounds) for t in trace]).T
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    if truth_value is not None:
        tol = question.tolerance * truth_value if question.kind == "mass" else question.tolerance
        ax.axhspan(
            truth_value - tol,
            truth_value + tol,
            color="tab:green",
            alpha=0.15,
            label=f"tolerance band: answers within {story.tolerance_text(question)} of the truth count",
        )
        ax.axhline(truth_value, color="tab:green", lw=1.5, ls="--", label="truth (grader's check)")
    ax.errorbar(
        x,
        y,
        yerr=[y - lo, hi - y],
        fmt="o-",
        color="tab:blue",
        capsize=4,
        label=f"belief: estimate ± half-width ({level:.0%} of the belief within)",
    )
    for i, t in enumerate(trace):
        ax.annotate(
            f"{t['p_within']:.0%}",
            (x[i], hi[i]),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=7,
            color="tab:blue",
        )
    ax.set_xticks(x, [f"{t['n']}\n{t['label']}" if t["n"] else "prior" for t in trace])
    ax.set_xlabel("experiments run (the belief after each; above each point: how sure it is of the tolerance)")
    ax.set_ylabel(f"{qty.name} ({qty.unit or 'no unit'})")
    ax.set_title(story.question_text(question), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_run_report(
    folder: str | Path, result, truth: dict | None = None, grade=None, confidence: float = 0.9
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result.notebook.save(folder)
    if result.posterior is not None:
        plot_posterior(result.posterior, folder / "posterior.png", truth)
    truth_value = grade.truth if grade is not None and not isinstance(grade.truth, tuple) else None
    plot_belief(result.notebook.entries, result.question, folder / "belief.png", truth_value, confidence)
    summary = {
        "question": result.question.render(),
        "conclusion": result.conclusion.render(),
        "experiments": result.experiments,
        "wall_s": round(result.wall_s, 3),
        "decision_s_median": float(np.median(result.decision_s)) if result.decision_s else None,
    }
    if getattr(result, "stop", None) is not None:
        summary.update(stop=result.stop.code, stop_reason=result.stop.text)
    if truth is not None:
        summary["truth"] = truth
    if grade is not None:
        summary.update(
            success=grade.success, error=grade.error, true_value=_jsonable(grade.truth), answer=_jsonable(grade.answer)
        )
    (folder / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    return folder


def _jsonable(x):
    if isinstance(x, tuple):
        return list(x)
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


# ------------------------------------------------------------------------------------------------
# evaluation


def summarise(rows: list[dict]) -> dict:
    """{kind: {agent: {worlds, success_rate, experiments_median, error_median, regret_mean, wall_s_median,
    and the honest-grading figures of `lab.grading.score_summary`}}}"""
    out: dict = {}
    for r in rows:
        out.setdefault(r["kind"], {}).setdefault(r["agent"], []).append(r)
    table = {}
    for kind, by_agent in out.items():
        table[kind] = {}
        for agent, rs in by_agent.items():
            # a world whose held-out action the gate disturbed in every try is no wrong answer (lab/held_out.py)
            graded = [x for x in rs if not x.get("ungradable")]
            ok = [x for x in graded if not x.get("crashed")]
            errs = [x["error"] for x in ok if x["error"] is not None and np.isfinite(x["error"])]
            regs = [x["regret_mean"] for x in ok if x.get("regret_mean") is not None]
            table[kind][agent] = {
                "worlds": len(rs),
                "crashed": len(graded) - len(ok),
                "ungradable": len(rs) - len(graded),
                "success_rate": float(np.mean([x["success"] for x in graded])) if graded else 0.0,
                "experiments_median": float(np.median([x["experiments"] for x in ok])) if ok else None,
                "to_tolerance_median": float(np.median([x["to_tolerance"] for x in ok])) if ok else None,
                "error_median": float(np.median(errs)) if errs else None,
                "eig_regret_mean": float(np.mean(regs)) if regs else None,
                "wall_s_median": float(np.median([x["wall_s"] for x in ok])) if ok else None,
                **score_summary(rs),
            }
    return table


def _cell(v, fmt="{:.3f}"):
    return "–" if v is None else fmt.format(v)


def summary_markdown(table: dict) -> str:
    lines = []
    for kind, by_agent in table.items():
        lines += [
            f"### {kind}",
            "",
            "| agent | worlds | success | experiments (median) | to tolerance (median) | final error (median) "
            "| EIG regret (mean, nats) | 90 % coverage | interval score (mean) | CRPS (mean) | executed "
            "| wall s (median) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for agent, s in sorted(by_agent.items()):
            lines.append(
                f"| {agent} | {s['worlds']} | {s['success_rate']:.0%} | {_cell(s['experiments_median'], '{:.1f}')} "
                f"| {_cell(s['to_tolerance_median'], '{:.1f}')} | {_cell(s['error_median'])} "
                f"| {_cell(s['eig_regret_mean'])} | {_cell(s.get('coverage90'), '{:.0%}')} "
                f"| {_cell(s.get('interval_score'), '{:.4f}')} | {_cell(s.get('crps'), '{:.4f}')} "
                f"| {_cell(s.get('executed_rate'), '{:.0%}')} | {_cell(s['wall_s_median'], '{:.2f}')} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot_error_curves(rows: list[dict], path: Path) -> Path:
    """Median error of the belief engine's answer after k experiments, one panel per question kind."""
    kinds = sorted({r["kind"] for r in rows})
    fig, axes = plt.subplots(1, max(len(kinds), 1), figsize=(3.6 * max(len(kinds), 1), 3.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for agent in sorted({r["agent"] for r in rows if r["kind"] == kind}):
            curves = [
                r["error_trace"] for r in rows if r["kind"] == kind and r["agent"] == agent and r.get("error_trace")
            ]
            if not curves:
                continue
            k = max(map(len, curves))
            padded = np.array([c + [c[-1]] * (k - len(c)) for c in curves], float)  # a concluded answer stays
            ax.plot(np.arange(k), np.nanmedian(padded, axis=0), marker="o", ms=3, label=agent)
        ax.set_title(kind)
        ax.set_xlabel("experiments")
        ax.set_ylabel("wrong pairs" if kind.startswith("rank") else "error")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_eval_report(folder: str | Path, rows: list[dict]) -> dict:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "results.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    table = summarise(rows)
    (folder / "summary.json").write_text(json.dumps(table, indent=2) + "\n")
    (folder / "summary.md").write_text(summary_markdown(table))
    plot_error_curves(rows, folder / "error_vs_experiments.png")
    return table
