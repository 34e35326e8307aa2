"""The done head refitted on an agent's own real episodes, labelled with its hits or with its deaths.

    python benchmarks/done_labels.py --checkpoint /tmp/chain_keep2/leg4/checkpoint --episodes 400 --seed 40000 \
        --out-dir runs/done_labels_rep_it16
    python benchmarks/dream_planning.py --checkpoint /tmp/chain_keep2/leg4/checkpoint \
        --world-model runs/done_labels_rep_it16/world_model_hits.pt --horizons 12 --every 3 --seed 13000

TakeCover's reward says nothing until the episode ends: M's done head learns deaths, about one per episode, and a
fireball that hits without killing (41% of the best agent's deaths follow such a hit; RESULTS.md, "The replicate's
planner foresight") teaches it nothing. This script plays a `WorldModels` checkpoint's planning agent (as
`dream_planning.py` plays it: the module's own inference path, the same episode seeds) on real TakeCover, records
V's posterior of every frame, the action taken and the player's health before every step (ViZDoom's HEALTH, read
only here, never by the agent), and then refits the done head as the training loop does
(`done_refit.refit_done_on_dreams`: M dreams from every n-th real state with the real actions; each dreamed step
is labelled with what really happened at it), once per `--labels` entry:

- `hits`: every step that lost health (`done_refit.hit_events`): a dream of this head ends at the first hit;
- `deaths`: the real deaths only, the loop's labels, on the same data (the control: what refitting on the agent's
  own episodes does without the hits).

Each refitted world model is written to `<out-dir>/world_model_<label>.pt` with the checkpoint's metadata and the
done-logit offset set to `--offset` (default −log(done_pos_weight): the refit's BCE weighs positives that much more,
which raises the logits by that much), for `dream_planning.py --world-model` to plan with. The recorded episodes
are kept in `<out-dir>/episodes.pt` (`--episodes-from` refits from them again without playing). The score of the
episodes played is frames survived. Writes `<out-dir>/done_labels.json` and prints the table last.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from dream_planning import load_planning_agent, play, world_model_file
from ray.rllib.core.columns import Columns

from rllib_worldmodel.done_refit import hit_events, refit_done_on_dreams
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.envs.vizdoom import episode_steps, health
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel

LABELS = ("hits", "deaths")


class EpisodeRecorder:
    """V's posterior of every real frame the agent reads, its action and the player's health before each step.

    Wraps the module's `vae.encode` (the agent encodes each frame once, in `forward_inference`) to keep the latest
    batch's posterior; `observe` (`dream_planning.play`'s hook) files it, row by row, under the episode played.

    Args:
        module: The acting WorldModelsRLModule.
    """

    def __init__(self, module):
        self.vae = module.world_model.vae
        self._encode = self.vae.encode
        self._latest: tuple[torch.Tensor, torch.Tensor] | None = None
        self.vae.encode = self.encode
        self.steps: dict[int, dict[str, list]] = {}

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V's encoding, kept for `observe`."""
        self._latest = self._encode(obs)
        return self._latest

    def observe(self, envs, episodes: np.ndarray, state_in: dict, out: dict) -> None:
        """File each row's posterior, action and health under its episode."""
        mu, logvar = self._latest
        actions = out[Columns.ACTIONS][:, 0]
        for j, (env, ep) in enumerate(zip(envs, episodes)):
            rec = self.steps.setdefault(int(ep), {"mu": [], "logvar": [], "action": [], "health": []})
            rec["mu"].append(mu[j].clone())
            rec["logvar"].append(logvar[j].clone())
            rec["action"].append(int(actions[j]))
            rec["health"].append(health(env))

    def episodes(self, returns: np.ndarray, cap_steps: int) -> list[dict]:
        """The recorded episodes in order, stacked; `terminated` where an episode ended before the step cap."""
        self.vae.encode = self._encode
        out = []
        for ep in sorted(self.steps):
            rec = self.steps[ep]
            out.append(
                {
                    "mu": torch.stack(rec["mu"]),
                    "logvar": torch.stack(rec["logvar"]),
                    "action": torch.tensor(rec["action"]),
                    "health": torch.tensor(rec["health"]),
                    "return": float(returns[ep]),
                    "terminated": len(rec["action"]) < cap_steps,
                }
            )
        return out


def refit(source: Path, episodes: list[dict], label: str, args: argparse.Namespace, out: Path) -> dict:
    """Refit a fresh copy of `source`'s done head on `episodes` with `label`'s labels and write it to `out`."""
    wm = WorldModel.load(source)
    meta = dict(read_checkpoint(source)["metadata"])
    encoded = [(e["mu"], e["logvar"], wm.encode_action(e["action"]), bool(e["terminated"])) for e in episodes]
    events = [hit_events(e["health"], bool(e["terminated"])) for e in episodes] if label == "hits" else None
    t0 = time.perf_counter()
    metrics = refit_done_on_dreams(
        wm,
        encoded,
        horizon=args.refit_horizon,
        every=args.refit_every,
        steps=args.refit_steps,
        max_starts=args.max_starts,
        seed=args.seed,
        events=events,
    )
    offset = -math.log(wm.config.done_pos_weight) if args.offset is None else args.offset
    meta.update(done_logit_offset=offset, done_logit_scale=1.0, done_head_labels=label)
    wm.save(out, metadata=meta)
    return {
        "labels": label,
        "world_model": str(out),
        "events": float(sum(e.sum() for e in events)) if events else float(sum(e["terminated"] for e in episodes)),
        "done_logit_offset": offset,
        "refit_s": round(time.perf_counter() - t0, 1),
        **{k.removeprefix("world_model/done_refit_"): v for k, v in metrics.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a WorldModels RLlib checkpoint folder")
    parser.add_argument("--world-model", help="the world model to refit and plan with; default: the checkpoint's")
    parser.add_argument("--horizon", type=int, default=12, help="the playing agent's planning look-ahead (steps)")
    parser.add_argument("--every", type=int, default=3, help="the playing agent's planning interval (steps)")
    parser.add_argument("--samples", type=int, default=16, help="the playing agent's dreams per first action")
    parser.add_argument("--episodes", type=int, default=400, help="real episodes to play and record")
    parser.add_argument("--seed", type=int, default=40000, help="episode i is reset with seed + i; seeds the refit")
    parser.add_argument("--episodes-from", help="an episodes.pt this script wrote: refit from it, play nothing")
    parser.add_argument("--labels", nargs="+", default=list(LABELS), choices=LABELS)
    parser.add_argument("--refit-horizon", type=int, default=25, help="dreamed steps per real start (loop: 25)")
    parser.add_argument("--refit-every", type=int, default=5, help="a refit dream starts at every n-th real state")
    parser.add_argument("--refit-steps", type=int, default=300, help="Adam steps of the refit")
    parser.add_argument("--max-starts", type=int, default=None, help="cap on refit starts (default: all)")
    parser.add_argument("--offset", type=float, default=None, help="done-logit offset (default -log pos_weight)")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint, out_dir = Path(args.checkpoint), Path(args.out_dir)
    world_model = Path(args.world_model) if args.world_model else None
    source = world_model_file(checkpoint, world_model)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.episodes_from:
        loaded = torch.load(args.episodes_from, weights_only=False)
        episodes, played = loaded["episodes"], {**loaded.get("played", {}), "episodes_from": args.episodes_from}
    else:
        module, meta = load_planning_agent(checkpoint, world_model, samples=args.samples)
        env_settings = dict(meta.get("env_settings", {}))
        module.plan_horizon.fill_(args.horizon)
        module.plan_every.fill_(args.every)
        recorder = EpisodeRecorder(module)
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        returns = play(
            module,
            functools.partial(make_takecover, **env_settings),
            args.episodes,
            args.seed,
            observe=recorder.observe,
        )
        episodes = recorder.episodes(returns, episode_steps(env_settings))
        played = {
            "episodes": args.episodes,
            "seed": args.seed,
            "plan": {"horizon": args.horizon, "every": args.every, "samples": args.samples},
            "env_settings": env_settings,
            "real_mean": float(returns.mean()),
            "real_std": float(returns.std()),
            "real_steps": int(sum(len(e["action"]) for e in episodes)),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        torch.save({"episodes": episodes, "played": played}, out_dir / "episodes.pt")
        print(json.dumps(played), flush=True)
    rows = []
    for label in args.labels:
        rows.append(refit(source, episodes, label, args, out_dir / f"world_model_{label}.pt"))
        print(json.dumps(rows[-1]), flush=True)
    result = {"checkpoint": str(checkpoint), "source_world_model": str(source), "played": played, "rows": rows}
    result["settings"] = {k: getattr(args, k) for k in ("refit_horizon", "refit_every", "refit_steps", "max_starts")}
    (out_dir / "done_labels.json").write_text(json.dumps(result, indent=1))
    print(
        f"\n{len(episodes)} real episodes; refit dreams of {args.refit_horizon} steps from every {args.refit_every}th"
    )
    print("| labels | events | held-out AUC before → after | held-out loss before → after | world model |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r["skipped"]:  # no event within a refit dream of any start: the head was left as it was
            print(f"| {r['labels']} | {r['events']:.0f} | skipped: no event to learn | — | {r['world_model']} |")
            continue
        print(
            f"| {r['labels']} | {r['events']:.0f} | {r['val_auc_before']:.3f} → {r['val_auc_after']:.3f} | "
            f"{r['val_loss_before']:.4f} → {r['val_loss_after']:.4f} | {r['world_model']} |"
        )


if __name__ == "__main__":
    main()
