"""Protocol analysis functions shared by skills and twin (world/protocols.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from loopylab.perception.geometry import quat_to_R
from loopylab.world import protocols as P

finite = st.floats(-1.0, 1.0, allow_nan=False)


def _wrench(point_force_pairs, sensor):
    """[force, torque about `sensor`] of point forces."""
    f = sum(np.asarray(F, float) for _, F in point_force_pairs)
    t = sum(np.cross(np.asarray(x, float) - sensor, F) for x, F in point_force_pairs)
    return np.concatenate([f, t])


@settings(max_examples=200, deadline=None)
@given(
    offset=st.tuples(*[st.floats(-0.01, 0.01)] * 3),
    yaw=st.floats(-np.pi, np.pi),
    mass=st.floats(0.05, 1.0),
    centre=st.tuples(finite, finite, st.floats(0.0, 0.5)),
    sensor_off=st.tuples(*[st.floats(-0.05, 0.05)] * 2 + [st.floats(0.05, 0.2)]),
    hand=st.tuples(*[st.floats(-0.05, 0.05)] * 3),
)
def test_com_offset_is_recovered_from_the_wrist_torque(offset, yaw, mass, centre, sensor_off, hand):
    q = np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
    centre = np.asarray(centre)
    com = centre + quat_to_R(q) @ np.asarray(offset)  # offset is in the object's frame
    sensor = centre + np.asarray(sensor_off)
    hand_weight = (sensor + np.asarray(hand), (0.0, 0.0, -0.9 * P.G))
    base = np.tile(_wrench([hand_weight], sensor), (5, 1))
    held = np.tile(_wrench([hand_weight, (com, (0.0, 0.0, -mass * P.G))], sensor), (5, 1))
    out = P.analyze_com(base, held, sensor, centre, q)
    assert out["com_x_m"] == pytest.approx(offset[0], abs=1e-9)
    assert out["com_y_m"] == pytest.approx(offset[1], abs=1e-9)  # the vertical offset does not leak in


@settings(max_examples=200, deadline=None)
@given(
    offset=st.tuples(*[st.floats(-0.01, 0.01)] * 3),
    yaw=st.floats(-np.pi, np.pi),
    tilt=st.floats(np.radians(15), np.radians(60)),
    axis=st.floats(-np.pi, np.pi),
    mass=st.floats(0.05, 1.0),
    hand=st.tuples(*[st.floats(-0.05, 0.05)] * 3),
)
def test_holding_the_object_tilted_too_reveals_its_vertical_offset(offset, yaw, tilt, axis, mass, hand):
    """Level, the weight's torque shows only the horizontal offset; tilted about a horizontal axis, the
    vertical one gets a lever too, and both holds together give all three (in the level hold's face frame)."""
    level = np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
    turn = np.array([np.cos(axis), np.sin(axis), 0.0]) * np.sin(tilt / 2)
    tilted = np.array([*turn, np.cos(tilt / 2)])
    tilted_q = (Rotation.from_quat(tilted) * Rotation.from_quat(level)).as_quat()
    readings = []
    for q, centre in ((level, np.array([0.5, 0.1, 0.25])), (tilted_q, np.array([0.5, 0.12, 0.24]))):
        sensor = centre + quat_to_R(q) @ np.array([0.0, 0.0, 0.1])  # the sensor turns with the hand
        hand_weight = (sensor + quat_to_R(q) @ np.asarray(hand), (0.0, 0.0, -0.9 * P.G))
        com = centre + quat_to_R(q) @ np.asarray(offset)
        base = np.tile(_wrench([hand_weight], sensor), (4, 1))
        held = np.tile(_wrench([hand_weight, (com, (0.0, 0.0, -mass * P.G))], sensor), (4, 1))
        readings.append((base, held, sensor, centre, q))
    out = P.analyze_com(*readings[0], tilted=readings[1])
    assert (out["com_x_m"], out["com_y_m"], out["com_z_m"]) == pytest.approx(offset, abs=1e-9)
    # a "tilted" hold that is not (less than TILT_MIN_RAD away) cannot resolve z: none is reported
    flat = P.analyze_com(*readings[0], tilted=readings[0])
    assert "com_z_m" not in flat and flat["com_x_m"] == pytest.approx(offset[0], abs=1e-9)
    # torque samples scattered by 0.05 N·m (4 a hold): even for 1 kg the vertical offset's standard error is then
    # over COM_Z_MAX_SD and it is left out; x and y are still reported
    rng = np.random.default_rng(0)
    noisy = [
        tuple(w + np.hstack([np.zeros((4, 3)), 0.05 * rng.standard_normal((4, 3))]) for w in r[:2]) + r[2:]
        for r in readings
    ]
    out = P.analyze_com(*noisy[0], tilted=noisy[1])
    assert "com_z_m" not in out and "com_x_m" in out


@pytest.mark.parametrize("roll, axes", [(np.pi / 2, (2, 0)), (-np.pi / 2, (0, 2)), (np.pi, (1, 0))])
def test_com_offset_of_a_tumbled_block_is_in_the_frame_of_the_face_it_stands_on(roll, axes):
    """A block rolled about its x axis stands on another face: its offset is reported in the frame of its
    faces as they lie now (right-handed, z up), the frame in which the twin's upright block reproduces it.
    Rolled by +90 deg its y axis points up, so the frame is (body z, body x); by -90 deg y points down:
    (body x, body z); upside down: (body y, body x)."""
    q = np.array([np.sin(roll / 2), 0.0, 0.0, np.cos(roll / 2)])
    offset = np.array([0.004, -0.003, 0.002])
    centre, sensor = np.array([0.5, 0.1, 0.2]), np.array([0.5, 0.1, 0.3])
    held = np.tile(_wrench([(centre + quat_to_R(q) @ offset, (0.0, 0.0, -2.0))], sensor), (3, 1))
    out = P.analyze_com(np.zeros((3, 6)), held, sensor, centre, q)
    assert (out["com_x_m"], out["com_y_m"]) == pytest.approx((offset[axes[0]], offset[axes[1]]), abs=1e-12)


def test_weigh_reports_the_standard_error_of_its_two_holds():
    """The weigh's sigma is the white noise's standard error of the held-minus-empty difference, nothing
    fixed on top (what drifts between the holds is the noise model's floor)."""
    rng = np.random.default_rng(1)
    base = 5.0 + 0.1 * rng.standard_normal(400)
    held = 5.0 - 0.3 * P.G + 0.1 * rng.standard_normal(100)
    out = P.analyze_weigh(base, held)
    assert out["mass_kg"] == pytest.approx(0.3, abs=4 * out["mass_sigma_kg"])
    assert out["mass_sigma_kg"] == pytest.approx(0.1 * np.sqrt(1 / 400 + 1 / 100) / P.G, rel=0.1)
    assert P.analyze_weigh([5.0] * 10, [2.0] * 10)["mass_sigma_kg"] == 0.0


def test_com_offset_needs_a_resolvable_weight():
    z = np.zeros((4, 6))
    light = z.copy()
    light[:, 2] = -0.05  # 5 g: below the default 0.2 N
    assert P.analyze_com(z, light, [0, 0, 0.3], [0, 0, 0], [0, 0, 0, 1]) == {}
    nan = z.copy()
    nan[:, 2] = np.nan
    assert P.analyze_com(z, nan, [0, 0, 0.3], [0, 0, 0], [0, 0, 0, 1]) == {}


def _bounce_trace(h, e, rest, settle_dz=0.0, hz=120.0, noise=0.0, seed=0):
    """Centre height of a block released h above its landing height `rest`: free fall, one rebound of
    e^2 h (velocity e times the impact speed), then rest at rest + settle_dz (e.g. leaning on a neighbour)."""
    dt, g = 1.0 / hz, P.G
    v_in = np.sqrt(2 * g * h)
    t_fall, t_up = v_in / g, 2 * e * v_in / g
    t = np.arange(0.0, t_fall + t_up + 0.5, dt)
    z = np.where(t < t_fall, rest + h - 0.5 * g * t**2, 0.0)
    s = t - t_fall
    up = (t >= t_fall) & (s < t_up)
    z[up] = rest + e * v_in * s[up] - 0.5 * g * s[up] ** 2
    after = s >= t_up
    z[after] = rest + settle_dz * np.clip((s[after] - t_up) / 0.1, 0, 1)
    return t, z + np.random.default_rng(seed).normal(0, noise, len(z)) if noise else z


@settings(max_examples=200, deadline=None)
@given(h=st.floats(0.05, 0.3), e=st.floats(0.2, 0.9), rest=st.floats(0.015, 0.05), settle=st.floats(-0.005, 0.015))
def test_drop_bounce_is_the_rebound_from_the_impact(h, e, rest, settle):
    # where the block comes to rest afterwards (flat, or leaning up to 15 mm higher) does not matter
    t, z = _bounce_trace(h, e, rest, settle)
    v = np.sqrt(2 * P.G * e * e * h)  # rebound speed
    # sampled at 120 Hz, the impact and the apex are seen within one sample's travel
    err = v / 120.0 + 0.5 * P.G / 120.0**2
    assert P.analyze_drop(t, z, 0.0, 0.05)["bounce_m"] == pytest.approx(e * e * h, abs=err)


def test_drop_bounce_ignores_a_block_that_ends_leaning_higher_than_it_landed():
    # the rest-based reading of an earlier version saw 0.001 m here (seed 1011: the block bounced 12 mm,
    # tumbled and came to rest leaning on a cylinder 10 mm higher than it had landed)
    t, z = _bounce_trace(0.2, 0.25, 0.0235, settle_dz=0.010)
    # within one 120 Hz sample's travel of the 0.5 m/s rebound
    assert P.analyze_drop(t, z, 0.0, 0.047)["bounce_m"] == pytest.approx(0.25**2 * 0.2, abs=0.0045)


def test_drop_bounce_of_a_dead_landing_is_within_the_noise():
    t, z = _bounce_trace(0.2, 0.0, 0.03, noise=0.0005, seed=3)
    assert P.analyze_drop(t, z, 0.0005, 0.06)["bounce_m"] < 0.003


@pytest.mark.parametrize("z", [[], [0.1], [0.1, float("nan"), 0.02]])
def test_drop_bounce_of_a_useless_track_is_zero(z):
    assert P.analyze_drop(np.arange(len(z)) / 120, z, 0.0, 0.05)["bounce_m"] == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60), st.floats(0.0, 0.45))
def test_a_trimmed_mean_lies_within_its_values_and_ignores_their_order(xs, cut):
    x = np.array(xs)
    m = P.trimmed_mean(x, cut)
    assert x.min() - 1e-9 <= m <= x.max() + 1e-9
    assert m == pytest.approx(P.trimmed_mean(x[::-1], cut), abs=1e-9)
    k = int(cut * len(x))
    if len(x) > 2 * k and k:  # its extremes no longer count: pushing the largest up changes nothing
        y = np.sort(x)
        y[-1] += 1e6
        assert m == pytest.approx(P.trimmed_mean(y, cut), abs=1e-6)
