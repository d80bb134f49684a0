"""Measure the belief engine's noise model against the sim bench, on DEV worlds only.

For each world: an agent investigates a question on the simulated bench; afterwards every measurement the
belief engine used is compared with the twin's prediction at the TRUE parameters (read from `sim/oracle`,
as the evaluator may): the log ratio world/twin is what the noise model (lab/beliefs.py: NoiseModel, BIAS)
must cover. Printed per measurement (first and repeated experiments on an object): the measured spread
of the log ratio (sd, robust sd, between-object sd of the per-object mean) against the model's own
(relative error, floor, systematic gain), and the share of measurements inside the model's 90 % band.

    .venv/bin/python scripts/calibrate_noise.py --kinds restitution,mass --worlds 20 --agent eig,random

Tuning reads dev worlds (`loopylab.world.splits`); the test split is refused: figures from it are reports,
never inputs. Rows go to OUT/rows.jsonl (resumable), the summary is the last line (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from loopylab.world.splits import check_split, seeds

Z90 = 1.6449  # two-sided 90 % of a standard normal
T90 = 2.0150  # ... and of a Student-t with 5 degrees of freedom (NoiseModel.dof)


def measure_world(task: tuple[str, str, int, int, str]) -> list[dict]:
    """Investigate one world; one row per measurement: value, twin prediction at the truth, model sigma."""
    from loopylab.lab.agents import make_agent
    from loopylab.lab.bench import sim_bench
    from loopylab.lab.evaluation import world_objects
    from loopylab.lab.forward import ForwardModel, InlineTwins
    from loopylab.lab.investigation import InvestigationConfig, grammar_scene, investigate
    from loopylab.lab.questions import make_question

    agent_name, kind, seed, n_particles, robot = task
    n_obj = world_objects(kind, seed)
    twins = InlineTwins()
    rows = []
    try:
        with sim_bench(robot=robot, seed=seed, n_objects=n_obj) as bench:
            scene = bench.reset(seed, n_obj)
            question = make_question(kind, grammar_scene(scene), seed)
            forward = ForwardModel(scene, twins)
            cfg = InvestigationConfig(n_particles=n_particles, seed=seed)
            result = investigate(question, scene, make_agent(agent_name, seed=seed), bench.runner, forward, cfg)
            truth = bench.oracle()
        rows = measurement_rows(agent_name, kind, seed, result.posterior, forward, truth)
    finally:
        twins.close()
    return rows


def measurement_rows(agent_name: str, kind: str, seed: int, post, forward, truth: dict) -> list[dict]:
    """One row per measurement of the belief `post`: its value, the twin's prediction at the TRUE parameters
    and the model's sigma."""
    from loopylab.lab.beliefs import BIAS, LATENT_SD, predict_biased

    rows = []
    for m in post.measurements:
        t = truth[m.experiment.object]
        theta = np.zeros((1, 3 + len(LATENT_SD)))
        theta[0, :3] = np.log([t["friction"], t["mass"], t["restitution"]])
        pred = predict_biased(forward, m.experiment, theta, m.com, m.load)
        for key, y in m.values.items():
            p = float(pred[key][0])
            sig = float(post.noise.sigma(key, np.array([p]), m.reported_sigma.get(key, 0.0), m.repeat, m.com_seen)[0])
            rows.append(
                dict(
                    agent=agent_name,
                    kind=kind,
                    seed=seed,
                    object=m.experiment.object,
                    experiment=m.experiment.render(),
                    key=key,
                    first=not m.repeat,
                    y=float(y),
                    pred=p,
                    sigma=sig,
                    bias_sd=float(BIAS.get(key, 0.0)),
                    reported=float(m.reported_sigma.get(key, 0.0)),
                    load=m.load,
                    truth=t,
                )
            )
    return rows


def notebook_world(row: dict) -> list[dict]:
    """The measurements of one evaluation row's notebook (benchmarks/lab_eval.py's rows.jsonl, dev worlds),
    replayed, against the truth the world's oracle reads: the same rows as `measure_world` without running
    the investigation again."""
    from loopylab.lab.bench import sim_bench
    from loopylab.lab.evaluation import world_objects
    from loopylab.lab.replay import belief_at_end, header, parse_numbered

    kind, seed = row["kind"], int(row["seed"])
    check_split([seed], "dev")
    sections = parse_numbered(row["notebook_audit"])
    _, _, post = belief_at_end(sections)
    n_obj = world_objects(kind, seed)
    from loopylab.sim.secret import SEALED

    robot = header(sections)[2].robot  # the notebook's own arm: the world's objects sit where that arm reaches
    with sim_bench(robot=robot, seed=seed, n_objects=n_obj, world_secret=SEALED) as bench:  # the evaluator's worlds
        bench.reset(seed, n_obj)
        truth = bench.oracle()
    return measurement_rows(row["agent"], kind, seed, post, post.forward, truth)


def summarise(rows: list[dict]) -> dict:
    """Per (measurement, first/repeat): the measured log-ratio spread against the model's."""
    out: dict[str, dict] = {}
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["pred"] <= 0 or r["y"] <= 0:
            continue
        groups.setdefault(f"{r['key']}/{'first' if r['first'] else 'repeat'}", []).append(r)
        groups.setdefault(f"{r['key']}/all", []).append(r)
    for name, rs in sorted(groups.items()):
        lr = np.array([math.log(r["y"] / r["pred"]) for r in rs])
        # the model's log-scale sd of one measurement about the twin at the truth: its sigma plus the gain
        model = np.array([math.hypot(r["sigma"] / r["pred"], r["bias_sd"]) for r in rs])
        by_obj: dict[tuple, list[float]] = {}
        for r, v in zip(rs, lr):
            by_obj.setdefault((r["seed"], r["object"]), []).append(v)
        means = [np.mean(v) for v in by_obj.values()]
        within = [v - np.mean(vs) for vs in by_obj.values() if len(vs) > 1 for v in vs]
        mad = float(np.median(np.abs(lr - np.median(lr))) * 1.4826)
        out[name] = {
            "n": len(rs),
            "objects": len(by_obj),
            "log_ratio_median": round(float(np.median(lr)), 4),
            "log_ratio_sd": round(float(np.std(lr)), 4),
            "log_ratio_robust_sd": round(mad, 4),
            "between_object_sd": round(float(np.std(means)), 4) if len(means) > 1 else None,
            "within_object_sd": round(float(np.std(within)), 4) if within else None,
            "model_sd_median": round(float(np.median(model)), 4),
            "inside_model_90": round(float(np.mean(np.abs(lr) <= Z90 * model)), 3),
            # the band the likelihood uses: a Student-t's (NoiseModel.dof) 90 % band is wider than Z90 sigma
            "inside_model_t90": round(float(np.mean(np.abs(lr) <= T90 * model)), 3),
            "ratio_sd_to_model": round(float(np.std(lr) / np.median(model)), 3),
        }
    return out


def fit_gain_tail(rows: list[dict], key: str = "bounce_m", broad: tuple[float, float] = (0.16, 0.22)) -> dict:
    """Maximum likelihood (share, log sd) of NoiseModel.gain_tail from every measurement of `key`: each object's
    log ratios world/twin share one gain b (the core sd is BIAS's; a `share` of objects draw it with `sd`); each
    measurement adds its own error (the model's sigma, with the `broad` component). b is integrated on a grid."""
    by_obj: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        if r["key"] == key and r["pred"] > 0 and r["y"] > 0:
            by_obj.setdefault((r["seed"], r["object"]), []).append(
                (math.log(r["y"] / r["pred"]), r["sigma"] / r["pred"])
            )
    if not by_obj:
        return {}
    core = next(r["bias_sd"] for r in rows if r["key"] == key)
    b = np.linspace(-1.5, 1.5, 601)
    beta, wide = broad

    def per_object(objs) -> np.ndarray:  # (objects, grid): log p(measurements | b)
        out = np.zeros((len(objs), len(b)))
        for i, ms in enumerate(objs):
            for lr, sig in ms:
                d = lr - b
                s2 = sig**2 + wide**2
                narrow = (1 - beta) * np.exp(-0.5 * d**2 / sig**2) / sig
                far = beta * np.exp(-0.5 * d**2 / s2) / math.sqrt(s2)
                out[i] += np.log(narrow + far + 1e-300)
        return out

    lik = per_object(list(by_obj.values()))
    best = None
    for share in np.arange(0.0, 0.51, 0.025):
        for sd in np.arange(0.1, 0.61, 0.025):
            prior = (1 - share) * np.exp(-0.5 * (b / core) ** 2) / core + share * np.exp(-0.5 * (b / sd) ** 2) / sd
            ll = float(np.sum(np.log(np.sum(np.exp(lik) * prior, axis=1) + 1e-300)))
            if best is None or ll > best[0]:
                best = (ll, share, sd)
    null = np.exp(-0.5 * (b / core) ** 2) / core
    ll0 = float(np.sum(np.log(np.sum(np.exp(lik) * null, axis=1) + 1e-300)))
    return {
        "objects": len(by_obj),
        "share": round(best[1], 3),
        "sd": round(best[2], 3),
        "loglik_gain_vs_none": round(best[0] - ll0, 2),
    }


T5_MEDIAN_ABS = 0.7267  # the median |x| of a Student-t with 5 degrees of freedom (NoiseModel.dof)


def push_check(pushes: list[dict], noise, gain_sd: float) -> dict:
    """How the noise model's push figures fit pushes measured against the twin at the truth (`y`,
    `twin_at_truth` in N, per `seed`/`object`): `median_abs_residual`, each push's log ratio about its object's
    mean in units of the model's scale (floor and rel), against a t5's 0.727 (smaller: the model is too wide);
    `rms_z`, each object's mean log ratio over the spread the model gives it (the gain's `gain_sd` and its
    pushes' own), ~1 when the model is right (smaller: too wide)."""
    by_obj: dict[tuple, list[tuple[float, float]]] = {}
    for r in pushes:
        pred = np.array([r["twin_at_truth"]])
        scale = float(noise.sigma("force_mean_N", pred, r.get("reported", 0.0))[0]) / r["twin_at_truth"]
        by_obj.setdefault((r["seed"], r["object"]), []).append((math.log(r["y"] / r["twin_at_truth"]), scale))
    z, resid = [], []
    t_sd = math.sqrt(noise.dof / (noise.dof - 2))  # a Student-t's sd per unit of scale
    for ms in by_obj.values():
        lr, sc = np.array([m[0] for m in ms]), np.array([m[1] for m in ms])
        n = len(ms)
        z.append(lr.mean() / math.sqrt(gain_sd**2 + np.mean((t_sd * sc) ** 2) / n))
        if n > 1:  # about the object's own mean (n - 1 degrees of freedom)
            resid += list(np.abs(lr - lr.mean()) / sc * math.sqrt(n / (n - 1)))
    return {
        "objects": len(by_obj),
        "pushes": len(pushes),
        "median_abs_residual": round(float(np.median(resid)), 3) if resid else None,
        "rms_z": round(float(np.sqrt(np.mean(np.square(z)))), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default="restitution,mass")
    ap.add_argument("--agent", default="eig", help="agents, comma-separated (random gives more repeats)")
    ap.add_argument("--worlds", type=int, default=20, help="dev worlds per kind")
    ap.add_argument("--offset", type=int, default=0, help="skip this many dev seeds")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--particles", type=int, default=1500)
    ap.add_argument("--robot", default="panda", help="the sim bench's arm (panda, so101, koch)")
    ap.add_argument("--out", type=Path, default=Path("reports/calibrate-noise"))
    ap.add_argument(
        "--notebooks",
        type=Path,
        help="an evaluation's rows.jsonl (benchmarks/lab_eval.py on dev worlds): replay its notebooks instead of "
        "running investigations",
    )
    args = ap.parse_args()
    if args.notebooks is not None:
        from_notebooks(args)
        return
    world_seeds = seeds("dev", args.worlds, args.offset)
    check_split(world_seeds, "dev")  # tuning never reads test worlds
    args.out.mkdir(parents=True, exist_ok=True)
    journal = args.out / "rows.jsonl"
    rows = [json.loads(x) for x in journal.read_text().splitlines()] if journal.exists() else []
    have = {(r["agent"], r["kind"], r["seed"]) for r in rows}
    tasks = [
        (a, k, s, args.particles, args.robot)
        for s in world_seeds
        for k in args.kinds.split(",")
        for a in args.agent.split(",")
        if (a, k, s) not in have
    ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for i, got in enumerate(pool.map(measure_world, tasks)):
            with open(journal, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in got)
            rows += got
            print(f"  {i + 1}/{len(tasks)} worlds, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    report(rows)


def from_notebooks(args) -> None:
    """Calibrate on the notebooks an evaluation wrote (dev worlds only), one world at a time."""
    evals = [json.loads(x) for x in args.notebooks.read_text().splitlines() if x.strip()]
    evals = [
        r for r in evals if not r.get("crashed") and r.get("notebook_audit") and r["kind"] in args.kinds.split(",")
    ]
    check_split([int(r["seed"]) for r in evals], "dev")
    rows: list[dict] = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for got in pool.map(notebook_world, evals):
            rows += got
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report(rows)


def report(rows: list[dict]) -> None:
    summary = summarise(rows)
    for name, s in summary.items():
        print(name, s, file=sys.stderr)
    tail = fit_gain_tail(rows)
    print("bounce_m gain tail (NoiseModel.gain_tail):", tail, file=sys.stderr)
    print(json.dumps({"split": "dev", "summary": summary, "gain_tail": {"bounce_m": tail}}))


if __name__ == "__main__":
    main()
