"""The twin replay the market runs (a loopylab.verifiers plug-in): a run recorded on an arm whose servos are not
the twin's passes; joint streams a script made fail; a recording without commands or of an unknown robot is
said to be not replayable (ok None), never passed."""

from __future__ import annotations

import copy
from importlib.metadata import entry_points

import numpy as np
import pytest

from loopylab.sim.verifier import COMMANDS, STATES, recorded_run, verify


@pytest.fixture(scope="module")
def run():
    return recorded_run("panda", seconds=1.0, seed=5, gain=0.25)  # servo gains 1/6 off the twin's


def test_it_is_registered_for_the_market():
    assert "loopylab.sim.verifier:verify" in {ep.value for ep in entry_points(group="loopylab.verifiers")}


def test_a_recorded_run_with_noise_passes(run):
    rng = np.random.default_rng(0)
    noisy = copy.deepcopy(run)
    for _lt, m in noisy[STATES]:
        m["position"] = (np.asarray(m["position"]) + rng.normal(0, 2e-3, 7)).tolist()
        m["effort"] = (np.asarray(m["effort"]) * rng.normal(1, 0.05, 7)).tolist()
    out = verify(noisy, {})
    assert out["ok"] is True, out["detail"]


@pytest.mark.parametrize("effort", ["zero", "constant", "another run's"])
def test_a_scripted_joint_stream_fails(run, effort):
    """Positions that follow the commands perfectly, velocities from them, efforts made up."""
    fake = copy.deepcopy(run)
    other = recorded_run("panda", seconds=1.0, seed=6)[STATES]
    cmds = [m["position"] for _lt, m in fake[COMMANDS]]
    for k, (_lt, m) in enumerate(fake[STATES][1:], start=1):
        m["position"] = list(cmds[k - 1])
        m["velocity"] = [(a - b) * 120 for a, b in zip(cmds[k - 1], cmds[max(0, k - 2)])]
        m["effort"] = {"zero": [0.0] * 7, "constant": [0.0, -20.0, 0.0, 10.0, 0.0, 1.0, 0.0]}.get(
            effort, other[k][1]["effort"]
        )
    out = verify(fake, {})
    assert out["ok"] is False and "physics disagrees" in out["detail"], out["detail"]


def test_nothing_to_replay_is_no_verdict(run):
    assert verify({STATES: run[STATES]}, {})["ok"] is None
    unknown = copy.deepcopy(run)
    for _lt, m in unknown[STATES] + unknown[COMMANDS]:
        m["name"] = [f"j{i}" for i in range(7)]
    out = verify(unknown, {})
    assert out["ok"] is None and "match no robot" in out["detail"]
