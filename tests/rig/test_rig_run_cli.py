"""`loopylab run` on the hardware graph (graphs/so101.toml) against the emulated SO-101 rig: the person at the
bench is prompted (Enter), the camera measures the scene, the agent (in its own process) weighs, and the answer
is the lab's: nothing asks for sim/oracle or sim/reset, the graph has no simulator node, and nothing is graded."""

import json
import uuid
from pathlib import Path

import typer
from typer.testing import CliRunner

from loopylab.bus import Node
from loopylab.bus.node import Node as BusNode
from loopylab.lab.commands import register
from loopylab.lab.rig_bench import HardwareBench
from loopylab.rig.rig import Rig, RigConfig
from loopylab.world import notebook as g
from tests.rig.test_hardware_path import WORLD

ROOT = Path(__file__).resolve().parents[2]


def test_run_on_the_emulated_rig_answers_without_oracle_or_grade(tmp_path, monkeypatch):
    called, benches = [], []
    real_call, real_init = BusNode.call, HardwareBench.__init__

    def spy_call(self, name, *a, **kw):  # every service call this process makes (the agent's go through here too)
        called.append(name)
        return real_call(self, name, *a, **kw)

    def spy_init(self, graph, *a, **kw):
        benches.append(graph)
        real_init(self, graph, *a, **kw)

    monkeypatch.setattr(BusNode, "call", spy_call)
    monkeypatch.setattr(HardwareBench, "__init__", spy_init)

    cam_bus = f"inproc://rig-{uuid.uuid4().hex}"
    cam_node = Node("rig", cam_bus)
    rig = Rig(RigConfig(robot="so101", seed=WORLD, n_objects=1, out_dir=str(tmp_path / "rig")), node=cam_node).start()
    app = typer.Typer()
    register(app)
    out = tmp_path / "report"
    args = ["run", "-q", "estimate mass of red_block within 10%", "--graph", str(ROOT / "graphs" / "so101.toml")]
    args += ["--bus", f"inproc://{uuid.uuid4().hex}", "--scene", str(rig.files["scene"]), "--out", str(out)]
    for s in rig.overrides() + [f'camera.source="bus:overhead@{cam_bus}"']:
        args += ["--set", s]
    try:
        res = CliRunner().invoke(app, args, input="\n")  # Enter: the rig's builder has placed the objects
        truth = rig.truth()["red_block"]["mass"]  # the test knows it (from the emulator); the lab never did
    finally:
        rig.stop()
        cam_node.close()
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "Place on the bench" in res.output and "Not graded" in res.output and "the answer is the lab's" in res.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["graded"] is False and "truth" not in summary and summary["experiments"] >= 1
    assert summary["run_seed"] != WORLD
    sections = g.policy_sections(g.parse((out / "notebook.txt").read_text()))  # the audit lines aside
    assert sections[-1].kind == "conclusion" and "weigh" in (out / "notebook.txt").read_text()
    (answer,) = sections[-1].body.answers
    assert (answer.quantity, answer.object) == ("mass", "red_block")
    assert abs(answer.value - truth) / truth <= 0.10, (answer, truth)
    (spec,) = benches
    assert not [n.run for n in spec.nodes if n.run.startswith("loopylab.sim")]
    assert "skills/execute" in called and not {"sim/oracle", "sim/reset"} & set(called)
