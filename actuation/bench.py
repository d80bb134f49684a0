"""The simulated bench in one process: SimArm + safety gate + skills on a fresh inproc graph.

The same nodes as graphs/sim_bench.toml, as threads — for the CLI (`loopylab skill ... --sim`), tests and
benchmarks. Real ZeroMQ sockets (inproc transport), real PyBullet.

    with sim_bench(robot="panda", seed=0) as bench:
        reply = bench.client.call("skills/execute", {"skill": "push", "args": {...}}, timeout=60)
"""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from loopylab.bus import Node


@dataclass
class Bench:
    url: str
    sim: object          # sim.node.SimArm
    gate: object         # actuation.gate.GateNode
    skills: object       # actuation.skills.Skills
    client: Node
    nodes: list

    def call(self, service: str, request: dict, timeout: float = 30.0):
        """A service call that rides out the graph directory's slow answers on a loaded host."""
        from loopylab.bus.directory import DirectoryUnavailable
        for attempt in range(5):
            try:
                return self.client.call(service, request, timeout=timeout)
            except DirectoryUnavailable:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def execute(self, skill: str, args: dict, timeout: float = 120.0) -> dict:
        return self.call("skills/execute", {"skill": skill, "args": args}, timeout=timeout)

    def reset(self, seed: int, n_objects: int | None = None, robot: str | None = None) -> dict:
        """New world on the sim (and the matching perceived scene for the skills)."""
        req = {"seed": seed, "n_objects": n_objects, "robot": robot or self.sim.scene.robot}
        reply = self.call("sim/reset", {k: v for k, v in req.items() if v is not None}, timeout=30)
        self.skills.scene = self.sim.scene.perceived()  # (the skills node also follows sim/scene itself)
        self.skills._epoch_ns = self.sim._stamp() - int(0.5e9)  # in case sim/scene is still in flight
        return reply


@contextmanager
def sim_bench(robot: str = "panda", seed: int = 0, n_objects: int | None = None, cameras: bool = False,
              mocap: bool = True, mocap_noise: float = 0.0005, clock: str = "lockstep", gate: dict | None = None):
    from loopylab.actuation.gate import run_gate
    from loopylab.actuation.skills import run_skills
    from loopylab.sim.node import run_sim_arm
    url = f"inproc://bench-{uuid.uuid4().hex[:12]}"
    nodes = [Node(n, url) for n in ("sim_arm", "safety_gate", "skills", "client")]
    sim = g = sk = None
    try:
        sim = run_sim_arm(nodes[0], robot=robot, seed=seed, n_objects=n_objects, cameras=cameras, mocap=mocap,
                          mocap_noise=mocap_noise, clock=clock)
        g = run_gate(nodes[1], robot=robot, **(gate or {}))
        sk = run_skills(nodes[2], robot=robot, seed=seed, n_objects=n_objects)
        yield Bench(url, sim, g, sk, nodes[3], nodes)
    finally:
        if sim is not None:
            sim.close()  # stops its loop first: nothing publishes on a closing socket
        if sk is not None:
            sk.close()
        if g is not None:
            g.close()
        for n in reversed(nodes):
            n.close()
