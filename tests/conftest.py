"""Suite-wide settings and shared benches.

Hypothesis runs without a per-example deadline: the suite must pass on a loaded runner
(scripts/test-under-load.sh), where a deadline measures the machine, not the code (an example of
tests/world/test_config.py that takes 0.05 ms took 665 ms under load and failed the run). Slow code is the
business of benchmarks/ and of pytest-timeout, not of hypothesis.

`served_bench`: a sealed sim bench (a Panda, the sealed worlds of graphs/world.secret) offered to other processes
(lab.bench.serve_bench), for `loopylab run ... *served_bench.cli_args()` (`--attach`) and `run_world(task,
bench=served_bench.bench)`; module-scoped, because an idle bench still ticks (~6 % of a core). Each run resets it
to its own world (sim/reset rebuilds the world and its noise streams)."""

import pytest
from hypothesis import settings

settings.register_profile("loopylab", deadline=None)
settings.load_profile("loopylab")


@pytest.fixture(scope="module")
def served_bench(tmp_path_factory):
    from loopylab.lab.bench import serve_bench
    from loopylab.sim.secret import SEALED

    keys = tmp_path_factory.mktemp("bench") / "bench.keys"
    with serve_bench(keys, robot="panda", seed=0, world_secret=SEALED) as served:
        yield served
