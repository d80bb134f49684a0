"""firmware_bridge: everything between the bus and real hardware.

- `servo/`: serial bus servos (Dynamixel Protocol 2.0, Feetech STS/SCS) — packet codecs, control
  tables as data, the motor bus over pyserial, calibration (and LeRobot import), per-model units, modes and
  gains, motor setup;
- `arm_node.py`: the hardware arm node's configuration and entry point; `arm_driver.py` the driver (same bus
  contract as `loopylab.sim.SimArm`), `arm_codec.py` its units, `arm_stop.py` its fault window and protective stop;
- `mcu/` and `firmware/`: the framed binary MCU bridge protocol, its reference C firmware and driver node;
- `modbus/`: Modbus RTU/TCP devices (generic TOML register maps, Robotiq 2F gripper, Robotiq FT300);
- `emulators/`: every device above emulated on a real pty or a real pymodbus server, with fault injection.

It knows the bus and nothing above it (no policy, no market).
"""
