"""Does what C learns in one M's dream hold in another M's? Controllers trained in each of several independently
fitted Ms on the same V, each scored in every M's dream and in the real game.

    rllib-worldmodel fit --env takecover --frame-skip 4 --data-dir runs/wm_skip4/episodes --episodes 400 \\
        --hold 1 25 --init-from runs/wm_skip4/world_model.pt --fresh-m --vae-epochs 0 --mdn-epochs 20 \\
        --num-heads 5 --done-refit-horizon 25 --seed 1 --out runs/wm_skip4_mB
    python benchmarks/cross_dream.py --world-model runs/wm_skip4/world_model.pt runs/wm_skip4_mB/world_model.pt \\
        --calibrate-to 66.26 --calibrate-hold 1 25 --action-repeat 12 3

If a controller's dream score drops to its real score in the other M's dream, the Ms disagree about what it
exploits, and training against several of them (an ensemble of Ms, pessimism over models) would remove the
exploit. If the other M also overrates it, the Ms share the error, and no ensemble of Ms fitted this way can see it.
C reads z only (`DreamSettings.include_hidden=False`): h means something different in each M, z the same in all of
them, which is why the world models must share V. Each dream's deaths are sampled and calibrated on its own (the
random-hold survival `--calibrate-to`), at tau `--tau`. Writes JSON (default benchmarks/results/cross_dream.json)
and prints the table last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from takecover_tau import calibrated_to, dream_returns, play_real, train_in_dream

from rllib_worldmodel.calibration import add_calibration_args
from rllib_worldmodel.dream import DreamSettings
from rllib_worldmodel.envs.vizdoom import episode_steps, frame_skip_of, takecover_view
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel


def check_shared_v(paths: list[str], models: list[WorldModel]) -> None:
    """Raise ValueError unless every world model has the first one's V weights (z must mean the same in all; the Ms
    may differ, in weights or in architecture)."""
    ref = models[0].vae.state_dict()
    for path, wm in zip(paths[1:], models[1:]):
        own = wm.vae.state_dict()
        same = own.keys() == ref.keys() and all(torch.equal(v, ref[k]) for k, v in own.items())
        if not same:
            raise ValueError(
                f"--world-model {path} does not share the V of {paths[0]}: C reads z, so every world model must "
                "have the same V. Fit the others with `rllib-worldmodel fit --init-from FIRST --fresh-m "
                "--vae-epochs 0 --seed S`."
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", nargs="+", required=True, help="two or more checkpoints sharing one V")
    parser.add_argument("--action-repeat", type=int, nargs="+", default=[12], help="C decides every k-th step")
    parser.add_argument("--tau", type=float, default=1.15)
    add_calibration_args(parser)
    parser.add_argument("--horizon", type=int, help="dream steps (default: the real frame cap in env steps)")
    parser.add_argument("--cma-population", type=int, default=32)
    parser.add_argument("--cma-rollouts", type=int, default=8)
    parser.add_argument("--cma-generations", type=int, default=32)
    parser.add_argument("--dream-episodes", type=int, default=256)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cross_dream.json"))
    args = parser.parse_args(argv)
    if len(args.world_model) < 2:
        parser.error("--world-model: give at least two checkpoints (they must share V)")
    torch.set_num_threads(2)
    models = [WorldModel.load(p).eval() for p in args.world_model]
    check_shared_v(args.world_model, models)
    metadata = read_checkpoint(args.world_model[0])["metadata"]
    view = takecover_view(argparse.Namespace(), metadata)
    horizon = args.horizon or episode_steps(view)
    z_mode = metadata.get("mdn_latents", "sample")
    settings = []
    for wm in models:
        s = DreamSettings(
            temperature=args.tau, done_mode="sample", max_episode_steps=horizon, seed=args.seed, include_hidden=False
        )
        if args.calibrate_to:
            s = calibrated_to(wm, s, args.calibrate_to, tuple(args.calibrate_hold), seed=args.seed + 11)
        settings.append(s)
    skip = frame_skip_of(view)
    rows = []
    for repeat in args.action_repeat:
        run = argparse.Namespace(**{**vars(args), "action_repeat": repeat})
        for i, (path, wm) in enumerate(zip(args.world_model, models)):
            t0 = time.perf_counter()
            controller = train_in_dream(wm, settings[i], run)[0]
            # dream returns are per env step of reward 1 per frame at the skip: frames, like the real score
            dreams = [float(dream_returns(w, s, controller, run).mean()) for w, s in zip(models, settings)]
            real, share = play_real(
                wm,
                controller,
                args.eval_episodes,
                controller_input=settings[i].controller_input,
                seed=args.seed + 1000,
                view=view,
                z_mode=z_mode,
                action_repeat=repeat,
            )
            rows.append(
                {
                    "action_repeat": repeat,
                    "decision_frames": repeat * skip,
                    "trained_in": path,
                    "dream_in": dict(zip(args.world_model, dreams)),
                    "real_mean": float(real.mean()),
                    "real_std": float(real.std()),
                    "real_episodes": len(real),
                    "real_action_share": [round(float(x), 3) for x in share],
                    "wall_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "settings": {**vars(args), "view": view, "offsets": [s.done_logit_offset for s in settings]},
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    names = [f"M{j}" for j in range(len(models))]
    print("M" + ", M".join(f"{j} = {p}" for j, p in enumerate(args.world_model)))
    print(f"C decides every | trained in | dream in {' | dream in '.join(names)} | real (mean ± std, episodes)")
    for r in rows:
        j = args.world_model.index(r["trained_in"])
        scores = " | ".join(f"{v:.0f}" for v in r["dream_in"].values())
        print(
            f"{r['decision_frames']} frames | M{j} | {scores} | "
            f"{r['real_mean']:.0f} ± {r['real_std']:.0f} ({r['real_episodes']})"
        )


if __name__ == "__main__":
    main()
