"""Modbus RTU/TCP devices (pymodbus): generic TOML register maps, Robotiq 2F grippers, Robotiq FT300."""
