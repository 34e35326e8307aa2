"""A tiny preset: one WorldModels iteration in seconds on CPU (used by the tests; handy for trying changes).

python tuned_examples/tiny.py            # CartPole (vector observations)
python tuned_examples/tiny.py --takecover  # real VizDoom TakeCover with a 60-step cap and tiny models
"""

from __future__ import annotations

import argparse

from rllib_worldmodel import REAL_ENV, TAKECOVER_ENV, WorldModelsConfig


def tiny_config(takecover: bool = False) -> WorldModelsConfig:
    """Smallest sizes that still exercise every phase."""
    if takecover:
        env, env_config = TAKECOVER_ENV, {"real": {"frame_cap": 60}}
    else:
        env, env_config = REAL_ENV, {"real": {"env_id": "CartPole-v1"}}
    return (
        WorldModelsConfig()
        .environment(env, env_config=env_config)
        .world_model(
            z_size=4,
            rnn_size=16,
            num_mixtures=2,
            vae_hidden=16,
            vae_batch_size=32,
            vae_epochs_per_iteration=1.0,
            mdn_batch_size=8,
            mdn_seq_len=16,
            mdn_epochs_per_iteration=1.0,
        )
        .collection(real_episodes_per_iteration=6)
        .dream(temperature=1.0, max_episode_steps=60, device="cpu")
        .controller(cma_population=6, cma_rollouts=2, cma_generations_per_iteration=2, dream_eval_episodes=8)
        .evaluation(evaluation_duration=4)
        .debugging(seed=0)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--takecover", action="store_true")
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    algo = tiny_config(args.takecover).build_algo()
    for _ in range(args.iterations):
        result = algo.train()
        ev = result["evaluation"]
        print(
            f"iter {result['training_iteration']}: real {ev['real/episode_return_mean']:.1f} ± "
            f"{ev['real/episode_return_std']:.1f}, dream {ev['dream/episode_return_mean']:.1f}, "
            f"gap {ev['dream_real_gap']:+.1f}"
        )
    algo.stop()
