"""`loopylab policy data` writes where it is run (runs/data), never over the training data shipped in the
package (it once overwrote a 59 kB shard with a 407-byte one)."""

from __future__ import annotations

from typer.testing import CliRunner

from loopylab.lab.cli import app
from loopylab.nanochat.data import SHIPPED_DATA, read_shards


def test_policy_data_writes_under_runs_and_leaves_the_shipped_shards_alone(tmp_path, monkeypatch):
    shipped = {p.name: p.read_bytes() for p in SHIPPED_DATA.iterdir() if p.is_file()}
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["policy", "data", "--seeds", "9:10", "--kinds", "mass", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert [rec["seed"] for rec in read_shards(tmp_path / "runs" / "data", "val")] == [9]
    assert {p.name: p.read_bytes() for p in SHIPPED_DATA.iterdir() if p.is_file()} == shipped
