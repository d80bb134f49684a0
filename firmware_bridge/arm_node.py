"""The hardware arm node: its configuration (defaults from the robot catalogue, `loopylab.world.robots`) and
the graph entry point `run_arm`. The driver itself is `arm_driver.ArmDriver`; units in `arm_codec`; the fault
window and the protective stop in `arm_stop`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from loopylab.bus import Node
from loopylab.firmware_bridge.arm_driver import ArmDriver, NotCalibrated
from loopylab.firmware_bridge.servo.dynamixel import X_MODELS
from loopylab.firmware_bridge.servo.feetech import STS_MODELS
from loopylab.world.robots import CATALOGUE, hardware_robots, robot_spec

__all__ = ["MODEL_NUMBERS", "PRESET_MODEL_NUMBERS", "ArmConfig", "ArmDriver", "NotCalibrated", "run_arm"]

# model name -> model number (what each motor answers to a PING), both servo families
MODEL_NUMBERS = {name: number for number, name in {**X_MODELS, **STS_MODELS}.items()}
# per catalogue arm on bus servos: motor id -> model number (the emulators answer as these motors)
PRESET_MODEL_NUMBERS = {
    name: {i: MODEL_NUMBERS[m] for i, m in robot_spec(name).hardware.motors.values()} for name in hardware_robots()
}


@dataclass
class ArmConfig:
    port: str = "/dev/ttyUSB0"
    robot: str = "so101"  # catalogue arm (`loopylab.world.robots`): motor layout and gripper
    kind: str = ""  # feetech | dynamixel; default from the catalogue
    motors: dict[str, tuple[int, str]] = field(default_factory=dict)  # default from the catalogue
    gripper: str = "gripper"  # motor driven by gripper/command ("" = a plain joint)
    gripper_open_rad: float | None = None  # joint angle of the fully open gripper; default from the catalogue
    gripper_closed_rad: float | None = None  # (1.2, 0.0 and 0.06 for an arm outside it)
    gripper_max_opening_m: float | None = None
    modes: dict[str, str] = field(default_factory=dict)  # joint -> operating mode; default from the catalogue
    rate_hz: float = 100.0
    baudrate: int = 1_000_000
    retries: int = 2  # immediate retries of a failed transaction (a cycle's)
    latency_s: float = 0.02  # USB adapter allowance per transaction (FTDI timer at 16 ms)
    calibration: str = ""  # JSON from `loopylab arm calibrate` (or --from-lerobot): required
    reconnect_s: float = 0.5
    hold_on_connect: bool = True  # torque on, goal = present pose, after (re)connecting
    fault_window_s: float = 0.25  # failed cycles for longer than this -> protective stop
    stop_hold_s: float = 1.0  # a protective stop holds this long before lowering to rest
    stop_speed: float = 0.2  # rad/s while lowering to rest
    rest: dict[str, float] | None = None  # rest pose (rad); default from the catalogue
    brakes: bool | None = None  # default from the catalogue (False: lower to rest on a stop)

    def __post_init__(self):
        rs = CATALOGUE.get(self.robot)
        layout = rs.hardware if rs is not None else None
        if layout is None and not (self.kind and self.motors):
            known = f"pick one of {hardware_robots()} or give kind and motors"
            raise ValueError(
                f"unknown robot {self.robot!r}: {known}"
                if rs is None
                else f"robot {self.robot!r} has no bus-servo motors in the catalogue: {known}"
            )
        self.kind = self.kind or layout.kind
        self.motors = {n: tuple(v) for n, v in (self.motors or layout.motors).items()}
        self.modes = dict(self.modes or (layout.modes if layout is not None else {}))
        self.rest = dict(self.rest if self.rest is not None else (layout.rest if layout is not None else {}))
        self.brakes = bool(self.brakes if self.brakes is not None else (layout.brakes if layout is not None else False))
        unknown = sorted((set(self.modes) | set(self.rest)) - set(self.motors))
        if unknown:
            raise ValueError(f"modes/rest name joints {unknown} that are not among the motors {list(self.motors)}")
        if self.fault_window_s <= 0 or self.stop_speed <= 0:
            raise ValueError("fault_window_s and stop_speed must be positive")
        if self.gripper and self.gripper not in self.motors:
            raise ValueError(f"gripper motor {self.gripper!r} is not one of {list(self.motors)}")
        grip = (
            (rs.gripper_open[0], rs.gripper_closed[0], rs.max_opening)
            if rs is not None and rs.gripper_joints
            else (1.2, 0.0, 0.06)
        )
        for name, default in zip(("gripper_open_rad", "gripper_closed_rad", "gripper_max_opening_m"), grip):
            if getattr(self, name) is None:
                setattr(self, name, default)


def run_arm(node: Node, port: str = "/dev/ttyUSB0", robot: str = "so101", **params) -> ArmDriver:
    """Graph entry point (`loopylab.firmware_bridge.arm_node:run_arm`). `$LOOPYLAB_ARM_PORT` overrides `port`,
    `$LOOPYLAB_ARM_CALIBRATION` the calibration, `$LOOPYLAB_ARM_LATENCY_S` / `$LOOPYLAB_ARM_FAULT_WINDOW_S`
    the allowances (what `loopylab arm launch` sets)."""
    port = os.environ.get("LOOPYLAB_ARM_PORT") or port
    if os.environ.get("LOOPYLAB_ARM_CALIBRATION"):
        params["calibration"] = os.environ["LOOPYLAB_ARM_CALIBRATION"]
    for key in ("latency_s", "fault_window_s"):  # `loopylab arm launch --latency-ms/--fault-window-ms`
        env = os.environ.get(f"LOOPYLAB_ARM_{key.upper()}")
        if env:
            params[key] = float(env)
    return ArmDriver(node, ArmConfig(port=port, robot=robot, **params))
