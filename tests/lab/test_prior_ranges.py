"""The lab's prior is the range the robot's own worlds draw from (world.scene.hidden_ranges): a desk arm's
objects weigh 0.05-0.3 kg, and a belief that allows 0.6 kg spends its first experiments ruling that out."""

import numpy as np
import pytest

from loopylab.lab.agents import prior_hypothesis
from loopylab.lab.beliefs import DEFAULT_PRIOR, Posterior, prior_ranges
from loopylab.lab.forward import Axes, ForwardModel, InlineTwins
from loopylab.world import notebook as g
from loopylab.world.scene import SMALL_ARMS, scene_from_seed
from loopylab.world.splits import seeds


@pytest.mark.parametrize("robot", ["panda", "xarm6", *SMALL_ARMS])
def test_every_seeded_object_lies_inside_its_robots_prior(robot):
    prior = prior_ranges(robot)
    for s in seeds("dev", 40):
        for o in scene_from_seed(s, robot=robot).objects:
            for p in ("mass", "friction", "restitution"):
                lo, hi = prior[p]
                assert lo <= getattr(o, p) <= hi, (s, o.label, p)


def test_the_desk_arms_prior_is_their_worlds_lighter_range():
    heaviest = max(o.mass for s in seeds("dev", 200) for o in scene_from_seed(s, robot="so101").objects)
    assert 0.25 < heaviest <= prior_ranges("so101")["mass"][1] < DEFAULT_PRIOR["mass"][1]
    assert prior_ranges(None) == prior_ranges("panda") == DEFAULT_PRIOR
    q = g.Question("mass", ("red_block",), 0.10)
    mass = next(r for r in prior_hypothesis(q, "so101").ranges if r.param == "mass")
    assert (mass.lo, mass.hi) == prior_ranges("so101")["mass"]


@pytest.mark.parametrize("robot", ["so101", "panda"])
def test_a_posterior_without_a_hypothesis_starts_from_its_arms_prior(robot):
    spec = scene_from_seed(1000001, n_objects=1, robot=robot).perceived()
    q = g.Question("mass", ("red_block",), 0.10)
    post = Posterior(q, ForwardModel(spec, InlineTwins(), Axes(points=5)), None, n_particles=800, seed=3)
    m = post.objects["red_block"].natural("mass")
    lo, hi = prior_ranges(robot)["mass"]
    assert m.min() >= lo * 0.999 and m.max() <= hi * 1.001
    assert np.quantile(m, 0.95) > lo + 0.6 * (hi - lo)  # it spans the range, not a corner of it
