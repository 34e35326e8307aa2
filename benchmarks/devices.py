"""The main job's compute on each device this machine has, side by side in one run: CPU always, every CUDA GPU too,
each at every compute precision asked for (`--precisions fp32 bf16`: `WorldModelsConfig.world_model(precision=...)`).

Four pieces of work, each the main job's own, timed on every device with the same module and the same inputs:
  1. a V update: the Learner's forward (`WorldModelsRLModule._forward_train` on a `vae_obs` batch), `vae_loss` with
     the main job's hard-pixel focus, backward and Adam, on 100 frames of 64x64x3 (ConvVAE, z 64);
  2. an M update: the same for a window batch drawn as the algorithm draws them (`benchmarks/mdn_update.py`: 32
     windows with their episode prefixes, lengths from `--lengths-from CHECKPOINT` or geometric with the random-hold
     collection's mean of 67.96 steps; LSTM 512, 5 mixtures, an ensemble of 5 heads);
  3. a CMA-ES generation: 32 candidate controllers x 8 dreams in one batched `DreamSimulator` (`evaluate_population`,
     C deciding every 25th step, τ 1.15, sampled deaths), every dream run to the main job's 525-step cap (the
     untrained done head is held off so the work is the same on every device and every run);
  4. the replay's encoding: `--encode-frames` frames through V's encoder as every iteration re-encodes its replay
     (`WorldModel.encode_frames`, 512 at a time, no gradients), reported per frame and for a full 400,000-step
     replay (the chain's `replay_capacity`), which the fit re-encodes whenever V was updated.

Frames and latents are random: the work does not depend on their values. CUDA timings synchronize the device before
each clock read. Writes JSON and prints a table, then the figure last: how much faster the fastest device runs the
main job's fit and search (its 3 V epochs, 20 M epochs over 27,183 steps and 32 generations) than the CPU at
float32. With two precisions each row also says how near bfloat16's losses at the first update and the first
generation's dreamed returns are to float32's (the same module, inputs and random numbers).

    python benchmarks/devices.py [--devices cpu cuda] [--precisions fp32 bf16] [--threads 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from mdn_update import MAIN_JOB, replay_lengths, valid_loss, window_batch

from rllib_worldmodel.cma_es import evaluate_population
from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.losses import vae_loss
from rllib_worldmodel.models.controller import Controller
from rllib_worldmodel.precision import bf16_supported, PRECISIONS
from rllib_worldmodel.rl_module import WorldModelsRLModule

SMALL = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, "num_heads": 3}
SECONDS = ("vae_update_s", "mdn_update_s", "cma_generation_s", "encode_frame_s", "main_job_fit_and_search_s")
FULL_REPLAY = 400_000  # steps: the product's default replay_capacity, full in a chain's later iterations
MAIN_FIT = {"vae_epochs": 3, "mdn_epochs": 20, "steps": 27_183, "generations": 32, "vae_batch": 100}


def cpu_name() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Mean seconds of `fn()` over `repeats` calls after `warmup` untimed ones (the device synchronized)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def measure(
    device: torch.device, arch: dict, args: argparse.Namespace, lengths: np.ndarray, precision: str = "fp32"
) -> dict[str, float]:
    """Seconds per V update, M update and CMA-ES generation on one device at one precision, and what the first V and
    M update's losses and the first generation's dreamed returns were (to compare precisions on the same work)."""
    torch.manual_seed(args.seed)
    module = WorldModelsRLModule(
        observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        action_space=gym.spaces.Discrete(3),
        model_config={**arch, "precision": precision},
    ).to(device)
    wm = module.world_model
    rng = np.random.default_rng(args.seed)
    frames = torch.from_numpy(rng.integers(0, 256, (args.vae_batch, 64, 64, 3), np.uint8)).to(device)
    vae_opt = torch.optim.Adam(wm.vae.parameters(), lr=1e-4)
    mdn_opt = torch.optim.Adam(wm.mdn_rnn.parameters(), lr=1e-3)

    first: dict[str, float] = {}

    def vae_update() -> None:
        torch.manual_seed(args.seed)  # V's posterior draw: the same at every precision
        out = module._forward_train({"vae_obs": frames})
        loss, _ = vae_loss(
            out["vae_recon"], out["vae_target"], out["vae_mu"], out["vae_logvar"], focus_fraction=0.02,
            focus_weight=10.0,
        )  # fmt: skip
        first.setdefault("vae_loss_first", loss.item())
        vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        vae_opt.step()

    shape = (args.mdn_batch, arch["z_size"], 3, arch["num_heads"])
    batches = itertools.cycle(
        [{k: v.to(device) for k, v in window_batch(rng, lengths, *shape).items()} for _ in range(8)]
    )

    def mdn_update() -> None:
        loss = valid_loss(module, next(batches))
        first.setdefault("mdn_loss_first", loss.item())
        mdn_opt.zero_grad(set_to_none=True)
        loss.backward()
        mdn_opt.step()

    wm.set_initial_states(torch.randn(400, arch["z_size"]), torch.full((400, arch["z_size"]), -3.0))
    with torch.no_grad():  # keep every dream running to the cap: the same work on every device
        wm.mdn_rnn.done_head.bias.fill_(-30.0)
    settings = DreamSettings(temperature=1.15, done_mode="sample", max_episode_steps=args.dream_steps, device=device)
    sim = DreamSimulator(wm.eval(), settings)
    controller = Controller(sim.latent_size, gym.spaces.Discrete(3)).to(device)
    flats = np.random.default_rng(args.seed).standard_normal((args.population, controller.num_params))

    def generation() -> None:
        result = evaluate_population(sim, controller, flats, args.rollouts, seed=0, action_repeat=args.every)
        steps = float(np.asarray(result.lengths).sum())
        if steps != args.population * args.rollouts * args.dream_steps:
            raise RuntimeError(f"dreams ended early ({steps} steps): the timing would not be the same work")
        first.setdefault("dream_returns", np.asarray(result.returns, dtype=np.float64))

    # Its own generator: drawing these frames from `rng` would change the M batches above against earlier runs.
    encode_in = np.random.default_rng(args.seed + 2).integers(0, 256, (args.encode_frames, 64, 64, 3), np.uint8)

    def encode() -> None:
        with torch.no_grad():  # as `_encode_replay` runs it
            mu, _ = wm.encode_frames(encode_in)
        if "encode_mu" not in first:  # kept once, and not converted inside every timed call
            first["encode_mu"] = mu.numpy().astype(np.float64)

    wm.train()
    row = {
        "vae_update_s": timed(vae_update, device, args.repeats),
        "mdn_update_s": timed(mdn_update, device, args.repeats),
        "cma_generation_s": timed(generation, device, max(1, args.repeats // 5), warmup=1),
        "encode_frame_s": timed(encode, device, max(1, args.repeats // 5), warmup=1) / args.encode_frames,
    }
    return {**row, **first}


def row_name(device: str, precision: str) -> str:
    """A timing row's name: the device alone at float32 (as before precisions were compared), else "device bf16"."""
    return device if precision == "fp32" else f"{device} {precision}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu and every CUDA device")
    parser.add_argument(
        "--precisions", nargs="+", choices=PRECISIONS, default=["fp32"], help="compute precisions, each timed"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (this project's machines have 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed updates (generations: a fifth of it)")
    parser.add_argument("--lengths-from", default=None, help="a WorldModels checkpoint whose replay's lengths to use")
    parser.add_argument("--mean-steps", type=float, default=67.96, help="mean episode length (geometric)")
    parser.add_argument("--vae-batch", type=int, default=MAIN_FIT["vae_batch"])
    parser.add_argument("--mdn-batch", type=int, default=32)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--dream-steps", type=int, default=525, help="the main job's dream cap (2,100 frames / 4)")
    parser.add_argument("--every", type=int, default=25, help="C decides every k-th dream step")
    parser.add_argument("--encode-frames", type=int, default=4096, help="frames encoded per timed call")
    parser.add_argument("--small", action="store_true", help="tiny modules and dreams (smoke test of the script)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/devices.json")
    args = parser.parse_args()
    if args.encode_frames < 1:
        parser.error(f"--encode-frames {args.encode_frames}: give at least 1 frame to time the replay's encoding")
    torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    for name in devices:
        if name.startswith("cuda") and not torch.cuda.is_available():
            parser.error(f"--devices {name}: this machine has no CUDA device (torch {torch.__version__})")
    arch = {**SMALL, "done_bias_init": -5.0} if args.small else MAIN_JOB
    rng = np.random.default_rng(args.seed)
    lengths = replay_lengths(args.lengths_from) if args.lengths_from else rng.geometric(1.0 / args.mean_steps, size=400)
    rows, samples, latents, reference = {}, {}, {}, {}  # reference: each row's device at float32
    for name, precision in itertools.product(devices, args.precisions):
        label = row_name(name, precision)
        rows[label] = measure(torch.device(name), arch, args, lengths, precision)
        samples[label] = rows[label].pop("dream_returns")
        latents[label] = rows[label].pop("encode_mu")
        reference[label] = row_name(name, "fp32")
    # The main job's fit and search at these rates: V's and M's updates as the algorithm counts them (epochs x the
    # replay's steps / the steps a batch holds) and its CMA-ES generations. Encoding, the done refit, calibration,
    # collection and evaluation are left out: they are not what a GPU changes most.
    probe = np.random.default_rng(args.seed + 1)
    valid_steps = float(
        np.mean([window_batch(probe, lengths, args.mdn_batch, 1, 3, 1)["mask"].sum().item() for _ in range(20)])
    )
    updates = {
        "vae": int(np.ceil(MAIN_FIT["vae_epochs"] * MAIN_FIT["steps"] / args.vae_batch)),
        "mdn": int(np.ceil(MAIN_FIT["mdn_epochs"] * MAIN_FIT["steps"] / valid_steps)),
        "generations": MAIN_FIT["generations"],
    }
    for name, r in rows.items():
        ref = reference[name]
        if ref != name and ref in rows:  # how far the same work at another precision lands from float32's
            r["mdn_loss_first_vs_fp32"] = r["mdn_loss_first"] - rows[ref]["mdn_loss_first"]
            r["vae_loss_first_vs_fp32"] = r["vae_loss_first"] - rows[ref]["vae_loss_first"]
            # each candidate's summed dreamed reward over its dreams (every dream runs to the cap)
            r["dream_return_mean_abs_vs_fp32"] = float(np.abs(samples[name] - samples[ref]).mean())
            r["dream_return_mean_fp32"] = float(np.abs(samples[ref]).mean())
            # V's posterior means of the same frames, against their spread (random frames, V untrained)
            r["encode_mu_mean_abs_vs_fp32"] = float(np.abs(latents[name] - latents[ref]).mean())
            r["encode_mu_std_fp32"] = float(latents[ref].std())
        r["main_job_fit_and_search_s"] = (
            updates["vae"] * r["vae_update_s"]
            + updates["mdn"] * r["mdn_update_s"]
            + updates["generations"] * r["cma_generation_s"]
        )
    cpu = rows.get("cpu")
    result = {
        "module": arch,
        "devices": {
            name: torch.cuda.get_device_name(torch.device(name)) if name.startswith("cuda") else cpu_name()
            for name in devices
        },
        "bf16_in_hardware": {name: bf16_supported(name) for name in devices},
        "precisions": args.precisions,
        "torch": torch.__version__,
        "threads": args.threads,
        "episode_lengths": args.lengths_from or f"geometric, mean {args.mean_steps}",
        "work": {
            "vae_batch": args.vae_batch,
            "mdn_batch": args.mdn_batch,
            "mdn_valid_steps_per_batch": valid_steps,
            "cma": f"{args.population} x {args.rollouts} dreams of {args.dream_steps} steps, C every {args.every}",
            "encode_frames": args.encode_frames,
            "full_replay_steps": FULL_REPLAY,
        },
        "main_job_updates": updates,
        "seconds": rows,
        "speedup_over_cpu": (
            {name: {k: cpu[k] / r[k] for k in SECONDS} for name, r in rows.items() if name != "cpu"} if cpu else {}
        ),
        "repeats": args.repeats,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"| device | V update | M update | CMA-ES generation | main job's fit + search ({updates['vae']} V updates, "
        f"{updates['mdn']} M updates, {updates['generations']} generations) | encoding a {FULL_REPLAY:,}-step replay |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} ({result['devices'][reference[name]]}) | {r['vae_update_s']:.4f} s | {r['mdn_update_s']:.4f} s "
            f"| {r['cma_generation_s']:.3f} s | {r['main_job_fit_and_search_s']:.0f} s "
            f"| {FULL_REPLAY * r['encode_frame_s']:.0f} s |"
        )
    fastest = min(rows, key=lambda n: rows[n]["main_job_fit_and_search_s"])
    if cpu and fastest != "cpu":
        ratio = result["speedup_over_cpu"][fastest]["main_job_fit_and_search_s"]
        print(f"main job's fit + search: {ratio:.1f}x faster on {fastest} than on {args.threads} CPU threads at fp32")
    else:
        print(f"main job's fit + search: {rows[fastest]['main_job_fit_and_search_s']:.0f} s on {fastest}")


if __name__ == "__main__":
    main()
