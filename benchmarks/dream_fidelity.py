"""Does the dream rank policies as the real game does? Reference policies' survival in the dream vs in TakeCover.

    rllib-worldmodel fit --env takecover --episodes 100 --num-heads 5 --done-bias-init -5 --out runs/wm_noflash
    python benchmarks/dream_fidelity.py --world-model runs/wm_noflash/world_model.pt --calibrate-to 322.5

For random actions held 1-10 steps, uniform random actions, each constant action and sweeps (right N steps, left
N steps, ...; `--sweeps`): mean survival over `--dreams` dreams and over `--episodes` real episodes, and the
Spearman rank correlation of the two columns (see `rllib_worldmodel.fidelity`). Per policy also the real deaths per
step beside M's done head's death probability while it reads those same real frames (teacher forcing): that tells
a done head that cannot rank the policies from a dream that does not play them out. Writes JSON (default
benchmarks/results/dream_fidelity.json); prints the table last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from rllib_worldmodel.calibration import add_calibration_args, calibrate_done_offset
from rllib_worldmodel.dream import DreamSettings
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.envs.vizdoom import add_view_args, episode_steps, takecover_view
from rllib_worldmodel.fidelity import ranking_fidelity
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", default="runs/wm_noflash/world_model.pt")
    parser.add_argument("--temperature", type=float, default=1.15)
    parser.add_argument("--done-mode", default="sample", choices=["threshold", "sample"])
    parser.add_argument("--done-logit-offset", type=float, default=0.0)
    parser.add_argument(
        "--done-logit-scale", type=float, default=1.0, help="multiply M's done logits by this before the offset"
    )
    add_calibration_args(parser)
    parser.add_argument("--dreams", type=int, default=512)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sweeps",
        type=int,
        nargs="*",
        default=[100],
        help="add a sweep policy (right N steps, left N steps, ...) per N: the policy that shows whether the dream "
        "knows that moving keeps you alive",
    )
    add_view_args(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dream_fidelity.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    wm = WorldModel.load(args.world_model).eval()
    view = takecover_view(args, read_checkpoint(args.world_model)["metadata"])
    settings = DreamSettings(
        temperature=args.temperature,
        done_mode=args.done_mode,
        max_episode_steps=episode_steps(view),  # the real cap, in env steps
        seed=args.seed,
        done_logit_offset=args.done_logit_offset,
        done_logit_scale=args.done_logit_scale,
    )
    if args.calibrate_to:
        offset, _ = calibrate_done_offset(
            wm, settings, args.calibrate_to, seed=args.seed + 11, hold=tuple(args.calibrate_hold)
        )
        settings = dataclasses.replace(settings, done_logit_offset=offset)
    env = make_takecover(**view)
    result = ranking_fidelity(
        wm, settings, env, episodes=args.episodes, num_dreams=args.dreams, seed=args.seed, sweeps=args.sweeps
    )
    env.close()
    result["settings"] = {**vars(args), "done_logit_offset": settings.done_logit_offset, "view": view}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    print(
        f"policy | dream survival ({args.dreams} dreams) | real survival ({args.episodes} episodes) | real deaths per "
        "1000 steps | M's deaths per 1000 steps reading those real frames: as fitted | as this dream applies them "
        "(scale, offset)"
    )
    for r in result["rows"]:
        print(
            f"{r['policy']} | {r['dream_mean']:.0f} ± {r['dream_std']:.0f} | {r['real_mean']:.0f} ± {r['real_std']:.0f}"
            f" | {1000 * r['real_hazard']:.2f} | {1000 * r['model_hazard_on_real']:.2f}"
            f" | {1000 * r['dream_hazard_on_real']:.2f}"
        )
    print(f"Spearman rank correlation, dream vs real: {result['spearman_rho']:+.2f}")


if __name__ == "__main__":
    main()
