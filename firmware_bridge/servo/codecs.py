"""The servo codecs by family name. The registry lives apart from `servo.protocol`, which the codecs build on,
so that no module imports one that imports it back."""

from __future__ import annotations

from loopylab.firmware_bridge.servo.dynamixel import DynamixelProtocol
from loopylab.firmware_bridge.servo.feetech import FeetechProtocol
from loopylab.firmware_bridge.servo.protocol import ServoProtocol

CODECS: dict[str, type[ServoProtocol]] = {"dynamixel": DynamixelProtocol, "feetech": FeetechProtocol}


def get_protocol(kind: str) -> ServoProtocol:
    """A codec for servo family `kind` (dynamixel | feetech)."""
    if kind not in CODECS:
        raise ValueError(f"unknown servo kind {kind!r}; choose one of {sorted(CODECS)}")
    return CODECS[kind]()
