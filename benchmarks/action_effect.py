"""Does M know what the actions do? Action identification and the dream's action signal-to-noise per world model.

    python benchmarks/action_effect.py --world-model runs/wm_a/world_model.pt runs/wm_b/world_model.pt \\
        --episodes runs/wm_400/episodes --start 300 --stop 320

For every world model, on the given (held-out) real episodes: how often the action really taken makes M's
prediction of the real next latent most likely (chance: 1 / actions); how far M's expected next latents under
different actions lie apart compared with the spread of its prediction; and, from branch points taken from those
episodes, how far constant actions move deterministic dreams apart in `--steps` steps (`fidelity.action_effect`).
Writes JSON (default benchmarks/results/action_effect.json) and prints the table last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rllib_worldmodel.data import add_held_out_args, load_episodes
from rllib_worldmodel.fidelity import action_effect
from rllib_worldmodel.models.world_model import WorldModel
from rllib_worldmodel.trainer import WorldModelTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_args(parser, "episode folder (held-out episodes: see --start/--stop)")
    parser.add_argument("--steps", type=int, default=10, help="dream steps for the signal-to-noise ratio")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/action_effect.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    episodes = load_episodes(args.episodes, args.start, args.stop)
    rows = []
    for path in args.world_model:
        t0 = time.perf_counter()
        wm = WorldModel.load(path)
        wm.eval()
        trainer = WorldModelTrainer(wm, device="cpu", seed=args.seed)
        latents = trainer.encode_episodes(episodes)
        trainer.store_branch_points(episodes, latents)  # this model's LSTM states on the held-out history
        out = action_effect(
            wm,
            [(lat.mu, ep.actions) for ep, lat in zip(episodes, latents)],
            steps=args.steps,
            seed=args.seed,
        )
        rows.append({"world_model": path, **out, "wall_s": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
    result = {"episodes": f"{args.episodes}[{args.start}:{args.stop}]", "num_episodes": len(episodes), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    print("world model | action identified (chance) | log-lik margin | 1-step signal/noise | dream action distance")
    for r in rows:
        print(
            f"{r['world_model']} | {r['action_identification']:.3f} ({r['chance']:.3f}) | {r['loglik_margin']:+.2f} | "
            f"{r['step_signal_to_noise']:.3f} | {r['dream_action_distance']:.2f} after {r['steps']} steps "
            f"(real latent step {r['real_step_distance']:.2f})"
        )


if __name__ == "__main__":
    main()
