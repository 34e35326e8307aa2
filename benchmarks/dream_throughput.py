"""Dream vs real throughput, side by side in one run on the same cores.

Measures, in this order and never beside another job:
  1. real VizDoom TakeCover steps/s: the env with 64x64 preprocessing, and the same plus V's encoding of every frame
     (what acting in the real game costs), on 1 process and on as many processes as there are cores;
  2. the batched DreamSimulator (paper's Doom sizes: z=64, LSTM 512, 5 mixtures) stepping B dreams at once, each
     step including a linear controller's forward pass on [z, h], for B in {1, 64, 1024, 4096};
  3. DreamVectorEnv under a stock RLlib SingleAgentEnvRunner (the path any RLlib algorithm uses).

Writes JSON (default benchmarks/results/dream_throughput.json) and prints the headline ratio last.

    python benchmarks/dream_throughput.py [--real-steps 3000] [--dream-seconds 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np
import torch

DOOM = {"z_size": 64, "rnn_size": 512, "num_mixtures": 5}


def _real_worker(args: tuple[int, bool, int]) -> tuple[int, float]:
    """Step real TakeCover for `steps` steps (random actions, resets included); optionally encode each frame with V."""
    steps, encode, seed = args
    torch.set_num_threads(1)
    from rllib_worldmodel.envs import make_takecover
    from rllib_worldmodel.models.vae import ConvVAE

    env = make_takecover()
    vae = ConvVAE(DOOM["z_size"]).eval() if encode else None
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        if vae is not None:
            with torch.no_grad():
                vae.encode(torch.from_numpy(obs[None]))
        obs, _, term, trunc, _ = env.step(int(rng.integers(3)))
        if term or trunc:
            obs, _ = env.reset()
    dt = time.perf_counter() - t0
    env.close()
    return steps, dt


def bench_real(steps: int, encode: bool, procs: int) -> float:
    """Aggregate real steps/s over `procs` parallel processes (each one core).

    Always in worker processes, even for one: the workers pin torch to one thread, which must not leak into this
    process's dream measurements.
    """
    with mp.get_context("spawn").Pool(procs) as pool:
        pool.map(_real_worker, [(50, encode, i) for i in range(procs)])  # warm up imports in every worker
        t0 = time.perf_counter()
        results = pool.map(_real_worker, [(steps, encode, i) for i in range(procs)])
        wall = time.perf_counter() - t0
    return sum(n for n, _ in results) / wall


def make_doom_world_model():
    import rllib_worldmodel as rw

    torch.manual_seed(0)
    cfg = rw.WorldModelConfig(obs_kind="image", obs_shape=(64, 64, 3), action_kind="discrete", action_dim=3, **DOOM)
    model = rw.WorldModel(cfg)
    model.set_initial_states(torch.randn(100, cfg.z_size), torch.full((100, cfg.z_size), -3.0))
    with torch.no_grad():  # an untrained done head would end dreams at random; keep them running for the timing
        model.mdn_rnn.done_head.bias.fill_(-20.0)
    return model.eval()


def bench_dream(model, batch_size: int, seconds: float) -> float:
    """Dream steps/s for B dreams, each step = controller forward + one batched M step + sampling."""
    from rllib_worldmodel.dream import DreamSettings, DreamSimulator

    sim = DreamSimulator(model, DreamSettings(temperature=1.15, max_episode_steps=10**9, seed=0))
    controller = torch.nn.Linear(sim.latent_size, 3)  # paper's C: one linear layer on [z, h]
    obs = sim.reset(batch_size)
    with torch.no_grad():
        for _ in range(5):
            obs, *_ = sim.step(controller(obs).argmax(-1))
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            obs, *_ = sim.step(controller(obs).argmax(-1))
            n += 1
    return n * batch_size / (time.perf_counter() - t0)


def bench_env_runner(model, num_envs: int, timesteps: int) -> float:
    """Steps/s of DreamVectorEnv sampled by a stock RLlib SingleAgentEnvRunner acting with a default PPO module."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    import rllib_worldmodel as rw

    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / "wm.pt")
        config = (
            PPOConfig()
            .environment(rw.DREAM_ENV, env_config={"dream": {"world_model": str(path), "max_episode_steps": 2100}})
            .env_runners(
                num_env_runners=0, num_envs_per_env_runner=num_envs, gym_env_vectorize_mode="vector_entry_point"
            )
        )
        runner = SingleAgentEnvRunner(config=config)
        runner.sample(num_timesteps=num_envs * 5)
        t0 = time.perf_counter()
        runner.sample(num_timesteps=timesteps)
        rate = timesteps / (time.perf_counter() - t0)
        runner.stop()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-steps", type=int, default=3000, help="real steps per process")
    parser.add_argument("--dream-seconds", type=float, default=3.0, help="timing window per dream batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--runner-envs", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--runner-steps", type=int, default=4000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dream_throughput.json"))
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    result = {
        "machine": {
            "cores": cores,
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.is_available(),
        },
        "world_model": DOOM,
        "real": {},
        "dream": {},
        "env_runner": {},
    }
    for procs in sorted({1, cores}):
        for encode in (False, True):
            key = f"{'env+resize+V' if encode else 'env+resize'}_{procs}proc"
            result["real"][key] = bench_real(args.real_steps, encode, procs)
            print(f"real {key}: {result['real'][key]:,.0f} steps/s", flush=True)
    model = make_doom_world_model()
    for b in args.batch_sizes:
        result["dream"][f"B={b}"] = bench_dream(model, b, args.dream_seconds)
        print(f"dream B={b}: {result['dream'][f'B={b}']:,.0f} steps/s", flush=True)
    for n in args.runner_envs:
        result["env_runner"][f"num_envs={n}"] = bench_env_runner(model, n, args.runner_steps)
        print(f"RLlib EnvRunner + DreamVectorEnv num_envs={n}: {result['env_runner'][f'num_envs={n}']:,.0f} steps/s")

    real_all_cores = result["real"][f"env+resize+V_{cores}proc"]
    best_b = max(result["dream"], key=result["dream"].get)
    result["ratios"] = {f"dream_{k}_vs_real_all_cores": v / real_all_cores for k, v in result["dream"].items()} | {
        f"env_runner_{k}_vs_real_all_cores": v / real_all_cores for k, v in result["env_runner"].items()
    }
    result["headline"] = {"dream_batch": best_b, "ratio": result["dream"][best_b] / real_all_cores, "goal": 20.0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    print(
        f"batched dream ({best_b}, with controller) vs real TakeCover (env+resize+V on {cores} cores): "
        f"{result['headline']['ratio']:.1f}x (goal >= 20x)"
    )


if __name__ == "__main__":
    main()
