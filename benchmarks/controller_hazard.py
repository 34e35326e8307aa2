"""Does M see what kills a trained controller? Its death rate reading the controller's REAL frames, vs reality.

    python benchmarks/controller_hazard.py --checkpoint runs/train_g32/checkpoint \
        --world-model runs/train_g32/world_model.pt --action-repeat 50 --episodes 100

Plays the controller of a `WorldModels` checkpoint (read with RLlib's `RLModule.from_checkpoint`) on real TakeCover
episodes with the exported world model's V and M (the same acting path as `takecover_tau.play_real`), and reports
the real deaths per 1000 steps beside M's predicted deaths per 1000 steps while it reads those same real frames:
as the done head was fitted, and as the dream applies it (the done-logit offset and scale stored in the world
model's metadata). Compare with the reference policies' rows of `dream_fidelity.py` on the same world model: a done
head that gives two policies the same rate on their real frames cannot make a dream rank them apart. Writes JSON
and prints the comparison last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from ray.rllib.core.rl_module.rl_module import RLModule
from takecover_tau import play_real

from rllib_worldmodel.dream import DreamSettings
from rllib_worldmodel.envs.vizdoom import add_view_args, takecover_view
from rllib_worldmodel.fidelity import hazards_on_encoded
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a WorldModels RLlib checkpoint folder (its controller)")
    parser.add_argument("--world-model", required=True, help="the world model exported with it (V, M, offset)")
    parser.add_argument("--action-repeat", type=int, default=1, help="the controller decides every k-th frame")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5000)
    add_view_args(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "controller_hazard.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    wm = WorldModel.load(args.world_model).eval()
    meta = read_checkpoint(args.world_model)["metadata"]
    module_path = Path(args.checkpoint).resolve() / "learner_group" / "learner" / "rl_module" / "default_policy"
    if not module_path.is_dir():
        raise SystemExit(f"--checkpoint {args.checkpoint}: no RLModule at {module_path} (a WorldModels checkpoint?)")
    controller = RLModule.from_checkpoint(str(module_path)).controller.cpu()
    view = takecover_view(args, meta)
    t0 = time.perf_counter()
    recorded: dict[int, tuple] = {}
    returns, share = play_real(
        wm, controller, args.episodes, num_envs=10, seed=args.seed, view=view, recorded=recorded,
        action_repeat=args.action_repeat,
    )  # fmt: skip
    episodes = [(recorded[i][0], recorded[i][2]) for i in sorted(recorded)]
    deaths = sum(int(recorded[i][3]) for i in recorded)
    steps = sum(len(recorded[i][2]) for i in recorded)
    dream = DreamSettings.exported(meta)
    as_fitted, as_applied = hazards_on_encoded(wm, episodes, [None, dream])
    result = {
        "checkpoint": args.checkpoint,
        "world_model": args.world_model,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "view": view,
        "real_mean": float(returns.mean()),
        "real_std": float(returns.std()),
        "real_episodes": len(returns),
        "real_action_share": share.tolist(),
        "real_deaths": deaths,
        "real_steps": steps,
        "real_hazard": deaths / max(steps, 1),
        "model_hazard_on_real": as_fitted,
        "dream_hazard_on_real": as_applied,
        "dream_done_logit_offset": dream.done_logit_offset,
        "dream_done_logit_scale": dream.done_logit_scale,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    print(
        f"controller: real {returns.mean():.0f} ± {returns.std():.0f} over {len(returns)} episodes | deaths per 1000 "
        f"real steps: real {1000 * result['real_hazard']:.2f} | M reading those frames, as fitted "
        f"{1000 * as_fitted:.2f} | as the dream applies it {1000 * as_applied:.2f}"
    )


if __name__ == "__main__":
    main()
