"""firmware_bridge: everything between the bus and real hardware.

- `servo/`: serial bus servos (Dynamixel Protocol 2.0, Feetech STS/SCS) — packet codecs, control
  tables as data, the motor bus over pyserial, calibration and motor setup;
- `arm_node.py`: the hardware arm driver node (same bus contract as `loopylab.sim.SimArm`);
- `mcu/` and `firmware/`: the framed binary MCU bridge protocol, its reference C firmware and driver node;
- `modbus/`: Modbus RTU/TCP devices (generic TOML register maps, Robotiq 2F gripper, Robotiq FT300);
- `emulators/`: every device above emulated on a real pty or a real pymodbus server, with fault injection.

It knows the bus and nothing above it (no policy, no market).
"""
