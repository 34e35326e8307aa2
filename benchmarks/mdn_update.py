"""What one M update costs on the main job's window batches: M's heads and loss at every padded step, at the valid
steps only, and at the valid steps with the LSTM run in groups of rows of similar lengths (`MDNRNN.forward_valid`,
what the Learner and the offline trainer do), side by side on the same batches, with the same module.

    python benchmarks/mdn_update.py --updates 20

The module is the main job's agent (`WorldModelsRLModule`: z 64, LSTM 512, 5 mixtures, an ensemble of 5 heads).
Window batches are drawn as `WorldModels._mdn_batch` draws them: 32 episodes picked in proportion to their length,
each window from a uniform step to the episode's end (the main job's `mdn_seq_len` of 500 is longer than its
episodes), with its episode prefix, padded to the batch's longest window, Poisson(1) bootstrap weights per member.
Episode lengths are those of a checkpoint's replay (`--lengths-from runs/takecover/checkpoint`), or else geometric
with the mean of the main job's random-hold collection (67.96 steps at 4 tics a step, `--mean-steps`; its tail is
longer than the real one's, so its batches hold more padding); latents are random (the work does not depend on their
values). Both paths run the module's own
prefix pass; "padded" then runs M's heads on the whole (B, T) batch and scores it with the mask, "valid_heads" runs
the LSTM over the whole batch and the heads at the valid steps, "valid" is `_forward_train` plus
`learner.window_batch_loss`. Each update is a forward and a backward pass (Adam's step costs
the same in both). Writes JSON and prints the figure last: seconds per update and the M fit the main job's 20 epochs
over 27,183 steps would take at that rate.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from torch.nn.utils.rnn import pack_padded_sequence

from rllib_worldmodel.data import unpack_replay_state
from rllib_worldmodel.learner import window_batch_loss
from rllib_worldmodel.losses import mdn_rnn_loss
from rllib_worldmodel.rl_module import WorldModelsRLModule

MAIN_JOB = {"z_size": 64, "rnn_size": 512, "num_mixtures": 5, "num_heads": 5, "done_bias_init": -5.0}


def window_batch(
    rng: np.random.Generator, lengths: np.ndarray, batch_size: int, z_size: int, actions: int, members: int
) -> dict[str, torch.Tensor]:
    """A window batch shaped as `WorldModels._mdn_batch` makes it, from episodes of the given lengths."""
    picks = rng.choice(len(lengths), size=batch_size, p=lengths / lengths.sum())
    ends = lengths[picks]
    starts = np.array([rng.integers(0, t) for t in ends])
    widths = ends - starts
    p_max, t_max = max(int(starts.max()), 1), int(widths.max())
    mask = (np.arange(t_max)[None] < widths[:, None]).astype(np.float32)
    done = np.zeros((batch_size, t_max), np.float32)
    done[np.arange(batch_size), widths - 1] = 1.0  # every episode here ends in a death, as TakeCover's do

    def one_hot(shape):
        return np.eye(actions, dtype=np.float32)[rng.integers(0, actions, shape)]

    batch = {
        "z_prefix": rng.standard_normal((batch_size, p_max, z_size), np.float32),
        "a_prefix": one_hot((batch_size, p_max)),
        "prefix_len": starts.astype(np.int64),
        "z_in": rng.standard_normal((batch_size, t_max, z_size), np.float32),
        "z_next": rng.standard_normal((batch_size, t_max, z_size), np.float32),
        "a": one_hot((batch_size, t_max)),
        "r": mask.copy(),
        "done": done,
        "mask": mask,
        "member_weights": rng.poisson(1.0, (batch_size, members)).astype(np.float32),
    }
    return {k: torch.from_numpy(v) for k, v in batch.items()}


def replay_lengths(checkpoint: str) -> np.ndarray:
    """The lengths of the episodes in a `WorldModels` checkpoint's replay."""
    with open(Path(checkpoint) / "algorithm_state.pkl", "rb") as f:
        replay = unpack_replay_state(pickle.load(f)["world_models"]["replay"])
    return np.array([len(SingleAgentEpisode.from_state(e)) for e in replay["episodes"]])


def padded_loss(module: WorldModelsRLModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """M's heads at every padded step, the loss masked (the Learner's path until 2026-12-04)."""
    wm = module.world_model
    pred, _, _ = wm.mdn_rnn(batch["z_in"], batch["a"], module._prefix_state(batch))
    loss, _ = mdn_rnn_loss(
        pred,
        batch["z_next"],
        batch["r"],
        batch["done"],
        batch["mask"],
        loss_weights=wm.config.loss_weights,
        done_pos_weight=wm.config.done_pos_weight,
        member_weights_E_B=batch["member_weights"].T,
    )
    return loss


def _valid_steps_loss(module: WorldModelsRLModule, pred, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The Learner's loss (`window_batch_loss`) on M's predictions at the batch's valid steps."""
    return window_batch_loss({f"mdn_{k}": v for k, v in pred._asdict().items()}, batch, module.world_model.config)[0]


def valid_heads_loss(module: WorldModelsRLModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """M's heads at the valid steps only, the LSTM over the whole padded batch (one fused call)."""
    m_rnn = module.world_model.mdn_rnn
    h_B_T_H, _ = m_rnn.hidden(batch["z_in"], batch["a"], module._prefix_state(batch))
    pred = m_rnn.heads(h_B_T_H[batch["mask"] > 0])
    return _valid_steps_loss(module, pred, batch)


def packed_prefix_loss(module: WorldModelsRLModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The Learner's path with the episode prefixes run as one packed sequence (`pack_padded_sequence`: the prefix
    pass until 2026-12-06) instead of `MDNRNN.state_after`'s fused calls between distinct lengths."""
    m_rnn = module.world_model.mdn_rnn
    h0, c0 = m_rnn.initial_state(batch["z_in"].shape[0])
    lengths = batch["prefix_len"]
    has = lengths > 0
    if has.any():
        with torch.no_grad():
            x = torch.cat([batch["z_prefix"], batch["a_prefix"]], dim=-1)[has]
            _, (hn, cn) = m_rnn.lstm(pack_padded_sequence(x, lengths[has], batch_first=True, enforce_sorted=False))
        h0[has], c0[has] = hn[0], cn[0]
    pred, _ = m_rnn.forward_valid(batch["z_in"], batch["a"], batch["mask"] > 0, (h0, c0))
    return _valid_steps_loss(module, pred, batch)


def valid_loss(module: WorldModelsRLModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The Learner's path: the module's training forward (heads at the valid steps, the LSTM in groups of rows of
    similar lengths, `MDNRNN.forward_valid`) and `window_batch_loss`."""
    return window_batch_loss(module._forward_train(batch), batch, module.world_model.config)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=20, help="timed updates per path (after 2 warm-up ones)")
    parser.add_argument("--episodes", type=int, default=400, help="episodes the windows are drawn from")
    parser.add_argument("--lengths-from", default=None, help="a WorldModels checkpoint whose replay's lengths to use")
    parser.add_argument("--mean-steps", type=float, default=67.96, help="mean episode length (geometric)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per update (the main job's)")
    parser.add_argument("--fit-steps", type=int, default=27_183, help="replay steps for the projected fit")
    parser.add_argument("--fit-epochs", type=float, default=20.0, help="M epochs for the projected fit")
    parser.add_argument("--small", action="store_true", help="a tiny module (smoke test of the script)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/mdn_update.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    arch = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, "num_heads": 3} if args.small else MAIN_JOB
    module = WorldModelsRLModule(
        observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        action_space=gym.spaces.Discrete(3),
        model_config=arch,
    )
    rng = np.random.default_rng(args.seed)
    if args.lengths_from:
        lengths = replay_lengths(args.lengths_from)
    else:
        lengths = rng.geometric(1.0 / args.mean_steps, size=args.episodes)
    shape = (args.batch_size, arch["z_size"], 3, arch["num_heads"])
    batches = [window_batch(rng, lengths, *shape) for _ in range(args.updates + 2)]
    first = batches[0]
    paths = {
        "padded": padded_loss,
        "valid_heads": valid_heads_loss,
        "valid_packed_prefix": packed_prefix_loss,
        "valid": valid_loss,
    }
    reference = padded_loss(module, first).item()
    loss_gap = max(abs(fn(module, first).item() - reference) for fn in paths.values())
    seconds = {}
    for name, loss_fn in paths.items():
        for i, batch in enumerate(batches):
            if i == 2:  # two warm-up updates (allocator, oneDNN kernels)
                t0 = time.perf_counter()
            module.zero_grad(set_to_none=True)
            loss_fn(module, batch).backward()
        seconds[name] = (time.perf_counter() - t0) / args.updates
    valid_steps = float(np.mean([b["mask"].sum().item() for b in batches]))
    padded_steps = float(np.mean([b["mask"].numel() for b in batches]))
    updates = int(np.ceil(args.fit_epochs * args.fit_steps / valid_steps))
    result = {
        "module": arch,
        "batch_size": args.batch_size,
        "episode_lengths": args.lengths_from or f"geometric, mean {args.mean_steps}",
        "episodes": len(lengths),
        "mean_episode_steps": float(lengths.mean()),
        "valid_steps_per_batch": valid_steps,
        "padded_steps_per_batch": padded_steps,
        "seconds_per_update": seconds,
        "speedup": seconds["padded"] / seconds["valid"],
        "prefix_speedup": seconds["valid_packed_prefix"] / seconds["valid"],
        "mean_prefix_steps": float(np.mean([b["prefix_len"].float().mean().item() for b in batches])),
        "loss_abs_difference_first_batch": loss_gap,
        "projected_fit": {"epochs": args.fit_epochs, "steps": args.fit_steps, "updates": updates}
        | {f"{k}_s": v * updates for k, v in seconds.items()},
        "threads": args.threads,
        "updates_timed": args.updates,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    names = {
        "padded": "heads and loss at every padded step",
        "valid_heads": "heads and loss at the valid steps",
        "valid_packed_prefix": "same, the LSTM by length, the prefix packed (until 2026-12-06)",
        "valid": "same, the prefix on the fused kernel between lengths (the Learner's)",
    }
    print(
        f"valid steps per batch {valid_steps:.0f} of {padded_steps:.0f} padded; largest loss difference {loss_gap:.2e}"
    )
    print(f"| M update | seconds | M's {updates} updates ({args.fit_epochs:g} epochs over {args.fit_steps} steps) |")
    print("|---|---|---|")
    for key, name in names.items():
        print(f"| {name} | {seconds[key]:.3f} | {seconds[key] * updates:.0f} s |")
    print(f"the prefix on the fused kernel: M update {result['prefix_speedup']:.2f}x faster than with it packed")
    print(f"M update: {result['speedup']:.2f}x faster than at every padded step")


if __name__ == "__main__":
    main()
