"""rig: the hardware-in-the-loop bench — a PyBullet world (`loopylab.sim`) behind the real device protocols
(`loopylab.firmware_bridge`'s emulators), so the hardware path runs unchanged against physics.

It owns the emulated rig: the arm's servos on a pty whose joints are simulated (Feetech STS3215 for so101,
Dynamixel X for koch), a Robotiq 2F-85 on Modbus RTU whose fingers are the sim's, an FT300 streaming the
physics' wrench, cameras rendered from the same world, and the calibration and scene files a maker's bench
would have. It sits above both `sim` and `firmware_bridge` (which never import each other); `loopylab arm
emulate --physics` reaches it through the `loopylab.emulators` entry point.

    rig.py       Rig / RigConfig: the world and its devices, ports and files
    physics.py   RigPhysics: the world stepped in real time, joints driven like position servos
    motors.py    the servos' `body` hooks, their assembly offsets and the matching calibration
    gripper.py   the Robotiq whose fingers are the sim gripper
    render.py    the cameras, rendered in a process of their own (PyBullet holds the GIL through a frame)
    cli.py       `loopylab arm emulate --physics`
"""
