import pytest

from loopylab.lab.twin import Twin, TwinPool
from loopylab.world.protocols import G
from loopylab.world.scene import scene_from_seed

SCENE = scene_from_seed(2, n_objects=2)
LABEL = SCENE.objects[0].label
PUSH = {"object": LABEL, "direction": "+x", "distance": 0.05, "speed": 0.05}


@pytest.fixture(scope="module")
def twin():
    t = Twin(SCENE.perceived())
    yield t
    t.close()


def test_push_force_reveals_mu_m_g_and_heavier_needs_more(twin):
    forces = []
    for mass in (0.1, 0.4):
        m = twin.predict("push", PUSH, {LABEL: {"mass": mass, "friction": 0.5}})
        assert m["force_mean_N"] == pytest.approx(0.5 * mass * G, rel=0.1)
        assert m["moved_m"] == pytest.approx(0.05, abs=0.01)
        forces.append(m["force_mean_N"])
    assert forces[1] > 3 * forces[0]


def test_strike_slide_reveals_friction(twin):
    for mu in (0.3, 0.7):
        m = twin.predict("strike", {"object": LABEL, "direction": "+y", "speed": 0.4}, {LABEL: {"friction": mu}})
        assert m["launch_speed_mps"] == pytest.approx(0.4, rel=0.05)
        assert m["slide_m"] == pytest.approx(m["launch_speed_mps"] ** 2 / (2 * mu * G), rel=0.2)


def test_weigh_and_drop(twin):
    assert twin.predict("weigh", {"object": LABEL}, {LABEL: {"mass": 0.33}})["mass_kg"] == pytest.approx(0.33)
    lo = twin.predict("drop", {"object": LABEL, "height": 0.1}, {LABEL: {"restitution": 0.2}})["bounce_m"]
    hi = twin.predict("drop", {"object": LABEL, "height": 0.1}, {LABEL: {"restitution": 0.7}})["bounce_m"]
    assert hi > lo + 0.01


def test_reused_twin_repeats_itself_and_unknowns_fail_clearly(twin):
    a = twin.predict("push", PUSH, {LABEL: {"mass": 0.2, "friction": 0.4}})
    twin.predict("drop", {"object": LABEL, "height": 0.05}, {LABEL: {"restitution": 0.5}})
    b = twin.predict("push", PUSH, {LABEL: {"mass": 0.2, "friction": 0.4}})
    assert b["force_mean_N"] == pytest.approx(a["force_mean_N"], rel=0.02)
    with pytest.raises(KeyError):
        twin.predict("push", dict(PUSH, object="nope"), {})
    with pytest.raises(ValueError, match="cannot predict"):
        twin.predict("juggle", {}, {})


def test_pool_matches_one_process():
    params = [{LABEL: {"mass": m, "friction": 0.5}} for m in (0.1, 0.2, 0.3)]
    single = Twin(SCENE)
    expect = [single.predict("weigh", {"object": LABEL}, prm)["mass_kg"] for prm in params]
    single.close()
    with TwinPool(workers=2) as pool:
        got = pool.predict_many(SCENE, "weigh", {"object": LABEL}, params)
    assert [g["mass_kg"] for g in got] == pytest.approx(expect)
