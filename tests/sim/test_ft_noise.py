"""The simulated wrist sensor's errors (sim/ft_noise.py): the FT 300-S datasheet's noise, a drifting zero, its
resolution, one stream per world; and the arm reads through it."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.sim.arm import ArmSim
from loopylab.sim.ft_noise import FT300, FTNoise, FTNoiseSpec, world_stream
from loopylab.sim.world import World
from loopylab.world.scene import scene_from_seed

ZERO = np.zeros(3)


def _readings(noise: FTNoise, n: int, period: float, t0: float = 0.0) -> np.ndarray:
    return np.array([np.concatenate(noise.sample(ZERO, ZERO, t0 + i * period, period)) for i in range(n)])


def test_white_noise_is_the_datasheets_at_100_hz():
    """Consecutive 100 Hz samples differ by the white noise alone (the zero barely moves in 10 ms): their
    difference has sd sqrt(2) x datasheet; 20 000 samples pin an sd to ~1 %."""
    w = _readings(FTNoise(FT300, np.random.default_rng(1)), 20_000, 0.01)
    sd = np.std(np.diff(w, axis=0), axis=0) / math.sqrt(2)
    expect = np.array([*FT300.force_sd, *FT300.torque_sd])
    assert sd == pytest.approx(expect, rel=0.05)


def test_a_faster_sample_is_noisier_by_the_square_root_of_its_rate():
    w = _readings(FTNoise(FT300, np.random.default_rng(2)), 20_000, 0.0025)  # 400 Hz
    sd = np.std(np.diff(w[:, :3], axis=0), axis=0) / math.sqrt(2)
    assert sd == pytest.approx(np.array(FT300.force_sd) * 2, rel=0.05)


def test_the_zero_drifts_slowly_and_averaging_cannot_remove_it():
    """Means of one second of samples, a minute apart, scatter by the drift's sd; a second's mean 0.1 s
    later is still the same zero (correlation time 30 s)."""
    noise = FTNoise(FT300, np.random.default_rng(3))
    means, near = [], []
    for k in range(400):
        a = _readings(noise, 100, 0.01, t0=k * 60.0)[:, 2].mean()
        b = _readings(noise, 100, 0.01, t0=k * 60.0 + 1.1)[:, 2].mean()
        means.append(a)
        near.append(b - a)
    drift = FT300.drift_ratio * FT300.force_sd[2]
    assert np.std(means) == pytest.approx(math.hypot(drift, FT300.force_sd[2] / 10), rel=0.15)
    # a second later the zero moved by drift * sqrt(2 (1 - exp(-1.1 / 30))) ~ 0.27 drift: less than the white part
    assert np.std(near) < 0.6 * np.std(means)


def test_readings_are_on_the_streams_resolution_and_exact_without_noise_left_in():
    noise = FTNoise(FT300, np.random.default_rng(4))
    f, t = noise.sample(np.array([1.23456, -9.81, 0.5]), np.array([0.01234, 0.0, -0.3]), 0.0, 1 / 120)
    assert np.allclose(f / 0.01, np.round(f / 0.01)) and np.allclose(t / 0.001, np.round(t / 0.001))
    quiet = FTNoise(FTNoiseSpec((0, 0, 0), (0, 0, 0)), np.random.default_rng(4))
    f, t = quiet.sample(np.array([1.23456, -9.81, 0.5]), np.array([0.01234, 0.0, -0.3]), 0.0, 1 / 120)
    assert f.tolist() == pytest.approx([1.23, -9.81, 0.5]) and t.tolist() == pytest.approx([0.012, 0.0, -0.3])


@settings(max_examples=50, deadline=None)
@given(t=st.lists(st.floats(0, 1e4), min_size=1, max_size=20), period=st.floats(1e-4, 1.0))
def test_any_clock_gives_finite_readings_even_one_that_goes_back(t, period):
    """A world reset restarts sim time: the zero then simply holds until time moves forward again."""
    noise = FTNoise(FT300, np.random.default_rng(5))
    for x in t:
        f, tq = noise.sample(ZERO, ZERO, x, period)
        assert np.all(np.isfinite(f)) and np.all(np.isfinite(tq))
        assert np.all(np.abs(noise.bias) < 10 * FT300.drift_ratio * max(FT300.force_sd))


def test_one_stream_per_world_the_same_every_time():
    a, b = scene_from_seed(11, 1), scene_from_seed(12, 1)
    assert world_stream(a).random(4).tolist() == world_stream(scene_from_seed(11, 1)).random(4).tolist()
    assert world_stream(a).random(4).tolist() != world_stream(b).random(4).tolist()
    unseeded = a.perceived()  # a scene without a seed (a grader's own scene) keys on its contents
    assert unseeded.seed is None
    assert world_stream(unseeded).random(4).tolist() == world_stream(a.perceived()).random(4).tolist()
    assert world_stream(unseeded).random(4).tolist() != world_stream(b.perceived()).random(4).tolist()


@pytest.fixture(scope="module")
def world():
    w = World(scene_from_seed(0, n_objects=1))
    yield w
    w.close()


def test_the_arm_reads_its_wrench_through_the_sensor(world):
    """Still in free air the exact wrench is the hand's weight; the sensed one scatters about it by the
    datasheet's noise (and its drifting zero)."""
    exact, noisy = ArmSim(world, ft_noise=None), ArmSim(world)
    true_f, _ = exact.wrench()
    reads = []
    for _ in range(200):
        noisy.step(2)
        reads.append(noisy.wrench()[0])
        assert exact.wrench()[0].tolist() == true_f.tolist()  # the exact sensor: the same every time
    reads = np.array(reads)
    assert np.std(reads[:, 2]) == pytest.approx(0.1 * math.sqrt(1.2), rel=0.15)  # 120 Hz samples
    assert abs(np.mean(reads[:, 2]) - true_f[2]) < 5 * FT300.drift_ratio * 0.1
    assert np.allclose(reads[:, 2] / 0.01, np.round(reads[:, 2] / 0.01))


def test_a_sealed_worlds_sensor_noise_is_keyed_by_the_builders_secret(world):
    """Whoever knows the seed rebuilds the public world's noise stream, not a sealed world's: there the wrist
    sensor's zero (and every sample after it) comes from the builder's secret, the same for the same secret."""
    public = FTNoise(FT300, world_stream(world.spec)).bias
    assert ArmSim(world).ft_noise.bias.tolist() == public.tolist()
    sealed = ArmSim(world, secret="the builders own").ft_noise.bias
    assert sealed.tolist() != public.tolist()
    assert ArmSim(world, secret="the builders own").ft_noise.bias.tolist() == sealed.tolist()
    assert ArmSim(world, secret="another").ft_noise.bias.tolist() != sealed.tolist()


def test_a_sealed_sim_nodes_mocap_noise_is_keyed_by_the_secret_too():
    """The sim node's mocap noise: the seed's stream in a public world, the secret's in a sealed one (and after a
    reset, which builds the new world with the same secret)."""
    import uuid

    from loopylab.bus import Node
    from loopylab.sim.node import run_sim_arm

    def first_noise(world_secret):
        node = Node("sim_arm", f"inproc://{uuid.uuid4().hex}")
        sim = run_sim_arm(node, seed=5, n_objects=1, cameras=False, world_secret=world_secret)
        try:
            draws = [sim._rng.normal(size=3).tolist()]
            sim._on_reset({"seed": 5, "n_objects": 1})
            return draws + [sim._rng.normal(size=3).tolist()]
        finally:
            sim.close()

    seed_stream = np.random.default_rng([5, 7]).normal(size=3).tolist()
    public, sealed = first_noise(None), first_noise("the builders own")
    assert public == [seed_stream, seed_stream]
    assert sealed[0] != seed_stream and sealed[1] == sealed[0]
