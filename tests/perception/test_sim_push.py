"""The lab's push experiment in the simulator, measured through perception: SimArm renders the overhead
camera (mocap off), the perception node turns images into poses, and the displacement it measures
agrees with the simulator's ground truth within the uncertainty it reports."""

import numpy as np
import pytest

from loopylab.bus import ObjectPoses
from loopylab.perception.displacement import DisplacementProbe

sim_scene = pytest.importorskip("loopylab.world.scene", reason="needs the simulator package")


@pytest.fixture
def bench(tmp_path):
    from loopylab.lab.bench import sim_bench

    spec = sim_scene.scene_from_seed(3, n_objects=1)
    # TinyRenderer draws the Panda's meshes slowly on a CPU (~0.5 s a frame): one camera at 2 Hz keeps the
    # lockstep sim moving; the gate gets patience to match.
    spec.cameras = [c for c in spec.cameras if c.name == "overhead"]
    spec.cameras[0].hz = 2.0
    path = tmp_path / "scene.toml"
    path.write_text(spec.to_toml())
    # the objects reach the perception node (and the skills) on the sim's sim/scene
    with sim_bench(
        scene=str(path),
        cameras=True,
        mocap=False,
        gate={"heartbeat_ms": 3000},
        perception={"cameras": ["overhead"], "hz": 20},
    ) as bench:
        yield bench.node


def test_push_displacement_through_perception_matches_ground_truth(bench):
    lab = bench

    def execute(skill, **args):
        r = lab.call("skills/execute", {"skill": skill, "args": args}, timeout=90)
        assert r["ok"], r["error"]
        return r

    park = [0.2, 0.0, 0.45]  # arm folded back: the overhead camera sees the workspace
    execute("move_to", position=park)
    objects = lab.subscribe("perception/objects", ObjectPoses, mode="latest")
    msg = objects.wait_for(lambda m: m.get("red_block") is not None, timeout=20)
    assert msg.frame_id == "base"  # from the perception node: the sim's mocap is off
    probe = DisplacementProbe(lab, frames=2, timeout=15)
    truth0 = np.array(lab.call("sim/oracle", {}, role="grader")["objects"]["red_block"]["position"])
    before = probe.measure("red_block")
    assert np.linalg.norm(before.position - truth0) < 0.005

    execute("push", object="red_block", direction="+x", distance=0.04, speed=0.08)
    execute("move_to", position=park)
    truth1 = np.array(lab.call("sim/oracle", {}, role="grader")["objects"]["red_block"]["position"])
    d = probe.displacement("red_block", before)
    true = (truth1 - truth0)[:2]
    assert np.linalg.norm(true) > 0.02  # the push really moved it
    assert d.before.source == d.after.source == "perception"
    sigmas = np.sqrt(np.diag(d.covariance)[:2])
    assert np.all(np.abs(d.planar - true) < 3 * sigmas + 0.0005), (d.planar, true, sigmas)
    assert abs(d.moved_m - np.linalg.norm(true)) < 3 * d.sigma_m + 0.0005
    assert 0.0005 < d.sigma_m < 0.005
