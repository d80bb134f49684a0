"""The arm's servos with the physics behind their registers, calibrated like a real arm.

The motors are `firmware_bridge`'s byte-exact emulators (`ServoArmEmulator.for_robot`: the catalogue arm's
models, IDs and operating modes); each one's `body` hook is a simulated joint. A motor's encoder reads
`mount + q / TICK` ticks (q: the URDF joint angle): every motor sits on its horn at its own angle
(`mount`, drawn once per arm from its seed), so the homing offsets that bring the zero pose to 2047 are
not zero, as on a real arm. The calibration file the driver loads (`calibration()`) holds those offsets,
the URDF's joint ranges as position limits (also written into the motors' EEPROM), and zero = 2047.
"""

from __future__ import annotations

import numpy as np

from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator
from loopylab.firmware_bridge.servo.calibration import CENTRE, TICK_RAD, MotorCalibration
from loopylab.firmware_bridge.servo.models import effort_unit
from loopylab.rig.physics import RigPhysics
from loopylab.world.robots import robot_spec

MOUNT_SPREAD = 600  # ticks: how far off the centre a motor may sit on its horn (~53 degrees)


def mounts(robot: str, seed: int = 0) -> dict[str, int]:
    """Each motor's encoder reading at the joint's zero (ticks): never the centre, as assembled."""
    layout = robot_spec(robot).hardware
    rng = np.random.default_rng([seed, 0x5E7])
    out = {}
    for name in layout.motors:
        off = int(rng.integers(60, MOUNT_SPREAD)) * (1 if rng.random() < 0.5 else -1)
        out[name] = CENTRE + off
    return out


def calibration(robot: str, mount: dict[str, int], joints: list[str]) -> dict[str, MotorCalibration]:
    """What `loopylab arm calibrate` would record on this arm: offsets to 2047 at the zero pose, the URDF's
    ranges as limits."""
    rs = robot_spec(robot)
    layout = rs.hardware
    limits = _limits(robot)
    out = {}
    for name in joints:
        lo, hi = limits[name]
        # Dynamixel: Present = Actual + Offset; Feetech: Present = Actual - Offset
        offset = CENTRE - mount[name] if layout.kind == "dynamixel" else mount[name] - CENTRE
        out[name] = MotorCalibration(
            id=layout.motors[name][0],
            drive_mode=0,
            homing_offset=offset,
            range_min=max(0, int(np.floor(CENTRE + lo / TICK_RAD))),
            range_max=min(4095, int(np.ceil(CENTRE + hi / TICK_RAD))),
            zero=CENTRE,
        )
    return out


def _limits(robot: str) -> dict[str, tuple[float, float]]:
    """Each motor's joint range (rad): the URDF's arm joints, the catalogue's gripper angles."""
    import pybullet as p

    rs = robot_spec(robot)
    cid = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(rs.urdf, physicsClientId=cid)
        info = [p.getJointInfo(body, j, physicsClientId=cid) for j in range(p.getNumJoints(body, physicsClientId=cid))]
    finally:
        p.disconnect(cid)
    by_name = {i[1].decode(): (float(i[8]), float(i[9])) for i in info}
    out = {n: by_name[n] for n in rs.arm_joints}
    if rs.gripper_joints:
        a, b = rs.gripper_closed[0], rs.gripper_open[0]
        out["gripper"] = (min(a, b), max(a, b))
    return out


def physics_arm(
    physics: RigPhysics,
    robot: str,
    seed: int = 0,
    gripper_motor: bool = False,
    link: str | None = None,
) -> tuple[ServoArmEmulator, dict[str, MotorCalibration]]:
    """The arm's motors on a pty, each joint one of `physics`'s; with `gripper_motor` the catalogue's gripper
    motor drives the sim's fingers (else the arm has no gripper motor: a Modbus gripper is fitted).
    Returns the emulator (not started) and the calibration its motors hold."""
    rs = robot_spec(robot)
    layout = rs.hardware
    if layout is None:
        raise ValueError(f"robot {robot!r} has no bus-servo motors in the catalogue")
    joints = list(rs.arm_joints) + (["gripper"] if gripper_motor and "gripper" in layout.motors else [])
    emu = ServoArmEmulator.for_robot(robot, link=link)
    for name, (i, _) in layout.motors.items():
        if name not in joints:
            del emu.motors[i]
    mount = mounts(robot, seed)
    calib = calibration(robot, mount, joints)
    for name in joints:
        i, model = layout.motors[name]
        m, c = emu.motors[i], calib[name]
        m._set("Homing_Offset", c.homing_offset)
        m._set("Min_Position_Limit", c.range_min)
        m._set("Max_Position_Limit", c.range_max)
        unit = effort_unit(layout.kind, model).nm_per_unit
        if name == "gripper":
            m.body = _gripper_body(physics, mount[name], unit)
        else:
            m.body = _joint_body(physics, rs.arm_joints.index(name), mount[name], unit)
        m.update()
        m._set("Goal_Position", m.present_position())
        m.saved[:] = m.mem  # as calibrated: the offsets and limits are in EEPROM
    return emu, calib


def _joint_body(physics: RigPhysics, joint: int, mount: int, nm_per_unit: float):
    def body(target: float | None) -> tuple[float, float, float]:
        physics.set_goal(joint, None if target is None else (target - mount) * TICK_RAD)
        q, v, e = physics.joint(joint)
        return mount + q / TICK_RAD, v / TICK_RAD, e / nm_per_unit

    return body


def _gripper_body(physics: RigPhysics, mount: int, nm_per_unit: float):
    """The gripper motor: its angle maps linearly onto the sim fingers' opening (the catalogue's angles)."""
    rs = physics.world.robot.spec
    closed, opened, max_opening = rs.gripper_closed[0], rs.gripper_open[0], rs.max_opening
    last = {"q": None}

    def body(target: float | None) -> tuple[float, float, float]:
        if target is not None:
            q = (target - mount) * TICK_RAD
            if q != last["q"]:
                frac = float(np.clip((q - closed) / (opened - closed), 0.0, 1.0))
                physics.command_gripper(frac * max_opening, 20.0)
                last["q"] = q
        opening = physics.gripper_opening()
        q = closed + opening / max_opening * (opened - closed)
        return mount + q / TICK_RAD, 0.0, 0.0

    return body
