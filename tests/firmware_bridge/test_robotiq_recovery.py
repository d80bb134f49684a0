"""The Robotiq driver through unanswered requests, against the real pymodbus server on a pty: a lost answer on
a busy host neither resets the gripper (re-activation would drop what it holds) nor loses a go-to."""

import uuid

import pytest

from loopylab.bus import GripperCommand, GripperState, Node
from loopylab.firmware_bridge.emulators.pty_device import Faults
from loopylab.firmware_bridge.emulators.robotiq import RobotiqEmulator
from loopylab.firmware_bridge.messages import DeviceFault
from loopylab.firmware_bridge.modbus.client import Endpoint
from loopylab.firmware_bridge.modbus.robotiq import ACT, RobotiqGripper, RobotiqNode

OBJECT_AT = 180


class LoseWrites(Faults):
    """The next `n` write requests (FC16) from the host are lost on the cable; everything else goes through."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def apply(self, data: bytes) -> bytes:
        if self.n > 0 and len(data) > 1 and data[1] == 0x10:
            self.n -= 1
            self.injected += 1
            return b""
        return data


@pytest.fixture
def rig():
    """The emulator (what the gripper was told, in order), the driver on its pty, and a probe node."""
    with RobotiqEmulator("rtu", object_at=OBJECT_AT) as emu:
        told: list[list[int]] = []
        on_command = emu.model.on_command
        emu.model.on_command = lambda regs, now: (told.append(list(regs)), on_command(regs, now))[1]
        graph = f"inproc://{uuid.uuid4().hex}"
        dn, tn = Node("gripper", graph), Node("probe", graph)
        ep = Endpoint(transport="rtu", port=emu.path, timeout_s=0.2, retries=2)
        drv = RobotiqNode(dn, RobotiqGripper(ep), rate_hz=50, reconnect_s=0.05)
        state = tn.subscribe("gripper/state", GripperState, mode="latest")
        cmd = tn.publisher("gripper/command", GripperCommand)
        try:
            assert state.wait_for(lambda s: s.ready, timeout=10)
            assert cmd.wait_for_subscribers(1, 10)
            cmd.publish(GripperCommand(position=0.0, speed=0.15, force=60.0))
            assert state.wait_for(lambda s: s.object_detected, timeout=10)
            yield emu, told, tn, state, cmd
        finally:
            drv.close()
            dn.close()
            tn.close()


def resets(told: list[list[int]]) -> int:
    """How many times the gripper was told to reset (rACT 0) after its first activation."""
    first = next(i for i, regs in enumerate(told) if (regs[0] >> 8) & ACT)
    return sum(not (regs[0] >> 8) & ACT for regs in told[first:])


def test_unanswered_polls_keep_the_activation_and_the_grasp(rig):
    emu, told, tn, state, _ = rig
    faults = tn.subscribe("gripper/fault", DeviceFault, queue_size=20)
    emu.faults.silent_ids = {9}  # answers lost (the host too busy to read them in time), for a few polls
    assert faults.wait_for(lambda f: f.active and f.code == "no_response", timeout=10)
    emu.faults.silent_ids = set()
    assert faults.wait_for(lambda f: not f.active, timeout=10)
    # the old driver closed the port and re-activated: rACT 0 then 1, the fingers let go (gOBJ 0)
    assert resets(told) == 0
    assert state.wait_for(lambda s: s.object_detected and s.ready, timeout=10)
    assert emu.model.gOBJ == 2


def test_a_go_to_whose_write_went_unanswered_is_written_again(rig):
    emu, told, _, state, cmd = rig
    emu.server.relay.host_faults = LoseWrites(3)  # the open's write and both of pymodbus's retries
    cmd.publish(GripperCommand(position=0.085, speed=0.15, force=60.0))
    # the old driver marked the command sent before writing it: the gripper stayed closed until the next command
    s = state.wait_for(lambda s: s.position > 0.08, timeout=15)
    assert not s.object_detected and emu.server.relay.host_faults.injected == 3
    assert resets(told) == 0
