"""The simulated bench's graph built in code: the node entries of graphs/sim_bench.toml (and, with
`perception`, of graphs/sim_bench_perception.toml) as a `GraphSpec`, on a fresh inproc bus by default.

Tests, benchmarks, the evaluator, the lab and `loopylab skill --sim` start it with the launcher's in-process
mode (`loopylab.bus.launch.start_graph`, or the lab's `sim_bench`); `loopylab launch graphs/sim_bench.toml`
runs the file. tests/actuation/test_graphs.py checks that the two name the same nodes.
"""

from __future__ import annotations

import uuid
from typing import Any

from loopylab.bus.launch import GraphSpec, NodeSpec
from loopylab.world.scene import PLACEMENT

# who may call what on the simulated bench (as graphs/sim_bench.toml's [access]): the truth to the grader, the
# choice of world to the evaluator, the e-stop's release to an operator. The graph is sealed (bus/access.py).
ACCESS = {"sim/oracle": ["grader"], "sim/reset": ["evaluator"], "safety/reset": ["operator"]}
SIM_ARM = "loopylab.sim.node:run_sim_arm"
SAFETY_GATE = "loopylab.actuation.gate:run_gate"
SKILLS = "loopylab.actuation.skills:run_skills"
PERCEPTION = "loopylab.perception.node:run_perception"


def sim_bench_graph(
    robot: str = "panda",
    seed: int = 0,
    n_objects: int | None = None,
    scene: str | None = None,
    cameras: bool = False,
    mocap: bool = True,
    mocap_noise: float = 0.0005,
    clock: str = "lockstep",
    gate: dict[str, Any] | None = None,
    perception: dict[str, Any] | None = None,
    url: str | None = None,
    ft_noise: bool = True,
    world_secret: str | None = None,
) -> GraphSpec:
    """SimArm (the world of `seed`, or of the `scene` TOML), safety gate (`gate`: its parameters), skills, and
    with `perception` (its parameters) a perception node. The skills and perception learn the world from the
    sim's latched `sim/scene` topic. `url`: another bus (ipc/tcp: the nodes run as processes). `ft_noise=False`:
    an exact wrist sensor instead of the FT 300-S's noise (sim/ft_noise.py). `world_secret`: the sim's key to the
    seeds' hidden properties (world/scene.py; None: the public worlds)."""
    if robot not in PLACEMENT:  # say so here, in one line, rather than in three failing nodes
        raise ValueError(f"unknown robot {robot!r} for the simulated bench (known: {', '.join(PLACEMENT)})")
    sim = {
        "robot": robot,
        "seed": seed,
        "n_objects": n_objects,
        "scene": scene,
        "cameras": cameras,
        "mocap": mocap,
        "mocap_noise": mocap_noise,
        "clock": clock,
        "ft_noise": ft_noise,
        "world_secret": world_secret,
    }
    nodes = [
        NodeSpec("sim_arm", SIM_ARM, params={k: v for k, v in sim.items() if v is not None}),
        NodeSpec("safety_gate", SAFETY_GATE, params={"robot": robot, **(gate or {})}),
        NodeSpec("skills", SKILLS, params={"robot": robot}),
    ]
    if perception is not None:
        nodes.append(NodeSpec("perception", PERCEPTION, params=dict(perception)))
    spec = GraphSpec(name="sim_bench", transport="ipc", nodes=nodes, access=dict(ACCESS))
    return spec.with_bus(url or f"inproc://sim-bench-{uuid.uuid4().hex[:12]}")
