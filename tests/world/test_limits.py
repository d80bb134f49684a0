"""The gate's pure limits (`loopylab.world.limits`): property tests of `SafetyLimits.filter` on a toy arm,
and the strict [gate] config table."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.world.config import ConfigError
from loopylab.world.limits import GateConfig, SafetyLimits

N = 3
WS_MIN, WS_MAX = np.array([-0.95, -0.95, 0.0]), np.array([0.95, 0.95, 1.0])


def planar_fk(q):  # a toy 3-link arm: the workspace check needs some FK
    a = np.cumsum(q)
    return np.array([0.35 * np.cos(a).sum(), 0.35 * np.sin(a).sum(), 0.5 + 0.1 * q[2]])


def make_limits(mode="clamp"):
    return SafetyLimits(
        lower=np.array([-1.5, -1.0, -2.0]),
        upper=np.array([1.5, 2.0, 2.0]),
        velocity=np.array([1.0, 2.0, 0.5]),
        acceleration=np.array([20.0, 30.0, 10.0]),
        effort=np.array([10.0, 10.0, 5.0]),
        max_step=0.2,
        dt=0.01,
        workspace_min=WS_MIN,
        workspace_max=WS_MAX,
        fk=planar_fk,
        mode=mode,
    )


finite = st.floats(-5, 5, allow_nan=False)
targets = st.lists(
    st.one_of(
        st.lists(finite, min_size=N, max_size=N), st.lists(st.sampled_from([np.nan, np.inf]), min_size=N, max_size=N)
    ),
    min_size=1,
    max_size=40,
)


pauses = st.lists(st.one_of(st.none(), st.lists(st.floats(-0.3, 0.3), min_size=N, max_size=N)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(targets, st.sampled_from(["clamp", "reject"]), st.floats(0.0, 1.0), pauses)
def test_nothing_outside_the_limits_ever_passes(seq, mode, track, moves):
    """For any target sequence, every command let through respects position, step, velocity,
    acceleration and workspace limits relative to the previous command and the measured state; also
    when the stream pauses and the arm is moved meanwhile (a sim reset, a push)."""
    lim = make_limits(mode)
    x = np.array([0.0, 0.8, 0.0])  # measured position: follows the commands partially
    prev = prev_vel = None
    for k, t in enumerate(seq):
        move = moves[k] if k < len(moves) else None
        if move is not None:  # a pause, in which something moved the arm
            x = x + np.asarray(move)
        cmd, iv = lim.filter(t, x, paused=move is not None)
        if any(i.kind == "resync" for i in iv):  # the stream restarts at rest where the arm is, sent or not
            prev, prev_vel = x.copy(), np.zeros(N)
        if cmd is None:  # nothing sent: the arm comes to rest at the last command
            prev_vel = None if prev is None else np.zeros(N)
            continue
        if prev is None:
            prev, prev_vel = x.copy(), np.zeros(N)
        assert lim.check(cmd, prev, prev_vel, x) == []
        prev_vel, prev = (cmd - prev) / lim.dt, cmd
        x = x + track * (cmd - x)


def _stream_to(lim, goal, x, steps=40):
    """A minimum-jerk stream from x to goal, the arm following each command exactly."""
    s = np.linspace(0.0, 1.0, steps)
    for k in range(steps):
        t = x + (goal - x) * (10 * s[k] ** 3 - 15 * s[k] ** 4 + 6 * s[k] ** 5)
        cmd, iv = lim.filter(t, t if k == 0 else lim.last)
        assert iv == []
    return lim.last.copy()


def test_an_arm_moved_while_the_stream_paused_restarts_the_stream_where_it_is():
    """A sim reset puts the arm at home, here 0.05 rad from where the last stream left it: less than max_step,
    so the old check (arm far from the last command) did not see it. The gate kept the old history, clamped
    the new stream and commanded the arm back towards the old pose."""
    x0 = np.array([0.0, 0.8, 0.0])
    end = x0 + [0.05, 0.0, 0.0]
    home = end - [0.05, 0.0, 0.0]
    lim = make_limits()
    assert np.allclose(_stream_to(lim, end, x0), end)
    cmd, iv = lim.filter(home, home, paused=True)
    assert [i.kind for i in iv] == ["resync"] and "paused" in iv[0].detail and np.allclose(cmd, home)
    # the same position mid-stream (no pause) is the stream's own lag: no resync, the limits apply
    lim = make_limits()
    _stream_to(lim, end, x0)
    cmd, iv = lim.filter(home, home, paused=False)
    assert "resync" not in [i.kind for i in iv] and not np.allclose(cmd, home)
    # an arm that settled where the stream left it, within the tolerance, keeps the stream's history
    lim = make_limits()
    _stream_to(lim, end, x0)
    sagged = end - [0.0, 0.005, 0.0]
    cmd, iv = lim.filter(end, sagged, paused=True)
    assert iv == [] and np.allclose(cmd, end)


def test_clamp_reports_and_reject_refuses():
    x = np.array([0.0, 0.8, 0.0])
    cmd, iv = make_limits("clamp").filter([1.0, 0.8, 0.0], x)
    assert cmd is not None and abs(cmd[0]) <= 0.2 and {i.kind for i in iv} >= {"step", "velocity"}
    cmd, iv = make_limits("reject").filter([1.0, 0.8, 0.0], x)
    assert cmd is None and iv
    cmd, iv = make_limits().filter([0.0, 0.3, 0.0], [0.0, 0.3, 0.0])  # nearly straight: beyond the box
    assert cmd is None and iv[-1].kind == "workspace"
    cmd, iv = make_limits().filter(x, x, effort=[0.0, 11.0, 0.0])
    assert cmd is None and iv[0].kind == "effort"
    cmd, iv = make_limits().filter([0.0, 0.0], x)
    assert cmd is None and iv[0].kind == "invalid"


def test_clamping_scales_the_whole_step_so_the_joints_keep_their_proportions():
    lim = make_limits("clamp")
    x = np.array([0.0, 0.8, 0.0])
    assert lim.filter(x, x)[0] is not None  # the stream starts at rest at x
    want = np.array([0.5, 0.25, 0.05])  # far more than one step's acceleration allows
    cmd, iv = lim.filter(x + want, x)
    assert any(i.kind == "acceleration" for i in iv)
    step = cmd - x
    assert np.linalg.norm(step) > 0 and np.allclose(step / np.linalg.norm(step), want / np.linalg.norm(want))


def test_a_refused_target_ends_the_stream_and_the_next_starts_from_rest():
    lim = make_limits("reject")
    x = np.array([0.0, 0.8, 0.0])
    q = x.copy()
    for _ in range(25):  # accelerate joint 0 to 0.5 rad/s within the limits
        q = q + np.array([min(0.005, lim.last_vel[0] * lim.dt + 0.0019 if lim.last_vel is not None else 0.0019), 0, 0])
        assert lim.filter(q, q)[0] is not None
    assert lim.last_vel[0] > 0.15
    assert lim.filter(q + [1.0, 0.0, 0.0], q)[0] is None  # refused: nothing is sent, the arm stops at q
    assert lim.filter(q, q)[0] is not None  # holding q is a stream from rest, not a hard brake


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-0.9, 0.9), min_size=N, max_size=N),
    st.lists(st.floats(0.1, 3.0), min_size=N, max_size=N),
    st.floats(0.3, 1.0),
)
def test_a_clamped_stream_stops_where_its_target_stopped(goal_offset, speed, track):
    """Each joint's target moves towards its goal at its own speed (often faster than the gate allows, so
    the stream is clamped and lags behind) and stops there, as a teleoperated leader arm would. The
    commands reach every goal and pass it by at most the stopping distance of the speed the joint had
    when its target stopped (v²/2a, plus a tick's worth of acceleration) — not, as a lagging stream did
    before the braking bound, by that much more again."""
    lim = make_limits("clamp")
    lim.fk = None  # this is about the joint-space profile, not the box
    x = np.array([0.0, 0.5, 0.0])
    goal = np.clip(x + np.array(goal_offset), lim.lower, lim.upper)
    way = np.sign(goal - x)
    t, v_stop, far = x.copy(), np.zeros(N), x.copy()
    stopped = np.zeros(N, bool)
    for _ in range(1500):
        t = np.where(way * (t + way * np.array(speed) * lim.dt - goal) >= 0, goal, t + way * np.array(speed) * lim.dt)
        cmd, _ = lim.filter(t, x)
        assert cmd is not None
        now = (t == goal) & ~stopped
        v_stop[now], stopped = np.abs(lim.last_vel[now]), stopped | now
        far = np.where(way * (cmd - far) > 0, cmd, far)
        x = x + track * (cmd - x)
        if stopped.all() and np.array_equal(cmd, goal) and not lim.last_vel.any():
            break  # at rest on every goal with the target still: the rest of the run would repeat this tick
    delta = lim.acceleration * lim.dt**2
    overshoot = way * (far - goal)
    assert np.all(overshoot <= v_stop**2 / (2 * lim.acceleration) + 3 * delta + 1e-9), (overshoot, v_stop)
    assert np.allclose(cmd, goal, atol=1e-6), (cmd, goal)


def test_braking_never_touches_a_stream_let_through_as_it_was():
    """A smooth stream within every limit passes unchanged, braking to its stop included."""
    lim = make_limits("clamp")
    x = np.array([0.0, 0.8, 0.0])
    s = np.linspace(0, 1, 121)
    profile = 10 * s**3 - 15 * s**4 + 6 * s**5  # minimum jerk, 1.2 s, 0.3 rad on joint 0
    for k in range(121):
        t = x + np.array([0.3 * profile[k], 0.0, 0.0])
        cmd, iv = lim.filter(t, t if k == 0 else lim.last)
        assert iv == [] and np.allclose(cmd, t)


# -- over the bus -----------------------------------------------------------------------------------------


def test_config_file_tightens_and_unknown_keys_fail(tmp_path):
    f = tmp_path / "gate.toml"
    f.write_text("[gate]\nmode = 'reject'\nmax_step = 0.1\n")
    cfg = GateConfig.from_toml(f)
    assert cfg.mode == "reject" and cfg.max_step == 0.1
    f.write_text("[gate]\nmax_stepp = 0.1\n")
    with pytest.raises(ConfigError, match=r"\[gate\]: unknown keys \['max_stepp'\]"):
        GateConfig.from_toml(f)
