"""How confident should the dream's deaths be? The done-logit scale fitted on REAL TakeCover frames (Platt scaling,
`rllib_worldmodel.calibration.fit_done_logit_scale`), and what it does to each reference policy's hazard.

    python benchmarks/done_scale.py --world-model runs/train_g32/world_model.pt --hold 1 100

Plays `--episodes` real episodes of the collection policy (random actions held `--hold` steps) and of the contrast
policies (standing still, sweeping right/left `--sweeps` steps), encodes them with V, and fits the scale and offset
of M's done logits under which the real deaths are most likely — on the collection policy's episodes (what the
training loop has) and on all of them. Per policy: real deaths per 1000 steps beside M's, reading the same real
frames, as fitted and with the collection-policy fit. If the fitted scale brings the policies' hazards to reality's
contrast, it is a measured choice of `done_logit_scale` rather than a guessed one. Writes JSON (default
benchmarks/results/done_scale.json); prints the table last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rllib_worldmodel.calibration import fit_done_logit_scale
from rllib_worldmodel.dream import DreamSettings
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.envs.vizdoom import add_view_args, takecover_view
from rllib_worldmodel.fidelity import hazards_on_encoded, real_episodes, reference_policies
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", default="runs/train_g32/world_model.pt")
    parser.add_argument("--episodes", type=int, default=100, help="real episodes per policy")
    parser.add_argument("--hold", type=int, nargs=2, default=(1, 100), metavar=("MIN", "MAX"))
    parser.add_argument("--sweeps", type=int, nargs="*", default=[100, 50])
    parser.add_argument("--seed", type=int, default=0)
    add_view_args(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "done_scale.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    wm = WorldModel.load(args.world_model).eval()
    view = takecover_view(args, read_checkpoint(args.world_model)["metadata"])
    env = make_takecover(**view)
    refs = reference_policies(env.action_space, args.sweeps)
    policies = {f"random hold {args.hold[0]}-{args.hold[1]} (collection)": (tuple(args.hold), None, None)}
    policies["always 0 (stand still)"] = ((1, 1), 0, None)
    for name, p in refs.items():
        if p["cycle"] is not None:
            policies[name] = (p["hold"], None, p["cycle"])
    started = time.time()
    recorded, encoded = {}, {}
    for name, (hold, fixed, cycle) in policies.items():
        episodes = real_episodes(env, hold, fixed, args.episodes, args.seed, cycle=cycle)
        encoded[name] = []
        for ep in episodes:
            mu, logvar = wm.encode_frames(ep.obs)
            encoded[name].append((mu, logvar, wm.encode_action(torch.as_tensor(ep.actions)), bool(ep.terminated)))
        recorded[name] = [(len(ep), bool(ep.terminated)) for ep in episodes]  # the frames are not kept
        del episodes
        print(f"{name}: {len(recorded[name])} real episodes, {sum(n for n, _ in recorded[name])} steps")
    env.close()
    collection = next(iter(policies))
    fits = {
        "collection policy": fit_done_logit_scale(wm, encoded[collection]),
        "all policies": fit_done_logit_scale(wm, [e for eps in encoded.values() for e in eps]),
    }
    scaled = DreamSettings(
        done_mode="sample",
        done_logit_scale=fits["collection policy"]["scale"],
        done_logit_offset=fits["collection policy"]["offset"],
    )
    rows = []
    for name, eps in recorded.items():
        fitted, rescaled = hazards_on_encoded(wm, [(mu, a) for mu, _, a, _ in encoded[name]], [None, scaled])
        steps = sum(n for n, _ in eps)
        rows.append(
            {
                "policy": name,
                "real_mean": steps / len(eps),
                "real_hazard": sum(t for _, t in eps) / max(steps, 1),
                "model_hazard_as_fitted": fitted,
                "model_hazard_scaled": rescaled,
            }
        )
    result = {
        "fits": fits,
        "rows": rows,
        "settings": {**vars(args), "view": view},
        "wall_clock_s": time.time() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    for tag, f in fits.items():
        print(
            f"fit on {tag}: scale {f['scale']:.2f}, offset {f['offset']:+.2f} | NLL per step x1000: as fitted "
            f"{1000 * f['nll_as_fitted']:.3f}, offset only {1000 * f['nll_offset_only']:.3f}, scale and offset "
            f"{1000 * f['nll']:.3f} ({f['deaths']:.0f} deaths in {f['steps']:.0f} steps)"
        )
    print(
        f"policy | real survival ({args.episodes} episodes) | deaths per 1000 steps: real | M reading the real frames, "
        "as fitted | with the collection-policy scale and offset"
    )
    for r in rows:
        print(
            f"{r['policy']} | {r['real_mean']:.0f} | {1000 * r['real_hazard']:.2f} | "
            f"{1000 * r['model_hazard_as_fitted']:.2f} | {1000 * r['model_hazard_scaled']:.2f}"
        )


if __name__ == "__main__":
    main()
