"""Suite-wide settings and shared benches.

Hypothesis runs without a per-example deadline: the suite must pass on a loaded runner
(scripts/test-under-load.sh), where a deadline measures the machine, not the code (an example of
tests/world/test_config.py that takes 0.05 ms took 665 ms under load and failed the run). Slow code is the
business of benchmarks/ and of pytest-timeout, not of hypothesis.

Benches: starting one costs a second of CPU and, on a loaded machine, seconds of waiting; resetting one to
another world, a tenth of that. But an idle bench still ticks (~6 % of a core), so a shared one lives only while
tests use it:
- `world_bench`: a sealed sim bench (a Panda, the sealed worlds of graphs/world.secret) for `run_world(task,
  bench=world_bench)`, shared by consecutive tests that ask for it and closed after the last of them;
- `served_bench`: one offered to other processes (lab.bench.serve_bench) for `loopylab run ...
  *served_bench.cli_args()` (`--attach`), module-scoped.
Each run resets the bench to its own world (sim/reset rebuilds the world and its noise streams)."""

import pytest
from hypothesis import settings

settings.register_profile("loopylab", deadline=None)
settings.load_profile("loopylab")


class _SharedBench:
    bench = None

    def get(self):
        if self.bench is None:
            from loopylab.lab.bench import sim_bench
            from loopylab.sim.secret import SEALED

            self.bench = sim_bench(robot="panda", seed=0, world_secret=SEALED)
        return self.bench

    def close(self) -> None:
        if self.bench is not None:
            bench, self.bench = self.bench, None
            bench.close()


_shared = _SharedBench()


@pytest.fixture
def world_bench():
    return _shared.get()


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or "world_bench" not in getattr(nextitem, "fixturenames", ()):
        _shared.close()  # the next test does not use it: no idle ticking meanwhile


@pytest.fixture(scope="module")
def served_bench(tmp_path_factory):
    from loopylab.lab.bench import serve_bench
    from loopylab.sim.secret import SEALED

    keys = tmp_path_factory.mktemp("bench") / "bench.keys"
    with serve_bench(keys, robot="panda", seed=0, world_secret=SEALED) as served:
        yield served
