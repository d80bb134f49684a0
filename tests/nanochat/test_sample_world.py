"""`loopylab policy sample` (nanochat/agent.run_one) investigates the sealed world of its seed, as `loopylab eval`
does: the seed rebuilds the layout, not the hidden properties (else the `search` cheater of lab/cheaters.py, which
finds the seed from the layout, reads the truth)."""

import pytest

from loopylab.nanochat.agent import sealed_bench
from loopylab.world.scene import scene_from_seed

SEED = 2000003  # a test-split world (its truth is read here to check the seal, never tuned on)


def test_the_policy_samples_the_sealed_world_of_its_seed():
    public = scene_from_seed(SEED)
    with sealed_bench("panda", SEED) as bench:
        scene = bench.reset(SEED)
        truth = bench.oracle()
    assert [o.label for o in scene.objects] == [o.label for o in public.objects]
    for o, seen in zip(public.objects, scene.objects):
        assert seen.position[:2] == pytest.approx(o.position[:2], abs=0.01)  # the same layout
        assert truth[o.label]["mass"] != pytest.approx(o.mass, rel=1e-3)  # other hidden properties
        assert truth[o.label]["friction"] != pytest.approx(o.friction, abs=1e-3)
