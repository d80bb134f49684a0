"""The root options users expect: --version, shell completion, --log-file, and quiet third-party logs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopylab.lab.cli import app, configure_logging, package_version


def test_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"loopylab {package_version()}"
    assert package_version() != "unknown"


def test_shell_completion_script():
    # typer finds the shell among the process's ancestors (`--show-completion` takes no shell name since typer
    # 0.2x), so the CLI runs under a bash, as a user's does: the test then holds however pytest was started
    loopylab = Path(sys.executable).with_name("loopylab")
    r = subprocess.run(
        ["bash", "-c", f"{loopylab} --show-completion; exit $?"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "complete" in r.stdout and "loopylab" in r.stdout.lower(), (r.stdout, r.stderr)


@pytest.mark.parametrize("verbose", [False, True])
def test_our_logs_at_info_theirs_at_warning_unless_verbose(tmp_path, verbose, logging_restored):
    log_file = tmp_path / "logs" / "loopylab.log"
    configure_logging(verbose, log_file)
    logging.getLogger("loopylab.lab.test").info("ours at info")
    logging.getLogger("loopylab.lab.test").debug("ours at debug")
    logging.getLogger("httpx").info("theirs at info")
    logging.getLogger("alembic.runtime").warning("theirs at warning")
    text = log_file.read_text()
    assert "ours at info" in text and "theirs at warning" in text
    assert ("ours at debug" in text) == verbose and ("theirs at info" in text) == verbose


def test_log_file_option_gets_the_commands_log(tmp_path, logging_restored):
    log_file = tmp_path / "run.log"
    r = CliRunner().invoke(app, ["--log-file", str(log_file), "policy", "train", "--preset", "huge"])
    assert r.exit_code == 2 and "huge" in r.output
    assert log_file.exists()  # created even when the command logged nothing before failing


def test_eval_run_seed_is_the_agents_seeds_source_and_is_said(tmp_path, monkeypatch):
    """`eval --run-seed N` reaches every world's task (the agents' seeds come from it) and the output names it;
    without it a seed is drawn, and said too."""
    from loopylab.lab import evaluation, report

    seen = []
    monkeypatch.setattr(evaluation, "run_eval", lambda cfg, on_row: seen.append(cfg) or [])
    monkeypatch.setattr(report, "write_eval_report", lambda out, rows: {})
    monkeypatch.setattr(report, "summary_markdown", lambda table: "")
    args = ["eval", "--seeds", "0:2", "--questions", "mass", "--out", str(tmp_path / "a")]
    r = CliRunner().invoke(app, [*args, "--run-seed", "1234"])
    assert r.exit_code == 0, r.output
    assert {t.run_seed for t in seen[0].tasks()} == {1234} and "run seed 1234" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["eval", "--seeds", "0:2", "--questions", "mass", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0 and f"run seed {seen[1].run_seed}" in " ".join(r.output.split())
