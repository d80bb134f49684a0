"""The `loopylab market` / `loopylab bounty` commands against a real uvicorn server: keygen, faucet,
post (funded), list, show, claim, submit a recording folder, review, withdraw."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from loopylab.market.cli import register
from loopylab.market.sample import write_recording


def cli():
    app = typer.Typer()
    register(app)
    return app


def test_bounty_commands_end_to_end(served, tmp_path):
    world, url = served
    run = CliRunner().invoke
    app = cli()
    keys = {who: str(tmp_path / f"{who}.key") for who in ("requester", "alice", "rig")}
    for who, path in keys.items():
        r = run(app, ["bounty", "keygen", "--key", path])
        assert r.exit_code == 0 and re.search(r"address 0x[0-9a-fA-F]{40}", r.output), r.output
    assert run(app, ["bounty", "keygen", "--key", keys["rig"]]).exit_code == 1  # never overwrites a key
    req = ["--url", url, "--key", keys["requester"]]
    ali = ["--url", url, "--key", keys["alice"]]
    assert "received 100 ETH" in run(app, ["bounty", "faucet", *req]).output
    r = run(
        app,
        [
            "bounty",
            "post",
            "--title",
            "Wrench traces",
            "--reward",
            "0.01",
            "--slots",
            "2",
            "--topic",
            "wrist/wrench",
            "--topic",
            "arm/joint_state",
            *req,
        ],
    )
    assert r.exit_code == 0 and "bounty 1 funded with 0.02 ETH: open" in r.output, r.output
    r = run(app, ["bounty", "list", "--url", url])
    assert "Wrench traces" in r.output and "2/2" in r.output
    r = run(app, ["bounty", "claim", "1", *ali])
    assert r.exit_code == 0 and "claim 1 on bounty 1" in r.output
    rec = write_recording(tmp_path / "run-0001", seed=41)
    r = run(app, ["bounty", "submit", "1", str(rec), "--rig-key", keys["rig"], *ali])
    assert r.exit_code == 0 and "submission 1: pending_review" in r.output, r.output
    assert "FAIL" not in r.output
    r = run(app, ["bounty", "review", "1", "--reject", *req])
    assert r.exit_code == 1 and "needs a reason" in r.output
    r = run(app, ["bounty", "review", "1", "--approve", *ali])
    assert r.exit_code == 1 and "refused (403)" in r.output
    r = run(app, ["bounty", "review", "1", "--approve", *req])
    assert r.exit_code == 0 and "submission 1: approved, payout pending" in r.output
    r = run(app, ["bounty", "show", "1", *req])
    assert r.exit_code == 0 and "approved" in r.output
    world.relay.run_once()
    r = run(app, ["bounty", "withdraw", *ali])
    assert r.exit_code == 0 and "withdrew 0.01 ETH" in r.output, r.output
    r = run(app, ["market", "reconcile", *req])
    assert r.exit_code == 0 and "books agree" in r.output
    r = run(app, ["bounty", "claim", "99", *ali])
    assert r.exit_code == 1 and "refused (404): no bounty 99" in r.output
