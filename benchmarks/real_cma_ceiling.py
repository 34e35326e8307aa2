"""A ceiling for the controller, not a result: CMA-ES for the paper's linear C on [z, h], trained on the REAL game.

    python benchmarks/real_cma_ceiling.py --world-model runs/wm_noflash/world_model.pt \
        --population 16 --rollouts 4 --generations 40

Same V + M (frozen), same controller class and CMA-ES as the dream-trained controllers, but every candidate is
scored on real TakeCover episodes (2 processes, each playing its share of the population's episodes with one V/M
batch per step). It answers "could this controller, with this search budget, learn to survive at all from these
features?", which bounds what any dream can teach it. Never a dream-trained score: it spends real env steps on the
controller, which the World Models recipe does not. Writes JSON (default benchmarks/results/real_cma_ceiling.json)
and prints the deployed controller's real score last.
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import get_context
from pathlib import Path

import cma
import numpy as np
import torch
from takecover_tau import play_real

from rllib_worldmodel.envs.vizdoom import add_view_args, frame_skip_of, takecover_view
from rllib_worldmodel.models.controller import Controller
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel

_WM: WorldModel | None = None
_VIEW: dict = {}


def _init_worker(path: str, view: dict) -> None:
    global _WM, _VIEW
    torch.set_num_threads(1)
    _WM, _VIEW = WorldModel.load(path).eval(), view


def play(job: tuple[np.ndarray, int, int]) -> np.ndarray:
    """Real returns of one episode per row of `flats` (controller parameters), all played at once; episode i is
    reset with seed + i, and the controller decides every `action_repeat`-th frame (`takecover_tau.play_real`)."""
    flats, seed, action_repeat = job
    ctrl = Controller(_WM.config.z_size + _WM.config.rnn_size, _WM.config.action_space())
    return play_real(
        _WM, ctrl, len(flats), num_envs=len(flats), seed=seed, view=_VIEW, flats=flats, action_repeat=action_repeat
    )[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", default="runs/wm_noflash/world_model.pt")
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--rollouts", type=int, default=4, help="real episodes per candidate")
    parser.add_argument("--generations", type=int, default=40)
    parser.add_argument("--sigma-init", type=float, default=0.1)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--action-repeat",
        type=int,
        default=1,
        help="the controller decides every k-th env step, k x frame skip frames (the main job: 50 at frame skip 1)",
    )
    add_view_args(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "real_cma_ceiling.json"))
    args = parser.parse_args()
    view = takecover_view(args, read_checkpoint(args.world_model)["metadata"])
    skip = frame_skip_of(view)
    wm = WorldModel.load(args.world_model)
    ctrl = Controller(wm.config.z_size + wm.config.rnn_size, wm.config.action_space())
    es = cma.CMAEvolutionStrategy(
        ctrl.get_flat(), args.sigma_init, {"popsize": args.population, "seed": args.seed, "verbose": -9}
    )
    pool = get_context("fork").Pool(args.processes, initializer=_init_worker, initargs=(args.world_model, view))

    def run(flats: np.ndarray, seed: int) -> np.ndarray:
        """Episode i (of candidate flats[i]) is reset with seed + i, whichever process plays it."""
        parts = np.array_split(np.arange(len(flats)), args.processes)
        return np.concatenate(pool.map(play, [(flats[p], seed + int(p[0]), args.action_repeat) for p in parts]))

    t0, steps, log = time.perf_counter(), 0, []
    for g in range(args.generations):
        solutions = np.asarray(es.ask())
        returns = run(np.repeat(solutions, args.rollouts, axis=0), g * 10_000)
        # TakeCover pays 1 per frame, so returns are frames; at frame skip k a step is k of them (the last one cut)
        steps += int(np.ceil(returns / skip).sum())
        fitness = returns.reshape(len(solutions), args.rollouts).mean(1)
        es.tell(list(solutions), list(-fitness))
        log.append(
            {
                "generation": g + 1,
                "fitness_mean": float(fitness.mean()),
                "fitness_max": float(fitness.max()),
                "real_steps": steps,
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps(log[-1]), flush=True)
    train_s = time.perf_counter() - t0
    # the deployed controller is CMA-ES's mean, scored on episodes no candidate was scored on
    final = run(np.repeat(np.asarray(es.mean)[None], args.eval_episodes, 0), 9_000_000)
    pool.close()
    result = {
        "world_model": args.world_model,
        "view": view,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "train_real_steps": steps,
        "frame_skip": skip,
        "train_wall_s": round(train_s, 1),
        "real_mean": float(final.mean()),
        "real_std": float(final.std()),
        "real_episodes": len(final),
        "curve": log,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    print(
        f"linear C on [z, h] deciding every {args.action_repeat * skip} frames, CMA-ES {args.population} x "
        f"{args.rollouts} real episodes x {args.generations} "
        f"generations on the REAL game ({steps:,} real steps, {train_s:.0f} s): "
        f"{final.mean():.0f} ± {final.std():.0f} over {len(final)} real episodes"
    )


if __name__ == "__main__":
    main()
