"""`loopylab arm emulate --physics`: the rig's ports at stable links, its files, and the launch line; the
links go when it stops. Found by firmware_bridge through the `loopylab.emulators` entry point."""

import threading
from importlib.metadata import entry_points

from loopylab.firmware_bridge.servo import calibration as cal
from loopylab.firmware_bridge.servo.bus import Motor, MotorBus
from tests.waiting import wait_until


def test_physics_emulator_serves_the_rig_at_stable_links(tmp_path, capsys):
    run = {ep.name: ep for ep in entry_points(group="loopylab.emulators")}["physics"].load()
    stop = threading.Event()
    links, files = tmp_path / "rig", tmp_path / "files"
    t = threading.Thread(
        target=run,
        kwargs=dict(robot="so101", world=1, link=str(links), cameras="", out=str(files), stop=stop),
        daemon=True,
    )
    t.start()
    try:
        assert wait_until(lambda: all((links / n).exists() for n in ("arm", "gripper", "ft")), 30)
        assert wait_until((files / "scene.toml").exists, 30)  # written once the rig is built
        calib = cal.load(files / "so101.json")
        bus = MotorBus(
            str(links / "arm"), "feetech", {n: Motor(c.id, "sts3215") for n, c in calib.items()}, latency_s=0.25
        )
        bus.connect()  # pings every motor, checks the models
        try:
            cal.check(bus, calib)
        finally:
            bus.close()
        assert (files / "scene.toml").read_text().count("[[objects]]") >= 1
    finally:
        stop.set()
        t.join(15)
    assert not t.is_alive()
    assert f'arm.port="{links / "arm"}"' in capsys.readouterr().out  # the launch line names the rig's ports
    assert not any((links / n).exists() for n in ("arm", "gripper", "ft"))
