"""A cheater for every route to the truth (lab/cheaters.py), each through the evaluation as any agent under
test: none gets the truth, and the evaluation refuses to grade a run whose agent asked the bus for it.

On the old code (agent made with the world's seed, the perceived scene keeping the seed, the agent in the
bench's process, a bus without access control) every one of these got the truth and was graded a success.
"""

import uuid

import pytest

from loopylab.lab import cheaters
from loopylab.lab.agents import register_agent
from loopylab.lab.evaluation import WorldTask, run_world

SEED = 3  # any world: its red_block's friction is the question


def _run(route: str) -> dict:
    name = cheaters.agent_name(route)
    register_agent(name, cheaters.CHEATERS[route])  # (where the agent runs in this process)
    row = run_world(WorldTask(name, "friction", SEED, record_regret=False, n_particles=200, run_seed=11))
    assert not row["crashed"], row.get("traceback")
    return row


@pytest.mark.parametrize("route", ["seed", "scene", "gc"])
def test_a_cheater_in_its_own_process_finds_no_truth(route):
    row = _run(route)
    assert row["conclusion"].startswith("friction red_block -1.00"), row["conclusion"]  # it found nothing
    assert not row["success"]


def test_the_agent_is_not_given_the_world_seed():
    row = _run("seed")
    assert row["agent_seed"] != SEED and row["run_seed"] == 11


@pytest.mark.parametrize("route", ["node", "foreign"])
def test_a_cheater_that_asks_the_bus_is_refused_and_not_graded(route):
    row = _run(route)
    assert not row["success"]
    assert row["conclusion"].startswith("friction red_block -1.00"), row["conclusion"]
    if route == "node":  # its own node holds the lab's keys only: refused, and the refusal reaches the grader
        assert row["cheated"] and any(r.startswith("sim/oracle as lab") for r in row["refusals"]), row
        assert row.get("truth_value") is None  # not graded


def test_a_cheater_posing_as_the_oracle_is_not_believed():
    row = _run("spoof")
    assert row["cheated"] and any(r.startswith("offer of sim/oracle as lab") for r in row["refusals"]), row
    assert not row["success"] and row.get("truth_value") is None


def test_an_unrelated_process_cannot_read_a_launched_graphs_truth():
    """The issue's route 5 as it was found: a sim_bench graph launched on ipc, and another process (no keys)
    joining it to call sim/oracle."""
    from loopylab.actuation.graphs import sim_bench_graph
    from loopylab.lab.bench import Bench

    spec = sim_bench_graph(seed=SEED, url=f"ipc://cheat-{uuid.uuid4().hex[:8]}")
    spec.nodes = [n.__class__(**{**n.__dict__, "process": False}) for n in spec.nodes]  # threads: quicker
    with Bench(spec) as bench:
        assert bench.oracle()["red_block"]["friction"] > 0  # the owner (the grader) may
        assert cheaters.foreign_oracle(spec.url, timeout=3.0) is None


# `loopylab run` is sealed the same way: the bench and the grade here, the agent in a process of its own


def _run_cli(route: str, tmp_path) -> dict:
    from loopylab.lab.commands import run_investigation

    return run_investigation(
        "estimate friction of red_block within 0.10", SEED, cheaters.agent_name(route), out=tmp_path, live=False
    )


@pytest.mark.parametrize("route", ["seed", "gc"])
def test_loopylab_run_gives_a_cheater_no_truth(route, tmp_path):
    """On the old code the agent ran in the bench's process (gc found the bench, whose oracle answered)."""
    summary = _run_cli(route, tmp_path)
    assert summary["conclusion"].startswith("friction red_block -1.00"), summary["conclusion"]
    assert summary["success"] is False and summary["run_seed"] is not None


def test_loopylab_run_does_not_grade_a_cheater_refused_by_the_bus(tmp_path):
    summary = _run_cli("node", tmp_path)
    assert summary["cheated"] and any(r.startswith("sim/oracle as lab") for r in summary["refusals"]), summary
    assert summary["success"] is False and "truth" not in summary


def test_a_cheater_that_finds_the_seed_from_the_scene_gets_a_world_that_is_not_the_graded_one():
    """The perceived scene (positions, sizes, colours) identifies the world's seed by search; on the old code the
    seed's world was the graded world, so its hidden properties were the truth. The world builder now draws
    them from a stream keyed by its own secret: the cheater finds the layout, not the properties."""
    from loopylab.world.scene import scene_from_seed

    row = _run("search")
    public = scene_from_seed(SEED).object("red_block").friction
    answer = float(row["conclusion"].split()[2])
    assert answer == round(public, 2), row["conclusion"]  # the search found the seed's public world...
    assert row["truth_value"] != public  # ...which is not the graded one (on the old code it was: 0.883)
    assert row["error"] > cheaters.TRUTH_EPS  # so the route gave no truth (a success by chance is no route)


def test_the_search_finds_the_seed_of_a_perceived_scene():
    """The cheater itself works: the perceived scene of a public world gives back its seed."""
    from loopylab.lab.investigation import grammar_scene
    from loopylab.world.scene import scene_from_seed

    found = cheaters.search_seed(grammar_scene(scene_from_seed(2_000_007).perceived()))
    assert found is not None and found[0] == 2_000_007


def test_a_cheater_asking_for_the_world_builders_secret_gets_none(monkeypatch):
    """With the evaluator's secret in its environment, the agent's process has neither the variable nor leave to
    resolve the builder's secret (sim/secret.py): the seed it finds rebuilds nothing."""
    from loopylab.sim import secret

    monkeypatch.setenv(secret.ENV, "the evaluators own")
    row = _run("secret")
    assert row["conclusion"].startswith("friction red_block -1.00"), row["conclusion"]
    assert not row["success"]
