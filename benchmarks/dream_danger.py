"""Is the danger in M's state, and does the dream lead each policy into it? Perception vs dynamics on TakeCover.

    python benchmarks/dream_danger.py --world-model runs/train_g32/world_model.pt --episodes 40

Records real TakeCover episodes of reference policies (sweeps right/left every N frames, random actions held 1-100
frames as the main job collects, standing still) with each step's hit (health lost, or the death), and runs
`rllib_worldmodel.fidelity.danger_fidelity`: a probe fitted on M's LSTM states while it reads half of those real
episodes says per policy how often it expects a hit on the other half (perception: does M's state hold what
separates the policies?) and on dreamed states of the same policy (dynamics: does the dream lead the policy into as
much danger as the real game does?), beside the real hit rate and M's own done head; then for dreams of each
`--horizons` length started at real states with the real actions that followed (how long the dream keeps the
order before reality has to correct it). Compare `rho_probe_real` with
`rho_probe_dream`: a state that knows the danger on real frames and a dream that misranks it put the limit in M's
next-latent model, not in the done head. Hits rather than deaths by default: a TakeCover death is the first or
second hit (measured: 1.3-1.8 hits per death), and hits give the probe ~1.7x more events. Writes JSON and prints
the table last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rllib_worldmodel.data import save_episodes
from rllib_worldmodel.dream import DreamSettings
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.envs.vizdoom import add_view_args, takecover_view
from rllib_worldmodel.fidelity import danger_fidelity, real_episodes, RecordedPolicy, reference_policies
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel


class HitLog(gym.Wrapper):
    """Keeps the current episode's per-step hits: health lost (`DamagePenalty`'s info["damage"]) or termination."""

    def reset(self, **kwargs):
        self.hits: list[float] = []
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.hits.append(float(info["damage"] > 0 or terminated))
        return obs, reward, terminated, truncated, info


def record(env: HitLog, spec: dict, episodes: int, seed: int) -> RecordedPolicy:
    """`episodes` real episodes of one reference policy with their hits (episode i reset with seed + i)."""
    hits: list[np.ndarray] = []
    recorded = []
    for i in range(episodes):  # one at a time, so each episode's hits are read before the next reset
        recorded += real_episodes(env, spec["hold"], spec["fixed_action"], 1, seed + i, cycle=spec["cycle"])
        hits.append(np.asarray(env.hits, np.float32))
    return RecordedPolicy(spec, recorded, hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", required=True)
    parser.add_argument("--episodes", type=int, default=40, help="real episodes per policy (half fit the probe)")
    parser.add_argument("--sweeps", type=int, nargs="*", default=[100, 50, 25], help="sweep every N frames, per N")
    parser.add_argument("--events", choices=["hits", "deaths"], default="hits")
    parser.add_argument("--temperature", type=float, default=1.15)
    parser.add_argument("--deterministic", action="store_true", help="dreams without sampling (the mixtures' mode)")
    parser.add_argument("--dreams", type=int, default=128, help="dreams per policy")
    parser.add_argument("--steps", type=int, default=200, help="dreamed steps per dream")
    parser.add_argument("--hidden", type=int, default=256, help="probe hidden units (0: logistic regression)")
    parser.add_argument(
        "--horizons",
        type=int,
        nargs="*",
        default=[10, 25, 50, 100, 200],
        help="also dream this many steps from every 10th held-out real state, with the real actions that followed",
    )
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument(
        "--save-episodes",
        help="also store the recorded real episodes here (`rllib-worldmodel fit --data-dir` reads them: M fitted or "
        "fine-tuned on the reference policies' own data)",
    )
    add_view_args(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dream_danger.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    wm = WorldModel.load(args.world_model).eval()
    meta = read_checkpoint(args.world_model)["metadata"]
    view = takecover_view(args, meta)
    # a damage penalty of 1e-9 per health point only makes DamagePenalty report info["damage"]; rewards are unused
    env = HitLog(make_takecover(damage_penalty=1e-9, **view))
    refs = reference_policies(env.action_space, args.sweeps)
    specs = {f"sweep 1/2 every {n}": refs[f"sweep 1/2 every {n}"] for n in args.sweeps}
    specs["random hold 1-100"] = {"hold": (1, 100), "fixed_action": None, "cycle": None}
    specs["always 0"] = refs["always 0"]
    policies = {}
    for k, (name, spec) in enumerate(specs.items()):
        policies[name] = record(env, spec, args.episodes, args.seed + 1000 * k)
        if args.events == "deaths":
            policies[name].events = None
    env.close()
    if args.save_episodes:
        save_episodes((ep for p in policies.values() for ep in p.episodes), args.save_episodes)
    settings = DreamSettings.exported(meta, temperature=args.temperature, deterministic=args.deterministic)
    result = danger_fidelity(
        wm,
        settings,
        policies,
        num_dreams=args.dreams,
        steps=args.steps,
        hidden=args.hidden,
        seed=args.seed,
        horizons=args.horizons,
    )
    result["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    result["view"] = view
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    print(
        f"{args.events} per 1000 steps | policy | real ({args.episodes} episodes) | probe on held-out real states | "
        f"probe on dreamed states | M's done head on real states | on dreamed states"
    )
    for r in result["rows"]:
        print(
            f"{r['policy']} | {1000 * r['real_event_rate']:.2f} | {1000 * r['probe_on_real']:.2f}"
            f" | {1000 * r['probe_on_dream']:.2f} | {1000 * r['done_head_on_real']:.2f}"
            f" | {1000 * r['done_head_on_dream']:.2f}"
        )
    for h in result["horizon_rows"]:
        cells = " | ".join(f"{1000 * r['real_event_rate']:.1f} / {1000 * r['probe_on_dream']:.1f}" for r in h["rows"])
        print(
            f"dreams of {h['steps']} steps from real states, real / probe on dreamed, per policy: {cells} | Spearman "
            f"vs real: probe on real {h['rho_probe_real']:+.2f}, on dreamed {h['rho_probe_dream']:+.2f}; dreamed vs "
            f"real states {h['rho_dream_vs_real_states']:+.2f}"
        )
    print(
        f"probe AUROC on held-out real states {result['probe_auc']:.3f} ({result['events']} events) | Spearman vs "
        f"real: probe on real {result['rho_probe_real']:+.2f}, done head on real {result['rho_done_head_real']:+.2f},"
        f" probe on dreams {result['rho_probe_dream']:+.2f}, done head on dreams {result['rho_done_head_dream']:+.2f}"
    )


if __name__ == "__main__":
    main()
