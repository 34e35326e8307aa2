"""The open-loop bar on real TakeCover: how long fixed sweeps (right N steps, left N steps, ...) survive.

    python benchmarks/sweep_baseline.py --frame-skip 4 --periods 15 20 25 30 40 --episodes 200

A sweep reads nothing: no V, no M, no controller. A dream-trained controller that scores no better than the best
sweep has learned to move, not to dodge. Each period's episodes are reset with the same seeds (`fidelity.real_episodes`,
the reference policies of the ranking check; the sweep starts at a random place in its cycle). Scores are frames
survived (TakeCover pays 1 per frame at any frame skip). Writes JSON (default
benchmarks/results/sweep_baseline.json) and prints the best period's score last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rllib_worldmodel.envs.vizdoom import add_view_args, frame_skip_of, make_takecover, takecover_view
from rllib_worldmodel.fidelity import real_episodes, reference_policies


def sweep_returns(env, period: int, episodes: int, seed: int, start_turn: int | None = None) -> tuple[str, np.ndarray]:
    """The fixed sweep of `period` steps each way on `env`: its name and the frames survived in each of `episodes`
    real episodes (episode i reset with seed + i; `start_turn` 0: every episode starts the cycle with its first
    action, None: at a random turn)."""
    name, spec = next((k, v) for k, v in reference_policies(env.action_space, [period]).items() if v["cycle"])
    played = real_episodes(env, episodes=episodes, seed=seed, start_turn=start_turn, **spec)
    return name, np.array([float(ep.rewards.sum()) for ep in played])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--periods", type=int, nargs="+", default=[15, 20, 25, 30, 40], help="steps per direction")
    parser.add_argument("--episodes", type=int, default=200, help="real episodes per period")
    parser.add_argument("--skill", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    parser.add_argument(
        "--start",
        choices=("random", "first"),
        default="random",
        help="where each episode starts the cycle: a random turn of it (right or left first, drawn per episode), or "
        "its first action (right) at step 0, as a planner that alternates from its first decision plays it",
    )
    add_view_args(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sweep_baseline.json"))
    args = parser.parse_args(argv)
    view = takecover_view(args)
    skip = frame_skip_of(view)
    env = make_takecover(skill=args.skill, **view)
    rows = []
    start_turn = 0 if args.start == "first" else None
    for period in args.periods:
        t0 = time.perf_counter()
        name, scores = sweep_returns(env, period, args.episodes, args.seed, start_turn)
        rows.append(
            {
                "policy": name,
                "period_steps": period,
                "period_frames": period * skip,
                "real_mean": float(scores.mean()),
                "real_std": float(scores.std()),
                "real_episodes": len(scores),
                "real_returns": scores.tolist(),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    env.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {**vars(args), "view": view}, "rows": rows}, indent=2))
    print(f"wrote {out}")
    best = max(rows, key=lambda r: r["real_mean"])
    print(
        f"best open-loop sweep on real TakeCover (skill {args.skill}, frame skip {skip}): "
        f"{best['period_frames']} frames each way, {best['real_mean']:.0f} ± {best['real_std']:.0f} frames over "
        f"{best['real_episodes']} episodes"
    )


if __name__ == "__main__":
    main()
