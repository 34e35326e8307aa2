"""The tuned examples build and run (tiny budgets): stock PPO in the dream evaluated on the real game."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tuned_examples"))


def test_dream_ppo_trains_in_pixels_dream_and_evaluates_on_real_takecover(ray_session, image_checkpoint):
    from dream_ppo import dream_ppo_config

    config = dream_ppo_config(str(image_checkpoint), eval_episodes=2, real={"frame_cap": 25})
    config.env_runners(num_envs_per_env_runner=4).training(
        train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1
    )
    algo = config.build_algo()
    try:
        r = algo.train()
    finally:
        algo.stop()
    assert r["env_runners"]["num_env_steps_sampled_lifetime"] >= 128  # dream steps, for this stock PPO
    ev = r["evaluation"]["env_runners"]
    assert ev["num_episodes"] >= 2 and ev["episode_len_max"] <= 25  # the real game's frame cap


def test_takecover_and_car_racing_configs_validate():
    from car_racing import car_racing_config
    from vizdoom_takecover import takecover_config

    takecover_config().validate()
    car_racing_config().validate()
