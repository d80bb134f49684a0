"""Gymnasium environment over the bench worlds: `gymnasium.make("loopylab/Bench-v0")` (registered on import).

Task: bring the tool to the first object (the subject of the question) while the objects keep their
hidden properties — a small reaching task that exercises the same worlds, arm and safety limits as the
bus graph. Actions are joint-position deltas (scaled to `max_delta` rad) plus a gripper command, passed
through the same `SafetyLimits` as the gate node, so an agent cannot command what the gate would stop.
Observation: joint positions, tool position, object positions (padded to 4 objects), gripper opening.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from loopylab.sim.arm import ArmSim
from loopylab.sim.world import World
from loopylab.world.kinematics import Kinematics
from loopylab.world.limits import GateConfig, SafetyLimits
from loopylab.world.robots import robot_spec
from loopylab.world.scene import scene_from_seed

MAX_OBJECTS = 4


class BenchEnv(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        robot: str = "panda",
        n_objects: int | None = None,
        max_steps: int = 100,
        control_hz: float = 30.0,
        max_delta: float = 0.05,
        render_mode: str | None = None,
    ):
        self.robot, self.n_objects, self.max_steps = robot, n_objects, max_steps
        self.control_hz, self.max_delta, self.render_mode = control_hz, max_delta, render_mode
        rs = robot_spec(robot)
        self._kin = Kinematics(rs.urdf, rs.ee_link, list(rs.arm_joints))
        n = self._kin.n
        cfg = GateConfig(control_hz=control_hz)
        self._limits = SafetyLimits.from_kinematics(self._kin, cfg, rs.acc_limit)
        self.action_space = spaces.Box(-1.0, 1.0, (n + 1,), np.float32)
        self.observation_space = spaces.Box(-10.0, 10.0, (n + 3 + 3 * MAX_OBJECTS + 1,), np.float32)
        self.world: World | None = None
        self.arm: ArmSim | None = None
        self._steps = 0

    def _obs(self) -> np.ndarray:
        q, _, _ = self.arm.joint_state()
        ee, _ = self.arm.ee_pose()
        objs = np.zeros(3 * MAX_OBJECTS)
        for i, o in enumerate(self.world.spec.objects[:MAX_OBJECTS]):
            objs[3 * i : 3 * i + 3] = self.world.object_pose(o.label)[0]
        return np.clip(np.concatenate([q, ee, objs, [self.arm.gripper_opening()]]), -10, 10).astype(np.float32)

    def _distance(self) -> float:
        ee, _ = self.arm.ee_pose()
        target = self.world.object_pose(self.world.spec.objects[0].label)[0]
        return float(np.linalg.norm(ee - target))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        scene_seed = int(self.np_random.integers(0, 2**31 - 1)) if seed is None else int(seed)
        if self.world is not None:
            self.world.close()
        self.world = World(scene_from_seed(scene_seed, self.n_objects, self.robot))
        self.arm = ArmSim(self.world)
        self._steps_per = max(1, round(1.0 / (self.control_hz * self.world.dt)))
        self._limits.reset(self.arm.joint_state()[0])
        self._steps = 0
        return self._obs(), {"scene_seed": scene_seed, "distance": self._distance()}

    def step(self, action):
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        q, _, effort = self.arm.joint_state()
        target = self.arm.target + a[:-1] * self.max_delta
        cmd, interventions = self._limits.filter(target, q, effort)
        if cmd is not None:
            self.arm.command_positions(cmd, 1.0 / self.control_hz)
        self.arm.command_gripper((a[-1] + 1) / 2 * self.arm.max_opening)
        self.arm.step(self._steps_per)
        self._steps += 1
        d = self._distance()
        terminated = d < 0.03
        truncated = self._steps >= self.max_steps
        info = {"distance": d, "interventions": [i.kind for i in interventions]}
        return self._obs(), float(-d), bool(terminated), bool(truncated), info

    def render(self):
        if self.render_mode != "rgb_array" or self.world is None:
            return None
        from loopylab.sim.cameras import render

        rgb, _, _, _ = render(self.world.cid, self.world.spec.cameras[0])
        return rgb

    def close(self):
        if self.world is not None:
            self.world.close()
            self.world = None


if "loopylab/Bench-v0" not in gym.registry:
    gym.register(id="loopylab/Bench-v0", entry_point="loopylab.sim.gym_env:BenchEnv", max_episode_steps=100)
