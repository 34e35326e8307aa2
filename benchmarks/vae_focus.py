"""Does V keep the small things that matter? Plain squared error vs hard-pixel focus, same data, same updates.

TakeCover's distant fireballs and imps are a few pixels each; a young V blurs them into the wall. This trains V
once per variant from the same initial weights on the same recorded episodes for the same number of updates, then
measures on held-out episodes:
- `recon`: summed squared error per frame (all 12,288 values; what V's loss reports);
- `salient_mse`: mean squared error on SALIENT pixels, those whose colour is far (L2 over RGB > 0.3 in [0, 1])
  from the per-pixel median of the held-out frames, i.e. whatever is not the usual background (fireballs, imps,
  near walls); the all-black frames that end TakeCover episodes are left out;
- `salient_kept`: share of salient pixels that V reconstructs at least twice as close to their true colour as the
  background is (the object survived encoding rather than being painted over).
Writes JSON (default benchmarks/results/vae_focus.json) and a PNG (target | each variant) beside it; prints the
table last.

    rllib-worldmodel fit --env takecover --episodes 100 --out runs/wm_noflash      # records the episodes
    python benchmarks/vae_focus.py --data-dir runs/wm_noflash/episodes --epochs 2

With `--world-models NAME=FILE ...` nothing is trained: the V of each world-model file (e.g. two runs' kept agents,
one fitted with focus and one without) is scored on the same frames of `--real-episodes` fresh real episodes of
random actions held 1-25 steps, played in the files' own env settings (which must agree).

    python benchmarks/vae_focus.py --world-models plain=A/world_model.pt focus=B/world_model.pt --real-episodes 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from paired_agents import named

import rllib_worldmodel as rw
from rllib_worldmodel.data import collect_random_episodes
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.models.world_model import read_checkpoint

SALIENT_DISTANCE = 0.3


@torch.no_grad()
def reconstruct(model: rw.WorldModel, frames: np.ndarray) -> np.ndarray:
    """V's reconstruction (from the posterior mean) of uint8 frames (N, 64, 64, 3), as floats in [0, 1]."""
    out = []
    for s in range(0, len(frames), 512):
        mu, _ = model.vae.encode(torch.from_numpy(frames[s : s + 512]))
        out.append(model.vae.decode(mu).permute(0, 2, 3, 1).clamp(0, 1).numpy())
    return np.concatenate(out)


def salient_metrics(recon: np.ndarray, target: np.ndarray, background: np.ndarray) -> dict[str, float]:
    """recon/target (N, H, W, 3) and background (H, W, 3), all floats in [0, 1]."""
    to_bg = np.linalg.norm(target - background, axis=-1)
    salient = to_bg > SALIENT_DISTANCE
    err = np.linalg.norm(recon - target, axis=-1)
    return {
        "recon": float(((recon - target) ** 2).reshape(len(target), -1).sum(1).mean()),
        "salient_share": float(salient.mean()),
        "salient_mse": float(((recon - target) ** 2).sum(-1)[salient].mean() / 3.0),
        "salient_kept": float((err[salient] < 0.5 * to_bg[salient]).mean()),
    }


def held_out_frames(episodes: list) -> np.ndarray:
    """The uint8 frames of `episodes`, without the black frames that end TakeCover episodes."""
    frames = np.concatenate([ep.obs for ep in episodes])
    return frames[frames.reshape(len(frames), -1).mean(1) > 5]


def named_files(pairs: list[str]) -> dict[str, Path]:
    """`NAME=FILE` arguments as {name: path}; a clear error for a missing `=`, a repeated name or a missing file."""
    given = named(pairs, "--world-models", "FILE", "focus=runs/a/world_model.pt")
    files = {name: Path(path) for name, path in given.items()}
    for name, path in files.items():
        if not path.is_file():
            raise ValueError(f"--world-models {name}={path}: no file at {path}")
    return files


def shared_env_settings(metadata: dict[str, dict]) -> dict:
    """The real env's settings that every world-model file was fitted in, from each file's metadata (by name) as
    `read_checkpoint` returns it; a clear error if they differ, since one V would then be scored on frames it never
    saw."""
    settings = {name: meta.get("env_settings", {}) for name, meta in metadata.items()}
    if not settings:  # no files: the default game
        return {}
    first = next(iter(settings.values()))
    for name, value in settings.items():
        if value != first:
            raise ValueError(
                f"--world-models: {name}'s env settings {value} differ from {next(iter(settings))}'s {first}: score "
                "Vs of the same game settings together"
            )
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="runs/wm_noflash/episodes", help="episodes written by `fit`")
    parser.add_argument("--held-out", type=int, default=10, help="episodes kept out of training for the metrics")
    parser.add_argument("--epochs", type=float, default=2.0, help="V passes over the training frames, per variant")
    parser.add_argument(
        "--variants", default="0:0,0.02:10", help="comma-separated focus_fraction:focus_weight pairs (0:0 = paper)"
    )
    parser.add_argument(
        "--world-models",
        nargs="+",
        metavar="NAME=FILE",
        help="score these world-model files' Vs instead of training variants (no --data-dir needed)",
    )
    parser.add_argument(
        "--real-episodes", type=int, default=20, help="with --world-models: fresh random-hold real episodes scored"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vae_focus.json"))
    args = parser.parse_args()
    try:
        files = named_files(args.world_models) if args.world_models else {}
        metadata = {name: read_checkpoint(path)["metadata"] for name, path in files.items()}
        env_settings = shared_env_settings(metadata)
    except ValueError as err:
        parser.error(str(err))
    if files and args.real_episodes < 1:
        parser.error(f"--real-episodes {args.real_episodes}: score at least 1 episode")
    torch.set_num_threads(args.threads)
    env = make_takecover(**env_settings)
    rows, recons = [], []
    if files:
        # fresh frames no file was fitted on, from the chains' first collection policy (random holds of 1-25 steps)
        train = []
        frames = held_out_frames(collect_random_episodes(env, args.real_episodes, hold=(1, 25), seed=args.seed))
    else:
        episodes = rw.load_episodes(args.data_dir)
        train, held = episodes[: -args.held_out], episodes[-args.held_out :]
        frames = held_out_frames(held)
    target = frames.astype(np.float32) / 255.0
    background = np.median(target, axis=0)

    def score(variant: str, model: rw.WorldModel, started: float | None = None, **extra) -> None:
        """Add `model`'s V's row (printed as it comes) and its reconstruction (for the PNG); `started`: when its
        training began, for `train_s`."""
        recon = reconstruct(model.eval(), frames)
        recons.append(recon)
        cfg = model.config
        row = {
            "variant": variant,
            **extra,
            "focus_fraction": cfg.vae_focus_fraction,
            "focus_weight": cfg.vae_focus_weight,
        }
        row.update(salient_metrics(recon, target, background))
        if started is not None:
            row["train_s"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)

    for name, path in files.items():
        score(name, rw.WorldModel.load(path), file=str(path), real_steps=metadata[name].get("real_steps"))
    for variant in [] if files else args.variants.split(","):
        fraction, weight = (float(x) for x in variant.split(":"))
        torch.manual_seed(args.seed)  # the same initial V for every variant
        cfg = rw.WorldModelConfig.from_spaces(
            env.observation_space,
            env.action_space,
            z_size=64,
            rnn_size=512,
            vae_focus_fraction=fraction,
            vae_focus_weight=weight,
        )
        model = rw.WorldModel(cfg)
        t0 = time.perf_counter()
        rw.WorldModelTrainer(model, seed=args.seed).fit_vae(train, epochs=args.epochs)
        score(variant, model, started=t0)
    env.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        **vars(args),
        "env_settings": env_settings,
        "train_frames": int(sum(len(ep.obs) for ep in train)),
        "held_out_frames": len(frames),
        "salient_distance": SALIENT_DISTANCE,
    }
    out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    # The frames with the most salient pixels (fireballs close by), target on top, one row per variant below.
    from PIL import Image

    picks = np.argsort(-(np.linalg.norm(target - background, axis=-1) > SALIENT_DISTANCE).sum((1, 2)))[::40][:6]
    grid = np.concatenate([np.concatenate(list(img[picks]), axis=1) for img in [target, *recons]], axis=0)
    Image.fromarray((grid * 255).astype(np.uint8)).resize((grid.shape[1] * 2, grid.shape[0] * 2)).save(
        out.with_suffix(".png")
    )
    print(f"wrote {out} and {out.with_suffix('.png')}")
    print("V (focus fraction:weight) | recon (SSE/frame) | salient MSE | salient pixels kept")
    for r in rows:
        print(
            f"{r['variant']} ({r['focus_fraction']}:{r['focus_weight']}) | {r['recon']:.1f} | {r['salient_mse']:.4f} | "
            f"{r['salient_kept']:.1%}"
        )


if __name__ == "__main__":
    main()
