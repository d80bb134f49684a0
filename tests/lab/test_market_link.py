"""The lab's review of what its bounty brought (lab/market_link.py) on a real market (the app, SQLite, the escrow,
the twin replay plug-in): a forger's recording and a copier's files are never approved, so never paid; the honest
rig's is approved, paid, and its notebook fetched."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from loopylab.lab.bounty_request import ExperimentRequest, ObjectDescription
from loopylab.lab.market_link import post_draft, review_and_fetch
from loopylab.market.client import MarketClient
from loopylab.market.sample import write_mcap
from loopylab.world import notebook as g
from tests.market.conftest import base_chain, chain, sqlite_store, world  # noqa: F401  (fixtures)
from tests.market.helpers import write_replayable_recording

WEIGH = g.Experiment("weigh", "red_block")
REWARD = 10**15


def notebook(mass: float) -> str:
    return g.render([s for _ in range(3) for s in (WEIGH, g.Observation((("mass", mass),)))])


def forged_from(src, dst):
    """The forger's script: joint states that follow the commands exactly, efforts made up (zeros)."""
    from mcap.reader import make_reader

    dst.mkdir(parents=True)
    with open(src / "recording.mcap", "rb") as f:
        rows = [(m.log_time, c.topic, json.loads(m.data)) for _s, c, m in make_reader(f).iter_messages()]
    last = None
    for _t, topic, msg in rows:
        if topic == "arm/joint_command":
            last = msg["position"]
        elif topic == "arm/joint_state" and last is not None:
            msg["position"], msg["effort"] = list(last), [0.0] * len(last)
    write_mcap(dst / "recording.mcap", rows)
    (dst / "notebook.nb").write_text(notebook(0.180))
    return dst


def test_the_lab_approves_and_pays_only_what_passed_every_check(world, tmp_path):  # noqa: F811
    lab = MarketClient(world.http, Account.create())
    lab.login()
    world.chain.faucet(lab.address, 10**18)
    request = ExperimentRequest(WEIGH, ObjectDescription("red_block", "cube", 0.05), repetitions=3)
    terms = {
        "title": "weigh red_block x3",
        "task_spec": request.task_spec(),
        "acceptance": request.acceptance(),
        "slots": 3,
        "reward_wei": str(REWARD),
    }
    bounty = post_draft({"terms": terms}, lab)
    assert bounty["state"] == "open"

    honest = write_replayable_recording(tmp_path / "honest", seed=28)
    (honest / "notebook.nb").write_text(notebook(0.300))
    subs = {}
    for kind, folder in (("forger", forged_from(honest, tmp_path / "forged")), ("honest", honest), ("copier", honest)):
        u = world.user()
        u.register_rig(kind)
        subs[kind] = (u, u.submit_folder(u.claim(bounty["id"])["id"], folder, bounty["id"]))
    failed = {k: {c["name"] for c in sub["checks"] if c["status"] == "fail"} for k, (_u, sub) in subs.items()}
    assert subs["forger"][1]["state"] == "invalid" and "twin" in failed["forger"]  # physics disagrees
    assert subs["copier"][1]["state"] == "invalid" and failed["copier"] == {"duplicate"}
    assert subs["honest"][1]["state"] == "pending_review" and not failed["honest"]

    got = review_and_fetch(lab, bounty["id"])
    assert [s["id"] for s in got.approved] == [subs["honest"][1]["id"]]
    assert sorted(s["id"] for s in got.refused) == sorted(subs[k][1]["id"] for k in ("forger", "copier"))
    assert got.notebooks[subs["honest"][1]["id"]] == [notebook(0.300)]  # what it paid for, and only that

    world.relay.run_once()
    for kind, (u, _sub) in subs.items():
        paid = [p for p in u.payouts()["payouts"] if p["state"] in ("mined", "final")]
        assert len(paid) == (kind == "honest"), (kind, u.payouts())
    assert review_and_fetch(lab, bounty["id"]).approved[0]["id"] == subs["honest"][1]["id"]  # once, not twice


def test_a_market_that_cannot_be_reached_loses_no_draft(tmp_path):
    from loopylab.lab.market_link import after_run
    from loopylab.market.client import new_key_file

    new_key_file(tmp_path / "key")
    request = ExperimentRequest(WEIGH, ObjectDescription("red_block", "cube", 0.05))
    terms = {"title": "t", "task_spec": request.task_spec(), "acceptance": [], "slots": 2, "reward_wei": "1000"}
    why = {"experiment": "weigh red_block", "eig": 2.0, "own_best": None, "own_eig": 0.0, "own_cost": 0.0}
    with pytest.raises(ConnectionError, match="cannot reach the market at http://127.0.0.1:9"):
        after_run({"terms": terms, "why": why}, tmp_path, "http://127.0.0.1:9", tmp_path / "key", None)
    kept = json.loads((tmp_path / "bounty.json").read_text())
    assert kept["drafted"] and not kept["posted"] and kept["terms"] == terms
    assert after_run({}, tmp_path, None, None) == {"drafted": False}
