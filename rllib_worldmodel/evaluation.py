"""Evaluation on the REAL env, reported beside the same controller's dream score.

Installed as the `custom_evaluation_function` of every WorldModelsConfig, so RLlib's own evaluation machinery
(evaluation EnvRunners, `evaluation_interval`, parallel evaluation, weight sync before evaluating) drives it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray.rllib.utils.metrics import EVALUATION_RESULTS
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger


def evaluate_real_and_dream(
    algo, eval_group, num_episodes: int | None = None, react: bool = True
) -> tuple[dict[str, Any], int, int]:
    """RLlib custom evaluation: N real episodes on the evaluation EnvRunners (no exploration) plus the dream score.

    Returns `real/episode_return_{mean,std,min,max}`, `real/num_episodes`, `dream/episode_return_{...}` (the same
    controller in the dream) and `dream_real_gap` (dream mean - real mean), under `evaluation/` in the results.
    With `react` the algorithm's exploit guard sees the gap and its reaction is reported under `guard/...`.
    """
    n = num_episodes or algo.config.evaluation_duration
    if eval_group.num_remote_env_runners() > 0:
        per = math.ceil(n / eval_group.num_remote_env_runners())
        batches = eval_group.foreach_env_runner(
            lambda er: er.sample(num_episodes=per, explore=False), local_env_runner=False
        )
    else:
        batches = [eval_group.local_env_runner.sample(num_episodes=n, explore=False)]
    episodes = [ep for eps in batches for ep in eps if ep.is_done]
    returns = np.array([ep.get_return() for ep in episodes], dtype=float)
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
