"""The lab buys the data it cannot collect, end to end (docs/lab.md, "Buying data"), through the command line:

    loopylab run -q "estimate mass of red_block within 10% budget 3" --without weigh,lift,drop,place \
        --market URL --key requester          # a lab without a gripper: drafts, posts and funds a weigh bounty
    loopylab lab fulfil ID --market URL --key contributor --rig-key rig --seed S     # a rig with a gripper
    loopylab lab collect REPORT --key requester   # approve what passed (twin replay included), conclude

A real market (uvicorn, SQLite, the eth-tester escrow), the real sim benches, the sealed agent process.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from loopylab.lab.cli import app
from loopylab.lab.replay import replay_file
from loopylab.market.client import MarketClient, load_key_file, new_key_file
from loopylab.world import notebook as g
from loopylab.world.source import Source
from tests.market.conftest import base_chain, chain, served, sqlite_store, world  # noqa: F401  (fixtures)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

SEED = 1014  # red_block (the sealed world, graphs/world.secret): a 7 cm cube of 0.344 kg; pushes alone leave it wide
QUESTION = "estimate mass of red_block within 10% budget 3"
NO_GRIPPER = "weigh,lift,drop,place"


def cli(*argv: str):
    res = CliRunner().invoke(app, list(argv), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_a_lab_without_a_gripper_buys_a_weighing_and_answers(served, tmp_path):  # noqa: F811
    w, url = served
    requester_key, contributor_key, rig_key = (tmp_path / n for n in ("requester", "contributor", "rig"))
    for k in (requester_key, contributor_key, rig_key):
        new_key_file(k)
    w.chain.faucet(load_key_file(requester_key).address, 10**18)
    report = tmp_path / "report"

    cli("run", "-q", QUESTION, "--seed", str(SEED), "--without", NO_GRIPPER, "--market", url,
        "--key", str(requester_key), "--out", str(report), "--run-seed", "7", "--quiet")  # fmt: skip
    result = json.loads((report / "result.json").read_text())
    bounty = result["bounty"]
    assert bounty["posted"] and bounty["state"] == "open", bounty
    notebook = (report / "notebook.txt").read_text()
    assert "<|experiment_start|>weigh" not in notebook  # the lab's own rig never weighed
    posted = json.loads((report / "bounty.json").read_text())
    assert posted["terms"]["task_spec"]["experiment"] == "weigh red_block"
    reward = int(posted["terms"]["reward_wei"])
    assert reward * posted["terms"]["slots"] <= 0.05 * 10**18  # within --budget

    out = cli("lab", "fulfil", str(bounty["id"]), "--market", url, "--key", str(contributor_key),
              "--rig-key", str(rig_key), "--seed", str(SEED), "--out", str(tmp_path / "recorded"))  # fmt: skip
    assert "pass        twin:" in out and "pending_review" in out, out

    out = cli("lab", "collect", str(report), "--key", str(requester_key), "--rigs", str(tmp_path / "rigs.json"))
    assert "1 approved" in out and "3 observations used" in out, out
    result = json.loads((report / "result.json").read_text())
    market = result["market"]
    assert market["success"] is True, market  # the truth is 0.344 kg
    assert market["conclusion"] != result["conclusion"] and market["p_within"] >= 0.9  # the bought data answered

    lines = g.parse((report / "notebook_bought.txt").read_text())
    sources = [s.body for s in lines if s.kind == "source"]
    assert len(sources) == 3 and all(isinstance(s, Source) and s.bounty == bounty["id"] for s in sources)
    assert sources[0].rig == load_key_file(rig_key).address and sources[0].used
    assert lines[-2].kind == "conclusion" and lines[-1].kind == "stop"
    replayed = replay_file(report / "notebook_bought.txt")  # the bought data replay as the lab's own do
    assert replayed.ok, replayed.summary()

    # the escrow pays the contributor: the relay releases the requester's signed approval
    w.relay.run_once()
    contributor = MarketClient(w.http, load_key_file(contributor_key))
    contributor.login()
    assert wait_until(lambda: _paid(w, contributor) == reward, 30), contributor.payouts()


def _paid(w, contributor) -> int:
    w.relay.run_once()
    return sum(int(p["amount_wei"]) for p in contributor.payouts()["payouts"] if p["state"] in ("mined", "final"))
