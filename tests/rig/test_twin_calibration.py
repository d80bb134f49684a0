"""`lab calibrate-twin` on the emulated SO-101: the fitted figures land near the ones the emulator uses."""

from loopylab.lab import twin_fit
from loopylab.lab.rig_bench import HardwareBench
from loopylab.lab.twin_calibrate import Plan, calibrate
from loopylab.rig.physics import TRACK_TAU_S
from loopylab.rig.rig import FT_NOISE_N, Rig, RigConfig
from tests.rig.test_hardware_path import TOLERANCE_KG, WORLD, hardware_graph


def test_calibrate_twin_on_the_emulated_rig_recovers_the_ft300_noise(tmp_path):
    rig = Rig(RigConfig(robot="so101", seed=WORLD, n_objects=1, cameras=[], out_dir=str(tmp_path))).start()
    try:
        known = twin_fit.load_objects(rig.files["known"])  # the rig's truth, as a maker's kitchen scale gives it
        assert [o.label for o in known] == ["red_block"] and known[0].mass == rig.truth()["red_block"]["mass"]
        with HardwareBench(hardware_graph("so101", rig), rig.files["scene"], place=lambda s: None, wait_s=60) as b:
            cal = calibrate(b, known, Plan(weighs=2, still_s=2.0, pushes=0), rig="so101", say=lambda s: None)
    finally:
        rig.stop()
    # the FT300's noise: the emulator adds FT_NOISE_N per axis; the reading is quantised to 0.01 N (sd 0.003 N
    # more in quadrature) and a loaded machine may re-send a reading, so allow 20 % beyond the fit's own interval
    assert cal.force_samples >= 50
    assert cal.force_noise_lo * 0.8 <= FT_NOISE_N <= cal.force_noise_hi * 1.2, cal
    # the weigh: two weighs of a known mass, each within the skill's tolerance of the truth
    assert cal.weighs == 2 and abs(cal.weigh_bias_kg) < TOLERANCE_KG and cal.weigh_sd_kg < TOLERANCE_KG
    assert cal.weigh_sd_lo <= cal.weigh_sd_kg <= cal.weigh_sd_hi
    # the sigma the weigh reports itself (~3 g here, from the spread of its FT300 readings) is recorded
    assert 0 < cal.weigh_reported_kg < TOLERANCE_KG
    # the joints trail the gate's commands: at least by the emulated servos' own response (30 ms; the fit gave
    # 36 ms at load 75, the port and the driver's cycle adding the rest), by less than a second on any machine
    assert cal.tracking_lag_s is not None and 0.8 * TRACK_TAU_S <= cal.tracking_lag_s < 1.0
    path = cal.save(tmp_path / "so101.twin.toml")
    assert twin_fit.TwinCalibration.load(path) == cal


def test_calibrate_twin_pushes_the_known_blocks_with_the_camera_watching(tmp_path):
    """With the camera and perception running, the calibration pushes each block of known mass and friction where
    the lab's grid offers a push (placing it first where it is boxed in), and fits how far the pushes scatter about
    the twin's prediction at the truth; a ball (it rolls: no friction to read) is not pushed."""
    import uuid

    from loopylab.bus import Node
    from loopylab.bus.launch import apply_overrides, load_graph
    from loopylab.world.splits import seeds
    from tests.rig.test_hardware_path import ROOT

    (world,) = seeds("train", 1)  # a block and a ball, the block boxed in until placed
    cam_bus = f"inproc://rig-{uuid.uuid4().hex}"
    cam_node = Node("rig", cam_bus)
    rig = Rig(RigConfig(robot="so101", seed=world, n_objects=2, out_dir=str(tmp_path)), node=cam_node).start()
    spec = load_graph(ROOT / "graphs" / "so101.toml").with_bus(f"inproc://{uuid.uuid4().hex}")
    spec = apply_overrides(spec, rig.overrides() + [f'camera.source="bus:overhead@{cam_bus}"'])
    said: list[str] = []
    try:
        known = twin_fit.load_objects(rig.files["known"])
        with HardwareBench(spec, rig.files["scene"], place=rig.place, wait_s=60) as bench:
            bench.park()
            cal = calibrate(bench, known, Plan(weighs=1, still_s=1.0, pushes=2), rig="so101", say=said.append)
    finally:
        rig.stop()
        cam_node.close()
    pushes = [s for s in said if s.startswith("push ") and "twin at the truth" in s]
    assert len(pushes) == 2 and all(s.startswith("push red_block") for s in pushes), said
    assert cal.pushes == 2 and cal.push_noise_lo <= cal.push_noise_factor <= cal.push_noise_hi
    assert cal.push_noise_factor < 4.0, said  # the rig's pushes land near the twin's prediction at the truth
