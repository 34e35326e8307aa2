"""`rllib-worldmodel`: the command line (Ray >= 2.42 ships no `rllib` CLI).

Commands:
  fit    collect real episodes with the paper's random-hold policy, fit V then M, save a checkpoint, and write a
         GIF of real frames next to V's reconstruction and M's dream.
  dream  write GIFs of dreams from a saved world-model checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ENV_PRESETS = {
    # paper §A: Doom z=64, LSTM 512; CarRacing z=32, LSTM 256.
    "takecover": {"z_size": 64, "rnn_size": 512, "max_episode_steps": 2100},
    "carracing": {"z_size": 32, "rnn_size": 256, "max_episode_steps": 1000},
}


def make_env(name: str, skill: int | None = None, frame_cap: int | None = None):
    """Real env by CLI name: "takecover", "carracing", or any gymnasium id (adapted to image/vector obs)."""
    from rllib_worldmodel.envs import make_car_racing, make_real_env, make_takecover

    if name == "takecover":
        kw = {k: v for k, v in {"skill": skill, "frame_cap": frame_cap}.items() if v is not None}
        return make_takecover(**kw)
    if name == "carracing":
        return make_car_racing(**({"frame_cap": frame_cap} if frame_cap else {}))
    return make_real_env(name)


def _print_metrics(phase: str, epoch: int, metrics: dict[str, float]) -> None:
    keys = {
        "vae": ["vae_loss", "vae_recon", "vae_kl", "vae_images_per_s"],
        "mdn": ["mdn_nll", "val_mdn_nll", "reward_mse", "done_loss", "val_done_recall", "mdn_tokens_per_s"],
    }[phase]
    shown = " ".join(f"{k}={metrics[f'world_model/{k}']:.4g}" for k in keys if f"world_model/{k}" in metrics)
    print(f"[{phase} epoch {epoch}] {shown}", flush=True)


def cmd_fit(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tensorboardX import SummaryWriter

    import rllib_worldmodel as rw
    from rllib_worldmodel.video import dream_comparison, free_dreams, write_gif

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = ENV_PRESETS.get(args.env, {})
    env = make_env(args.env, args.skill, args.frame_cap)
    t0 = time.perf_counter()
    data_dir = Path(args.data_dir) if args.data_dir else out / "episodes"
    existing = sorted(data_dir.glob("episode_*.npz")) if data_dir.exists() else []
    episodes = rw.load_episodes(data_dir)[: args.episodes] if existing else []
    if len(episodes) < args.episodes:
        print(
            f"collecting {args.episodes - len(episodes)} real episodes of {args.env} (random actions held 1-10 steps)"
        )
        new = rw.collect_random_episodes(
            env, args.episodes - len(episodes), seed=args.seed + len(existing) * 1000, min_length=args.min_length
        )
        rw.save_episodes(new, data_dir, start_index=len(existing))
        episodes += new
    env.close()
    lengths = np.array([len(e) for e in episodes])
    collect_s = time.perf_counter() - t0
    print(f"{len(episodes)} episodes, {lengths.sum()} real steps, length {lengths.mean():.0f} ± {lengths.std():.0f}")

    cfg = rw.WorldModelConfig.from_spaces(
        env.observation_space,
        env.action_space,
        z_size=args.z_size or preset.get("z_size", 32),
        rnn_size=args.rnn_size or preset.get("rnn_size", 256),
        num_mixtures=args.mixtures,
    )
    model = rw.WorldModel(cfg)
    rng = np.random.default_rng(args.seed)
    held_out = episodes[int(rng.integers(len(episodes)))]
    metrics_file = (out / "metrics.jsonl").open("a")

    def on_metrics(phase, epoch, metrics):
        _print_metrics(phase, epoch, metrics)
        metrics_file.write(json.dumps({"phase": phase, "epoch": epoch, **metrics}) + "\n")
        metrics_file.flush()

    with SummaryWriter(str(out / "tensorboard")) as writer:
        trainer = rw.WorldModelTrainer(
            model,
            device=args.device,
            vae_lr=args.vae_lr,
            mdn_lr=args.mdn_lr,
            seed=args.seed,
            on_metrics=on_metrics,
            writer=writer,
        )
        t1 = time.perf_counter()
        history = trainer.fit(
            episodes,
            vae_epochs=args.vae_epochs,
            mdn_epochs=args.mdn_epochs,
            vae_batch_size=args.vae_batch_size,
            mdn_batch_size=args.mdn_batch_size,
            seq_len=args.seq_len,
        )
        fit_s = time.perf_counter() - t1
    metrics_file.close()
    ckpt = model.save(
        out / "world_model.pt", metadata={"env": args.env, "episodes": len(episodes), "real_steps": int(lengths.sum())}
    )
    summary = {
        "env": args.env,
        "checkpoint": str(ckpt),
        "episodes": len(episodes),
        "real_steps": int(lengths.sum()),
        "collect_s": round(collect_s, 1),
        "fit_s": round(fit_s, 1),
        "vae_first": history["vae"][0],
        "vae_last": history["vae"][-1],
        "mdn_first": history["mdn"][0],
        "mdn_last": history["mdn"][-1],
    }
    if cfg.obs_kind == "image":
        comp = dream_comparison(model, held_out, temperature=args.temperature, max_steps=args.video_steps)
        summary["comparison_gif"] = str(write_gif(comp, out / "real_vs_dream.gif"))
        dreams = free_dreams(model, num=4, steps=args.video_steps, temperature=args.temperature, seed=args.seed)
        summary["dreams_gif"] = str(write_gif(dreams, out / "dreams.gif"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=2))
    return 0


def cmd_dream(args: argparse.Namespace) -> int:
    import rllib_worldmodel as rw
    from rllib_worldmodel.video import free_dreams, write_gif

    model = rw.WorldModel.load(args.checkpoint, device=args.device)
    frames = free_dreams(model, num=args.num, steps=args.steps, temperature=args.temperature, seed=args.seed)
    print(write_gif(frames, args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rllib-worldmodel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="collect real episodes, fit V and M, write checkpoint and dream GIFs")
    fit.add_argument("--env", default="takecover", help="takecover | carracing | any gymnasium id")
    fit.add_argument("--out", default="runs/world_model", help="output folder")
    fit.add_argument("--episodes", type=int, default=100, help="real episodes to collect (paper: 10,000)")
    fit.add_argument("--data-dir", help="reuse/extend episodes stored here (default: OUT/episodes)")
    fit.add_argument("--min-length", type=int, default=0, help="drop shorter episodes (paper's Doom code: 100)")
    fit.add_argument(
        "--skill", type=int, help="TakeCover Doom skill 1-5 (default 4: reproduces the paper's random baseline)"
    )
    fit.add_argument("--frame-cap", type=int, help="episode step cap (TakeCover default 2100)")
    fit.add_argument("--z-size", type=int, help="V latent size (preset: takecover 64, carracing 32, else 32)")
    fit.add_argument("--rnn-size", type=int, help="M LSTM units (preset: takecover 512, carracing 256, else 256)")
    fit.add_argument("--mixtures", type=int, default=5, help="Gaussian mixtures per latent dim (paper: 5)")
    fit.add_argument("--vae-epochs", type=float, default=1.0, help="passes of V over all frames (may be fractional)")
    fit.add_argument("--vae-batch-size", type=int, default=100)
    fit.add_argument("--vae-lr", type=float, default=1e-3, help="V learning rate (see WorldModelTrainer)")
    fit.add_argument("--mdn-epochs", type=int, default=20)
    fit.add_argument("--mdn-batch-size", type=int, default=32, help="episodes per M batch")
    fit.add_argument("--mdn-lr", type=float, default=1e-3)
    fit.add_argument("--seq-len", type=int, default=500, help="truncated-BPTT length (paper code: 500)")
    fit.add_argument("--temperature", type=float, default=1.15, help="dream temperature for the GIFs")
    fit.add_argument("--video-steps", type=int, default=300)
    fit.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    fit.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=cmd_fit)

    dream = sub.add_parser("dream", help="write a GIF of dreams from a world-model checkpoint")
    dream.add_argument("--checkpoint", required=True)
    dream.add_argument("--out", default="dreams.gif")
    dream.add_argument("--num", type=int, default=4)
    dream.add_argument("--steps", type=int, default=300)
    dream.add_argument("--temperature", type=float, default=1.15)
    dream.add_argument("--device", default="cpu")
    dream.add_argument("--seed", type=int, default=0)
    dream.set_defaults(func=cmd_dream)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rllib-worldmodel` command."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:  # configuration errors: say what to fix, no traceback
        if os.environ.get("RLLIB_WORLDMODEL_DEBUG"):
            raise
        print(f"rllib-worldmodel {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
