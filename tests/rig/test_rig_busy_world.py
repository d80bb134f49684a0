"""The emulated rig's devices answer while the world is busy: a render, the grader's truth or a slow tick holds
the physics' lock (PyBullet is not thread-safe), and the Robotiq (real pymodbus server on a pty) and the servos
must still answer from the last tick's snapshot. When they waited for the lock, a host at load 40-60 saw polls
answered 0.5-1.2 s late: pymodbus retries, stale replies, and the arm's state missing for 1-2 s."""

import threading

import pytest

from loopylab.firmware_bridge.modbus.client import Endpoint
from loopylab.firmware_bridge.modbus.robotiq import RobotiqGripper
from loopylab.firmware_bridge.servo.bus import Motor, MotorBus
from loopylab.rig.rig import Rig, RigConfig
from loopylab.world.robots import robot_spec
from tests.waiting import wait_until

HOLD_S = 3.0  # the world's lock held this long: far past the clients' timeouts below


@pytest.fixture
def rig(tmp_path):
    r = Rig(RigConfig(robot="so101", seed=5, n_objects=1, cameras=[], out_dir=str(tmp_path))).start()
    yield r
    r.stop()


def _hold(rig) -> tuple[threading.Thread, threading.Event]:
    held, done = threading.Event(), threading.Event()

    def hold():
        with rig.physics.lock:  # a long render or truth read
            held.set()
            done.wait(HOLD_S)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert held.wait(10)
    return t, done


def test_the_gripper_and_the_servos_answer_while_the_world_is_locked(rig):
    g = RobotiqGripper(Endpoint(port=rig.ports["gripper"], timeout_s=0.5, retries=1)).connect()
    layout = robot_spec("so101").hardware
    bus = MotorBus(
        rig.ports["arm"],
        layout.kind,
        {n: Motor(layout.motors[n][0], layout.motors[n][1], "position") for n in rig.calibration},
        latency_s=0.5,
    )
    bus.connect()
    try:
        g.activate(timeout=20)
        t, done = _hold(rig)
        ticks = rig.physics.ticks  # read under the hold: a tick between a read before it and the hold is no failure
        try:
            # each would have waited out the hold (3 s) for the lock and timed out
            assert g.status().activated
            g.goto(255)  # close: the command waits for the next tick, the answer does not
            assert len(bus.sync_read("Present_Position")) == len(rig.calibration)
            assert rig.physics.ticks == ticks  # the world really stood still meanwhile
        finally:
            done.set()
            t.join(10)
        # once the world ticks again, the command left for it is carried out
        assert wait_until(lambda: rig.physics.gripper_opening() < 0.5 * rig.physics.arm.max_opening, 20)
    finally:
        g.close()
        bus.close()
