"""Rounds of: refit the done head on dreams → train C in the dream → play C for real → keep those episodes.

    python benchmarks/dream_dagger.py --world-model runs/wm_hold/world_model.pt --episodes runs/wm_hold/episodes \
        --rounds 4 --out-dir runs/wm_dagger_rounds

A done head refitted on dreamed states (`rllib_worldmodel.done_refit`) ranks the reference policies the way the real
game does, yet CMA-ES then finds behaviour the dream overrates, because no recorded episode ever played it
(RESULTS.md). Each round here (DAgger-style) closes that loop: from the base world model, the done head is refitted on
dreams from every real state recorded so far (the base data plus every earlier round's real episodes, each dreamed
with the actions really taken and labelled with the real deaths); deaths are calibrated to the real random-hold
survival; C is trained by CMA-ES in that dream; the deployed C plays `--eval-episodes` real episodes (its score for
the round) and `--candidate-episodes` more are played by fresh candidates from CMA-ES's final search distribution,
so the next refit sees the behaviours the search proposes, not only the one it settles on. V and the rest of M stay
frozen. Every real step is counted. Writes the per-round table as JSON (default benchmarks/results/dream_dagger.json)
and prints it last.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from takecover_tau import dream_returns, play_real, train_in_dream  # noqa: E402

import rllib_worldmodel as rw  # noqa: E402
from rllib_worldmodel.calibration import calibrate_done_offset  # noqa: E402
from rllib_worldmodel.dream import DreamSettings  # noqa: E402
from rllib_worldmodel.envs.vizdoom import takecover_view  # noqa: E402
from rllib_worldmodel.models.world_model import read_checkpoint  # noqa: E402
from rllib_worldmodel.trainer import WorldModelTrainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", default="runs/wm_hold/world_model.pt")
    parser.add_argument("--episodes", default="runs/wm_hold/episodes", help="folder of the world model's episodes")
    parser.add_argument("--num-episodes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=100, help="dreamed steps per real start in the refit")
    parser.add_argument("--every", type=int, default=10, help="a refit dream starts at every N-th real state")
    parser.add_argument("--max-starts", type=int, default=8000, help="refit starts per round (memory)")
    parser.add_argument("--refit-steps", type=int, default=300)
    parser.add_argument("--tau", type=float, default=1.15)
    parser.add_argument("--calibrate-to", type=float, default=322.5, help="real random-hold mean survival")
    parser.add_argument("--action-repeat", type=int, default=1, help="C decides every k-th step (1: paper)")
    parser.add_argument("--cma-population", type=int, default=32)
    parser.add_argument("--cma-rollouts", type=int, default=8)
    parser.add_argument("--cma-generations", type=int, default=8)
    parser.add_argument("--dream-episodes", type=int, default=256)
    parser.add_argument("--eval-episodes", type=int, default=100, help="real episodes of the deployed C per round")
    parser.add_argument("--candidate-episodes", type=int, default=64, help="real episodes of CMA-ES candidates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="runs/wm_dagger_rounds", help="each round's world model")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "dream_dagger.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    t_start = time.perf_counter()
    wm = rw.WorldModel.load(args.world_model).eval()
    metadata = read_checkpoint(args.world_model)["metadata"]
    mdn_latents = metadata.get("mdn_latents", "sample")
    view = takecover_view(argparse.Namespace(), metadata)  # the render switches V was fitted with
    base_head = copy.deepcopy(wm.mdn_rnn.done_head.state_dict())
    trainer = WorldModelTrainer(wm, mdn_latents=mdn_latents, seed=args.seed)
    episodes = rw.load_episodes(args.episodes)[: args.num_episodes]
    data = trainer.encoded_episodes(episodes, trainer.encode_episodes(episodes))
    base_steps = sum(len(ep) for ep in episodes)
    del episodes
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, real_steps = [], base_steps
    for r in range(args.rounds):
        t0 = time.perf_counter()
        wm.mdn_rnn.done_head.load_state_dict(base_head)
        refit = rw.refit_done_on_dreams(
            wm,
            data,
            horizon=args.horizon,
            every=args.every,
            temperature=args.tau,
            steps=args.refit_steps,
            max_starts=args.max_starts,
            seed=args.seed + r,
        )
        settings = DreamSettings(temperature=args.tau, done_mode="sample", seed=args.seed + r)
        offset, survival = calibrate_done_offset(wm, settings, args.calibrate_to, seed=args.seed + 11)
        settings = dataclasses.replace(settings, done_logit_offset=offset)
        wm.save(
            out_dir / f"round{r}.pt",
            metadata={**metadata, "done_head_refit_on_dreams": {"from": args.world_model, "round": r, **refit}},
        )
        cma_args = argparse.Namespace(**{**vars(args), "seed": args.seed + r})
        controller, log, cma, _ = train_in_dream(wm, settings, cma_args, common_noise=False)
        dream = dream_returns(wm, settings, controller, args)
        recorded: dict[int, tuple] = {}
        real, share = play_real(
            wm,
            controller,
            args.eval_episodes,
            seed=10_000 * (r + 1),
            view=view,
            z_mode=mdn_latents,
            recorded=recorded,
            action_repeat=args.action_repeat,
        )
        candidates: dict[int, tuple] = {}
        cand_real = np.zeros(0)
        if args.candidate_episodes:
            flats = np.asarray(cma.es.ask(args.candidate_episodes))
            cand_real, _ = play_real(
                wm,
                controller,
                args.candidate_episodes,
                seed=10_000 * (r + 1) + 5_000,
                view=view,
                z_mode=mdn_latents,
                flats=flats,
                recorded=candidates,
                action_repeat=args.action_repeat,
            )
        new = [recorded[i] for i in sorted(recorded)] + [candidates[i] for i in sorted(candidates)]
        steps = int(real.sum() + cand_real.sum())
        data += new
        real_steps += steps
        row = {
            "round": r,
            "refit": refit,
            "done_logit_offset": offset,
            "calibrated_random_hold_survival": survival,
            "dream_mean": float(dream.mean()),
            "dream_std": float(dream.std()),
            "real_mean": float(real.mean()),
            "real_std": float(real.std()),
            "real_episodes": len(real),
            "real_action_share": [round(float(x), 3) for x in share],
            "candidates_real_mean": float(cand_real.mean()) if len(cand_real) else None,
            "new_real_steps": steps,
            "real_steps_so_far": real_steps,
            "episodes_in_refit_data_next_round": len(data),
            "cma_fitness_last": log[-1]["dream/cma_fitness_mean"],
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        result = {"settings": vars(args), "base_real_steps": base_steps, "rows": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))  # after every round: a crash keeps what was measured
    print(f"wrote {args.json} ({time.perf_counter() - t_start:.0f} s)")
    print("round | refit AUC before -> after | dream | real (mean ± std) | candidates real | real steps so far")
    for row in rows:
        f = row["refit"]
        print(
            f"{row['round']} | {f['world_model/done_refit_val_auc_before']:.2f} -> "
            f"{f['world_model/done_refit_val_auc_after']:.2f} | {row['dream_mean']:.0f} | "
            f"{row['real_mean']:.0f} ± {row['real_std']:.0f} ({row['real_episodes']}) | "
            f"{row['candidates_real_mean'] or 0:.0f} | {row['real_steps_so_far']}"
        )


if __name__ == "__main__":
    main()
