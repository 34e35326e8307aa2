"""Stock RLlib PPO trained only in the learned simulator, evaluated on the REAL TakeCover game.

The dream runs in pixel mode, so it has the real env's exact spaces (64x64x3 uint8 frames, Discrete(3)) and PPO's
default CNN policy moves from dream to reality unchanged. Training steps are dream steps; the evaluation
EnvRunners play the real game.

    rllib-worldmodel fit --env takecover --out runs/wm            # or: bash scripts/run_main.sh
    python tuned_examples/dream_ppo.py --world-model runs/wm/world_model.pt --no-tune --stop-iters 20
"""

from __future__ import annotations

from ray.rllib.algorithms.ppo import PPOConfig

from rllib_worldmodel import DREAM_ENV, TAKECOVER_ENV
from rllib_worldmodel.connectors import NormalizeFrames


def dream_ppo_config(
    world_model: str, temperature: float = 1.15, eval_episodes: int = 20, real: dict | None = None
) -> PPOConfig:
    """PPO on `WorldModels/Dream-v0` (pixels) with evaluation on `WorldModels/TakeCover-v0`.

    Args:
        world_model: Path of a world-model checkpoint fitted on TakeCover.
        temperature: Dream temperature tau (paper's best: 1.15).
        eval_episodes: Real episodes per evaluation.
        real: Settings of the real env (skill, frame_cap).
    """
    real = real or {"skill": 4, "frame_cap": 2100}
    dream = {"world_model": world_model, "obs_mode": "pixels", "temperature": temperature, "max_episode_steps": 2100}
    return (
        PPOConfig()
        # env_config is namespaced: RLlib deep-merges the evaluation override into it, and each creator reads its own.
        .environment(DREAM_ENV, env_config={"dream": dream, "real": real})
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=16,
            gym_env_vectorize_mode="vector_entry_point",
            # RLlib's default CNN wants float frames; both the dream and the real game emit uint8.
            env_to_module_connector=lambda env, spaces, device: NormalizeFrames(),
        )
        .training(train_batch_size_per_learner=4096, minibatch_size=256, num_epochs=4, lr=3e-4)
        .evaluation(
            evaluation_interval=1,
            evaluation_duration=eval_episodes,
            evaluation_duration_unit="episodes",
            evaluation_num_env_runners=0,
            evaluation_config=PPOConfig.overrides(
                env=TAKECOVER_ENV, explore=False, gym_env_vectorize_mode="sync", num_envs_per_env_runner=1
            ),
        )
    )


if __name__ == "__main__":
    from ray.rllib.examples.utils import add_rllib_example_script_args

    from rllib_worldmodel.examples import run_example

    parser = add_rllib_example_script_args(default_reward=750.0, default_iters=20, default_timesteps=10_000_000)
    parser.add_argument("--world-model", required=True, help="world-model checkpoint (rllib-worldmodel fit)")
    parser.add_argument("--temperature", type=float, default=1.15)
    args = parser.parse_args()
    # The evaluation EnvRunners play the REAL game: that return, never the dream's, is what --stop-reward judges.
    run_example(
        dream_ppo_config(args.world_model, args.temperature),
        args,
        metric="evaluation/env_runners/episode_return_mean",
        trainable=None,
    )
