"""The paper's temperature table on this machine: one fitted world model, C trained by CMA-ES in the dream at each
tau, every controller judged on the REAL game.

    rllib-worldmodel fit --env takecover --episodes 100 --vae-epochs 3 --mdn-epochs 20 --out runs/takecover_world_model
    python benchmarks/takecover_tau.py --world-model runs/takecover_world_model/world_model.pt

For each tau: CMA-ES (population x rollouts per generation, one batched dream), the deployed controller's dream
score over `--dream-episodes` dreams at that tau, and its real score over `--eval-episodes` real episodes
(mean ± std). Writes JSON (default benchmarks/results/takecover_tau.json) and prints the table last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from rllib_worldmodel.cma_es import CMAESTrainer, evaluate_population
from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.models.controller import Controller
from rllib_worldmodel.models.world_model import WorldModel


@torch.no_grad()
def play_real(
    world_model: WorldModel,
    controller: Controller,
    episodes: int,
    num_envs: int = 8,
    include_cell: bool = False,
    z_mode: str = "sample",
    seed: int = 0,
    skill: int = 4,
    frame_cap: int = 2100,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns of `episodes` real TakeCover episodes played by V + M + C (`num_envs` at a time, one V batch), and the
    share of steps spent on each action."""
    envs = [make_takecover(skill=skill, frame_cap=frame_cap) for _ in range(num_envs)]
    gen = torch.Generator().manual_seed(seed)
    returns, started = [], 0
    obs = [None] * num_envs
    ret = np.zeros(num_envs)
    counts = np.zeros(world_model.config.action_dim)
    live = np.zeros(num_envs, bool)
    h, c = world_model.mdn_rnn.initial_state(num_envs)
    for i, env in enumerate(envs):
        if started < episodes:
            obs[i], _ = env.reset(seed=seed + started)
            live[i], started = True, started + 1
    while live.any():
        idx = np.flatnonzero(live)
        mu, logvar = world_model.vae.encode(torch.as_tensor(np.stack([obs[i] for i in idx])))
        z = mu if z_mode == "mean" else mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
        hi, ci = h[idx], c[idx]
        action = controller.act(torch.cat([z, hi, ci] if include_cell else [z, hi], dim=-1))
        hn, cn = world_model.mdn_rnn.step(z, world_model.encode_action(action), (hi, ci))
        h[idx], c[idx] = hn, cn
        counts += np.bincount(action.numpy(), minlength=len(counts))
        for j, i in enumerate(idx):
            obs[i], r, term, trunc, _ = envs[i].step(int(action[j]))
            ret[i] += r
            if term or trunc:
                returns.append(ret[i])
                ret[i], h[i], c[i] = 0.0, 0.0, 0.0
                if started < episodes:
                    obs[i], _ = envs[i].reset(seed=seed + started)
                    started += 1
                else:
                    live[i] = False
    for env in envs:
        env.close()
    return np.asarray(returns), counts / counts.sum()


def train_in_dream(wm: WorldModel, settings: DreamSettings, args) -> tuple[Controller, list[dict]]:
    """CMA-ES in the dream; returns the controller at CMA-ES's mean and the per-generation metrics."""
    controller = Controller(
        wm.config.z_size + wm.config.rnn_size * (2 if settings.include_cell else 1), wm.config.action_space()
    )
    cma = CMAESTrainer(controller, args.cma_population, args.cma_rollouts, seed=args.seed)
    sim = DreamSimulator(wm, settings)
    log = []
    for _ in range(args.cma_generations):
        m = cma.step(sim)
        log.append(m)
        print({k: round(v, 2) for k, v in m.items()}, flush=True)
    controller.set_flat(cma.mean_params())
    return controller, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", default="runs/takecover_world_model/world_model.pt")
    parser.add_argument("--taus", default="0.1,0.5,1.0,1.15,1.3")
    parser.add_argument("--done-mode", default="threshold", choices=["threshold", "sample"])
    parser.add_argument("--pessimism", type=float, default=0.0)
    parser.add_argument("--done-ensemble", default="mean", choices=["mean", "max"])
    parser.add_argument("--initial-noise", type=float, default=0.0)
    parser.add_argument("--done-logit-offset", type=float, default=0.0)
    parser.add_argument("--cma-population", type=int, default=32)
    parser.add_argument("--cma-rollouts", type=int, default=8)
    parser.add_argument("--cma-generations", type=int, default=10)
    parser.add_argument("--dream-episodes", type=int, default=256)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "takecover_tau.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    wm = WorldModel.load(args.world_model).eval()
    rows = []
    for tau in [float(t) for t in args.taus.split(",")]:
        t0 = time.perf_counter()
        settings = DreamSettings(
            temperature=tau,
            done_mode=args.done_mode,
            max_episode_steps=2100,
            seed=args.seed,
            pessimism=args.pessimism,
            done_ensemble=args.done_ensemble,
            initial_noise=args.initial_noise,
            done_logit_offset=args.done_logit_offset,
        )
        controller, log = train_in_dream(wm, settings, args)
        dream = evaluate_population(
            DreamSimulator(wm, settings), controller, controller.get_flat()[None], args.dream_episodes, seed=7
        ).returns[0]
        real, action_share = play_real(wm, controller, args.eval_episodes, seed=args.seed + 1000)
        row = {
            "tau": tau,
            "dream_mean": float(dream.mean()),
            "dream_std": float(dream.std()),
            "real_mean": float(real.mean()),
            "real_std": float(real.std()),
            "real_episodes": len(real),
            "real_action_share": [round(float(x), 3) for x in action_share],
            "cma_fitness_last": log[-1]["dream/cma_fitness_mean"],
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    print("tau | dream | real")
    for r in rows:
        print(f"{r['tau']} | {r['dream_mean']:.0f} ± {r['dream_std']:.0f} | {r['real_mean']:.0f} ± {r['real_std']:.0f}")


if __name__ == "__main__":
    main()
