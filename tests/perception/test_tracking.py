"""Tracks: filtering, restart on a jump, LOST after silence, REACQUIRED with timestamps."""

import numpy as np

from loopylab.perception.geometry import make_T
from loopylab.perception.tracking import LOST, TRACKING, Measurement, Tracker, TrackerConfig

S = 1_000_000_000


def meas(t_s, xyz, sigma=0.002):
    return Measurement(int(t_s * S), make_T(t=xyz), np.diag([sigma**2] * 3 + [0.01] * 3))


def test_static_object_filter_shrinks_uncertainty_and_averages_noise():
    rng = np.random.default_rng(0)
    tr = Tracker(TrackerConfig(pos_process=0.003))  # a slow drift allowance: strong smoothing
    truth = np.array([0.5, 0, 0.025])
    raw_err, filt_err = [], []
    for i in range(60):
        m = meas(i * 0.1, truth + rng.normal(0, 0.002, 3))
        t = tr.update("a", m)
        if i >= 20:
            raw_err.append(np.linalg.norm(m.T[:3, 3] - truth))
            filt_err.append(np.linalg.norm(t.T[:3, 3] - truth))
    assert np.mean(filt_err) < 0.6 * np.mean(raw_err)
    assert np.sqrt(t.covariance[0, 0]) < 0.0015  # below one measurement's 2 mm
    assert t.restarts == 0 and t.updates == 60


def test_a_push_restarts_the_track_instead_of_lagging():
    tr = Tracker()
    for i in range(10):
        tr.update("a", meas(i * 0.1, [0.5, 0, 0.025]))
    t = tr.update("a", meas(1.0, [0.6, 0, 0.025]))
    assert t.restarts == 1
    assert np.allclose(t.T[:3, 3], [0.6, 0, 0.025])


def test_lost_then_reacquired_with_timestamps():
    tr = Tracker(TrackerConfig(lost_after_s=0.5))
    tr.update("a", meas(0.0, [0.5, 0, 0.025]))
    tr.update("a", meas(0.1, [0.5, 0, 0.025]))
    assert tr.tick(int(0.5 * S)) == []
    lost = tr.tick(int(0.7 * S))
    assert [t.label for t in lost] == ["a"] and lost[0].state == LOST and lost[0].lost_since_ns == int(0.7 * S)
    assert tr.tracked() == []
    t = tr.update("a", meas(2.0, [0.3, 0.1, 0.025]))  # put back elsewhere while unseen
    assert t.state == TRACKING and t.reacquired == 1 and t.lost_since_ns == 0
    assert np.allclose(t.T[:3, 3], [0.3, 0.1, 0.025])  # starts afresh, no blending with the old pose
    assert t.first_seen_ns == 0 and t.last_seen_ns == 2 * S
    assert t.summary()["state"] == "tracking"


def test_fused_measurement_needs_enough_fresh_frames_and_keeps_a_floor():
    tr = Tracker()
    for i in range(5):
        tr.update("a", meas(i, [0.5, 0, 0.025]))
    assert tr.fused("a", after_ns=3 * S, n=3) is None  # only one frame after t=3 s
    floor = np.diag([1e-6] * 3 + [0] * 3)
    m, n = tr.fused("a", after_ns=0, n=4, floor=floor)
    assert n == 4
    assert np.isclose(m.covariance[0, 0], 0.002**2 / 4 + 1e-6)
    assert tr.fused("nothing") is None
