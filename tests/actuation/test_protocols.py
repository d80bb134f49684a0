"""Protocol analysis functions shared by skills and twin (actuation/protocols.py)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from actuation import protocols as P
from perception.geometry import quat_to_R

finite = st.floats(-1.0, 1.0, allow_nan=False)


def _wrench(point_force_pairs, sensor):
    """[force, torque about `sensor`] of point forces."""
    f = sum(np.asarray(F, float) for _, F in point_force_pairs)
    t = sum(np.cross(np.asarray(x, float) - sensor, F) for x, F in point_force_pairs)
    return np.concatenate([f, t])


@settings(max_examples=200, deadline=None)
@given(offset=st.tuples(*[st.floats(-0.01, 0.01)] * 3), yaw=st.floats(-np.pi, np.pi),
       mass=st.floats(0.05, 1.0), centre=st.tuples(finite, finite, st.floats(0.0, 0.5)),
       sensor_off=st.tuples(*[st.floats(-0.05, 0.05)] * 2 + [st.floats(0.05, 0.2)]),
       hand=st.tuples(*[st.floats(-0.05, 0.05)] * 3))
def test_com_offset_is_recovered_from_the_wrist_torque(offset, yaw, mass, centre, sensor_off, hand):
    q = np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
    centre = np.asarray(centre)
    com = centre + quat_to_R(q) @ np.asarray(offset)              # offset is in the object's frame
    sensor = centre + np.asarray(sensor_off)
    hand_weight = (sensor + np.asarray(hand), (0.0, 0.0, -0.9 * P.G))
    base = np.tile(_wrench([hand_weight], sensor), (5, 1))
    held = np.tile(_wrench([hand_weight, (com, (0.0, 0.0, -mass * P.G))], sensor), (5, 1))
    out = P.analyze_com(base, held, sensor, centre, q)
    assert out["com_x_m"] == pytest.approx(offset[0], abs=1e-9)
    assert out["com_y_m"] == pytest.approx(offset[1], abs=1e-9)   # the vertical offset does not leak in


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


def test_com_offset_needs_a_resolvable_weight():
    z = np.zeros((4, 6))
    light = z.copy()
    light[:, 2] = -0.05   # 5 g: below the default 0.2 N
    assert P.analyze_com(z, light, [0, 0, 0.3], [0, 0, 0], [0, 0, 0, 1]) == {}
    nan = z.copy()
    nan[:, 2] = np.nan
    assert P.analyze_com(z, nan, [0, 0, 0.3], [0, 0, 0], [0, 0, 0, 1]) == {}
