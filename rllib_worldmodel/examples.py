"""Running tuned examples the RLlib way (its example-script flags), judged on the REAL evaluation return."""

from __future__ import annotations

import argparse

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

REAL_RETURN = "evaluation/real/episode_return_mean"


def run_example(
    config: AlgorithmConfig, args: argparse.Namespace, metric: str = REAL_RETURN, trainable: str | None = "WorldModels"
):
    """`run_rllib_example_script_experiment` with --stop-reward/--as-test applied to `metric` (a real-env return,
    never a dream score) and --stop-iters.

    Args:
        config: The algorithm config.
        args: From `ray.rllib.examples.utils.add_rllib_example_script_args(...).parse_args()`.
        metric: Result key that --stop-reward and --as-test judge.
        trainable: Registered trainable name (None: the config's algorithm class).
    """
    from ray.rllib.examples.utils import run_rllib_example_script_experiment

    return run_rllib_example_script_experiment(
        config,
        args,
        stop={metric: args.stop_reward, "training_iteration": args.stop_iters},
        success_metric={metric: args.stop_reward},
        trainable=trainable,
    )
