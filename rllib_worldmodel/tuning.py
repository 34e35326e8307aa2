"""Ray Tune searches over the dream's knobs, selected on the REAL evaluation score (never the dream score).

ASHA stops weak trials early on `evaluation/real/episode_return_mean` (the real-env evaluation every iteration);
the best trial is picked on the same metric. The search runs wherever Ray runs: one machine, or a cluster when
the script is started on it (`ray.init(address="auto")` or RAY_ADDRESS), with no change to the code.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from rllib_worldmodel.config import WorldModelsConfig
from rllib_worldmodel.examples import REAL_RETURN


def run_search(
    config: WorldModelsConfig,
    *,
    num_samples: int = 8,
    max_iterations: int = 4,
    grace_period: int = 1,
    reduction_factor: int = 2,
    max_concurrent_trials: int | None = None,
    storage_path: str | None = None,
    name: str | None = None,
    verbose: int = 1,
) -> tuple[tune.ResultGrid, tune.Result]:
    """Run an ASHA search over `config` (whose fields may hold Tune search spaces) and pick the best REAL score.

    Args:
        config: A WorldModelsConfig; any field may be `tune.choice([...])`, `tune.grid_search([...])`, ...
        num_samples: Trials (times each grid point, for grid searches).
        max_iterations: WorldModels iterations per trial (ASHA's max_t).
        grace_period: Iterations every trial gets before ASHA may stop it.
        reduction_factor: ASHA's halving rate.
        max_concurrent_trials: Cap on trials running at once (None: as many as resources allow).
        storage_path: Where Tune writes results (default ~/ray_results).
        name: Experiment name.
        verbose: Tune's verbosity.

    Returns:
        (all results, the best trial's result by `evaluation/real/episode_return_mean`, last iteration).
    """
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_iterations,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )
    tuner = tune.Tuner(
        "WorldModels",
        param_space=config,
        tune_config=tune.TuneConfig(
            metric=REAL_RETURN,
            mode="max",
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            stop={"training_iteration": max_iterations}, storage_path=storage_path, name=name, verbose=verbose
        ),
    )
    results = tuner.fit()
    return results, results.get_best_result(metric=REAL_RETURN, mode="max", scope="last")


def summarize(results: tune.ResultGrid, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per trial: the searched settings in `keys`, its real and dream scores at its last iteration."""
    rows = []
    for r in results:
        if r.error is not None or not r.metrics:
            continue
        ev = r.metrics.get("evaluation", {})
        rows.append(
            {
                **{k: r.config.get(k) for k in keys},
                "iterations": r.metrics.get("training_iteration"),
                "real_mean": ev.get("real/episode_return_mean"),
                "real_std": ev.get("real/episode_return_std"),
                "dream_mean": ev.get("dream/episode_return_mean"),
                "real_env_steps": r.metrics.get("real/num_env_steps_sampled_lifetime"),
            }
        )
    return sorted(rows, key=lambda row: -(row["real_mean"] if row["real_mean"] is not None else float("-inf")))
