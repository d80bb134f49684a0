"""The MCU bridge: framed binary protocol to Arduino-class boards (hobby servos, analog sensors)."""
