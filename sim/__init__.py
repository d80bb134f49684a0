"""sim: the simulated lab bench — PyBullet worlds whose objects have hidden physical properties
(SceneSpec, seeded), the robot catalogue (panda, kuka_iiwa, xarm6, so101), the SimArm driver node
(joint states, wrist wrench, gripper, cameras, motion capture, sim/reset, sim/oracle), the Gymnasium
environment `loopylab/Bench-v0`, and the Twin / TwinPool the belief engine uses for fast predictions.
"""
