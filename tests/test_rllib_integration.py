"""The dream under RLlib's own EnvRunner (local and as a Ray actor), as any RLlib algorithm would use it."""

import numpy as np
import pytest

import rllib_worldmodel as rw


def _config(checkpoint, num_envs=4):
    from ray.rllib.algorithms.ppo import PPOConfig

    return (
        PPOConfig()
        .environment(rw.DREAM_ENV, env_config={"dream": {"world_model": str(checkpoint), "max_episode_steps": 25}})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs, gym_env_vectorize_mode="vector_entry_point")
    )


def _check_episodes(episodes, obs_size, min_steps):
    assert sum(len(e) for e in episodes) >= min_steps
    for ep in episodes:
        obs = np.asarray(ep.get_observations())
        assert obs.shape[-1] == obs_size and np.isfinite(obs).all()
        if ep.is_done:
            assert ep.is_terminated or ep.is_truncated
            assert len(ep) <= 25


def test_dream_vector_env_under_local_env_runner(cartpole_fit):
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    model, _, path = cartpole_fit
    runner = SingleAgentEnvRunner(config=_config(path))
    assert isinstance(runner.env.unwrapped, rw.DreamVectorEnv) and runner.num_envs == 4
    episodes = runner.sample(num_timesteps=400, random_actions=True)
    _check_episodes(episodes, model.config.z_size + model.config.rnn_size, 400)
    assert any(ep.is_done for ep in episodes), "a 25-step cap must end some dreams"
    # The module acts too (not only random actions).
    _check_episodes(runner.sample(num_timesteps=100), model.config.z_size + model.config.rnn_size, 100)
    runner.stop()


def test_dream_vector_env_under_remote_env_runner(ray_session, cartpole_fit):
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    model, _, path = cartpole_fit
    actor = ray_session.remote(num_cpus=1)(SingleAgentEnvRunner).remote(config=_config(path, num_envs=8))
    try:
        episodes = ray_session.get(actor.sample.remote(num_timesteps=300, random_actions=True))
        _check_episodes(episodes, model.config.z_size + model.config.rnn_size, 300)
    finally:
        ray_session.kill(actor)


def test_missing_world_model_fails_at_env_creation():
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    cfg = PPOConfig().environment(rw.DREAM_ENV, env_config={"dream": {}}).env_runners(num_env_runners=0)
    with pytest.raises(ValueError, match="world_model"):
        SingleAgentEnvRunner(config=cfg)


def test_stock_ppo_trains_in_the_dream_under_tune(ray_session, cartpole_fit, tmp_path):
    """Any RLlib algorithm can train in the learned simulator: PPO for one iteration through Tune."""
    from ray import tune
    from ray.rllib.algorithms.ppo import PPOConfig

    _, _, path = cartpole_fit
    config = (
        PPOConfig()
        .environment(rw.DREAM_ENV, env_config={"dream": {"world_model": str(path), "max_episode_steps": 100}})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=8, gym_env_vectorize_mode="vector_entry_point")
        .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=1)
    )
    tuner = tune.Tuner(
        "PPO",
        param_space=config,
        run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=str(tmp_path), verbose=0),
    )
    result = tuner.fit().get_best_result(metric="env_runners/num_env_steps_sampled_lifetime", mode="max")
    assert result.error is None
    assert result.metrics["env_runners"]["num_env_steps_sampled_lifetime"] >= 256
