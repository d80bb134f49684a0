"""The belief engine's push noise (lab/beliefs.py: NoiseModel's force floor and rel, BIAS's force gain) against
pushes recorded on dev worlds (tests/lab/data/friction_pushes_dev.json: 63 eig pushes of 24 blocks, measured
against the twin at the world's true friction and mass, `scripts/calibrate_noise.py --notebooks`; the figures
were chosen on the 37 of dev 1000000-11, and the 26 of dev 1000012-23 came after). Too wide a
model made the expert's friction intervals hold the truth in 12 of 12 dev worlds and spend its whole budget."""

import importlib.util
import json
from pathlib import Path

import pytest

from loopylab.lab.beliefs import BIAS, NoiseModel

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("calibrate_noise", ROOT / "scripts" / "calibrate_noise.py")
calibrate_noise = importlib.util.module_from_spec(spec)
spec.loader.exec_module(calibrate_noise)

PUSHES = json.loads((Path(__file__).parent / "data" / "friction_pushes_dev.json").read_text())


def test_the_recorded_pushes_are_dev_worlds():
    from loopylab.world.splits import check_split

    check_split(sorted({p["seed"] for p in PUSHES["pushes"]}), "dev")


@pytest.mark.parametrize("which", ["tuned", "checked", "all"])
def test_the_push_noise_is_as_wide_as_the_recorded_dev_pushes_scatter(which):
    pushes = [p for p in PUSHES["pushes"] if which in ("all", p["set"])]
    fit = calibrate_noise.push_check(pushes, NoiseModel(), BIAS["force_mean_N"])
    assert fit["objects"] == {"tuned": 12, "checked": 12, "all": 24}[which]
    # each push about its block's mean, in the model's scale: a t5's median |x| is 0.73 (the old figures, a
    # 0.03 N floor and 5 %, gave 0.45 over all 63 pushes: every push counted for a fraction of what it said)
    assert 0.55 <= fit["median_abs_residual"] <= 0.95, fit
    # each block's mean against the twin, over the spread the model gives it (gain and pushes): ~1 if right; a
    # margin below (an older calibration's 4 blocks had a mean ratio rms 0.05) but not the old gain 0.07's 0.38
    assert 0.4 <= fit["rms_z"] <= 1.4, fit


def test_the_check_tells_a_model_too_wide_from_one_too_narrow():
    wide, narrow = NoiseModel(), NoiseModel()
    wide.floor["force_mean_N"], wide.rel["force_mean_N"] = 0.03, 0.05  # the figures before this calibration
    narrow.floor["force_mean_N"], narrow.rel["force_mean_N"] = 0.005, 0.005
    too_wide = calibrate_noise.push_check(PUSHES["pushes"], wide, 0.07)
    too_narrow = calibrate_noise.push_check(PUSHES["pushes"], narrow, 0.0)
    assert too_wide["median_abs_residual"] < 0.55 and too_wide["rms_z"] < 0.4
    assert too_narrow["median_abs_residual"] > 0.95 and too_narrow["rms_z"] > 1.4
    assert calibrate_noise.push_check(PUSHES["pushes"][:1], NoiseModel(), 0.03)["median_abs_residual"] is None
    with pytest.raises(KeyError):
        calibrate_noise.push_check([{"y": 1.0}], NoiseModel(), 0.03)


DESK = json.loads((Path(__file__).parent / "data" / "friction_pushes_so101_dev.json").read_text())


@pytest.mark.parametrize("path", ["sim", "hil"])
def test_the_desk_arms_pushes_fit_the_same_figures(path):
    """The SO-101's pushes (0.2-2 N, a hand that trails its servos) against the figures fitted on the Panda's: the
    sim bench's 111 (two sets of 20 worlds, 1.23 and 0.66 apart: pooled, they fit) and the hardware path's 38."""
    pushes = [p for p in DESK["pushes"] if p["set"].startswith(path)]
    from loopylab.world.splits import check_split

    check_split(sorted({p["seed"] for p in pushes}), "dev")
    fit = calibrate_noise.push_check(pushes, NoiseModel(), BIAS["force_mean_N"])
    assert fit["objects"] == {"sim": 38, "hil": 12}[path]
    assert 0.55 <= fit["median_abs_residual"] <= 0.95, fit
    assert 0.4 <= fit["rms_z"] <= 1.4, fit
