import numpy as np
import pytest

from loopylab.world.kinematics import Kinematics, Unreachable
from loopylab.world.robots import robot_spec


@pytest.fixture(scope="module", params=["panda", "kuka_iiwa", "xarm6", "so101"])
def kin(request):
    rs = robot_spec(request.param)
    k = Kinematics(rs.urdf, rs.ee_link, list(rs.arm_joints), seed=1)
    yield rs, k
    k.close()


def test_ik_lands_within_1mm_on_reachable_random_poses(kin):
    rs, k = kin
    rng = np.random.default_rng(0)
    lo, hi = k.limits.lower, k.limits.upper
    home = np.asarray(rs.home)
    for _ in range(10):
        # reachable by construction: the pose of a random configuration near home
        q_true = np.clip(home + rng.uniform(-0.4, 0.4, k.n), lo, hi)
        pos, orn = k.fk(q_true)
        q = k.ik(pos, orn, q0=home)
        fp, fo = k.fk(q)
        assert np.linalg.norm(fp - pos) < 1e-3
        assert np.all(q >= lo - 1e-9) and np.all(q <= hi + 1e-9)


def test_unreachable_fails_clearly(kin):
    rs, k = kin
    with pytest.raises(Unreachable, match="cannot reach position .* best miss"):
        k.ik([3.0, 0.0, 0.5], None, q0=rs.home, restarts=2)


def test_jacobian_matches_finite_differences(kin):
    rs, k = kin
    q = np.asarray(rs.home, float)
    J = k.jacobian(q)
    eps = 1e-4
    for j in range(k.n):
        dq = np.zeros(k.n)
        dq[j] = eps
        num = (k.fk(q + dq)[0] - k.fk(q - dq)[0]) / (2 * eps)
        assert np.allclose(J[:3, j], num, atol=1e-3)


def test_bad_urdf_and_link_are_reported():
    with pytest.raises(ValueError, match="cannot load URDF"):
        Kinematics("/nonexistent.urdf", "tool")
    rs = robot_spec("panda")
    with pytest.raises(ValueError, match="no link 'hand_of_god'"):
        Kinematics(rs.urdf, "hand_of_god")
