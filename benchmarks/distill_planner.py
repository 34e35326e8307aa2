"""C distilled from the planner vs the original C, alone and planning, on the same REAL episodes.

    python benchmarks/distill_planner.py --checkpoint runs/takecover/checkpoint --states 8000 --episodes 100

Restores a `WorldModels` checkpoint whose agent plans (its `plan_*` buffers, or `--plan-horizon`), plays real
TakeCover episodes with C alone and with the planning agent, then fits C to the planner's dreamed choices at the
replay's newest real states (`WorldModels.distill_controller`, `rllib_worldmodel.distill`) and plays the same
episode seeds again with the fitted C alone and planning with it. C alone decides at its own interval (the
checkpoint's `action_repeat`, or the planner's for a C its loop fitted); the fitted C alone at the planner's, the
interval its labels were chosen at. No real reward reaches any decision or any fit: the labels are the planner's
dreamed scores. Score = frames survived. Writes JSON (and the fitted C's weights beside it, `.controller.pt`) and
prints the table last.

`--c searched` starts from CMA-ES's mean instead of the deployed C: on a checkpoint whose loop already deployed a
fitted C (the main job's, `distill_deploy="alone"`), that is the C its fit started from and its planner rolled
out, so other planner settings (`--plan-horizon`, `--plan-every`, `--plan-rollouts`) can be distilled from the same
start. `--alone-only` plays the two C-alone rows only; `--seed A B ...` plays every row on each set of episodes;
`--real-z mean` reads real frames as V's posterior mean in every row and in the labelled states.

    python benchmarks/distill_planner.py --checkpoint runs/takecover/checkpoint --c searched --plan-horizon 12 \
        --plan-every 3 --plan-rollouts parallel --alone-only --seed 6000 7000 8000
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback

import numpy as np
import ray
import torch
from dream_planning import play
from ray.rllib.algorithms.algorithm import Algorithm

import rllib_worldmodel  # noqa: F401  (registers the env names the checkpoint's config reads)
from rllib_worldmodel.distill import DistillSettings
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.models.world_model import read_checkpoint
from rllib_worldmodel.planning import PLAN_ROLLOUTS
from rllib_worldmodel.rl_module import REAL_Z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a WorldModels RLlib checkpoint folder")
    parser.add_argument("--states", type=int, default=8000, help="real replay states the planner labels")
    parser.add_argument("--every", type=int, default=0, help="every n-th state of an episode (0: planner's interval)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--plan-horizon", type=int, default=None, help="plan this far (default: the checkpoint's)")
    parser.add_argument("--plan-every", type=int, default=None, help="planner's interval (default: the checkpoint's)")
    parser.add_argument(
        "--plan-rollouts",
        choices=PLAN_ROLLOUTS,
        default=None,
        help="the planner's rollouts (default: the checkpoint's)",
    )
    parser.add_argument(
        "--c",
        choices=("deployed", "searched"),
        default="deployed",
        help="the C to start from: the checkpoint's deployed C, or CMA-ES's mean (the searched C; a loop that fitted "
        "C deployed the fitted one)",
    )
    parser.add_argument(
        "--real-z",
        choices=REAL_Z,
        default=None,
        help="how the agent reads real frames, in every row and in the states the planner labels: a draw from V's "
        "posterior (sample) or its mean (default: as the checkpoint's agent; `WorldModels.set_real_z`)",
    )
    parser.add_argument("--alone-only", action="store_true", help="play C alone and the fitted C alone only")
    parser.add_argument("--episodes", type=int, default=100, help="real episodes per row and seed")
    parser.add_argument(
        "--seed", type=int, nargs="+", default=[6000], help="episode i is reset with seed + i in every row (each seed)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "distill_planner.json"))
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        t0 = time.perf_counter()
        algo = Algorithm.from_checkpoint(str(Path(args.checkpoint).resolve()))
        restore_s = time.perf_counter() - t0
        if args.real_z is not None:
            algo.set_real_z(args.real_z)
        if args.c == "searched":
            algo.deploy_searched_controller()
        if args.plan_horizon is not None or args.plan_rollouts is not None:
            now = algo.local_module.plan_settings()
            algo.set_planning(
                now.horizon if args.plan_horizon is None else args.plan_horizon,
                every=now.every if args.plan_every is None else args.plan_every,
                rollouts=args.plan_rollouts or now.rollouts,
            )
        module = algo.local_module.cpu().eval()
        plan = module.plan_settings()
        if not plan.enabled:
            raise SystemExit(
                "the checkpoint's agent does not plan: pass --plan-horizon (e.g. 12) and --plan-every (e.g. 3)"
            )
        env_settings = read_checkpoint(Path(args.checkpoint).resolve().parent / "world_model.pt")["metadata"]
        make_env = functools.partial(make_takecover, **env_settings["env_settings"])
        # C alone at its own interval (a C the checkpoint's loop fitted: the planner's; else its action_repeat)
        interval, own = plan.interval(module.action_repeat), module.controller_interval()
        rows = {}

        def row(name: str, planning: bool, repeat: int) -> None:
            module.plan_horizon.fill_(plan.horizon if planning else 0)
            module.controller_every.fill_(repeat)  # C's interval alone (a planning agent decides at the planner's)
            t, played = time.perf_counter(), []
            for seed in args.seed:
                torch.manual_seed(seed)  # V's z draws: the same in every row
                played.append(play(module, make_env, args.episodes, seed))
            returns = np.concatenate(played)
            decides = interval if planning else repeat  # a planning agent decides at the planner's interval
            rows[name] = {"returns": returns.tolist(), "wall_s": time.perf_counter() - t, "repeat": decides}
            print(f"{name}: {returns.mean():.1f} ± {returns.std():.1f} ({rows[name]['wall_s']:.0f} s)", flush=True)

        row("C alone", False, own)
        if not args.alone_only:
            row("C + planning", True, own)
        module.plan_horizon.fill_(plan.horizon)  # the planner labels (a C-alone row last switched it off)
        t = time.perf_counter()
        metrics = algo.distill_controller(
            DistillSettings(states=args.states, every=args.every, epochs=args.epochs, lr=args.lr)
        )
        distill_s = time.perf_counter() - t
        print({k: round(v, 3) for k, v in metrics.items()}, f"{distill_s:.0f} s", flush=True)
        module = algo.local_module.cpu().eval()
        # the fitted C beside the JSON, to play it again elsewhere (`controller.load_state_dict`)
        torch.save(module.controller.state_dict(), Path(args.out).with_suffix(".controller.pt"))
        row("distilled C alone", False, interval)
        if not args.alone_only:
            row("distilled C + planning", True, own)
        algo.stop()
    finally:
        ray.shutdown()

    base_name = "C alone" if args.alone_only else "C + planning"
    base = np.asarray(rows[base_name]["returns"])
    table = []
    for name, r in rows.items():
        x = np.asarray(r["returns"])
        d = x - base
        r.update(
            mean=float(x.mean()),
            std=float(x.std()),
            paired_vs_base=float(d.mean()),
            paired_se=float(d.std(ddof=1) / np.sqrt(len(d))),
        )
        table.append(
            f"| {name} | every {r['repeat']} steps | {r['mean']:.1f} ± {r['std']:.1f} | "
            f"{r['paired_vs_base']:+.1f} ± {r['paired_se']:.1f} | {r['wall_s']:.0f} s |"
        )
    out = {
        "checkpoint": str(args.checkpoint),
        "plan": {"horizon": plan.horizon, "every": interval, "samples": plan.samples, "rollouts": plan.rollouts},
        "c": args.c,
        "real_z": module.real_z,
        "paired_base": base_name,
        "distill": {"states": args.states, "every": args.every, "epochs": args.epochs, "lr": args.lr},
        "distill_metrics": metrics,
        "distill_s": distill_s,
        "restore_s": restore_s,
        "episodes": args.episodes,
        "seed": args.seed,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=1))
    seeds = ", ".join(f"{s}+" for s in args.seed)
    print(f"\nreal TakeCover, {args.episodes} episodes per seed (seeds {seeds}), frames survived; {args.out}")
    print(f"| agent | decides | real | paired vs {base_name} | wall-clock |")
    print("|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
