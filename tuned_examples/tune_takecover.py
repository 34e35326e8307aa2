"""Ray Tune search over tau, pessimism and curiosity on TakeCover, with ASHA, selected on the REAL score.

    python tuned_examples/tune_takecover.py --num-samples 8 --max-iterations 4
    RAY_ADDRESS=auto python tuned_examples/tune_takecover.py ...    # on a running Ray cluster, unchanged

Every trial is a WorldModels run (ensemble M with 5 heads) evaluated on the real game after each iteration; ASHA
stops the trials whose real evaluation return lags, and the winner is the best `evaluation/real/episode_return_mean`
(the dream score is reported beside it, never used to choose).
"""

from __future__ import annotations

import argparse
import json
import os

from ray import tune
from vizdoom_takecover import takecover_config

from rllib_worldmodel import WorldModelsConfig

SEARCHED = ("temperature", "pessimism", "curiosity")


def search_space(base: WorldModelsConfig) -> WorldModelsConfig:
    """The searched knobs on top of `base` (an ensemble of 5 heads makes pessimism and disagreement available)."""
    return (
        base.world_model(num_heads=5)
        .dream(temperature=tune.choice([1.0, 1.15, 1.3]), pessimism=tune.choice([0.0, 1.0, 5.0]), done_ensemble="max")
        .collection(curiosity=tune.choice([0.0, 0.5, 2.0]), curiosity_bonus="disagreement")
    )


if __name__ == "__main__":
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from rllib_worldmodel.tuning import run_search, summarize

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--max-iterations", type=int, default=4)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--episodes-per-iteration", type=int, default=100)
    parser.add_argument("--max-concurrent-trials", type=int, default=1, help="1 on a 2-core machine; more on a cluster")
    parser.add_argument("--storage-path", default=None)
    args = parser.parse_args()
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    config = search_space(takecover_config(eval_episodes=args.eval_episodes))
    config.collection(real_episodes_per_iteration=args.episodes_per_iteration)
    results, best = run_search(
        config,
        num_samples=args.num_samples,
        max_iterations=args.max_iterations,
        max_concurrent_trials=args.max_concurrent_trials,
        storage_path=args.storage_path,
        name="tune_takecover",
    )
    for row in summarize(results, SEARCHED):
        print(json.dumps(row))
    ev = best.metrics["evaluation"]
    chosen = {k: best.config[k] for k in SEARCHED}
    print(
        f"best by REAL score: {chosen} -> real {ev['real/episode_return_mean']:.0f} ± "
        f"{ev['real/episode_return_std']:.0f} over {ev['real/num_episodes']} episodes "
        f"(dream {ev['dream/episode_return_mean']:.0f})"
    )
