"""The twin's rig calibration: the estimators on synthetic data with known figures, the file, and the hook the
belief engine reads it through."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from loopylab.lab import twin_fit
from loopylab.lab.beliefs import NoiseModel, Posterior
from loopylab.lab.cli import make_app
from loopylab.lab.forward import Axes
from loopylab.world.config import ConfigError
from loopylab.world.notebook import Question

LEVEL = 0.999  # the examples are derandomized: a fixed set, each of which must cover the truth
PROPS = settings(max_examples=40, derandomize=True, deadline=None)


@PROPS
@given(
    sd=st.floats(0.0005, 0.02),
    bias=st.floats(-0.01, 0.01),
    n=st.integers(8, 200),
    seed=st.integers(0, 2**31),
)
def test_offset_recovers_bias_and_sd_within_its_interval(sd, bias, n, seed):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.05, 0.6, n)
    b, s = twin_fit.offset(truth + bias + rng.normal(0, sd, n), truth, LEVEL)
    assert b.covers(bias) and s.covers(sd)
    assert b.lo < b.value < b.hi and s.lo < s.value < s.hi and b.n == s.n == n


@PROPS
@given(sd=st.floats(0.005, 0.2), drift=st.floats(-0.5, 0.5), seed=st.integers(0, 2**31))
def test_noise_sd_of_a_drifting_stream_with_repeated_readings(sd, drift, seed):
    rng = np.random.default_rng(seed)
    n = 400
    signal = np.linspace(0, drift, n)[:, None] + np.array([0.3, -0.2, 4.9])  # a slow drift of the wrench
    x = signal + rng.normal(0, sd, (n, 3))
    x = np.repeat(x, rng.integers(1, 3, n), axis=0)  # the stream re-sends some readings
    e = twin_fit.noise_sd(x, level=LEVEL)
    assert e.covers(sd) and e.n <= n


@PROPS
@given(lag=st.floats(0.0, 0.4), seed=st.integers(0, 2**31))
def test_tracking_lag_recovers_a_delay(lag, seed):
    rng = np.random.default_rng(seed)
    t_cmd = np.arange(0, 4, 0.01)
    cmd = np.c_[np.sin(1.7 * t_cmd), 0.5 * np.cos(0.9 * t_cmd)]
    t_meas = np.sort(rng.uniform(0, 4, 300))  # another clock, other rate
    meas = np.c_[np.sin(1.7 * (t_meas - lag)), 0.5 * np.cos(0.9 * (t_meas - lag))] + rng.normal(0, 0.002, (300, 2))
    assert twin_fit.tracking_lag(t_cmd, cmd, t_meas, meas) == pytest.approx(lag, abs=0.015)


def test_too_few_observations_are_refused():
    with pytest.raises(ValueError, match="two or more"):
        twin_fit.offset([0.1], [0.1])
    with pytest.raises(ValueError, match="distinct samples"):
        twin_fit.noise_sd(np.ones((100, 3)))  # a frozen stream is not a quiet sensor


def test_the_file_round_trips_and_is_loaded_strictly(tmp_path):
    cal = twin_fit.TwinCalibration(rig="so101", force_noise_N=0.03, weigh_sd_kg=0.001, weigh_bias_kg=0.002, weighs=3)
    path = cal.save(tmp_path / "so101.twin.toml")
    assert twin_fit.TwinCalibration.load(path) == cal
    path.write_text(path.read_text().replace("weighs =", "weihgs ="))
    with pytest.raises(ConfigError, match="weihgs"):
        twin_fit.TwinCalibration.load(path)
    with pytest.raises(ConfigError, match="no such twin calibration"):
        twin_fit.TwinCalibration.load(tmp_path / "absent.toml")
    assert twin_fit.default_path("graphs/so101.toml").as_posix() == "graphs/so101.twin.toml"


def test_known_objects_file(tmp_path):
    objs = [twin_fit.KnownObject("red_block", mass=0.12), twin_fit.KnownObject("blue_ball", 0.2, 0.4, 0.5)]
    p = tmp_path / "known.toml"
    p.write_text(twin_fit.objects_toml(objs))
    assert twin_fit.load_objects(p) == objs
    p.write_text('[[object]]\nlabel = "red_block"\nmass = -1\n')
    with pytest.raises(ConfigError, match="mass must be a positive number"):
        twin_fit.load_objects(p)
    p.write_text('[[object]]\nlabel = "red_block"\nmas = 0.1\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        twin_fit.load_objects(p)
    p.write_text("")
    with pytest.raises(ConfigError, match=r"no \[\[object\]\]"):
        twin_fit.load_objects(p)


def test_the_belief_engine_reads_the_fitted_figures_through_the_hook(tmp_path, monkeypatch):
    monkeypatch.delenv(twin_fit.ENV, raising=False)
    base = NoiseModel()
    assert twin_fit.calibrated(base) is base  # no calibration in use: the sim-fitted figures
    path = twin_fit.TwinCalibration(rig="so101", weigh_sd_kg=0.0012, weigh_bias_kg=0.0005, weighs=4).save(
        tmp_path / "c.toml"
    )
    twin_fit.use(path)
    try:
        noise = twin_fit.calibrated(NoiseModel())
        assert noise.floor["mass_kg"] == pytest.approx(math.hypot(0.0012, 0.0005))
        # the sigma the skill reports is added by the noise model itself: the floor holds only the rest
        quiet = twin_fit.TwinCalibration(weigh_sd_kg=0.0013, weigh_bias_kg=0.0, weigh_reported_kg=0.0005)
        assert quiet.noise_overrides()["floor"]["mass_kg"] == pytest.approx(0.0012)
        assert twin_fit.TwinCalibration(weigh_sd_kg=0.001, weigh_reported_kg=0.002).noise_overrides() == {
            "floor": {"mass_kg": 0.0}
        }
        assert noise.floor["force_mean_N"] == base.floor["force_mean_N"]  # figures it did not fit stay
        assert base.floor["mass_kg"] == NoiseModel().floor["mass_kg"] != noise.floor["mass_kg"]  # default untouched
        post = Posterior(Question("mass", ("red_block",), 0.1), SimpleNamespace(axes=Axes()), n_particles=10)
        assert post.noise.floor["mass_kg"] == noise.floor["mass_kg"]  # the posterior builds its model through it
    finally:
        twin_fit.use(None)
    assert twin_fit.active() is None


def test_the_cli_verb_is_registered_and_refuses_a_bad_objects_file(tmp_path, monkeypatch):
    monkeypatch.delenv(twin_fit.ENV, raising=False)
    bad = tmp_path / "known.toml"
    bad.write_text('[[object]]\nlabel = "red_block"\nmass = "heavy"\n')
    graph = tmp_path / "g.toml"
    graph.write_text('[graph]\nname = "g"\n')
    r = CliRunner().invoke(
        make_app(), ["lab", "calibrate-twin", "--graph", str(graph), "--objects", str(bad)], catch_exceptions=False
    )
    assert r.exit_code == 2 and "mass must be a positive number" in r.output
    r = CliRunner().invoke(make_app(), ["--twin-calibration", str(tmp_path / "none.toml"), "lab", "--help"])
    assert r.exit_code == 2 and "no such twin calibration" in r.output
