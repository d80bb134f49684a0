"""`loopylab skill` on a running graph: signed directions in every form, --bus, and one line when there is no
graph or no skills node. A real service on a real (inproc) bus answers with the request it got."""

import json
import shutil
import tempfile
import uuid

import pytest
import typer
from typer.testing import CliRunner

from loopylab.actuation.cli import register
from loopylab.bus import Node
from loopylab.bus.directory import stop_local

app = typer.Typer()


@app.callback()
def _root():
    pass


register(app)
runner = CliRunner()


@pytest.fixture
def runtime(monkeypatch):
    """A registry of running graphs of our own: the graphs other tests launch are not ours to find."""
    d = tempfile.mkdtemp(prefix="ll")
    monkeypatch.setenv("LOOPYLAB_RUNTIME_DIR", d)
    monkeypatch.delenv("LOOPYLAB_BUS", raising=False)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def skills_url(runtime):
    """A graph whose skills/execute answers with the skill and arguments it was asked for."""
    url = f"inproc://{uuid.uuid4().hex}"
    node = Node("skills", url)
    node.service("skills/execute", lambda req: {"ok": True, "measurements": {}, "asked": req})
    yield url
    node.close()
    stop_local(url)


def _asked(*argv: str, url: str) -> dict:
    result = runner.invoke(app, ["skill", "--bus", url, "--json", *argv])  # options first: `--` ends them
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["asked"]


@pytest.mark.parametrize(
    "argv, direction, distance",
    [
        (["push", "red_block", "-x", "0.1"], "-x", 0.1),
        (["push", "red_block", "+y", "0.2"], "+y", 0.2),
        (["push", "red_block", "-y"], "-y", 0.1),
        (["push", "red_block", "--direction", "-x", "0.07"], "-x", 0.07),
        (["push", "red_block", "-d", "+y"], "+y", 0.1),
        (["push", "red_block", "--", "-y", "0.03"], "-y", 0.03),
        (["push", "red_block", "x", "0.1"], "+x", 0.1),
        (["push", "red_block", "0.04"], "+x", 0.04),
    ],
)
def test_push_takes_signed_directions_in_every_form(skills_url, argv, direction, distance):
    asked = _asked(*argv, url=skills_url)
    assert asked["skill"] == "push"
    assert asked["args"]["direction"] == direction and asked["args"]["distance"] == pytest.approx(distance)


def test_negative_numbers_are_arguments_too(skills_url):
    asked = _asked("place", "red_block", "0.55", "-0.10", url=skills_url)
    assert asked["args"]["position"] == pytest.approx([0.55, -0.10])
    asked = _asked("strike", "red_block", "-x", "--speed", "0.2", url=skills_url)
    assert asked["args"] == {"object": "red_block", "direction": "-x", "speed": 0.2}


@pytest.mark.parametrize(
    "argv, says",
    [
        (["push", "red_block", "up"], "push direction must be one of +x, -x, +y, -y, not 'up'"),
        (["push", "red_block", "--direction", "-x", "+y"], "one argument too many"),
    ],
)
def test_a_bad_direction_is_named(skills_url, argv, says):
    result = runner.invoke(app, ["skill", *argv, "--bus", skills_url])
    assert result.exit_code != 0 and says in result.output
    assert "Traceback" not in result.output


def test_the_running_graph_is_found_without_bus(skills_url):
    from loopylab.bus import registry

    entry = registry.register("bench", skills_url)
    try:
        result = runner.invoke(app, ["skill", "weigh", "red_block", "--json"])
    finally:
        registry.unregister(entry)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["asked"] == {
        "skill": "weigh",
        "args": {"object": "red_block"},
    }


def test_no_graph_fails_at_once_with_one_line(runtime):
    result = runner.invoke(app, ["skill", "weigh", "red_block"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: no graph is running: start one with `loopylab launch GRAPH.toml` (e.g. graphs/sim_bench.toml), "
        "or pass --bus URL"
    ]


def test_a_graph_without_skills_fails_fast_naming_its_nodes(runtime):
    url = f"inproc://{uuid.uuid4().hex}"
    with Node("camera", url):
        result = runner.invoke(app, ["skill", "weigh", "red_block", "--bus", url, "--wait", "0.5"])
    stop_local(url)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert f"the graph at {url} offers no skills/execute after 0.5 s (its nodes: camera)" in line
