"""Does the dream move the player? V's latent read as the player's lateral position, in the real game and in dreams.

    python benchmarks/dream_position.py --world-model runs/wm_noflash/world_model.pt runs/wm_hold/world_model.pt

TakeCover's score depends on moving (benchmarks/dream_fidelity.py: sweeping right 100 steps, left 100 steps
survives ~2.7x longer than random holds), so a dream worth training in must move the player when C strafes.
This measures that directly, per world model:

1. Real episodes of two policies that visit the whole room (sweep 100 and random holds of 1-100 steps) are played
   with the player's lateral coordinate (ViZDoom's POSITION_Y: TakeCover's strafe axis) read at every frame. A
   linear probe from V's posterior mean to that coordinate is fitted on the even episodes and scored (R^2) on the
   odd ones: does z know where the player is?
2. The same action scripts (always right, always left, no-op, sweep 100 starting right) are played from the
   episode start in the real game and in `--dreams` dreams with deaths switched off, and the probe reads the
   position every step: mean position at a few times, the right-minus-left separation, and the share of dreamed
   readings outside the real range (dreams that leave the room).

Writes JSON (default benchmarks/results/dream_position.json); prints the table last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.envs.vizdoom import add_view_args, lateral_position, takecover_view
from rllib_worldmodel.fidelity import ReferencePolicy
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel

# TakeCover's actions: 0 no-op, 1 MOVE_RIGHT, 2 MOVE_LEFT (envs/vizdoom.py ACTION_MEANINGS)
SCRIPTS = {
    "right": lambda t: 1,
    "left": lambda t: 2,
    "no-op": lambda t: 0,
    "sweep 100 (right first)": lambda t: 1 if (t // 100) % 2 == 0 else 2,
}


def play_positions(
    env: gym.Env, act, episodes: int, seed: int, max_steps: int, on_reset=None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frames, positions) per real episode; `act(t)` gives the action at step t, episode i is reset with seed + i
    (and `on_reset()` called first, e.g. a policy's reset)."""
    out = []
    for ep in range(episodes):
        if on_reset is not None:
            on_reset()
        obs, _ = env.reset(seed=seed + ep)
        frames, pos = [], []
        for t in range(max_steps):
            frames.append(obs)
            pos.append(lateral_position(env))
            obs, _, term, trunc, _ = env.step(int(act(t)))
            if term or trunc:
                break
        out.append((np.stack(frames), np.asarray(pos)))
    return out


@torch.no_grad()
def encode_mean(world_model: WorldModel, frames: np.ndarray, batch: int = 512) -> np.ndarray:
    """V's posterior means of uint8 frames, (N, Z)."""
    return torch.cat(
        [world_model.vae.encode(torch.as_tensor(frames[i : i + batch]))[0] for i in range(0, len(frames), batch)]
    ).numpy()


def fit_probe(z: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Ridge regression y ~ [z, 1]; returns the weights (Z + 1,)."""
    a = np.c_[z, np.ones(len(z))]
    reg = ridge * np.eye(a.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the intercept
    return np.linalg.solve(a.T @ a + reg, a.T @ y)


def r_squared(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1.0 - ((pred - y) ** 2).mean() / y.var())


@torch.no_grad()
def dream_positions(
    world_model: WorldModel, probe: np.ndarray, act, dreams: int, steps: int, temperature: float, seed: int
) -> np.ndarray:
    """The probe's reading of each dream's latent at every step, (steps, dreams); deaths are off (every dream runs
    `steps` steps), so the positions are what the dream's dynamics do, not who survives."""
    settings = DreamSettings(
        temperature=temperature, done_mode="threshold", done_logit_offset=-1e4, max_episode_steps=steps + 1, seed=seed
    )
    sim = DreamSimulator(world_model, settings)
    sim.reset(dreams)
    w = torch.as_tensor(probe[:-1], dtype=torch.float32, device=sim.device)
    out = np.zeros((steps, dreams))
    for t in range(steps):
        out[t] = (sim.z @ w + float(probe[-1])).cpu().numpy()
        sim.step(torch.full((dreams,), int(act(t)), dtype=torch.long, device=sim.device))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", nargs="+", default=["runs/wm_noflash/world_model.pt"])
    parser.add_argument("--probe-episodes", type=int, default=8, help="real episodes per probe policy")
    parser.add_argument("--script-episodes", type=int, default=10, help="real episodes per action script")
    parser.add_argument("--dreams", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300, help="steps per action script (real ones end at death)")
    parser.add_argument("--temperature", type=float, default=1.15)
    parser.add_argument("--seed", type=int, default=0)
    add_view_args(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dream_position.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    at = [t for t in (25, 50, 100, 150, 200, 250, 299) if t < args.steps]
    view = takecover_view(args, read_checkpoint(args.world_model[0])["metadata"])
    env = make_takecover(**view)
    t0 = time.perf_counter()
    # probe data: policies that cover the room (V is shared by fine-tuned models, but each is probed on its own V)
    space = gym.spaces.Discrete(3)
    probe_eps = []
    for k, (hold, cycle) in enumerate((((100, 100), (1, 2)), ((1, 100), None))):
        space.seed(args.seed + k)
        policy = ReferencePolicy(space, hold, cycle=cycle, rng=np.random.default_rng(args.seed + k))
        probe_eps += play_positions(
            env, lambda t, p=policy: p(), args.probe_episodes, args.seed + 100 * k, 2100, on_reset=policy.reset
        )
    real_scripts = {
        name: play_positions(env, act, args.script_episodes, args.seed + 1000, args.steps)
        for name, act in SCRIPTS.items()
    }
    env.close()
    positions = np.concatenate([p for _, p in probe_eps])
    low, high = float(positions.min()), float(positions.max())

    def real_mean_at(eps, t):  # mean over the episodes still alive at step t
        alive = [p[t] for _, p in eps if len(p) > t]
        return float(np.mean(alive)) if alive else float("nan")

    real_rows = {name: {str(t): real_mean_at(eps, t) for t in at} for name, eps in real_scripts.items()}
    results = []
    for path in args.world_model:
        wm = WorldModel.load(path).eval()
        z = [encode_mean(wm, f) for f, _ in probe_eps]
        even = np.arange(len(z)) % 2 == 0
        probe = fit_probe(
            np.concatenate([z[i] for i in np.flatnonzero(even)]),
            np.concatenate([probe_eps[i][1] for i in np.flatnonzero(even)]),
        )
        held_z = np.concatenate([z[i] for i in np.flatnonzero(~even)])
        held_y = np.concatenate([probe_eps[i][1] for i in np.flatnonzero(~even)])
        r2 = r_squared(np.c_[held_z, np.ones(len(held_z))] @ probe, held_y)
        dream_rows, outside = {}, {}
        for name, act in SCRIPTS.items():
            d = dream_positions(wm, probe, act, args.dreams, args.steps, args.temperature, args.seed)
            dream_rows[name] = {str(t): float(d[t].mean()) for t in at}
            outside[name] = float(((d[1:] < low) | (d[1:] > high)).mean())
        results.append(
            {
                "world_model": path,
                "probe_r2_held_out": r2,
                "dream": dream_rows,
                "dream_share_outside_real_range": outside,
                "dream_right_minus_left": {
                    t: dream_rows["right"][t] - dream_rows["left"][t] for t in dream_rows["right"]
                },
            }
        )
        print(json.dumps(results[-1]), flush=True)
    result = {
        "real_range": [low, high],
        "real": real_rows,
        "real_right_minus_left": {t: real_rows["right"][t] - real_rows["left"][t] for t in real_rows["right"]},
        "models": results,
        "settings": {**vars(args), "view": view},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    print(f"real lateral range {low:.0f} .. {high:.0f}; mean position at steps " + ", ".join(map(str, at)))
    for name in SCRIPTS:
        print(f"real | {name} | " + " ".join(f"{real_rows[name][t]:.0f}" for t in map(str, at)))
    for r in results:
        tag = Path(r["world_model"]).parent.name
        print(f"{tag}: probe R^2 on held-out real frames {r['probe_r2_held_out']:.2f}")
        for name in SCRIPTS:
            print(
                f"dream {tag} | {name} | "
                + " ".join(f"{r['dream'][name][t]:.0f}" for t in map(str, at))
                + f" | outside the real range {100 * r['dream_share_outside_real_range'][name]:.0f}%"
            )


if __name__ == "__main__":
    main()
