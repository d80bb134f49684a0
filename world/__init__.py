"""The descriptions every other package reads, and the pure math on them: nothing here opens a socket,
starts a simulator or touches a port.

- `robots`: the robot catalogue (URDF, joints and limits, home pose, control rate, motor layouts per
  hardware kind; its URDFs in `assets/`);
- `joints`: reordering joint values from one joint order to another;
- `scene`: what a world is (objects, table, cameras) and the world builder's seed-to-scene rule;
- `kinematics`, `trajectory`, `limits`: forward/inverse kinematics, trajectories sampled at the control rate,
  and the safety gate's pure limits;
- `protocols`: how the skills turn signals into measurements;
- `notebook`: the notebook's text format (the language the policy reads and writes);
- `config`: strict loading of TOML tables into dataclasses.

This is the bottom of the house: it imports no other loopylab package.
"""
