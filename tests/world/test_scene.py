import numpy as np
import pytest

from loopylab.world.config import ConfigError
from loopylab.world.scene import HIDDEN, PLACEMENT, SceneSpec, scene_from_seed


def test_seed_gives_the_same_scene_and_different_seeds_differ():
    assert scene_from_seed(7) == scene_from_seed(7)
    assert scene_from_seed(7) != scene_from_seed(8)


def test_default_scene_has_red_block():
    assert "red_block" in scene_from_seed(0).labels


@pytest.mark.parametrize("robot", list(PLACEMENT))
def test_objects_are_apart_in_range_and_on_the_table(robot):
    for seed in range(20):
        s = scene_from_seed(seed, robot=robot)
        assert 1 <= len(s.objects) <= 4
        for i, a in enumerate(s.objects):
            assert 0.03 <= a.size <= 0.07
            assert a.position[2] == pytest.approx(a.size / 2)
            assert 0.05 <= a.mass <= 0.6 and 0.2 <= a.friction <= 0.9 and 0.1 <= a.restitution <= 0.8
            for b in s.objects[i + 1 :]:
                assert np.hypot(a.position[0] - b.position[0], a.position[1] - b.position[1]) > (a.size + b.size) / 2


def test_toml_round_trip_and_perceived_strips_hidden_properties():
    s = scene_from_seed(3, n_objects=4)
    assert SceneSpec.from_toml(s.to_toml()) == s
    seen = s.perceived()
    for o in seen.objects:
        assert all(getattr(o, k) is None for k in HIDDEN)
    assert [o.position for o in seen.objects] == [o.position for o in s.objects]
    assert "mass" not in seen.to_toml()
    back = SceneSpec.from_toml(seen.to_toml())
    assert back.objects[0].mass is None


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="n_objects"):
        scene_from_seed(0, n_objects=5)
    with pytest.raises(ValueError, match="unknown robot"):
        scene_from_seed(0, robot="ur5")
    with pytest.raises(ValueError, match="shape"):
        SceneSpec.from_dict({"objects": [{"label": "x", "shape": "cone", "size": 0.05}]})
    with pytest.raises(ConfigError, match=r"scene: unknown keys \['robots'\]"):
        SceneSpec.from_dict({"robots": "panda"})
    with pytest.raises(ConfigError, match=r"scene: objects\[0\]: unknown keys \['colour'\]"):
        SceneSpec.from_dict({"objects": [{"label": "x", "shape": "cube", "size": 0.05, "colour": "red"}]})
    with pytest.raises(KeyError, match="no object"):
        scene_from_seed(0).object("pink_elephant")


def test_a_secret_keeps_the_layout_and_redraws_the_hidden_properties():
    """The world builder's secret (world/scene.py): what a camera sees is the seed's, what is hidden is the
    secret's; the same secret gives the same world, another secret another one."""
    for seed in range(30):
        public, sealed = scene_from_seed(seed), scene_from_seed(seed, secret="s1")
        assert public.perceived() == sealed.perceived()  # layout, sizes, colours: identical
        assert sealed == scene_from_seed(seed, secret=b"s1")  # reproducible (str or bytes alike)
        for a, b, c in zip(public.objects, sealed.objects, scene_from_seed(seed, secret="s2").objects, strict=True):
            assert a.mass != b.mass and a.friction != b.friction and b.friction != c.friction
            assert 0.05 <= b.mass <= 0.6 and 0.2 <= b.friction <= 0.9 and 0.1 <= b.restitution <= 0.8
    with pytest.raises(ValueError, match="must not be empty"):
        scene_from_seed(0, secret="")


def test_hidden_properties_under_a_secret_are_drawn_as_the_public_ones():
    """The keyed stream draws from the same distributions: the worlds' statistics do not change."""
    pub = [scene_from_seed(s).objects[0] for s in range(400)]
    sec = [scene_from_seed(s, secret="x").objects[0] for s in range(400)]
    for key in ("friction", "restitution"):
        assert abs(np.mean([getattr(o, key) for o in pub]) - np.mean([getattr(o, key) for o in sec])) < 0.04
    assert abs(np.median([o.mass for o in pub]) - np.median([o.mass for o in sec])) < 0.04
