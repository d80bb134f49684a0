"""Serial bus servos: packet codecs (Dynamixel 2.0, Feetech STS/SCS), control tables, the motor bus."""

from loopylab.firmware_bridge.servo.codecs import get_protocol
from loopylab.firmware_bridge.servo.protocol import CorruptPacket, Instruction, Register, ServoProtocol, StatusPacket

__all__ = ["CorruptPacket", "Instruction", "Register", "ServoProtocol", "StatusPacket", "get_protocol"]
