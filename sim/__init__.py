"""sim: the simulated lab bench. PyBullet worlds built from `world` scene descriptions (objects with hidden
physical properties), the SimArm driver node (joint states, wrist wrench, gripper, cameras, motion capture, the
latched `sim/scene` topic and the `sim/reset` / `sim/oracle` services) and the Gymnasium environment
`loopylab/Bench-v0`, and the market's twin replay (`verifier.py`, a `loopylab.verifiers` plug-in). It uses only `bus` and `world`: the robot catalogue, scenes and kinematics are `world`'s, the
twin the belief engine predicts with is the lab's (`loopylab.lab.twin`).
"""
