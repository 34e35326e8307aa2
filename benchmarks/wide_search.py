"""A wider CMA-ES search in the same dream: does a search a GPU makes affordable play better in the REAL game?

The main job searches C with 32 candidates x 8 dreams for 32 generations (its CPU budget: 130-180 s). On a GPU a
generation of 256 x 32 dreams costs about what 32 x 8 does (RESULTS.md, "The GPU paths"). This script runs searches
of several widths in the dream of one checkpoint's world model, each with the very dream settings, controller
layout, action repeat and CMA-ES settings the checkpoint's own search used, and saves each search's C; the REAL
score of each C is then measured by `benchmarks/dream_planning.py --controller <C file>` on the same episode seeds
(C alone, and the checkpoint's planner on it).

Two steps, so the search can run where Ray and ViZDoom are not installed (a GPU machine that gets only this repo):

    python benchmarks/wide_search.py export --checkpoint runs/takecover/checkpoint --out bundle.pt
    python benchmarks/wide_search.py search --bundle bundle.pt --device cuda --runs 32x8x32:1 256x32x32:1 \
        --out-dir benchmarks/results/wide_search

`export` restores the checkpoint (needs Ray) and writes one file: M's weights (V is not needed to dream: the dream's
observations are latents), the dream's start states, the training and scoring dream settings (calibrated deaths
included), C's layout and the checkpoint's own C, and the CMA-ES settings. `search` runs each PxRxG:SEED search
(P candidates, R dreams each, G generations, seed) in that dream, then scores every searched C and the checkpoint's
own C in the same `--score-dreams` scoring dreams (the same noise streams for every C), and writes
`<out-dir>/<run>.controller.pt` (C's state dict, what `dream_planning.py --controller` reads) and
`<out-dir>/wide_search.json`. Prints the table last. A dream score is not a real score: the real game decides.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RUN_SPEC = re.compile(r"^(\d+)x(\d+)x(\d+):(\d+)$")


def _library_without_ray() -> None:
    """Make `rllib_worldmodel.<submodule>` importable where Ray is not installed. The package's `__init__` imports
    the RLlib algorithm and registers env names with Ray; the dream, the controller and CMA-ES need neither, so on
    such a machine the package is entered as a bare namespace and only its Ray-free submodules are imported."""
    if importlib.util.find_spec("ray") is not None or "rllib_worldmodel" in sys.modules:
        return
    spec = importlib.util.find_spec("rllib_worldmodel")
    path = list(spec.submodule_search_locations) if spec else [str(ROOT / "rllib_worldmodel")]
    package = types.ModuleType("rllib_worldmodel")
    package.__path__ = path
    sys.modules["rllib_worldmodel"] = package


def parse_run(spec: str) -> tuple[int, int, int, int]:
    """'PxRxG:SEED' -> (population, rollouts, generations, seed); a clear error for anything else."""
    m = RUN_SPEC.match(spec)
    if not m:
        raise argparse.ArgumentTypeError(f"--runs {spec!r}: write POPULATIONxROLLOUTSxGENERATIONS:SEED, e.g. 32x8x32:1")
    p, r, g, s = (int(x) for x in m.groups())
    if p < 2 or r < 1 or g < 1:
        raise argparse.ArgumentTypeError(f"--runs {spec!r}: need a population >= 2, rollouts >= 1, generations >= 1")
    return p, r, g, s


def export(checkpoint: Path, out: Path) -> dict:
    """Restore a WorldModels checkpoint and write the bundle `search` reads (see the module docstring)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
    import ray
    from ray.rllib.algorithms.algorithm import Algorithm

    import rllib_worldmodel  # noqa: F401  (registers the env names the checkpoint's config reads)

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        algo = Algorithm.from_checkpoint(str(checkpoint.resolve()))
        wm, c, controller = algo.world_model, algo.config, algo.local_module.controller
        bundle = {
            "checkpoint": str(checkpoint),
            "wm_config": wm.config.to_dict(),
            "mdn_state": {k: v.detach().cpu() for k, v in wm.mdn_rnn.state_dict().items()},
            "initial_states": wm.initial_states.detach().cpu(),
            "train_settings": dataclasses.asdict(algo.dream_settings()),
            "score_settings": dataclasses.asdict(algo.dream_settings(scoring=True)),
            "controller": {
                "input_size": controller.input_size,
                "hidden": controller.hidden,
                "action_space": algo.local_module.action_space,
                "flat": controller.get_flat(),
            },
            "cma": {
                "population": c.cma_population,
                "rollouts": c.cma_rollouts,
                "generations": c.cma_generations_per_iteration,
                "sigma_init": c.cma_sigma_init,
                "common_noise": c.cma_common_noise,
                "action_repeat": c.action_repeat,
            },
            "real_steps": int(algo.replay.get_num_timesteps()),
        }
        algo.stop()
    finally:
        ray.shutdown()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(bundle, out)
    return bundle


def new_controller(spec: dict):
    """A controller of the bundle's layout (`spec`: its "controller" entry), freshly initialised on the CPU."""
    _library_without_ray()
    from rllib_worldmodel.models.controller import Controller

    return Controller(spec["input_size"], spec["action_space"], spec["hidden"])


def load_bundle(path: Path, device: str):
    """The bundle's world model (M loaded; V left at its init, unused by latent dreams), its two dream settings on
    `device` ("auto": CUDA when available, as `DreamSettings` resolves it), a controller of its layout holding the
    checkpoint's C, and the bundle itself; the model and the controller are on the settings' device."""
    _library_without_ray()
    from rllib_worldmodel.dream import DreamSettings
    from rllib_worldmodel.models.world_model import WorldModel, WorldModelConfig

    bundle = torch.load(path, weights_only=False)
    settings = {k: DreamSettings(**{**bundle[f"{k}_settings"], "device": device}) for k in ("train", "score")}
    wm = WorldModel(WorldModelConfig(**bundle["wm_config"]))
    wm.mdn_rnn.load_state_dict(bundle["mdn_state"])
    wm.initial_states = bundle["initial_states"].clone()
    wm.to(settings["train"].device).eval()
    controller = new_controller(bundle["controller"])
    controller.set_flat(bundle["controller"]["flat"])
    return wm, settings, controller.to(settings["train"].device), bundle


def search(args: argparse.Namespace) -> None:
    """Run every `--runs` search, score each C and the checkpoint's own in the same scoring dreams, write files."""
    _library_without_ray()
    from rllib_worldmodel.cma_es import CMAESTrainer, evaluate_population
    from rllib_worldmodel.dream import DreamSimulator

    torch.set_num_threads(args.threads)
    wm, settings, controller, bundle = load_bundle(Path(args.bundle), args.device)
    device = settings["train"].device
    cma_cfg = bundle["cma"]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "bundle": args.bundle,
        "checkpoint": bundle["checkpoint"],
        "real_steps_of_the_world_model": bundle["real_steps"],
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else f"cpu ({args.threads} threads)",
        "checkpoint_search": cma_cfg,
        "score_dreams": args.score_dreams,
        "score_seed": args.score_seed,
        "start": args.start,
        "runs": [],
    }
    path = out_dir / "wide_search.json"

    def score(flat: np.ndarray) -> dict[str, float]:
        # the same scoring dreams (seed, noise streams) for every C: differences are the controllers'
        r = evaluate_population(
            DreamSimulator(wm, settings["score"]),
            controller,
            flat[None],
            args.score_dreams,
            seed=args.score_seed,
            action_repeat=cma_cfg["action_repeat"],
        ).returns[0]
        return {"dream_mean": float(r.mean()), "dream_std": float(r.std()), "dream_se": float(r.std() / len(r) ** 0.5)}

    start_flat = controller.get_flat()
    result["checkpoint_c"] = score(start_flat)
    print(json.dumps({"checkpoint_c": result["checkpoint_c"]}), flush=True)
    for spec in args.runs:
        p, r, g, seed = spec
        name = f"p{p}_r{r}_g{g}_s{seed}"
        torch.manual_seed(seed)  # "fresh": C's own initialisation, as the algorithm builds it before its search
        search_c = new_controller(bundle["controller"])
        if args.start == "checkpoint":
            search_c.set_flat(start_flat)
        search_c.to(device)
        trainer = CMAESTrainer(
            search_c,
            popsize=p,
            rollouts=r,
            sigma_init=cma_cfg["sigma_init"],
            seed=seed,
            common_noise=cma_cfg["common_noise"],
            action_repeat=cma_cfg["action_repeat"],
        )
        sim = DreamSimulator(wm, settings["train"])
        t0, history = time.perf_counter(), []
        for _ in range(g):
            m = trainer.step(sim)
            history.append({k.removeprefix("dream/"): v for k, v in m.items()})
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        flat = trainer.mean_params()
        search_c.set_flat(flat)
        torch.save({k: v.detach().cpu() for k, v in search_c.state_dict().items()}, out_dir / f"{name}.controller.pt")
        row = {
            "run": name,
            "population": p,
            "rollouts": r,
            "generations": g,
            "seed": seed,
            "search_s": round(wall, 1),
            "dream_steps": int(sum(h["num_env_steps_sampled"] for h in history)),
            "fitness_mean_last": history[-1]["cma_fitness_mean"],
            "sigma_last": history[-1]["cma_sigma"],
            **score(flat),
            "history": history,
        }
        result["runs"].append(row)
        path.write_text(json.dumps(result, indent=1))  # after every run: a cut-off call keeps what it finished
        print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
    print(
        f"\nsearches in the dream of {bundle['checkpoint']} on {result['device']}; C scored in {args.score_dreams} "
        "whole scoring dreams (the same for every C); a dream score, not a real one"
    )
    print("| search (population x dreams x generations, seed) | search wall | dream steps | dream score ± SE |")
    print("|---|---|---|---|")
    print(
        f"| the checkpoint's own C ({cma_cfg['population']} x {cma_cfg['rollouts']} x {cma_cfg['generations']}) "
        f"| — | — | {result['checkpoint_c']['dream_mean']:.1f} ± {result['checkpoint_c']['dream_se']:.1f} |"
    )
    for row in result["runs"]:
        print(
            f"| {row['population']} x {row['rollouts']} x {row['generations']}, seed {row['seed']} | "
            f"{row['search_s']:.0f} s | {row['dream_steps']:,} | {row['dream_mean']:.1f} ± {row['dream_se']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write a checkpoint's dream and search settings to one file (needs Ray)")
    ex.add_argument("--checkpoint", required=True, help="a WorldModels RLlib checkpoint folder")
    ex.add_argument("--out", required=True, help="the bundle file to write")
    se = sub.add_parser("search", help="run CMA-ES searches of several widths in a bundle's dream (no Ray needed)")
    se.add_argument("--bundle", required=True, help="a file written by `export`")
    se.add_argument(
        "--runs", type=parse_run, nargs="+", default=[parse_run("32x8x32:1")], help="PxRxG:SEED, one per search"
    )
    se.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... or auto (CUDA when available)")
    se.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    se.add_argument("--score-dreams", type=int, default=1024, help="scoring dreams per C (the same for every C)")
    se.add_argument("--score-seed", type=int, default=777)
    se.add_argument(
        "--start",
        choices=("fresh", "checkpoint"),
        default="fresh",
        help="where each search starts: a freshly initialised C (seeded by the run's seed; what the checkpoint's "
        "own search started from) or the checkpoint's C (a continued search)",
    )
    se.add_argument("--out-dir", default=str(Path(__file__).parent / "results" / "wide_search"))
    args = parser.parse_args()
    if args.command == "export":
        bundle = export(Path(args.checkpoint), Path(args.out))
        print(f"wrote {args.out}: M of {bundle['real_steps']} real steps, search {bundle['cma']}")
    else:
        search(args)


if __name__ == "__main__":
    main()
