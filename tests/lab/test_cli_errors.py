"""One line for every mistake: a table of bad inputs walked through every verb of the real command line.

Each row is a command line (with `{tmp}`, `{pkg}`, ... filled in from `paths`) and a piece of text the
answer must contain — the input it names. A row passes when the verb exits non-zero, prints no traceback,
and says what is wrong in a line that names the input. To cover a new verb, add a row: the last test fails
for any verb that has none.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from loopylab.lab.cli import app
from loopylab.nanochat.data import SHIPPED_DATA


@dataclass(frozen=True)
class Bad:
    args: str  # the command line after `loopylab`, with {placeholders} from `paths`
    names: str  # text the answer must contain: the input it is about, or what is wrong with it

    def __str__(self) -> str:
        return self.args


TABLE = [
    # the lab
    Bad("run -q 'estimate mass of red_block within 10%' --robot ur5", "ur5"),
    Bad("run -q 'estimate the mass of everything'", "--question"),
    Bad("run -q 'estimate mass of red_block within 10%' --no-sim", "--graph"),
    Bad("run -q 'estimate mass of red_block within 10%' --out {pkg}/reports", "installed package"),
    Bad("run -q 'estimate mass of red_block within 10%' --set arm.port=/dev/ttyUSB0", "--graph"),
    Bad("run -q 'estimate mass of red_block within 10%' --graph {graphs}/so101.toml", "--scene"),
    Bad("run -q 'estimate mass of red_block within 10%' --graph {graphs}/so101.toml --set wing.port=x", "wing"),
    Bad("run -q 'estimate mass of red_block within 10%' --graph {graphs}/so101.toml --bus garbage://x", "garbage://x"),
    Bad("run -q 'estimate mass of red_block within 10%' --agent oracle", "oracle"),
    Bad("eval --seeds 5:2", "start 5 is not below end 2"),
    Bad("eval --questions colour", "colour"),
    Bad("eval --agent oracle --seeds 0", "oracle"),
    Bad("demo --out {pkg}/reports", "installed package"),
    Bad("notebook replay {tmp}/missing.txt", "no notebook"),
    Bad("notebook rerun {tmp}/missing.txt --seed 3", "no notebook"),
    # a skill
    Bad("skill fly red_block", "fly"),
    Bad("skill push", "object label"),
    Bad("skill lift red_block high", "high"),
    Bad("skill move_to 'here'", "move_to"),
    # the bus
    Bad("launch {tmp}/missing.toml", "missing.toml"),
    Bad("launch {tmp}/bad.toml", "bad.toml"),
    Bad("launch {tmp}/graph_unknown_key.toml", "colour"),
    Bad("launch {tmp}/unknown_key.toml", "[nodes.NAME]"),
    Bad("topics --bus garbage://x", "garbage://x"),
    Bad("topics --bus ipc://no-graph-here", "no graph is running"),
    Bad("echo arm/joint_state --bus garbage://x", "garbage://x"),
    Bad("nodes --bus garbage://x", "garbage://x"),
    Bad("record -o {tmp}/out.mcap --bus garbage://x", "garbage://x"),
    Bad("replay {tmp}/garbage.mcap --rate 0", "garbage.mcap"),
    Bad("replay {tmp}/truncated.mcap --rate 0", "truncated.mcap"),
    Bad("replay {tmp}/empty.mcap --rate 0", "empty.mcap"),
    Bad("replay {tmp}/missing.mcap", "missing.mcap"),
    Bad("demo-bus --bus garbage://x", "garbage://x"),
    # a real arm
    Bad("arm find-port --ports 3", "--ports"),
    Bad("arm setup-motors --robot ur5 --port /dev/null", "ur5"),
    Bad("arm calibrate --robot ur5 --port /dev/null", "ur5"),
    Bad("arm status --port {tmp}/no-such-tty", "no-such-tty"),
    Bad("arm emulate --kind toaster", "toaster"),
    Bad("arm launch {tmp}/missing.toml", "missing.toml"),
    Bad("arm reboot --port /dev/null --id three", "--id"),
    Bad("arm reboot --robot ur5 --port /dev/null", "ur5"),
    # cameras
    Bad("camera list --all", "--all"),
    Bad("camera board {tmp}/no/such/folder/board.png", "board.png"),
    Bad("camera calibrate {tmp}/no-such-video.mp4 -o {tmp}/cal.toml", "no-such-video.mp4"),
    Bad("camera handeye --intrinsics {tmp}/missing.toml --poses {tmp}/missing.csv", "missing"),
    Bad("camera view {tmp}/no-such-video.mp4 --marker 0:0.05", "no-such-video.mp4"),
    Bad("camera view {tmp}/no-such-video.mp4", "nothing to look for"),
    # the lab's twin
    Bad("lab calibrate-twin --graph {tmp}/bad.toml --objects {tmp}/bad.toml", "bad.toml"),
    Bad("lab calibrate-twin --graph {tmp}/missing.toml --objects {tmp}/bad.toml", "missing.toml"),
    Bad("lab fulfil 1 --market http://127.0.0.1:9 --key {key}", "cannot reach the market"),
    Bad("lab fulfil 1 --market http://127.0.0.1:9 --key {tmp}/no-key", "no-key"),
    Bad("lab collect {tmp}/empty --key {key}", "no bounty.json"),
    Bad("lab collect {tmp}/missing --key {key}", "missing"),
    Bad("run -q 'estimate mass of red_block within 10%' --without fly", "fly"),
    Bad("run -q 'estimate mass of red_block within 10%' --market http://127.0.0.1:9", "--without"),
    Bad("run -q 'estimate mass of red_block within 10%' --without weigh --budget -1", "--budget"),
    # the policy
    Bad("policy data --seeds 5:2", "start 5 is not below end 2"),
    Bad("policy data --seeds 0:1 --out {shipped_data}", "installed package"),
    Bad("policy train --preset huge", "huge"),
    Bad("policy train --data {tmp}/empty", "empty"),
    Bad("policy train --out {pkg}/checkpoints/mine", "installed package"),
    Bad("policy sample --checkpoint {tmp}/missing", "missing"),
    Bad("policy sample --kind colour", "colour"),
    Bad("policy sample --kind friction,mass", "friction,mass"),
    Bad("policy eval --checkpoint {tmp}/missing", "missing"),
    Bad("policy export --nanochat {tmp}/out --checkpoint {tmp}/missing", "missing"),
    Bad("policy export --nanochat {tmp}/out --source chat", "chat"),
    Bad("policy import --nanochat {tmp}/missing", "missing"),
    Bad("policy dagger --seeds 2000000:2000001", "train split"),
    Bad("policy rl --seeds 2000000:2000001", "train split"),
    # the market
    Bad("market serve --config {tmp}/bad.toml", "bad.toml"),
    Bad("market relay --config {tmp}/bad.toml", "bad.toml"),
    Bad("market deploy --chain-url http://127.0.0.1:9", "LOOPYLAB_CHAIN_KEY"),
    Bad("market reconcile --key {key} --url http://127.0.0.1:9", "cannot reach the market"),
    Bad("market reconcile --key {tmp}/no-key", "no-key"),
    Bad("bounty keygen --key {key}", "key"),
    Bad("bounty faucet --key {tmp}/no-key", "no-key"),
    Bad("bounty post --title t --reward lots --key {key}", "lots"),
    Bad("bounty post --title t --reward 0.01 --spec {tmp}/bad.toml --key {key}", "bad.toml"),
    Bad("bounty post --title t --reward 0.01 --spec {tmp}/unknown_key.toml --key {key}", "unknown_key.toml"),
    Bad("bounty list --url http://127.0.0.1:9", "cannot reach the market"),
    Bad("bounty show 1 --key {tmp}/no-key", "no-key"),
    Bad("bounty claim 1 --key {key} --url http://127.0.0.1:9", "cannot reach the market"),
    Bad("bounty submit 1 {tmp}/no-such-recording", "no-such-recording"),
    Bad("bounty review 1", "--approve or --reject"),
    Bad("bounty withdraw --key {tmp}/no-key", "no-key"),
    Bad("bounty refund 1 --key {tmp}/no-key", "no-key"),
    Bad("bounty refund 1 --key {key} --url http://127.0.0.1:9", "cannot reach the market"),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """The files the table's rows refer to: broken TOML, broken MCAP, an empty folder, a key file."""
    from mcap.writer import Writer

    from loopylab.market.client import new_key_file

    tmp = tmp_path_factory.mktemp("bad-inputs")
    (tmp / "bad.toml").write_text("[graph\nname = 'x'\n")
    (tmp / "unknown_key.toml").write_text("colour = 'red'\n")
    (tmp / "graph_unknown_key.toml").write_text("[graph]\nname = 'x'\ncolour = 'red'\n[nodes.a]\nrun = 'x:y'\n")
    (tmp / "garbage.mcap").write_bytes(b"this is not an mcap file")
    (tmp / "empty.mcap").write_bytes(b"")
    with open(tmp / "whole.mcap", "wb") as f:
        w = Writer(f)
        w.start()
        channel = w.register_channel(
            topic="t", message_encoding="json", schema_id=w.register_schema(name="x", encoding="jsonschema", data=b"{}")
        )
        for i in range(200):
            w.add_message(channel_id=channel, log_time=i, publish_time=i, data=b'{"i": %d}' % i)
        w.finish()
    whole = (tmp / "whole.mcap").read_bytes()
    (tmp / "truncated.mcap").write_bytes(whole[: len(whole) // 2])
    (tmp / "empty").mkdir()
    new_key_file(str(tmp / "key"))
    return {
        "tmp": str(tmp),
        "key": str(tmp / "key"),
        "pkg": str(SHIPPED_DATA.parent),
        "shipped_data": str(SHIPPED_DATA),
        "graphs": str(Path(__file__).resolve().parents[2] / "graphs"),
    }


def squeeze(text: str) -> str:
    """Text without whitespace or box lines: rich wraps long lines, even inside a path."""
    return re.sub(r"[\s│╭╮╰╯─]", "", text)


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, prog_name="loopylab")


@pytest.mark.parametrize("bad", TABLE, ids=str)
def test_a_bad_input_gets_one_line_naming_it(bad: Bad, paths, tmp_path, monkeypatch, logging_restored):
    monkeypatch.chdir(tmp_path)  # whatever a verb writes by default lands here
    shipped = {p.name: p.stat().st_mtime_ns for p in SHIPPED_DATA.iterdir()}
    r = invoke(shlex.split(bad.args.format(**paths)))
    out = r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), f"{bad}: {r.exception!r}\n{out}"
    assert "Traceback" not in out, f"{bad} printed a traceback:\n{out}"
    assert r.exit_code != 0, f"{bad} exited 0:\n{out}"
    assert out.strip(), f"{bad} exited {r.exit_code} saying nothing"
    assert squeeze(bad.names) in squeeze(out), f"{bad}: the answer does not name {bad.names!r}:\n{out}"
    assert {p.name: p.stat().st_mtime_ns for p in SHIPPED_DATA.iterdir()} == shipped


def test_debug_shows_the_traceback_instead(logging_restored):
    r = invoke(["--debug", "policy", "train", "--preset", "huge"])
    assert isinstance(r.exception, ValueError) and "huge" in str(r.exception)


def test_every_verb_has_a_row():
    def verbs(group, prefix=""):
        for name, cmd in group.commands.items():
            yield from verbs(cmd, f"{prefix}{name} ") if hasattr(cmd, "commands") else [f"{prefix}{name}"]

    covered = {" ".join(shlex.split(b.args)[:2]) for b in TABLE} | {shlex.split(b.args)[0] for b in TABLE}
    missing = sorted(v for v in verbs(typer.main.get_command(app)) if v not in covered)
    assert not missing, f"verbs with no bad-input row in TABLE: {missing}"


def test_no_verb_writes_into_the_installed_package_by_default(tmp_path, monkeypatch):
    """Every output option's default lies outside the package (relative ones: from wherever you run)."""
    from loopylab.lab.outputs import check_output, inside_package

    assert inside_package(SHIPPED_DATA) is not None  # the check can see the package at all
    monkeypatch.chdir(tmp_path)

    def params(group, prefix=""):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from params(cmd, f"{prefix}{name} ")
            else:
                yield from ((f"{prefix}{name}", p) for p in cmd.params)

    outputs = [(verb, p) for verb, p in params(typer.main.get_command(app)) if "out" in (p.name or "")]
    assert {"policy data", "policy train", "run", "eval", "demo", "record", "camera board"} <= {v for v, _ in outputs}
    for verb, p in outputs:
        if isinstance(p.default, (str, Path)) and p.default:
            assert inside_package(p.default) is None, f"{verb} {p.name} defaults to {p.default}, inside the package"
    with pytest.raises(ValueError, match="installed package"):
        check_output(SHIPPED_DATA / "train_00000.jsonl.gz")
