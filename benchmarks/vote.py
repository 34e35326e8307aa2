"""A committee of dream-trained agents on the real game: each member (a WorldModels checkpoint's deployed agent, with
its own V, M and C) reads every frame and votes; the action most members vote for is played, and every member's M
reads the action played (not its own vote), so each keeps a true memory of the real history.

The members are trained only in their own dreams; no real reward chooses an action. Each member alone is played on
the same seeded episodes first, so the committee's gain over each is paired.

    python benchmarks/vote.py --checkpoints runs/A/checkpoint runs/B/checkpoint runs/C/checkpoint \
        --episodes 100 --seed 20000 --out benchmarks/results/vote.json

Members act as their checkpoints deployed them without a planner (C alone, at the interval C decides at); a member
that plans is refused. Discrete actions. Ties go to the action played last when it is among them, else to the
earliest member's vote.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch
from dream_planning import load_agent, play, world_model_file
from takecover_tau import SeededEpisodes

from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.models.controller import held_actions
from rllib_worldmodel.models.world_model import read_checkpoint
from rllib_worldmodel.rl_module import WorldModelsRLModule


def plurality(votes_M_B: torch.Tensor, last_B: torch.Tensor, num_actions: int) -> torch.Tensor:
    """The action most members vote for, per row; a tie goes to `last_B` (the action played last; -1: none) when it
    is among the tied actions, else to the earliest member's vote among them.

    Args:
        votes_M_B: Each member's action per row (ints).
        last_B: The action each row played last (-1 at an episode's first step).
        num_actions: Size of the discrete action space.
    """
    counts = torch.nn.functional.one_hot(votes_M_B.long(), num_actions).sum(0)  # (B, A)
    tied = counts == counts.max(-1, keepdim=True).values
    first = votes_M_B.long().T  # (B, M): members in order
    earliest = first.gather(1, tied.gather(1, first).long().argmax(1, keepdim=True)).squeeze(1)
    keep = (last_B >= 0) & tied.gather(1, last_B.clamp_min(0).long()[:, None]).squeeze(1)
    return torch.where(keep, last_B.long(), earliest)


class Committee:
    """The members' recurrent states for `batch` rows, and the step that votes and advances them."""

    def __init__(self, members: list[WorldModelsRLModule], batch: int):
        for i, m in enumerate(members):
            if m.plan_settings().enabled:
                raise SystemExit(f"member {i} plans (plan_horizon {m.plan_settings().horizon}): members act alone")
        self.members = members
        self.state = [{k: v.expand(batch, *v.shape).clone() for k, v in m.get_initial_state().items()} for m in members]
        self.last = torch.full((batch,), -1)

    def reset(self, row: int) -> None:
        for m, s in zip(self.members, self.state):
            for k, v in m.get_initial_state().items():
                s[k][row] = v
        self.last[row] = -1

    @torch.no_grad()
    def act(self, obs_B: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The committee's actions for the given rows and each member's vote (M, B)."""
        rows_t = torch.as_tensor(rows)
        votes, latents = [], []
        for m, s in zip(self.members, self.state):
            z = m.real_latent(obs_B)
            h, c, prev, steps = s["h"][rows_t], s["c"][rows_t], s["prev_action"][rows_t], s["steps_taken"][rows_t]
            choice = m.controller.act(m.controller_input.build(z, h, c, prev))
            decided = held_actions(
                choice.to(s["decided"].dtype), s["decided"][rows_t], steps.long(), m.controller_interval()
            )
            s["decided"][rows_t] = decided
            votes.append(decided.long())
            latents.append(z)
        votes_M_B = torch.stack(votes)
        action = plurality(votes_M_B, self.last[rows_t], int(self.members[0].action_space.n))
        for m, s, z in zip(self.members, self.state, latents):
            h, c, a_enc = m.remember(z, action, s["h"][rows_t], s["c"][rows_t])
            s["h"][rows_t], s["c"][rows_t], s["prev_action"][rows_t] = h, c, a_enc.to(s["prev_action"].dtype)
            s["steps_taken"][rows_t] += 1
        self.last[rows_t] = action
        return action, votes_M_B


def play_committee(members: list[WorldModelsRLModule], make_env, episodes: int, seed: int, num_envs: int = 8) -> dict:
    """Returns of `episodes` real episodes (episode i reset with seed + i) played by the committee, and how often the
    members disagreed (share of steps without a unanimous vote) and the played action went against each member."""
    game = SeededEpisodes([make_env() for _ in range(num_envs)], episodes, seed)
    committee = Committee(members, num_envs)
    steps, split, overruled = 0, 0, np.zeros(len(members))
    while game.live.any():
        idx = np.flatnonzero(game.live)
        obs = torch.as_tensor(np.stack([game.obs[i] for i in idx]))
        action, votes = committee.act(obs, idx)
        steps += len(idx)
        split += int((votes != votes[0]).any(0).sum())
        overruled += (votes != action).sum(1).numpy()
        for j, i in enumerate(idx):
            if game.step(i, int(action[j]))[0] is not None:
                committee.reset(i)
    game.close()
    return {"returns": game.returns, "split_share": split / steps, "overruled_share": (overruled / steps).tolist()}


def summary(returns: np.ndarray) -> dict:
    return {"real_mean": float(returns.mean()), "real_std": float(returns.std()), "real_returns": returns.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="WorldModels checkpoint folders (members)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vote.json"))
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        parser.error("--checkpoints: a committee needs at least 2 members")
    torch.set_num_threads(2)
    members = [load_agent(Path(c)) for c in args.checkpoints]
    settings = [
        dict(read_checkpoint(world_model_file(Path(c), None))["metadata"].get("env_settings", {}))
        for c in args.checkpoints
    ]
    if any(s != settings[0] for s in settings):
        parser.error(f"--checkpoints: the members were fitted on different games: {settings}")
    make_env = functools.partial(make_takecover, **settings[0])
    rows = []
    for ckpt, m in zip(args.checkpoints, members):
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)
        returns = play(m, make_env, args.episodes, args.seed)
        rows.append({"agent": ckpt, "decides_every": m.controller_interval(), **summary(returns)})
        rows[-1]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "real_returns"}), flush=True)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    voted = play_committee(members, make_env, args.episodes, args.seed)
    committee = {"agent": "committee (plurality vote)", **summary(voted.pop("returns")), **voted}
    committee["wall_s"] = round(time.perf_counter() - t0, 1)
    for row in rows:
        diff = np.asarray(committee["real_returns"]) - np.asarray(row["real_returns"])
        row["committee_gain_mean"], row["committee_gain_se"] = (
            float(diff.mean()),
            float(diff.std() / np.sqrt(len(diff))),
        )
    rows.append(committee)
    result = {
        "checkpoints": args.checkpoints,
        "env_settings": settings[0],
        "episodes": args.episodes,
        "seed": args.seed,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nreal TakeCover, {args.episodes} episodes (seeds {args.seed}+), frames survived; {settings[0]}")
    print("| agent | real mean ± std | committee's paired gain over it |\n|---|---|---|")
    for row in rows[:-1]:
        gain = f"{row['committee_gain_mean']:+.1f} ± {row['committee_gain_se']:.1f}"
        score = f"{row['real_mean']:.1f} ± {row['real_std']:.1f}"
        print(f"| {row['agent']} (every {row['decides_every']}) | {score} | {gain} |")
    split = f"members split on {100 * committee['split_share']:.0f}% of steps"
    score = f"{committee['real_mean']:.1f} ± {committee['real_std']:.1f}"
    print(f"| committee, plurality of {len(members)} ({split}) | {score} | — |")


if __name__ == "__main__":
    main()
