"""The hardware graphs (graphs/so101.toml, graphs/koch.toml) on an emulated arm: driver + safety gate
over the bus, joints moved through arm/joint_target, limits enforced by the gate, the driver's faults named by
class on safety/state."""

import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from loopylab.bus import JointCommand, JointState, Node, SafetyState
from loopylab.bus.launch import Launcher, load_graph
from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.servo import calibration

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def hardware_graph(robot, monkeypatch, tmp_path, **arm_params):
    """The robot's shipped graph (driver + gate) on an emulated arm: yields (emulator, launcher, graph url)."""
    emu = ServoArmEmulator.for_robot(robot).start()
    monkeypatch.setenv("LOOPYLAB_ARM_PORT", emu.path)
    factory = calibration.identity(
        {
            n: i
            for i, n in enumerate(
                ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"], 1
            )
        }
    )
    monkeypatch.setenv("LOOPYLAB_ARM_CALIBRATION", str(calibration.save(tmp_path / f"{robot}.json", factory)))
    spec = load_graph(ROOT / "graphs" / f"{robot}.toml").with_bus(f"inproc://{uuid.uuid4().hex}")
    arm = next(n for n in spec.nodes if n.run == "loopylab.firmware_bridge.arm_node:run_arm")
    arm.params["latency_s"] = 0.25  # a loaded CI machine is slower than an FTDI adapter
    arm.params.update(arm_params)
    launcher = Launcher(spec)
    runner = threading.Thread(target=launcher.run, daemon=True)
    runner.start()
    try:
        yield emu, spec.url
    finally:
        launcher.stop()
        runner.join(15)
        emu.stop()
    assert not runner.is_alive() and launcher.failed_node is None


@pytest.mark.parametrize("robot, kind", [("so101", "feetech"), ("koch", "dynamixel")])
def test_graph_moves_the_emulated_arm_through_the_gate(robot, kind, monkeypatch, tmp_path):
    with hardware_graph(robot, monkeypatch, tmp_path) as (emu, url), Node("test_skill", url) as node:
        js = node.subscribe("arm/joint_state", JointState, mode="latest")
        safety = node.subscribe("safety/state", SafetyState, mode="latest")
        first = js.wait_for(timeout=20)
        pub = node.publisher("arm/joint_target", JointCommand)
        assert pub.wait_for_subscribers(1, 10)
        # a smooth stream of targets (the gate's deadman wants fresh ones), paced by the driver's states
        goal = np.array([0.0, 0.3, 0.4, -0.2, 0.1])  # inside both arms' URDF limits
        start = np.asarray(first.position)
        goal[0] = start[0]
        deadline, k, final = time.monotonic() + 30, 0, first
        while time.monotonic() < deadline:
            k += 1
            pub.publish(JointCommand(name=list(first.name), position=start + (goal - start) * min(1.0, k / 100)))
            final = js.wait_for(timeout=2)
            if k >= 100 and np.allclose(final.position, goal, atol=0.02):
                break
        assert np.allclose(final.position, goal, atol=0.02), (final.position, safety.latest())
        ticks = np.round((goal - start) * 4096 / (2 * np.pi)).astype(int)
        assert abs(emu.register(3, "Goal_Position") - (2048 + ticks[2])) <= 14  # radians -> ticks (0.02 rad)
        # a jump of +1 rad on shoulder_pan, held: the gate lets the arm get there only within its step,
        # velocity and acceleration limits, and the driver sends exactly what the gate allows
        clamped = safety.latest().clamped_count
        jump = final.position.copy()
        jump[0] += 1.0
        rad = lambda ticks: (ticks - 2048) * 2 * np.pi / 4096  # noqa: E731
        for _ in range(40):
            pub.publish(JointCommand(name=list(first.name), position=jump))
            js.wait_for(timeout=2)
            lead = rad(emu.register(1, "Goal_Position")) - rad(emu.register(1, "Present_Position"))
            assert lead <= 0.25 + 0.005  # the gate's max step, never more
        assert safety.wait_for(lambda s: s.clamped_count > clamped, timeout=3)
        assert rad(emu.register(1, "Present_Position")) > final.position[0] + 0.05  # it did move


def test_each_fault_class_of_the_driver_is_named_on_safety_state_and_clears(monkeypatch, tmp_path):
    """Faults that outlast the driver's window, on the real driver and gate: safety/state names each class
    (no_response(id), corrupt, protocol_error(id, code), motor_error(id, bits), port_lost), reports a protective
    stop while it lasts, and clears once the bus answers again (a hardware error after `arm/reboot`)."""
    with (
        hardware_graph("koch", monkeypatch, tmp_path, reconnect_s=0.1) as (emu, url),
        Node("test_skill", url) as node,
    ):
        safety = node.subscribe("safety/state", SafetyState, mode="latest")
        node.subscribe("arm/joint_state", JointState, mode="latest").wait_for(timeout=20)
        safety.wait_for(lambda s: not s.protective_stop and not s.fault, timeout=10)
        f = emu.faults
        for inject, clear, named in [
            (lambda: f.silent_ids.add(3), f.silent_ids.clear, "arm: no_response(3)"),
            (lambda: setattr(f, "corrupt", 10**6), lambda: setattr(f, "corrupt", 0), "arm: corrupt"),
            (
                lambda: setattr(f, "protocol_error", 10**6),
                lambda: setattr(f, "protocol_error", 0),
                "arm: protocol_error(",
            ),
            (
                lambda: emu.set_hardware_error(5, 0b100),
                lambda: node.call("arm/reboot", {}, timeout=10),
                "arm: motor_error(5, 0x04)",
            ),
            (emu.vanish, emu.restore, "arm: port_lost"),
        ]:
            inject()
            s = safety.wait_for(lambda s, named=named: s.fault.startswith(named), timeout=10)
            assert s.protective_stop and named.removeprefix("arm: ") in s.reason, s
            clear()
            s = safety.wait_for(lambda s: not s.fault, timeout=10)
            assert "cleared" in s.reason
            safety.wait_for(lambda s: not s.protective_stop, timeout=10)
