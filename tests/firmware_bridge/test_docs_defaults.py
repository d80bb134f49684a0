"""docs/hardware.md states every safety default of the arm node and the gate: each figure there is read and
checked against the code's default, so the two cannot drift apart again (they once said 500 ms, 0.5 and 0.95
where the code ran 1000 ms, 0.8 and 1.0)."""

import dataclasses
import re
from pathlib import Path

import pytest

from loopylab.firmware_bridge.arm_node import ArmConfig
from loopylab.world.limits import GateConfig
from loopylab.world.robots import CONTROL_HZ

DOC = (Path(__file__).resolve().parents[2] / "docs" / "hardware.md").read_text()
ARM = {f.name: f.default for f in dataclasses.fields(ArmConfig)}
GATE = {f.name: f.default for f in dataclasses.fields(GateConfig)}


def section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n### ", start + 1)
    return DOC[start : end if end > 0 else None]


def table_rows(text: str) -> dict[str, str]:
    """`| `name` | default | what |` rows: {name: default cell}."""
    return {m[1]: m[2].strip() for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \|", text, re.M)}


def number(cell: str) -> float:
    return float(re.match(r"[-\d.]+", cell)[0])


@pytest.mark.parametrize(
    "name", ["rate_hz", "latency_s", "retries", "fault_window_s", "stop_hold_s", "stop_speed", "reconnect_s"]
)
def test_the_arm_nodes_table_states_the_codes_defaults(name):
    rows = table_rows(section("The arm node's parameters and their defaults"))
    assert number(rows[name]) == pytest.approx(ARM[name]), f"docs/hardware.md says {name} = {rows[name]}"


def test_the_fault_section_states_the_codes_defaults():
    faults = section("### 8. Faults")
    assert f"`retries = {ARM['retries']}`" in faults
    assert f"`fault_window_s` ({ARM['fault_window_s'] * 1000:.0f} ms)" in faults
    assert f"`stop_hold_s` ({ARM['stop_hold_s']:g} s)" in faults
    assert f"`stop_speed` ({ARM['stop_speed']:g} rad/s)" in faults


def test_the_gates_table_states_the_codes_defaults():
    gate = section("### 7. The safety gate's limits")
    stated = {m[1]: float(m[2]) for m in re.finditer(r"`(\w+)` = ([-\d.]+)", gate)}
    for name in ("position_margin", "velocity_scale", "max_step", "effort_scale"):
        assert stated[name] == pytest.approx(GATE[name]), f"docs/hardware.md says {name} = {stated[name]}"
    assert float(re.search(r"no fresh `arm/joint_target` for (\d+) ms", gate)[1]) == GATE["deadman_ms"]
    assert float(re.search(r"no `arm/joint_state` for (\d+) ms", gate)[1]) == GATE["heartbeat_ms"]
    assert float(re.search(r"(\d+) Hz control rate", gate)[1]) == CONTROL_HZ
    box = re.search(r"`workspace_min/max` = \(([^)]*)\) \.\. \(([^)]*)\)", gate)
    assert [float(x) for x in box[1].split(",")] == list(GATE["workspace_min"])
    assert [float(x) for x in box[2].split(",")] == list(GATE["workspace_max"])
