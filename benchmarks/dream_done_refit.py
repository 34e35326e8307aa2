"""Experiment: refit M's done head on DREAMED states, labelled with what really happened.

    python benchmarks/dream_done_refit.py --world-model runs/wm_hold/world_model.pt \
        --episodes runs/wm_hold/episodes --horizon 100 --out runs/wm_dreamdone100/world_model.pt
    python benchmarks/dream_fidelity.py --world-model runs/wm_dreamdone100/world_model.pt --calibrate-to 322.5

M's done head ranks TakeCover policies right while it reads real frames and wrong in the dream (README): it was
trained only on real latents, and dreamed ones differ. Here, from every `--every`-th real state of the recorded
episodes (M's LSTM state after the real history, the real latent), M dreams `--horizon` steps with the actions
that were really taken (τ = `--temperature`, a random ensemble member per step, as the dream does); each dreamed
step is labelled 1 where the real episode died at that step. The done head (one linear map of h, the same for
every ensemble member) is refitted on those pairs by weighted logistic regression (the BCE's `done_pos_weight`,
so `WorldModel.death_probability` keeps its meaning), starting from the current head. Everything else of the world
model is unchanged. Prints the held-out loss and ROC AUC before and after, writes the world model, then the JSON
summary (default benchmarks/results/dream_done_refit.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import rllib_worldmodel as rw
from rllib_worldmodel.fidelity import roc_auc
from rllib_worldmodel.models.mdn_rnn import sample_mixture
from rllib_worldmodel.models.world_model import read_checkpoint


@torch.no_grad()
def branch_starts(wm: rw.WorldModel, episodes, every: int, horizon: int, gen: torch.Generator) -> dict:
    """Per start (`WorldModel.branch_point_states` on posterior samples, as M was trained): M's (h, c) after the real
    history, the real latent, the next `horizon` real actions (zero-padded), the real death step as a label row,
    and the mask of real steps."""
    encoded = []
    for ep in episodes:
        mu, logvar = wm.vae.encode(torch.as_tensor(ep.obs))
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
        encoded.append((z, logvar, wm.encode_action(torch.as_tensor(ep.actions)), bool(ep.terminated)))
    states, outcomes, where = wm.branch_point_states(encoded, every=every)
    z, _, h, c = wm.split_branch_states(states)
    n = len(states)
    acts = torch.zeros(n, horizon, wm.config.action_dim)
    y, mask = torch.zeros(n, horizon), torch.zeros(n, horizon)
    for i, ((e, t), (left, ended)) in enumerate(zip(where.tolist(), outcomes.tolist())):
        k = min(horizon, int(left))
        acts[i, :k], mask[i, :k] = encoded[e][2][t : t + k], 1.0
        if ended and left <= horizon:
            y[i, int(left) - 1] = 1.0  # the done target sits on the step that consumed the last action
    return {"h": h, "c": c, "z": z, "a": acts, "y": y, "mask": mask}


@torch.no_grad()
def dream_features(wm: rw.WorldModel, starts: dict, temperature: float, gen: torch.Generator) -> torch.Tensor:
    """M's LSTM output at every dreamed step from every start, (N, horizon, H)."""
    m = wm.mdn_rnn
    h, c, z = starts["h"].clone(), starts["c"].clone(), starts["z"].clone()
    n, rows, out = h.shape[0], torch.arange(h.shape[0]), []
    for j in range(starts["a"].shape[1]):
        h, c = m.step(z, starts["a"][:, j], (h, c))
        out.append(h)
        o = m.heads(h)
        member = torch.randint(0, m.num_heads, (n,), generator=gen)
        z = sample_mixture(o.logpi[member, rows], o.mu[member, rows], o.logsigma[member, rows], temperature, gen)
    return torch.stack(out, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", default="runs/wm_hold/world_model.pt")
    parser.add_argument("--episodes", default="runs/wm_hold/episodes", help="folder of recorded real episodes")
    parser.add_argument("--num-episodes", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="a dream starts at every N-th real state")
    parser.add_argument("--horizon", type=int, default=100, help="dreamed steps per start")
    parser.add_argument("--repeats", type=int, default=1, help="dreams per start")
    parser.add_argument("--temperature", type=float, default=1.15)
    parser.add_argument("--steps", type=int, default=300, help="Adam steps of 8192 pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/wm_dreamdone/world_model.pt", help="the refitted world model")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "dream_done_refit.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)
    wm = rw.WorldModel.load(args.world_model).eval()
    episodes = rw.load_episodes(args.episodes)[: args.num_episodes]
    starts = branch_starts(wm, episodes, args.every, args.horizon, gen)
    feats = [dream_features(wm, starts, args.temperature, gen) for _ in range(args.repeats)]
    keep = starts["mask"].repeat(args.repeats, 1).reshape(-1) > 0
    x = torch.cat(feats).reshape(-1, wm.mdn_rnn.hidden_size)[keep]
    y = starts["y"].repeat(args.repeats, 1).reshape(-1)[keep]
    del feats
    # held out: whole starts (rows of one start share a history), one in ten
    start_id = torch.arange(starts["h"].shape[0]).repeat(args.repeats)[:, None].expand(-1, args.horizon).reshape(-1)
    val = (start_id[keep] % 10 == 0).numpy()
    train_idx, val_idx = torch.as_tensor(np.flatnonzero(~val)), torch.as_tensor(np.flatnonzero(val))
    head = wm.mdn_rnn.done_head
    w = torch.nn.Parameter(head.weight.detach().mean(0).clone())  # the members' average head as the start
    b = torch.nn.Parameter(head.bias.detach().mean().clone())
    pos_weight = torch.tensor(float(wm.config.done_pos_weight))

    def loss(idx: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(x[idx] @ w + b, y[idx], pos_weight=pos_weight)

    def report() -> dict:
        with torch.no_grad():
            score = (x[val_idx] @ w + b).numpy()
            return {"val_loss": float(loss(val_idx)), "val_auc": roc_auc(score, y[val_idx].numpy() > 0)}

    before = report()
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(args.steps):
        idx = train_idx[torch.randint(0, len(train_idx), (8192,), generator=gen)]
        opt.zero_grad()
        (loss(idx) + 1e-4 * (w**2).sum()).backward()
        opt.step()
    after = report()
    with torch.no_grad():
        head.weight.copy_(w.expand_as(head.weight))
        head.bias.copy_(b.expand_as(head.bias))
    metadata = read_checkpoint(args.world_model)["metadata"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wm.save(
        out, metadata={**metadata, "done_head_refit_on_dreams": {"from": args.world_model, "horizon": args.horizon}}
    )
    result = {
        "starts": int(starts["h"].shape[0]),
        "pairs": int(len(y)),
        "deaths": int(y.sum()),
        "before": before,
        "after": after,
        "settings": vars(args),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {out} and {args.json}")
    print(
        f"done head on {result['pairs']} dreamed steps ({result['deaths']} real deaths) from {result['starts']} real "
        f"states: held-out loss {before['val_loss']:.4f} -> {after['val_loss']:.4f}, "
        f"AUC {before['val_auc']:.3f} -> {after['val_auc']:.3f}"
    )


if __name__ == "__main__":
    main()
