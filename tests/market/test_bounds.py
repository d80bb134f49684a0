"""The market's hard physical bounds as properties: whatever the numbers, a message passes exactly when it is
physically possible (finite, wrenches within a wrist sensor's range, joints within their URDF limits, stamps
not in the future and never going back)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from loopylab.market.verify import bounds
from loopylab.market.verify.decode import leaves

NOW = 1_800_000_000 * 10**9
T0 = 1_700_000_000 * 10**9
PANDA = [f"panda_joint{i}" for i in range(1, 8)]


def check(topic: str, msgs: list[dict]) -> tuple[bool, str]:
    rows = [(m.get("stamp_ns", T0 + i), m) for i, m in enumerate(msgs)]
    return bounds.check({topic: rows}, {topic: [leaves(m) for m in msgs]}, now_ns=NOW)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=3, max_size=3))
def test_a_wrench_passes_exactly_when_finite_and_within_range(force):
    ok, detail = check("wrist/wrench", [{"stamp_ns": T0, "force": force, "torque": [0.0, 0.0, 0.0]}])
    assert ok == all(math.isfinite(f) and abs(f) <= bounds.MAX_FORCE_N for f in force), detail


@given(st.integers(0, 6), st.floats(-10, 10))
def test_a_panda_joint_passes_exactly_within_its_urdf_limits(j, q):
    lim = bounds.known_joints()[PANDA[j]]
    pos = [0.0, 0.0, 0.0, -1.5, 0.0, 1.5, 0.0]
    pos[j] = q
    ok, detail = check("arm/joint_state", [{"stamp_ns": T0, "name": PANDA, "position": pos}])
    inside = lim.lower - bounds.POSITION_MARGIN <= q <= lim.upper + bounds.POSITION_MARGIN
    assert ok == inside, detail


@given(st.lists(st.integers(T0, NOW + 10 * bounds.FUTURE_SLACK_NS), min_size=2, max_size=20))
def test_stamps_pass_exactly_when_not_in_the_future_and_never_back(stamps):
    ok, detail = check("wrist/wrench", [{"stamp_ns": s, "force": [0.0] * 3, "torque": [0.0] * 3} for s in stamps])
    expected = all(s <= NOW + bounds.FUTURE_SLACK_NS for s in stamps) and all(
        b >= a for a, b in itertools.pairwise(stamps)
    )
    assert ok == expected, detail


@given(st.floats(-1, 1), st.floats(-2000, 2000))
def test_a_gripper_passes_exactly_within_an_opening_and_force_a_gripper_has(opening, force):
    msg = {"stamp_ns": T0, "position": opening, "effort": force, "object_detected": False, "ready": True}
    ok, detail = check("gripper/state", [msg])
    assert ok == (-0.01 <= opening <= bounds.MAX_OPENING_M and abs(force) <= bounds.MAX_GRIP_N), detail


def test_object_poses_on_the_bench_with_unit_quaternions():
    def poses(position, orientation):
        obj = {"id": 0, "label": "red_block", "position": position, "orientation": orientation}
        return check("perception/objects", [{"stamp_ns": T0, "objects": [obj]}])

    assert poses([0.5, 0.0, 0.02], [0, 0, 0, 1])[0]
    assert "m from the base" in poses([5e3, 0.0, 0.02], [0, 0, 0, 1])[1]
    assert "not a unit quaternion" in poses([0.5, 0.0, 0.02], [0, 0, 0, 3])[1]
