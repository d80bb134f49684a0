"""The Robotiq 2F-85 on Modbus RTU whose fingers are the simulated gripper's.

`firmware_bridge`'s Robotiq emulator keeps its register semantics (activation, go-to, gOBJ, faults, the
watchdog); its finger model here follows the physics: every update sends the finger's opening (the
2F-85's 85 mm stroke, clipped to the sim hand's own) to the sim gripper, and while the fingers close (or
stay closed) on what the physics holds, the gripper reports gOBJ = 2 (object detected): exactly when
the physics holds something.
"""

from __future__ import annotations

from loopylab.firmware_bridge.emulators.pty_device import Faults
from loopylab.firmware_bridge.emulators.robotiq import RobotiqEmulator, RobotiqModel
from loopylab.rig.physics import RigPhysics


class SimFingerModel(RobotiqModel):
    def __init__(self, physics: RigPhysics, **kw):
        super().__init__(**kw)
        self.physics = physics
        self.stroke_m = self.stroke_mm / 1000.0

    def update(self, now: float) -> None:
        super().update(now)  # activation, faults, the watchdog and the fingers' travel
        if self.physics.grasped() is not None and self.rGTO and self.rPR >= self.position - 1 and not self.gFLT:
            self.gOBJ = 2  # closing, and the physics holds an object between the fingers: stopped by it
        opening = (1.0 - self.position / 255.0) * self.stroke_m
        # the sim hand's joint motor takes a modest force: the grasp itself is a constraint (sim/arm.py)
        self.physics.command_gripper(opening, 20.0)


def physics_robotiq(
    physics: RigPhysics, link: str | None = None, faults: Faults | None = None, activation_s: float = 0.15
) -> RobotiqEmulator:
    """A Robotiq 2F-85 emulator on its own pty (not started) whose fingers are `physics`'s gripper."""
    emu = RobotiqEmulator("rtu", faults=faults, activation_s=activation_s, link=link)
    emu.model = SimFingerModel(physics, activation_s=activation_s)
    return emu
