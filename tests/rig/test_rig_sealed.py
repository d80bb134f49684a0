"""The rig as the world builder of a sealed world: the seed's graded world (the same the sim bench's sealed
node builds), resolved in the rig's process, and nothing it writes for the lab carries a hidden property."""

import pytest

from loopylab.rig.rig import Rig, RigConfig
from loopylab.sim.secret import AGENT_FLAG, SEALED, resolve
from loopylab.world.scene import SceneSpec, scene_from_seed, with_structure

SEED = 1_000_004


def _props(scene: SceneSpec) -> dict:
    return {o.label: (o.mass, o.friction, o.restitution, o.attached_to) for o in scene.objects}


def test_a_sealed_rig_builds_the_graded_world_and_writes_no_truth(tmp_path):
    rig = Rig(
        RigConfig(
            robot="so101",
            seed=SEED,
            n_objects=2,
            world_secret=SEALED,
            structure="attachment",
            cameras=[],
            out_dir=str(tmp_path),
        )
    ).start()
    try:
        secret = resolve(SEALED)
        graded = with_structure(scene_from_seed(SEED, 2, "so101", secret=secret), "attachment", secret=secret)
        public = scene_from_seed(SEED, 2, "so101")
        assert _props(rig.scene) == _props(graded)  # what the sim bench's sealed reset builds for this kind
        assert _props(rig.scene) != _props(public)  # not the world anyone can rebuild from the seed
        assert "known" not in rig.files and not (tmp_path / "known.toml").exists()
        bench = SceneSpec.from_toml(rig.files["scene"])  # what the lab's nodes are given
        assert bench.seed is None
        assert all(o.mass is None and o.friction is None and o.attached_to is None for o in bench.objects)
    finally:
        rig.stop()


def test_a_public_rig_writes_its_objects_truth_for_calibration(tmp_path):
    rig = Rig(RigConfig(robot="so101", seed=SEED, n_objects=1, cameras=[], out_dir=str(tmp_path))).start()
    try:
        assert _props(rig.scene) == _props(scene_from_seed(SEED, 1, "so101"))
        assert "mass = " in (tmp_path / "known.toml").read_text()
    finally:
        rig.stop()


def test_an_agents_process_may_not_build_a_sealed_rig(tmp_path, monkeypatch):
    monkeypatch.setenv(AGENT_FLAG, "1")
    with pytest.raises(PermissionError, match="world builder"):
        Rig(RigConfig(robot="so101", seed=SEED, world_secret=SEALED, cameras=[], out_dir=str(tmp_path)))
