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


def test_a_noisier_force_sensor_widens_the_beliefs_force_sigma(tmp_path, monkeypatch):
    """The F/T noise fitted on a rig reaches the push's force sigma: as the mean of the readings in the grid's
    shortest push window, in quadrature with the sim-fitted floor; a noisier sensor, a wider belief."""
    monkeypatch.delenv(twin_fit.ENV, raising=False)
    question = Question("friction", ("red_block",), 0.05)
    pred = np.array([0.4])
    base = Posterior(question, SimpleNamespace(axes=Axes()), n_particles=10).noise.sigma("force_mean_N", pred)
    sigmas = []
    for sd in (0.01, 0.3):
        path = twin_fit.TwinCalibration(rig="so101", force_noise_N=sd, force_rate_hz=100.0).save(tmp_path / "c.toml")
        twin_fit.use(path)
        try:
            post = Posterior(question, SimpleNamespace(axes=Axes()), n_particles=10)
            sigmas.append(float(post.noise.sigma("force_mean_N", pred)[0]))
        finally:
            twin_fit.use(None)
    quiet, noisy = sigmas
    assert base[0] < quiet < noisy
    window = twin_fit.push_window_s()
    assert 0.1 < window < 1.0  # seconds: the steady share of a push at its fastest speed
    assert noisy**2 == pytest.approx(base[0] ** 2 + 0.3**2 / (100.0 * window))
    assert quiet**2 == pytest.approx(base[0] ** 2 + 0.01**2 / (100.0 * window))


def test_the_twins_pusher_trails_by_the_fitted_lag(tmp_path, monkeypatch):
    """With a rig's tracking lag in use the twin's pad follows the skill's path that much later: the force
    rises later along the path, and the steady force it reads is the same."""
    from loopylab.lab.twin import Twin
    from loopylab.world.scene import scene_from_seed

    monkeypatch.delenv(twin_fit.ENV, raising=False)
    scene = scene_from_seed(1_000_000, n_objects=1).perceived()
    args = {"object": "red_block", "direction": "+y", "distance": 0.1, "speed": 0.05}
    params = {"red_block": {"mass": 0.2, "friction": 0.5}}
    twin = Twin(scene)
    now = twin.predict("push", args, params)
    twin.close()
    path = twin_fit.TwinCalibration(rig="so101", tracking_lag_s=0.2).save(tmp_path / "c.toml")
    twin_fit.use(path)
    try:
        late = Twin(scene)
        assert late.lag_ticks == round(0.2 * late.hz)
        lagged = late.predict("push", args, params)
        late.close()
    finally:
        twin_fit.use(None)

    def first_contact(m):
        return int(np.argmax(np.asarray(m["force_profile_N"]) > 0.05))

    assert first_contact(lagged) > first_contact(now)
    assert lagged["force_mean_N"] == pytest.approx(now["force_mean_N"], rel=0.1)
    assert lagged["moved_m"] == pytest.approx(now["moved_m"], abs=0.003)  # the pad still goes the whole path


@pytest.mark.parametrize("k", [0.5, 1.0, 1.5, 3.0])
def test_the_push_noise_factor_recovers_how_much_wider_the_pushes_scatter(k):
    """Pushes whose log ratio to the twin scatters k times the model's per-push sigma (a Student-t, as the noise
    model's), plus the object's gain: the factor lands within its interval, near k. (A t5's squares scatter
    widely: with 40 pushes one draw in a few hundred is 45 % off, so the check takes many pushes, not few.)"""
    rng = np.random.default_rng(7)
    n = 3000
    sd = rng.uniform(0.03, 0.09, n)  # the model's sigma over its prediction, push by push (light and heavy)
    gain = 0.03
    r = k * sd * rng.standard_t(5, n) + gain * rng.standard_normal(n)
    est = twin_fit.push_noise_factor(r, sd, gain, 5.0)
    assert est.n == n and est.lo <= est.value <= est.hi
    assert est.value == pytest.approx(k, rel=0.1)
    assert twin_fit.push_noise_factor(2 * r, sd, 2 * gain, 5.0).value == pytest.approx(2 * est.value, rel=1e-9)


def test_the_push_noise_factor_refuses_too_few_pushes_and_keeps_a_calm_rigs_figures(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="two or more pushes"):
        twin_fit.push_noise_factor([0.1], [0.05], 0.03, 5.0)
    assert twin_fit.push_noise_factor([0.0, 0.0], [0.05, 0.05], 0.03, 5.0).value == 0.0  # no wider than the gain
    monkeypatch.delenv(twin_fit.ENV, raising=False)
    base = NoiseModel()
    for factor, widened in ((1.6, True), (0.7, False)):
        path = twin_fit.TwinCalibration(rig="so101", push_noise_factor=factor, pushes=12).save(tmp_path / "c.toml")
        assert twin_fit.TwinCalibration.load(path).push_noise_factor == factor
        twin_fit.use(path)
        try:
            noise = twin_fit.calibrated(NoiseModel())
        finally:
            twin_fit.use(None)
        k = factor if widened else 1.0  # a rig calmer than the sim keeps the sim's figures
        assert noise.floor["force_mean_N"] == pytest.approx(k * base.floor["force_mean_N"])
        assert noise.rel["force_mean_N"] == pytest.approx(k * base.rel["force_mean_N"])
        assert noise.floor["mass_kg"] == base.floor["mass_kg"] and noise.rel["moved_m"] == base.rel["moved_m"]
