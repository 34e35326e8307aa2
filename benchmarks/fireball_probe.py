"""Does the controller's input show the fireballs it has to dodge? Linear probes on V's z, on [z, h] and on the
64x64 frame itself, per distance band.

    python benchmarks/fireball_probe.py --world-model runs/train_skip4_r12_new_b/world_model.pt

A TakeCover agent that beats a fixed sweep has to move out of a fireball's path before it arrives; the paper's
linear controller reads [z, h]. This asks, for each distance a fireball can be at, whether that input holds it:

1. Real episodes are played by two policies that cover the room (a right/left sweep of `--sweep` steps each way
   and random actions held 1-25 steps), with every fireball's position relative to the player read from ViZDoom at
   every step (`envs.vizdoom.fireballs`).
2. Each step is labelled per distance band (how far the fireball still has to fly: 0-120, 120-240, 240-360, 360+
   map units; the imps stand ~480 away): 1 when a fireball in that band is on course to hit a player who stays
   put (its lateral offset on arrival, velocity carried forward, within `--radius` units), else 0.
3. A logistic probe (`fidelity.StateProbe`, linear) is fitted on the even episodes and scored on the odd ones
   (ROC AUC, 0.5 = chance) from V's posterior mean z, from [z, h] (M's LSTM output along the real history, what
   the paper's C reads) and from the 64x64 frame's pixels (what any encoder of that frame could at best keep).

A band where the pixels score well and z does not is one V blurs away; one where the pixels score near chance is
one the 64x64 frame itself does not show. Writes JSON (default benchmarks/results/fireball_probe.json); prints the
table last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.envs.vizdoom import add_view_args, enable_object_info, fireballs, takecover_view
from rllib_worldmodel.fidelity import ReferencePolicy, roc_auc, StateProbe
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel

BANDS = ((0, 120), (120, 240), (240, 360), (360, 1000))


def play(env: gym.Env, policy: ReferencePolicy, episodes: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Per real episode: frames (T, 64, 64, 3), actions (T,) and the fireballs seen at each step (list of (n, 3))."""
    out = []
    for ep in range(episodes):
        policy.reset()
        obs, _ = env.reset(seed=seed + ep)
        frames, actions, balls = [], [], []
        while True:
            frames.append(obs)
            balls.append(fireballs(env))
            actions.append(int(policy()))
            obs, _, terminated, truncated, _ = env.step(actions[-1])
            if terminated or truncated:
                break
        out.append({"frames": np.stack(frames), "actions": np.asarray(actions), "balls": balls})
    return out


def threat_labels(balls: list[np.ndarray], radius: float) -> np.ndarray:
    """(T, len(BANDS)) 0/1: a fireball in that distance band on course to hit a player who stays put (its lateral
    offset on arrival, `fireballs`' column 2, within `radius`)."""
    y = np.zeros((len(balls), len(BANDS)))
    for t, b in enumerate(balls):  # `fireballs` gives (0, 3) when none fly: every band 0
        depth = b[np.abs(b[:, 2]) < radius, 0]
        y[t] = [((lo <= depth) & (depth < hi)).any() for lo, hi in BANDS]
    return y


@torch.no_grad()
def features(world_model: WorldModel, episodes: list[dict]) -> dict[str, list[torch.Tensor]]:
    """Per episode: z (V's posterior mean), [z, h] along the real history, and the frame's pixels in [0, 1]."""
    posterior = [world_model.encode_frames(ep["frames"]) for ep in episodes]
    actions = [world_model.encode_action(torch.as_tensor(ep["actions"])) for ep in episodes]
    h = world_model.teacher_forced_states_of([(mu, a) for (mu, _), a in zip(posterior, actions)])
    # M's state after step t-1's action is what C reads at step t: h of the previous step, zeros at the start
    h_before = [torch.cat([torch.zeros_like(x[:1]), x[:-1]]).cpu() for x in h]
    return {
        "z": [mu for mu, _ in posterior],
        "z, h": [torch.cat([mu, hb], 1) for (mu, _), hb in zip(posterior, h_before)],
        "pixels": [torch.as_tensor(ep["frames"]).flatten(1).float() / 255.0 for ep in episodes],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", required=True)
    parser.add_argument("--episodes", type=int, default=30, help="real episodes per policy")
    parser.add_argument("--sweep", type=int, default=25, help="steps each way of the sweep policy")
    parser.add_argument("--radius", type=float, default=32.0, help="lateral offset on arrival (map units) that hits")
    parser.add_argument("--epochs", type=int, default=30, help="probe training passes")
    parser.add_argument("--seed", type=int, default=0)
    add_view_args(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fireball_probe.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    checkpoint = read_checkpoint(args.world_model)
    world_model = WorldModel.load(args.world_model)
    world_model.eval()
    view = takecover_view(args, checkpoint["metadata"])
    env = make_takecover(**view)
    enable_object_info(env)
    space = gym.spaces.Discrete(3)
    episodes = []
    for k, (hold, cycle) in enumerate((((args.sweep, args.sweep), (1, 2)), ((1, 25), None))):
        space.seed(args.seed + k)
        policy = ReferencePolicy(space, hold, cycle=cycle, rng=np.random.default_rng(args.seed + k))
        episodes += play(env, policy, args.episodes, args.seed + 1000 * k)
    env.close()
    labels = [threat_labels(ep["balls"], args.radius) for ep in episodes]
    test = np.concatenate([np.full(len(y), i % 2 == 1) for i, y in enumerate(labels)])
    y = np.concatenate(labels)
    # each input once, split once (the pixels of ~15,000 steps are ~0.7 GB as floats)
    train_rows, test_rows = torch.as_tensor(~test), torch.as_tensor(test)
    inputs = {name: torch.cat(per_episode) for name, per_episode in features(world_model, episodes).items()}
    inputs = {name: (x[train_rows], x[test_rows]) for name, x in inputs.items()}
    rows = []
    for k, (lo, hi) in enumerate(BANDS):
        row = {"band": f"{lo}-{hi}", "rate": float(y[:, k].mean()), "test_positives": int(y[test, k].sum())}
        scorable = 0 < y[~test, k].mean() < 1 and y[test, k].min() < y[test, k].max()
        for name, (x_train, x_test) in inputs.items():
            if not scorable:  # a probe needs both labels to fit, an AUC both to score
                row[name] = float("nan")
                continue
            probe = StateProbe(x_train, y[~test, k], hidden=0, epochs=args.epochs, seed=args.seed)
            row[name] = roc_auc(probe(x_test).numpy(), y[test, k] > 0)
        rows.append(row)
    result = {
        "world_model": args.world_model,
        "view": view,
        "episodes_per_policy": args.episodes,
        "sweep_steps": args.sweep,
        "radius": args.radius,
        "steps": int(len(y)),
        "test_steps": int(test.sum()),
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{len(y)} real steps ({int(test.sum())} held out), {result['seconds']} s -> {args.out}")
    print("held-out ROC AUC of a linear probe for 'a fireball on course to hit, this far away' (0.5 = chance)")
    print(f"{'distance':>10} {'rate':>6} {'test +':>7} {'z':>6} {'z, h':>6} {'pixels':>7}")
    for r in rows:
        print(
            f"{r['band']:>10} {r['rate']:6.3f} {r['test_positives']:7d} {r['z']:6.3f} {r['z, h']:6.3f} "
            f"{r['pixels']:7.3f}"
        )


if __name__ == "__main__":
    main()
