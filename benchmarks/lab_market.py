"""The lab with the market against the lab alone (issue 28), on held-out TEST worlds where the lab's rig has no
gripper (it cannot weigh, lift, drop or place) and the question is a mass.

For each world the lab runs its investigation (`run_investigation(..., lacks=NO_GRIPPER)`: the sealed agent, the
sim bench) and, when it judges buying worth it, posts and funds a weigh bounty on a real market (uvicorn, SQLite,
the embedded chain's escrow, the twin replay plug-in). Then, in this order, simulated contributors answer:

    forger   a script's recording: the honest run's joint commands, joint states that follow them perfectly with
             made-up efforts, the wrist as recorded, and a notebook that says the object weighs 40 % less
    honest   `lab.fulfil` on its own sim bench with a gripper (the same object: the world's seed, sealed as the lab's)
    copier   the honest rig's files, re-signed by its own rig key

and the lab collects (`lab collect`: approve what passed every check, take the observations in, flag outliers,
conclude). Figures:

success_alone             share of worlds the lab's own answer was within the tolerance (its run, before buying)
success_with_market       the same after the bought observations (the lab alone where it posted nothing)
eth_spent_per_answer      ETH released to contributors per question
fake_submissions_paid     approved submissions of forgers and copiers (must be 0)
honest_submissions_rejected  share of honest submissions the market or the lab's review did not approve (<= 0.05)

    .venv/bin/python benchmarks/lab_market.py [--n 3] [--budget 3] [--out reports/lab_market]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402

from loopylab.lab.buying import GRIPPER_SKILLS, WEI_PER_ETH, BuyConfig  # noqa: E402
from loopylab.lab.market_link import client, review_and_fetch  # noqa: E402
from loopylab.market.client import MarketClient, new_key_file  # noqa: E402
from loopylab.world.scene import scene_from_seed  # noqa: E402
from loopylab.world.splits import seeds  # noqa: E402


@contextlib.contextmanager
def served_market(home: Path):
    """A market on a real uvicorn server in this process: SQLite, the embedded chain, a fresh escrow."""
    import uvicorn

    from loopylab.market import migrate
    from loopylab.market.api import create_app
    from loopylab.market.chain import Chain
    from loopylab.market.config import MarketConfig
    from loopylab.market.db import Store
    from loopylab.market.relay import Relay
    from loopylab.market.service import Market

    chain = Chain.embedded_chain(deploy=True)
    store = Store(f"sqlite:///{home / 'market.db'}")
    migrate.upgrade(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"127.0.0.1:{port}"
    config = MarketConfig(home=home, domain=host, base_url=f"http://{host}", run_background=False)
    market = Market(config, store, chain)
    relay = Relay(store, chain)
    server = uvicorn.Server(
        uvicorn.Config(create_app(config, market, relay), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        yield f"http://{host}", chain, relay
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.dispose()


def forge(honest: Path, dst: Path, factor: float = 0.6) -> Path:
    """A script's recording of the honest run's motion (see the module docstring)."""
    from loopylab.market.sample import write_mcap
    from loopylab.market.verify.decode import plain, read_mcap
    from loopylab.world import notebook as g

    dst.mkdir(parents=True, exist_ok=True)
    events, last_cmd = [], None
    for topic, lt, msg in read_mcap(honest / "recording.mcap"):
        m = plain(msg)
        if topic == "arm/joint_command":
            last_cmd = m["position"]
        elif topic == "arm/joint_state" and last_cmd is not None:
            m["position"], m["effort"] = list(last_cmd), [0.0] * len(last_cmd)
        events.append((lt, topic, m))
    write_mcap(dst / "recording.mcap", events)
    lines = []
    for s in g.parse((honest / "notebook.nb").read_text()):
        if s.kind == "observation" and s.body.values:
            s = g.Section("observation", g.Observation(tuple((k, round(v * factor, 3)) for k, v in s.body.values)))
        if s.kind != "raw":
            lines.append(s)
    (dst / "notebook.nb").write_text(g.render(lines))
    return dst


def contributor(url: str) -> MarketClient:
    c = MarketClient(url, Account.create(), Account.create())
    c.login()
    c.register_rig("benchmark")
    return c


def submit(c: MarketClient, bounty: int, folder: Path) -> dict:
    return c.submit_folder(c.claim(bounty)["id"], folder, bounty)


def one_world(seed: int, url: str, chain, relay, work: Path, budget: int, book: Path) -> dict:
    from loopylab.lab.bench import sim_bench
    from loopylab.lab.bounty_request import ExperimentRequest
    from loopylab.lab.collect import collect_into
    from loopylab.lab.commands import run_investigation
    from loopylab.lab.fulfil import fulfil
    from loopylab.lab.rig_noise import RigNoise
    from loopylab.sim.secret import SEALED

    label = scene_from_seed(seed).objects[0].label  # the layout alone: the same in the sealed world
    question = f"estimate mass of {label} within 10% budget {budget}"
    key = work / "requester"
    new_key_file(key)
    chain.faucet(Account.from_key(key.read_text().strip()).address, 10**18)
    report = work / "report"
    buy = BuyConfig(slots=3, budget_eth=0.05)
    summary = run_investigation(
        question, seed, "eig", out=report, live=False, run_seed=seed, lacks=GRIPPER_SKILLS, buy=buy,
        market=url, key=key,
    )  # fmt: skip
    row = {"seed": seed, "question": question, "alone": bool(summary.get("success")), "posted": False}
    row.update(market=row["alone"], paid_wei=0, fake_paid=0, honest=0, honest_rejected=0, outliers=0)
    bounty = summary.get("bounty") or {}
    if not bounty.get("posted"):
        return row
    row["posted"] = True
    bid = int(bounty["id"])
    req = json.loads((report / "bounty.json").read_text())["terms"]["task_spec"]
    request = ExperimentRequest.from_task_spec(req)
    kinds: dict[int, str] = {}
    honest_dir = work / "honest"
    # the honest rig holds the very object the lab asked about: the sealed world of the seed, as `run_investigation`
    # builds it (sim/secret.py); the public world of the seed is another object (its own mass), which the lab's
    # review would rightly flag as an outlier
    with sim_bench(seed=seed, world_secret=SEALED) as bench:
        scene = bench.reset(seed)
        fulfil(request, honest_dir, bench, scene)
    for kind, folder in (
        ("forger", forge(honest_dir, work / "forged")),
        ("honest", honest_dir),
        ("copier", honest_dir),
    ):
        c = contributor(url)
        try:
            kinds[submit(c, bid, folder)["id"]] = kind
        finally:
            c.close()
    lab = client(url, key)
    try:
        got = review_and_fetch(lab, bid)
    finally:
        lab.close()
    relay.run_once()
    approved = {s["id"] for s in got.approved}
    row["fake_paid"] = sum(1 for sid in approved if kinds.get(sid) != "honest")
    row["honest"] = sum(1 for k in kinds.values() if k == "honest")
    row["honest_rejected"] = sum(1 for sid, k in kinds.items() if k == "honest" and sid not in approved)
    row["paid_wei"] = sum(int(s["payout"]["amount_wei"]) for s in got.approved if s.get("payout"))
    rigbook = RigNoise.load(book)
    bought = {s["id"]: (s["rig"], got.notebooks.get(s["id"], [])) for s in got.approved}
    res, market = collect_into(report, bought, rigbook)
    rigbook.save(book)
    row.update(market=bool(market.get("success")), outliers=res.outliers, used=res.used)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3, help="held-out test worlds")
    ap.add_argument("--budget", type=int, default=3, help="the lab's own experiments per question")
    ap.add_argument("--out", type=Path, default=None, help="write rows.json and summary.json here")
    args = ap.parse_args()
    rows = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lab_market") as tmp:
        home = Path(tmp)
        with served_market(home) as (url, chain, relay):
            for seed in seeds("test", args.n):
                work = home / f"w{seed}"
                work.mkdir()
                row = one_world(seed, url, chain, relay, work, args.budget, home / "rigs.json")
                rows.append(row)
                print(json.dumps(row), flush=True)
    n = len(rows)
    honest = sum(r["honest"] for r in rows)
    summary = {
        "worlds": n,
        "posted": sum(r["posted"] for r in rows),
        "success_alone": sum(r["alone"] for r in rows) / n,
        "success_with_market": sum(r["market"] for r in rows) / n,
        "eth_spent_per_answer": sum(r["paid_wei"] for r in rows) / WEI_PER_ETH / n,
        "fake_submissions_paid": sum(r["fake_paid"] for r in rows),
        "honest_submissions_rejected": (sum(r["honest_rejected"] for r in rows) / honest) if honest else None,
        "outliers_flagged": sum(r["outliers"] for r in rows),
        "wall_s": round(time.monotonic() - t0, 1),
        "load_avg_1m": os.getloadavg()[0],
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["fake_submissions_paid"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
