"""actuation: everything between a decision and a moving arm. The safety gate node (the only publisher of
arm/joint_command; its pure limits are `loopylab.world.limits`) and the skills served on skills/execute (move_to,
push, strike, lift, weigh, drop, place), built on kinematics, trajectories and measurement protocols from
`world`. It never knows which driver is behind the bus: it imports neither `sim` nor `firmware_bridge`.
"""
