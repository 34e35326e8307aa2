"""Real-env evaluation: every episode that is picked is played to its end, whatever its length."""

import gymnasium as gym
import numpy as np

from rllib_worldmodel.evaluation import first_started_episodes, played_to_the_end


class _ResetCountedEnv(gym.Env):
    """Episodes of 2 steps, except every 4th reset across all instances (the 0th, 4th, ...): 40 steps, reward 1 a
    step. Built E at a time in one vector env, the first E resets are the E envs' first episodes, so env 0 plays
    the only long one among them."""

    resets = 0
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, config=None):
        super().__init__()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length = 40 if _ResetCountedEnv.resets % 4 == 0 else 2
        _ResetCountedEnv.resets += 1
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, self.t >= self.length, False, {}


def test_the_first_episodes_to_start_are_played_to_the_end_unlike_stopping_at_the_nth_to_finish():
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    config = PPOConfig().environment(_ResetCountedEnv).env_runners(num_env_runners=0, num_envs_per_env_runner=4)
    runner = SingleAgentEnvRunner(config=config)
    try:
        _ResetCountedEnv.resets = 0
        stopped = runner.sample(num_episodes=4, explore=False)  # RLlib's rule: the first 4 episodes to finish
        assert sorted(len(ep) for ep in stopped if ep.is_done) == [2, 2, 2, 2]  # the long one never counts
        _ResetCountedEnv.resets = 0
        # one vector step per call: the first call holds exactly the 4 first episodes (with longer calls the picks
        # among the episodes starting in one call are by random id, still blind to their lengths)
        played = played_to_the_end(runner, 4, chunk=1)
        assert played.shape == (2, 4)
        assert sorted(played[0]) == [2, 2, 2, 40]  # each env's first episode, the long one included, whole
        np.testing.assert_array_equal(played[1], played[0])  # returns summed over the calls that carried them
    finally:
        runner.stop()


def test_collected_episodes_are_the_first_to_start_whole_with_every_sampled_step_counted():
    """Collection keeps whole episodes (the long one too, joined from the chunks of several calls) and counts the env
    steps of the episodes dropped beside them."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    config = PPOConfig().environment(_ResetCountedEnv).env_runners(num_env_runners=0, num_envs_per_env_runner=4)
    runner = SingleAgentEnvRunner(config=config)
    try:
        _ResetCountedEnv.resets = 0
        episodes, steps = first_started_episodes(runner, 4, explore=True, chunk=1)
        assert sorted(len(ep) for ep in episodes) == [2, 2, 2, 40]
        long = max(episodes, key=len)
        assert long.t_started == 0 and long.is_terminated and len(set(ep.id_ for ep in episodes)) == 4
        assert len(long.get_observations()) == 41 and len(long.get_actions()) == 40 and long.get_return() == 40.0
        # the 3 short envs' later (dropped) episodes are stepped alongside the long one: counted as RLlib counts
        assert steps > sum(len(ep) for ep in episodes)
        assert steps == runner.get_metrics()["num_env_steps_sampled_lifetime"]
    finally:
        runner.stop()
