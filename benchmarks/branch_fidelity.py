"""Do short dreams started from real states foresee the real deaths that followed? Branch AUC per world model.

    python benchmarks/branch_fidelity.py --world-model runs/wm_a/world_model.pt runs/wm_b/world_model.pt \\
        --episodes runs/wm_400/episodes --start 300 --stop 340 --horizons 15,30

For every world model: branch points are taken from the given (held-out) episodes, teacher-forced AUC of M's own
done probability for "dies within k steps" is measured, then dreams of H steps from those points (random-hold
behaviour policy, sampled deaths calibrated so the dream's mean capped survival from the points equals the real
one) give `fidelity.branch_fidelity`: the AUC of the dream's death rate for "really died within H", and how much a
constant action changes it. Writes JSON (default benchmarks/results/branch_fidelity.json); prints the table last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from rllib_worldmodel.calibration import calibrate_done_offset, real_branch_survival
from rllib_worldmodel.data import add_held_out_args, load_episodes
from rllib_worldmodel.dream import DreamSettings
from rllib_worldmodel.fidelity import branch_fidelity, roc_auc, teacher_forced_death_probability
from rllib_worldmodel.models.world_model import WorldModel
from rllib_worldmodel.trainer import WorldModelTrainer


@torch.no_grad()
def teacher_forced_auc(wm: WorldModel, episodes, latents, within=(0, 5, 15, 35)) -> dict[str, float]:
    """AUC of M's calibrated done probability at each real step for "the episode terminates within k steps"."""
    probs, left = [], []
    for ep, lat in zip(episodes, latents):
        probs.append(teacher_forced_death_probability(wm, lat.mu[:-1], torch.as_tensor(ep.actions)).numpy())
        steps_left = len(ep) - 1 - np.arange(len(ep))
        left.append(steps_left if ep.terminated else np.full(len(ep), 10**9))
    p, rem = np.concatenate(probs), np.concatenate(left)
    return {f"within_{k}": roc_auc(p, rem <= k) for k in within}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_args(parser, "episode folder to take branch points from")
    parser.add_argument("--horizons", default="15,30")
    parser.add_argument("--tau", type=float, default=1.15)
    parser.add_argument("--every", type=int, default=10, help="branch point every n real steps")
    parser.add_argument("--max-points", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "branch_fidelity.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    episodes = load_episodes(args.episodes, args.start, args.stop)
    rows = []
    for path in args.world_model:
        t0 = time.perf_counter()
        wm = WorldModel.load(path).eval()
        trainer = WorldModelTrainer(wm)
        latents = trainer.encode_episodes(episodes)
        trainer.store_branch_points(episodes, latents, every=args.every)
        row = {"world_model": path, "teacher_forced_auc": teacher_forced_auc(wm, episodes, latents), "branch": []}
        for horizon in [int(h) for h in args.horizons.split(",")]:
            settings = DreamSettings(
                temperature=args.tau, done_mode="sample", max_episode_steps=horizon, start="branch", seed=args.seed
            )
            real = real_branch_survival(wm, horizon)
            offset, dream = calibrate_done_offset(wm, settings, real, num_dreams=1024, seed=args.seed + 11)
            fid = branch_fidelity(
                wm, dataclasses.replace(settings, done_logit_offset=offset), args.max_points, args.reps
            )
            fid.update(done_logit_offset=offset, real_capped_survival=real, dream_capped_survival=dream)
            row["branch"].append(fid)
            print(json.dumps({"world_model": path, **fid}), flush=True)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    result = {
        "episodes": f"{args.episodes}[{args.start}:{args.stop}]",
        "num_episodes": len(episodes),
        "tau": args.tau,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"{'world model':40s} {'TF AUC@15':>9s} "
        + " ".join(f"{'H' + str(b['horizon']) + ' AUC':>9s} {'spread':>7s}" for b in rows[0]["branch"])
    )
    for r in rows:
        cells = " ".join(f"{b['auc']:9.3f} {b['action_spread']:7.3f}" for b in r["branch"])
        print(f"{r['world_model'][-40:]:40s} {r['teacher_forced_auc']['within_15']:9.3f} {cells}")


if __name__ == "__main__":
    main()
