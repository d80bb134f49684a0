"""actuation: everything between a decision and a moving arm — the safety gate (the only publisher of
arm/joint_command: limits, rate limit, workspace box, deadman, heartbeat, e-stop latch), kinematics from
any URDF (FK, verified IK, Jacobian), trajectories, experiment protocols and the skills served on
skills/execute (move_to, push, lift, weigh, drop, strike). It never knows which driver is behind the bus.
"""
