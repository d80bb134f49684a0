"""Suite-wide settings. Hypothesis runs without a per-example deadline: the suite must pass on a loaded runner
(scripts/test-under-load.sh), where a deadline measures the machine, not the code (an example of
tests/world/test_config.py that takes 0.05 ms took 665 ms under load and failed the run). Slow code is the
business of benchmarks/ and of pytest-timeout, not of hypothesis."""

from hypothesis import settings

settings.register_profile("loopylab", deadline=None)
settings.load_profile("loopylab")
