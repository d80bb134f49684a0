"""Strict config loading: unknown keys are refused with the file, the table and the allowed keys named."""

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopylab.world.config import ConfigError, check_keys, from_mapping, load_table, read_table


@dataclass
class Rig:
    port: str = "/dev/ttyUSB0"
    rate_hz: float = 100.0


def test_a_known_table_loads_and_defaults_fill_the_rest(tmp_path):
    p = tmp_path / "rig.toml"
    p.write_text("[rig]\nrate_hz = 50.0\n")
    assert load_table(Rig, p, "rig") == Rig(rate_hz=50.0)
    assert load_table(Rig, p, "other") == Rig()


def test_a_typo_names_the_file_the_table_and_what_is_allowed(tmp_path):
    p = tmp_path / "rig.toml"
    p.write_text("[rig]\nrate_hz = 50.0\nrat_hz = 5\n")
    with pytest.raises(ConfigError) as e:
        load_table(Rig, p, "rig")
    assert str(p) in str(e.value) and "[rig]" in str(e.value)
    assert "['rat_hz']" in str(e.value) and "port" in str(e.value)


def test_missing_and_malformed_files_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_table(tmp_path / "absent.toml", "rig")
    bad = tmp_path / "bad.toml"
    bad.write_text("[rig\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_table(bad, "rig")
    scalar = tmp_path / "scalar.toml"
    scalar.write_text("rig = 3\n")
    with pytest.raises(ConfigError, match="must be a table"):
        read_table(scalar, "rig")


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=6))
def test_check_keys_refuses_exactly_the_keys_outside_the_allowed_set(d):
    allowed = {"port", "rate_hz"}
    if set(d) <= allowed:
        check_keys(d, allowed, "here")
    else:
        with pytest.raises(ConfigError) as e:
            check_keys(d, allowed, "here")
        assert str(sorted(set(d) - allowed)) in str(e.value)


def test_a_bad_value_the_dataclass_refuses_is_a_config_error():
    @dataclass
    class Checked:
        n: int = 1

        def __post_init__(self):
            if self.n < 0:
                raise ValueError("n must be >= 0")

    with pytest.raises(ConfigError, match="here: n must be >= 0"):
        from_mapping(Checked, {"n": -1}, "here")
