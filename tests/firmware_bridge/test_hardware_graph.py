"""The hardware graphs (graphs/so101.toml, graphs/koch.toml) on an emulated arm: driver + safety gate
over the bus, joints moved through arm/joint_target, limits enforced by the gate."""
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from bus import JointCommand, JointState, Node, SafetyState
from bus.launch import Launcher, load_graph
from firmware_bridge.arm_node import PRESET_MODEL_NUMBERS
from firmware_bridge.emulators.servo_arm import ServoArmEmulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("robot, kind", [("so101", "feetech"), ("koch", "dynamixel")])
def test_graph_moves_the_emulated_arm_through_the_gate(robot, kind, monkeypatch):
    monkeypatch.chdir(ROOT)
    emu = ServoArmEmulator(kind, model=PRESET_MODEL_NUMBERS[robot]).start()
    monkeypatch.setenv("LOOPYLAB_ARM_PORT", emu.path)
    spec = load_graph(ROOT / "graphs" / f"{robot}.toml").with_bus(f"inproc://{uuid.uuid4().hex}")
    launcher = Launcher(spec)
    runner = threading.Thread(target=launcher.run, daemon=True)
    runner.start()
    node = Node("test_skill", spec.url)
    try:
        js = node.subscribe("arm/joint_state", JointState, mode="latest")
        safety = node.subscribe("safety/state", SafetyState, mode="latest")
        first = js.wait_for(timeout=20)
        pub = node.publisher("arm/joint_target", JointCommand)
        assert pub.wait_for_subscribers(1, 10)
        # a stream of targets (the gate's deadman wants fresh ones); pan asks for far past its limit
        goal = np.array([3.0, 0.3, -0.4, 0.2, 0.0])
        start = np.asarray(first.position)
        for k in range(1, 121):
            q = start + (goal - start) * min(1.0, k / 80)
            pub.publish(JointCommand(name=list(first.name), position=q))
            js.wait_for(timeout=1)  # paced by the driver's state stream, not by sleeps
        final = js.wait_for(lambda m: np.allclose(m.position[1:], goal[1:], atol=0.02), timeout=5)
        assert final.position[0] < 2.0                 # held inside the URDF limit by the gate
        assert final.position[0] > 1.5                 # ... but it did move there
        assert safety.wait_for(lambda s: s.clamped_count > 0, timeout=3)
        pan_ticks = emu.register(1, "Present_Position")
        assert abs((pan_ticks - 2048) * 2 * np.pi / 4096 - final.position[0]) < 0.01
    finally:
        node.close()
        launcher.stop()
        runner.join(15)
        emu.stop()
    assert not runner.is_alive() and launcher.failed_node is None
