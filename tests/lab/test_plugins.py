"""Plugins by entry points: the groups resolve, `loopylab --help` lists every verb, and a broken plugin is
reported in one line without taking the command line down."""

import logging
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import loopylab.lab
from loopylab.lab.agents import PLUGINS, agent_names, make_agent
from loopylab.lab.cli import make_app
from loopylab.lab.plugins import AGENT_GROUP, CLI_GROUP, plugins

REPO = Path(loopylab.lab.__file__).resolve().parents[1]
VERBS = [
    "run",
    "eval",
    "demo",
    "notebook",
    "skill",
    "launch",
    "topics",
    "echo",
    "nodes",
    "record",
    "replay",
    "demo-bus",
    "arm",
    "market",
    "bounty",
    "policy",
    "camera",
    "lab",
]


def half_register(app: typer.Typer) -> None:
    """A plugin that breaks halfway through adding its verbs."""
    app.command("half-verb")(lambda: None)
    raise RuntimeError("no config file for the half plugin")


def test_every_package_with_a_cli_registers_it_and_every_entry_point_resolves():
    cli = plugins(CLI_GROUP)
    # the lab's own `lab` group (lab/twin_cli.py) comes through the group too; the rig's cli.py is an emulator
    # (`loopylab.emulators`: `arm emulate --physics`), not a verb of its own
    assert set(cli) == {p.parent.name for p in REPO.glob("*/cli.py")} - {"rig"}
    assert all(callable(ep.load()) for ep in cli.values())
    agents = plugins(AGENT_GROUP)
    assert {"nanochat", "nanochat-remote"} <= set(agents)
    assert [agents[n].load().name for n in ("nanochat", "nanochat-remote")] == ["nanochat", "nanochat-remote"]
    assert {"eig", "grid", "random", "nanochat", "nanochat-remote"} <= set(agent_names())


def _help(env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "loopylab.lab.cli", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def _verbs(help_text: str) -> list[str]:
    """The verbs in --help, in order (first word of each command row)."""
    rows = [line.strip("│ ").split() for line in help_text.splitlines() if line.startswith("│ ")]
    return [r[0] for r in rows if r and not r[0].startswith("-")]


def test_help_lists_every_verb_the_lab_first_then_each_plugin_under_its_own_panel():
    r = _help()
    assert r.returncode == 0, r.stderr
    verbs = _verbs(r.stdout)
    assert sorted(verbs) == sorted(VERBS), verbs
    assert verbs[:4] == ["run", "eval", "demo", "notebook"]
    for panel in ("bus", "market", "nanochat", "perception", "actuation", "firmware_bridge", "lab"):
        assert f"─ {panel} ─" in r.stdout
    assert "failed to load" not in r.stderr


def test_an_installed_broken_plugin_is_one_log_line_and_the_rest_still_work(tmp_path):
    """A real distribution on the path whose `loopylab.cli` entry point names a module that does not exist."""
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[loopylab.cli]\nbroken = loopylab_not_installed.cli:register\n")
    r = _help({"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert sorted(_verbs(r.stdout)) == sorted(VERBS)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "'broken'" in lines[0] and "loopylab_not_installed.cli:register" in lines[0]
    assert "ModuleNotFoundError" in lines[0]


def test_a_plugin_that_fails_halfway_leaves_no_verbs_behind(caplog):
    eps = [
        EntryPoint("bus", "loopylab.bus.cli:register", CLI_GROUP),
        EntryPoint("half", f"{__name__}:half_register", CLI_GROUP),
        EntryPoint("missing", "loopylab.bus.cli:no_such_function", CLI_GROUP),
    ]
    with caplog.at_level(logging.WARNING, logger="loopylab.cli"):
        app = make_app(eps)
    failed = [rec.getMessage() for rec in caplog.records if "failed to load" in rec.getMessage()]
    assert len(failed) == 2 and "no config file for the half plugin" in failed[0] and "AttributeError" in failed[1]
    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert r.exit_code == 0
    assert _verbs(r.output) == [
        "run",
        "eval",
        "demo",
        "notebook",
        "launch",
        "topics",
        "echo",
        "nodes",
        "record",
        "replay",
        "demo-bus",
    ]


def test_a_broken_agent_plugin_is_a_clear_error_when_asked_for(caplog):
    PLUGINS["broken_agent"] = EntryPoint("broken_agent", "loopylab_not_installed.agent:Agent", AGENT_GROUP)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="loopylab.plugins"),
            pytest.raises(KeyError, match="broken_agent.*failed to load"),
        ):
            make_agent("broken_agent")
        assert any("loopylab_not_installed.agent:Agent" in rec.getMessage() for rec in caplog.records)
        assert hasattr(make_agent("eig"), "propose")  # the other agents are unaffected
    finally:
        PLUGINS.pop("broken_agent")
