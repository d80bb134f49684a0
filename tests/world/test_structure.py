"""Hidden structure: worlds of a model-identification question draw which model is true, from their own stream."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.world.scene import ANISO_RATIO, FRICTION_RANGE, SceneSpec, scene_from_seed, with_structure


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**7))
def test_structure_is_drawn_for_the_subject_alone_and_within_the_worlds_ranges(seed):
    plain = scene_from_seed(seed)
    world = with_structure(plain, "friction_model")
    assert with_structure(plain, "friction_model") == world  # deterministic
    assert scene_from_seed(seed) == plain  # the seeded world itself is untouched
    for o, p in zip(world.objects, plain.objects):
        if o.label != "red_block":
            assert o == p
    red = world.object("red_block")
    if red.friction_axes is None:
        assert red == plain.object("red_block")  # isotropic: the seeded block as it is
        return
    lo, hi = min(red.friction_axes), max(red.friction_axes)
    assert hi == 1.0 and ANISO_RATIO[0] - 1e-3 <= lo <= ANISO_RATIO[1] + 1e-3
    for f in (red.friction * lo, red.friction * hi):
        assert FRICTION_RANGE[0] - 2e-3 <= f <= FRICTION_RANGE[1]


def test_about_half_the_worlds_are_direction_dependent():
    n = sum(
        with_structure(scene_from_seed(s), "friction_model").object("red_block").friction_axes is not None
        for s in range(200)
    )
    assert 70 <= n <= 130  # binomial(200, 0.5): outside this, 1 in 10^4


def test_the_structure_is_hidden_and_survives_toml():
    world = next(
        w for s in range(20) if (w := with_structure(scene_from_seed(s), "friction_model")).objects[0].friction_axes
    )
    assert SceneSpec.from_toml(world.to_toml()) == world
    assert world.perceived().objects[0].friction_axes is None
    assert "friction_axes" not in scene_from_seed(3).to_toml()  # the other kinds' worlds are byte-identical


def test_unknown_structures_and_bad_factors_are_refused():
    with pytest.raises(ValueError, match="unknown structure"):
        with_structure(scene_from_seed(1), "sticky")
    spec = scene_from_seed(1).to_dict()
    spec["objects"][0]["friction_axes"] = [1.0, 3.0]
    with pytest.raises(ValueError, match="friction_axes"):
        SceneSpec.from_dict(spec)
    assert math.isfinite(scene_from_seed(1).objects[0].friction)


def test_a_secret_keys_the_structure_too():
    from loopylab.world.scene import scene_from_seed, with_structure

    public = [with_structure(scene_from_seed(s), "friction_model").objects[0].friction_axes for s in range(40)]
    sealed = [
        with_structure(scene_from_seed(s, secret="k"), "friction_model", secret="k").objects[0].friction_axes
        for s in range(40)
    ]
    assert public != sealed and 8 <= sum(a is None for a in sealed) <= 32


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10**7), st.integers(2, 4), st.sampled_from(["panda", "so101"]))
def test_a_sliders_world_has_two_objects_that_slide_and_is_otherwise_the_seeds(seed, n, robot):
    """ "sliders" (rank by friction): two objects at least are no ball; where the seed drew fewer, its first balls
    are cylinders of the same size, place and hidden properties; a world that had two is the seed's as it is."""
    plain = scene_from_seed(seed, n, robot)
    world = with_structure(plain, "sliders")
    assert sum(o.shape != "sphere" for o in world.objects) >= 2
    if sum(o.shape != "sphere" for o in plain.objects) >= 2:
        assert world == plain
    for o, p in zip(world.objects, plain.objects):
        if o.shape != p.shape:
            assert (p.shape, o.shape) == ("sphere", "cylinder") and o.label == p.label.replace("_ball", "_cylinder")
        assert (o.size, o.position, o.mass, o.friction, o.restitution) == (
            p.size,
            p.position,
            p.mass,
            p.friction,
            p.restitution,
        )
