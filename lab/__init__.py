"""The lab: the scientist. It turns a physical question about an unknown world into experiments on the
robot, updates its beliefs from what they measure, and concludes when it is sure enough.

- `questions`: what may be asked, the tolerances and budgets, and grading against the hidden truth;
- `experiments`: the finite experiment grid, the experiments that are sensible where the objects stand;
- `agents`, `design`: who proposes the next step (random, grid, the `eig` expert; more through the
  `loopylab.agents` entry points, e.g. the nanochat policy) and expected-information-gain design;
- `forward`, `beliefs`: the forward model (tabulated twin runs) and the particle posterior over each
  object's hidden friction, mass and restitution;
- `investigation`, `notebook`: the scientific loop, written step by step into the notebook
  (the text format is `loopylab.world.notebook`) and to its sinks (bus, console, files);
- `bench`, `evaluation`, `report`: the bench graph an investigation runs on, many seeded worlds graded
  at once, and the report folders;
- `cli`, `commands`, `plugins`: the `loopylab` command line (run, eval, demo), with the verbs of the
  other packages added through the `loopylab.cli` entry points.

The lab sits above actuation and perception (it drives the robot through the skills and learns the
scene from perception or the world builder); only nanochat sits above it.
"""
