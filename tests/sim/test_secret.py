"""The world builder's secret (sim/secret.py): resolved in the builder's own process, public when not asked for."""

import pytest

from loopylab.sim import secret


def test_sealed_resolves_from_the_environment_else_the_checkouts_file(monkeypatch):
    monkeypatch.delenv(secret.ENV, raising=False)
    default = secret.resolve(secret.SEALED)
    assert default and default == secret.DEFAULT_FILE.read_text().strip()
    monkeypatch.setenv(secret.ENV, "the evaluators own")
    assert secret.resolve(secret.SEALED) == "the evaluators own"
    assert secret.resolve(None) is None and secret.resolve("literal") == "literal"


def test_a_missing_default_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv(secret.ENV, raising=False)
    monkeypatch.setattr(secret, "DEFAULT_FILE", tmp_path / "absent")
    with pytest.raises(RuntimeError, match=secret.ENV):
        secret.resolve(secret.SEALED)


def test_an_agents_process_may_not_ask_for_the_builders_secret(monkeypatch):
    monkeypatch.setenv(secret.AGENT_FLAG, "1")
    with pytest.raises(PermissionError, match="world builder"):
        secret.resolve(secret.SEALED)
    assert secret.resolve(None) is None  # the public worlds stay open to anyone
