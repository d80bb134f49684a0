import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import loopylab.sim.gym_env  # noqa: F401  (registers loopylab/Bench-v0)


def test_env_passes_check_env_and_reset_is_reproducible():
    env = gym.make("loopylab/Bench-v0", robot="kuka_iiwa")
    check_env(env.unwrapped, skip_render_check=True)
    a = np.linspace(-1, 1, env.action_space.shape[0]).astype(np.float32)
    runs = []
    for _ in range(2):
        obs, info = env.reset(seed=11)
        traj = [obs] + [env.step(a)[0] for _ in range(5)]
        runs.append(np.stack(traj))
    assert np.array_equal(runs[0], runs[1])
    other, _ = env.reset(seed=12)
    assert not np.array_equal(other, runs[0][0])
    env.close()
