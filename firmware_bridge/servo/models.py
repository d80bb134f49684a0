"""What each motor model reports and how it is set up: effort units from the control tables, operating
modes by name, and the gains the makers (or LeRobot, for its arms) recommend.

Effort (N·m per raw unit of the register read next to position and velocity):
- XL430 / XC430 have no current sensor: address 126 is Present_Load, 0.1 % of the maximum torque;
- XL330 / XM430 / XM540 report Present_Current there (XL330: 1 mA a unit; the others 2.69 mA), times
  the torque constant;
- STS3215 / STS3250: Present_Load (60), 0.1 % of the stall torque, sign in bit 10.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EffortUnit:
    quantity: str  # "load" (0.1 % of max torque) | "current"
    nm_per_unit: float  # N·m per raw register unit


# stall torques (N·m) at the arms' supply voltages and torque constants (N·m/A), from the datasheets
EFFORT_UNITS: dict[str, EffortUnit] = {
    "xl430-w250": EffortUnit("load", 0.001 * 1.5),
    "xc430-w150": EffortUnit("load", 0.001 * 1.6),
    "xl330-m077": EffortUnit("current", 0.001 * 0.16),
    "xl330-m288": EffortUnit("current", 0.001 * 0.35),
    "xm430-w350": EffortUnit("current", 0.00269 * 1.9),
    "xm430-w210": EffortUnit("current", 0.00269 * 1.3),
    "xm540-w270": EffortUnit("current", 0.00269 * 3.1),
    "sts3215": EffortUnit("load", 0.001 * 1.9),
    "sts3250": EffortUnit("load", 0.001 * 4.9),
}
# a model not listed: the family's common case
DEFAULT_EFFORT = {"dynamixel": EffortUnit("current", 0.00269 * 1.0), "feetech": EffortUnit("load", 0.001 * 1.9)}

# Operating_Mode values by name (Dynamixel X-series register 11; Feetech STS register 33)
OPERATING_MODES: dict[str, dict[str, int]] = {
    "dynamixel": {
        "current": 0,
        "velocity": 1,
        "position": 3,
        "extended_position": 4,
        "current_based_position": 5,
        "pwm": 16,
    },
    "feetech": {"position": 0, "velocity": 1, "pwm": 2, "step": 3},
}

# Position-loop gains set by setup-motors: register -> value, per (family, mode); LeRobot's choices for
# its arms (SO-101: P 16 instead of the factory 32 against shaking, I 0, D 32; Koch: P 1500, I 0, D 600
# on XL330 joints, closing the gap between goal and present).
GAINS: dict[tuple[str, str], dict[str, int]] = {
    ("feetech", "sts3215"): {"P_Coefficient": 16, "I_Coefficient": 0, "D_Coefficient": 32},
    ("dynamixel", "xl330-m288"): {"Position_P_Gain": 1500, "Position_I_Gain": 0, "Position_D_Gain": 600},
    ("dynamixel", "xl330-m077"): {"Position_P_Gain": 1500, "Position_I_Gain": 0, "Position_D_Gain": 600},
}


def effort_unit(kind: str, model: str) -> EffortUnit:
    return EFFORT_UNITS.get(model, DEFAULT_EFFORT[kind])


def mode_value(kind: str, mode: str) -> int:
    modes = OPERATING_MODES[kind]
    if mode not in modes:
        raise ValueError(f"{kind} motors have no {mode!r} mode; choose one of {sorted(modes)}")
    return modes[mode]


def mode_name(kind: str, value: int) -> str:
    return next((n for n, v in OPERATING_MODES[kind].items() if v == value), f"mode {value}")


def gains(kind: str, model: str) -> dict[str, int]:
    return dict(GAINS.get((kind, model), {}))
