"""Evaluation on the REAL env, reported beside the same controller's dream score.

Installed as the `custom_evaluation_function` of every WorldModelsConfig, so RLlib's own evaluation machinery
(evaluation EnvRunners, `evaluation_interval`, parallel evaluation, weight sync before evaluating) drives it.
"""

from __future__ import annotations

import math
from typing import Any, TYPE_CHECKING

import numpy as np
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EVALUATION_RESULTS
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

if TYPE_CHECKING:
    from ray.rllib.env.env_runner_group import EnvRunnerGroup


def sample_episodes(group: EnvRunnerGroup, num_episodes: int, explore: bool) -> tuple[list, list[dict]]:
    """At least `num_episodes` episodes from an EnvRunnerGroup (split over its remote EnvRunners, or on the local one
    when it has none), and each EnvRunner's metrics of that sampling (RLlib's `env_runners/...` stats)."""
    if group.num_remote_env_runners() > 0:
        per = math.ceil(num_episodes / group.num_remote_env_runners())
        results = group.foreach_env_runner(
            lambda er: (er.sample(num_episodes=per, explore=explore), er.get_metrics()), local_env_runner=False
        )
    else:
        er = group.local_env_runner
        results = [(er.sample(num_episodes=num_episodes, explore=explore), er.get_metrics())]
    return [ep for eps, _ in results for ep in eps], [m for _, m in results]


def evaluation_episodes(group: EnvRunnerGroup, num_episodes: int) -> tuple[list, np.ndarray, list[dict]]:
    """`num_episodes` finished real episodes played without exploration (as an evaluation plays them), their
    returns, and the EnvRunners' metrics of that sampling."""
    sampled, runner_metrics = sample_episodes(group, num_episodes, explore=False)
    episodes = [ep for ep in sampled if ep.is_done]
    return episodes, np.array([ep.get_return() for ep in episodes], dtype=float), runner_metrics


def evaluate_real_and_dream(
    algo, eval_group, num_episodes: int | None = None, react: bool = True
) -> tuple[dict[str, Any], int, int]:
    """RLlib custom evaluation: N real episodes on the evaluation EnvRunners (no exploration) plus the dream score.

    Returns `real/episode_return_{mean,std,min,max}`, `real/num_episodes`, `dream/episode_return_{...}` (the same
    controller in the dream) and `dream_real_gap` (dream mean - real mean), under `evaluation/` in the results;
    RLlib's own EnvRunner stats of the same episodes go to `evaluation/env_runners/...` (their
    `episode_return_mean` is smoothed over RLlib's `metrics_num_episodes_for_smoothing` last episodes, which can
    span evaluations; `evaluation/real/...` is this evaluation's alone).
    With `react` the algorithm's exploit guard sees the gap and its reaction is reported under `guard/...`.
    """
    n = num_episodes or algo.config.evaluation_duration
    episodes, returns, runner_metrics = evaluation_episodes(eval_group, n)
    # RLlib's own evaluation stats (evaluation/env_runners/episode_return_mean, ...), which Tune users and RLlib's
    # "no evaluation results" check look for, beside ours.
    algo.metrics.aggregate(runner_metrics, key=(EVALUATION_RESULTS, ENV_RUNNER_RESULTS))
    steps = int(sum(len(ep) for ep in episodes))
    results: dict[str, Any] = {
        "real/episode_return_mean": float(returns.mean()),
        "real/episode_return_std": float(returns.std()),
        "real/episode_return_min": float(returns.min()),
        "real/episode_return_max": float(returns.max()),
        "real/episode_len_mean": float(np.mean([len(ep) for ep in episodes])),
        "real/num_episodes": len(episodes),
        "real/num_env_steps": steps,
    }
    if hasattr(algo, "record_real_evaluation"):  # the anchor of calibrate_deaths="policy"
        algo.record_real_evaluation(returns)
    if algo.dream_score:
        results.update({f"dream/episode_return_{k}": v for k, v in algo.dream_score.items()})
        results["dream_real_gap"] = algo.dream_score["mean"] - results["real/episode_return_mean"]
        if react and hasattr(algo, "exploit_guard"):
            results.update(algo.exploit_guard(algo.dream_score["mean"], results["real/episode_return_mean"]))
    # On the new API stack RLlib reads evaluation results from the metrics logger (as aggregated stats), not from
    # this return value: log into a child logger and aggregate it, as EnvRunner metrics are.
    child = MetricsLogger()
    for k, v in results.items():
        child.log_value(k, v, window=1)
    algo.metrics.aggregate([child.reduce()], key=EVALUATION_RESULTS)
    return results, steps, steps
