"""The same agent through both real-game players: RLlib's evaluation EnvRunner vs the benchmarks' player.

    python benchmarks/evaluation_paths.py --checkpoint runs/plan_collect_from_it14/checkpoint --episodes 100 \
        --plan-horizon 0 12 --plan-every 3

Restores a `WorldModels` checkpoint (`Algorithm.from_checkpoint`, as `rllib-worldmodel evaluate` does), sets its
planning with `WorldModels.set_planning` per `--plan-horizon` entry, and plays `--episodes` real episodes twice with
the module the evaluation EnvRunner then holds: once through RLlib's evaluation EnvRunner
(`evaluation.evaluation_episodes`, the product path: `evaluate`, the loop's own evaluations) and once through
`dream_planning.play` (the player every `benchmarks/dream_planning.py` row uses: `forward_inference` on seeded
episodes). The two paths play different episode seeds (RLlib seeds its vector envs itself), so the rows are unpaired:
what they answer is whether either player reads an agent systematically lower. Writes JSON, prints the table last.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from dream_planning import play

from rllib_worldmodel.evaluation import evaluation_episodes


def both_paths(algo, make_env, episodes: int, seed: int) -> dict[str, dict]:
    """Real returns of `episodes` episodes of the agent as `algo` deploys it now, through each player.

    Args:
        algo: A `WorldModels` algorithm (restored or trained), planning set as wanted.
        make_env: Builds one real env as the evaluation EnvRunner does (`algo.env_creator`), for the player.
        episodes: Episodes per path.
        seed: The benchmark player's first episode seed (RLlib's EnvRunner seeds its envs itself).

    Returns:
        {"rllib": ..., "player": ...}, each with the returns, their mean, std and standard error, and wall-clock.
    """
    group = algo._synced_evaluation_group()
    # the module the evaluation plays (remote EnvRunners hold the Learner's weights, as the local module does)
    module = group.local_env_runner.module if group.num_remote_env_runners() == 0 else algo.local_module
    t0 = time.perf_counter()
    rllib = _summary(evaluation_episodes(group, episodes)[1], t0)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    player = _summary(play(module.cpu().eval(), make_env, episodes, seed), t0)
    return {"rllib": rllib, "player": player}


def _summary(returns: np.ndarray, t0: float) -> dict:
    return {
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "se": float(returns.std() / np.sqrt(len(returns))),
        "returns": returns.tolist(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a WorldModels RLlib checkpoint folder")
    parser.add_argument("--episodes", type=int, default=100, help="real episodes per path and row")
    parser.add_argument("--plan-horizon", type=int, nargs="+", default=[0], help="rows: planning horizons (0: C)")
    parser.add_argument("--plan-every", type=int, default=0, help="the planner's decision interval (0: C's own)")
    parser.add_argument("--seed", type=int, default=8000, help="the benchmark player's first episode seed")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "evaluation_paths.json"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
    import ray
    from ray.rllib.algorithms.algorithm import Algorithm

    torch.set_num_threads(2)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        algo = Algorithm.from_checkpoint(str(Path(args.checkpoint).resolve()))
        real = dict((algo.config.env_config or {}).get("real", {}))
        make = functools.partial(algo.env_creator, algo.config.env_config)  # the env the EnvRunners build
        rows = []
        for horizon in args.plan_horizon:
            algo.set_planning(horizon, every=args.plan_every if horizon else None)
            rows.append({"plan_horizon": horizon, **both_paths(algo, make, args.episodes, args.seed)})
            print(json.dumps({k: (v if k == "plan_horizon" else v["mean"]) for k, v in rows[-1].items()}), flush=True)
        algo.stop()
    finally:
        ray.shutdown()
    result = {"checkpoint": args.checkpoint, "episodes": args.episodes, "env_settings": real, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nreal {algo.config.env}, {args.episodes} episodes per cell (unpaired), frames survived; {real}")
    print("| agent | RLlib's evaluation EnvRunner | the benchmarks' player | difference (± SE) |")
    print("|---|---|---|---|")
    for row in rows:
        a, b = row["rllib"], row["player"]
        agent = f"planning, {row['plan_horizon']} steps ahead" if row["plan_horizon"] else "C alone"
        print(
            f"| {agent} | {a['mean']:.1f} ± {a['std']:.1f} | {b['mean']:.1f} ± {b['std']:.1f} | "
            f"{a['mean'] - b['mean']:+.1f} ± {np.hypot(a['se'], b['se']):.1f} |"
        )


if __name__ == "__main__":
    main()
