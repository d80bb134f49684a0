"""The robot catalogue: every arm the bench knows, described once, for the sim, the gate, the skills and the
hardware driver alike.

A `RobotSpec` holds the URDF (which carries the joints' position, velocity and effort limits), the arm and
gripper joints in command order, the tool frame, the home pose, and, for an arm on bus servos, its
`MotorLayout` (the servo family and each joint's motor id and model). `CONTROL_HZ` is the control rate.

`panda`, `kuka_iiwa` and `xarm6` come from pybullet_data; `so101` is an SO-100/101-style 5-DOF arm with a jaw
gripper whose URDF (`world/assets/so101.urdf`) is generated from the arm's published dimensions by
`so101_urdf()` (`python -m loopylab.world.robots` rewrites the shipped file; a test checks they agree);
`koch` is a Koch v1.1-style arm on Dynamixel servos (`world/assets/koch.urdf`), for the hardware path.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pybullet_data

ASSETS = Path(__file__).parent / "assets"
_PD = Path(pybullet_data.getDataPath())

# The control rate (Hz): skills stream arm/joint_target at it, the sim advances the arm one tick at a time at
# it, the gate rates velocity and acceleration per period of it, the twin and the protocols plan with it.
CONTROL_HZ = 120.0


@dataclass(frozen=True)
class MotorLayout:
    """A hardware arm's joints on bus servos (LeRobot-compatible layouts). `modes`: each motor's operating
    mode (checked at connect, written by `loopylab arm setup-motors`): `position` keeps the motors' own
    position limits active; a gripper in `current_based_position` cannot squeeze past its current limit.
    `rest`: where a protective stop lowers the arm (rad, joints not named hold); `brakes`: False when the
    arm falls with torque off (so a protective stop lowers it instead of letting go)."""

    kind: str  # servo family: feetech | dynamixel
    motors: dict[str, tuple[int, str]] = field(hash=False)  # joint -> (motor id, model), bus order
    modes: dict[str, str] = field(default_factory=dict, hash=False)
    rest: dict[str, float] = field(default_factory=dict, hash=False)
    brakes: bool = False


@dataclass(frozen=True)
class RobotSpec:
    name: str
    urdf: str  # absolute path
    arm_joints: tuple[str, ...]  # in command order
    ee_link: str  # tool frame: z axis points out of the tool
    ft_joint: str  # joint whose reaction wrench is the wrist F/T sensor
    home: tuple[float, ...]  # joint positions, tool pointing down above the workspace
    gripper_joints: tuple[str, ...] = ()  # empty: no fingers (the sim offers a suction-like grasp)
    gripper_open: tuple[float, ...] = ()
    gripper_closed: tuple[float, ...] = ()
    max_opening: float = 0.0  # m between fingers when open
    tool_length: float = 0.0  # m from the EE frame to the tool's lowest tip along tool z
    down_rpy: tuple[float, float, float] = (math.pi, 0.0, 0.0)  # tool pointing down (PyBullet Euler)
    down_yaw_follows_base: bool = False  # 5-DOF arms: the tool's yaw is tied to the base pan angle
    clearance: float = 0.08  # m above objects for approaches
    acc_limit: float = 60.0  # rad/s^2 the sim servos allow (URDFs carry none; the gate config tightens)
    hardware: MotorLayout | None = None  # the motors of a bus-servo arm; None: no hardware driver
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def down_orientation(self, position: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
        """Quaternion (xyzw) pointing the tool straight down at `position` (base frame)."""
        r, pch, y = self.down_rpy
        if self.down_yaw_follows_base:
            y += math.atan2(position[1], position[0])
        return _quat_from_euler(r, pch, y)


def _quat_from_euler(r: float, p: float, y: float) -> tuple[float, float, float, float]:
    cr, sr, cp, sp, cy, sy = (
        math.cos(r / 2),
        math.sin(r / 2),
        math.cos(p / 2),
        math.sin(p / 2),
        math.cos(y / 2),
        math.sin(y / 2),
    )
    return (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )


# -- SO-100/101 ---------------------------------------------------------------------------------
# Link lengths and joint limits after TheRobotStudio SO-ARM100 / LeRobot so101 figures (STS3215 servos:
# ~2.9 N·m stall at 12 V, ~4.7 rad/s no-load). Simplified planar chain: base pan, shoulder lift, elbow,
# wrist flex, wrist roll, jaw. Zero pose: the arm points straight up (LeRobot calibrates a bent L pose
# as zero, so the published ±1.7 rad elbow range is re-centred here to -0.2..3.0 rad).
SO101: dict[str, Any]  # mixed values: figures, and tables of limits and masses
SO101 = dict(
    shoulder_height=0.1160,
    upper_arm=0.1160,
    forearm=0.1350,
    wrist_to_tip=0.1000,
    effort=2.9,
    velocity=4.7,
    limits=dict(
        shoulder_pan=(-1.92, 1.92),
        shoulder_lift=(-1.75, 1.75),
        elbow_flex=(-0.2, 3.0),
        wrist_flex=(-1.8, 1.8),
        wrist_roll=(-2.74, 2.84),
        gripper=(-0.17, 1.75),
    ),
    mass=dict(base=0.40, shoulder=0.12, upper_arm=0.10, lower_arm=0.10, wrist=0.05, gripper=0.08, jaw=0.03),
)


def _box_inertia(m: float, x: float, y: float, z: float) -> tuple[float, float, float]:
    return m * (y * y + z * z) / 12, m * (x * x + z * z) / 12, m * (x * x + y * y) / 12


def _link(
    name: str, mass: float, size: tuple[float, float, float], xyz: Sequence[float], rgba: str = "0.95 0.95 0.95 1"
) -> str:
    ix, iy, iz = _box_inertia(mass, *size)
    s = " ".join(f"{v:.4f}" for v in size)
    o = " ".join(f"{v:.4f}" for v in xyz)
    return f"""  <link name="{name}">
    <inertial><origin xyz="{o}"/><mass value="{mass}"/>
      <inertia ixx="{ix:.3e}" ixy="0" ixz="0" iyy="{iy:.3e}" iyz="0" izz="{iz:.3e}"/></inertial>
    <visual><origin xyz="{o}"/><geometry><box size="{s}"/></geometry><material name="m_{name}"><color rgba="{rgba}"/></material></visual>
    <collision><origin xyz="{o}"/><geometry><box size="{s}"/></geometry></collision>
  </link>
"""


def _joint(name: str, parent: str, child: str, xyz: Sequence[float], axis: str, kind: str = "revolute") -> str:
    lo, hi = SO101["limits"].get(name, (0, 0))
    lim = (
        f'<limit lower="{lo}" upper="{hi}" effort="{SO101["effort"]}" velocity="{SO101["velocity"]}"/>'
        if kind == "revolute"
        else ""
    )
    return f"""  <joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>
    <origin xyz="{" ".join(f"{v:.4f}" for v in xyz)}"/><axis xyz="{axis}"/>{lim}<dynamics damping="0.1"/></joint>
"""


def so101_urdf() -> str:
    d, m = SO101, SO101["mass"]
    h, ua, fa, wt = d["shoulder_height"], d["upper_arm"], d["forearm"], d["wrist_to_tip"]
    parts = [
        '<?xml version="1.0"?>\n<!-- Generated by world/robots.py (python -m loopylab.world.robots) from '
        'SO-ARM100/SO-101 published dimensions. Do not edit by hand. -->\n<robot name="so101">\n',
        _link("base", m["base"], (0.10, 0.09, 0.06), (0, 0, 0.03), "0.2 0.2 0.2 1"),
        _joint("shoulder_pan", "base", "shoulder", (0, 0, 0.06), "0 0 1"),
        _link("shoulder", m["shoulder"], (0.05, 0.045, h - 0.06), (0, 0, (h - 0.06) / 2)),
        _joint("shoulder_lift", "shoulder", "upper_arm", (0, 0, h - 0.06), "0 1 0"),
        _link("upper_arm", m["upper_arm"], (0.035, 0.03, ua), (0, 0, ua / 2)),
        _joint("elbow_flex", "upper_arm", "lower_arm", (0, 0, ua), "0 1 0"),
        _link("lower_arm", m["lower_arm"], (0.03, 0.028, fa), (0, 0, fa / 2)),
        _joint("wrist_flex", "lower_arm", "wrist", (0, 0, fa), "0 1 0"),
        _link("wrist", m["wrist"], (0.03, 0.03, 0.03), (0, 0, 0.015)),
        _joint("wrist_roll", "wrist", "gripper", (0, 0, 0.03), "0 0 1"),
        _link("gripper", m["gripper"], (0.025, 0.035, wt - 0.03), (0.0, 0, (wt - 0.03) / 2), "0.9 0.9 0.9 1"),
        _joint("gripper_jaw", "gripper", "jaw", (0.03, 0, 0.02), "0 1 0").replace(
            'name="gripper_jaw"', 'name="gripper"'
        ),
        _link("jaw", m["jaw"], (0.008, 0.03, wt - 0.04), (0, 0, (wt - 0.04) / 2), "0.9 0.5 0.1 1"),
        _joint("tool_tip", "gripper", "tool", (0, 0, wt - 0.03), "0 0 1", kind="fixed"),
        '  <link name="tool"><inertial><mass value="0.001"/><inertia ixx="1e-7" ixy="0" ixz="0" iyy="1e-7" '
        'iyz="0" izz="1e-7"/></inertial></link>\n',
        "</robot>\n",
    ]
    return "".join(parts)


def write_so101_urdf(path: Path = ASSETS / "so101.urdf") -> Path:
    """Regenerate the shipped SO-101 URDF (a development step: the catalogue only ever reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(so101_urdf())
    return path


# -- the catalogue ------------------------------------------------------------------------------
LEROBOT_ARM = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")  # so101 and koch
_LEROBOT_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
# Rest poses: folded back and low (each within the URDF limits), where a protective stop lowers a brakeless arm.
SO101_MOTORS = MotorLayout(
    "feetech",
    {
        "shoulder_pan": (1, "sts3215"),
        "shoulder_lift": (2, "sts3215"),
        "elbow_flex": (3, "sts3215"),
        "wrist_flex": (4, "sts3215"),
        "wrist_roll": (5, "sts3215"),
        "gripper": (6, "sts3215"),
    },
    modes=dict.fromkeys(_LEROBOT_JOINTS, "position"),
    rest={"shoulder_pan": 0.0, "shoulder_lift": -1.7, "elbow_flex": 2.9, "wrist_flex": 0.8},
)
KOCH_MOTORS = MotorLayout(
    "dynamixel",
    {
        "shoulder_pan": (1, "xl430-w250"),
        "shoulder_lift": (2, "xl430-w250"),
        "elbow_flex": (3, "xl330-m288"),
        "wrist_flex": (4, "xl330-m288"),
        "wrist_roll": (5, "xl330-m288"),
        "gripper": (6, "xl330-m288"),
    },
    modes={**dict.fromkeys(_LEROBOT_JOINTS, "position"), "gripper": "current_based_position"},
    rest={"shoulder_pan": 0.0, "shoulder_lift": -1.6, "elbow_flex": 1.6, "wrist_flex": 1.2},
)

CATALOGUE: dict[str, RobotSpec] = {
    rs.name: rs
    for rs in (
        RobotSpec(
            "panda",
            str(_PD / "franka_panda/panda.urdf"),
            tuple(f"panda_joint{i}" for i in range(1, 8)),
            "panda_grasptarget",
            "panda_hand_joint",
            (0.0, 0.0, 0.0, -2.2, 0.0, 2.2, 0.785),
            ("panda_finger_joint1", "panda_finger_joint2"),
            (0.04, 0.04),
            (0.0, 0.0),
            0.08,
            tool_length=0.0115,
            acc_limit=60.0,
        ),
        RobotSpec(
            "kuka_iiwa",
            str(_PD / "kuka_iiwa/model.urdf"),
            tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8)),
            "lbr_iiwa_link_7",
            "lbr_iiwa_joint_7",
            (0.0, 0.6, 0.0, -1.4, 0.0, 1.1, 0.0),
            down_rpy=(0.0, math.pi, 0.0),
            tool_length=0.051,
            acc_limit=60.0,
        ),
        RobotSpec(
            "xarm6",
            str(_PD / "xarm/xarm6_robot.urdf"),
            tuple(f"joint{i}" for i in range(1, 7)),
            "link6",
            "joint5",
            (0.0, 0.0, -0.8, 0.0, 0.8, 0.0),
            tool_length=0.005,
            acc_limit=60.0,
        ),
        RobotSpec(
            "so101",
            str(ASSETS / "so101.urdf"),
            LEROBOT_ARM,
            "tool",
            "wrist_roll",
            (0.0, 0.6, 1.2, 1.2, 0.0),
            ("gripper",),
            (1.2,),
            (0.0,),
            0.06,
            tool_length=0.002,
            down_rpy=(0.0, math.pi, 0.0),
            down_yaw_follows_base=True,
            clearance=0.05,
            acc_limit=60.0,
            hardware=SO101_MOTORS,
        ),
        # acc_limit: the gate's default for a real arm (the sim arms' 60 rad/s^2 is for PyBullet's servos)
        RobotSpec(
            "koch",
            str(ASSETS / "koch.urdf"),
            LEROBOT_ARM,
            "tool",
            "wrist_roll",
            (0.0, 0.4, 1.2, 1.54, 0.0),
            ("gripper",),
            (1.2,),
            (0.0,),
            0.05,
            tool_length=0.005,
            down_rpy=(0.0, math.pi, 0.0),
            down_yaw_follows_base=True,
            clearance=0.05,
            acc_limit=15.0,
            hardware=KOCH_MOTORS,
        ),
    )
}
ROBOTS = tuple(CATALOGUE)


def robot_spec(name: str) -> RobotSpec:
    """The catalogue's description of robot `name`."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r} (known: {', '.join(CATALOGUE)})") from None


def hardware_robots() -> list[str]:
    """The catalogue's arms that run on bus servos (the hardware driver's presets)."""
    return [n for n, rs in CATALOGUE.items() if rs.hardware is not None]


if __name__ == "__main__":  # regenerate the shipped URDF after changing the SO-101 figures
    print(write_so101_urdf(Path(sys.argv[1]) if len(sys.argv) > 1 else ASSETS / "so101.urdf"))
