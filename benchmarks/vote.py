"""A committee of dream-trained agents on the real game: each member (a WorldModels checkpoint's deployed agent, with
its own V, M and C) reads every frame and votes; the action most members vote for is played, and every member's M
reads the action played (not its own vote), so each keeps a true memory of the real history.

The members are trained only in their own dreams; no real reward chooses an action. Each member alone is played on
the same seeded episodes first, so the committee's gain over each is paired.

    python benchmarks/vote.py --checkpoints runs/A/checkpoint runs/B/checkpoint runs/C/checkpoint \
        --episodes 100 --seed 20000 --out benchmarks/results/vote.json

Members act alone (C, at the interval C decides at), also a checkpoint deployed with a planner. Discrete actions.
Ties go to the action played last when it is among them, else to the earliest member's vote.

With `--plan-horizon H --plan-every E` every member plans instead (each its own `DreamPlanner`, H dream steps
ahead from its own model state, rolling out its own C), and the committee pools the planners: at every decision
(every E steps) it plays the first action with the best dreamed return summed over the members' world models, a
look-ahead averaged over several Ms instead of one. The members alone plan with the same settings.

    python benchmarks/vote.py --checkpoints runs/chain/leg3/checkpoint runs/chain/leg4/checkpoint \
        --plan-horizon 12 --plan-every 3 --episodes 100 --seed 13000 --out benchmarks/results/vote_planners.json
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch
from dream_planning import load_planning_agent, play, world_model_file
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
    """The members' recurrent states for `batch` rows, and the step that decides and advances them.

    Args:
        members: The agents (each reads every frame with its own V and keeps its own M state).
        batch: Rows (episodes played at once).
        pool_plans: Every member plans and the committee plays the first action with the best dreamed return summed
            over their planners (at the planners' common interval); False: members act alone and vote.
    """

    def __init__(self, members: list[WorldModelsRLModule], batch: int, pool_plans: bool = False):
        for i, m in enumerate(members):
            horizon = m.plan_settings().horizon
            if m.plan_settings().enabled and not pool_plans:
                raise SystemExit(f"member {i} plans (plan_horizon {horizon}): members act alone")
            if pool_plans and not m.plan_settings().enabled:
                raise SystemExit(f"member {i} does not plan (plan_horizon {horizon}): pooled members plan")
        self.pool_plans = pool_plans
        self.interval = 0
        if pool_plans:
            intervals = {m.planner().interval for m in members}
            if len(intervals) > 1:
                raise SystemExit(f"the members' planners decide at different intervals {sorted(intervals)}")
            self.interval = intervals.pop()
            self.decided = torch.zeros(batch, dtype=torch.long)
        self.members = members
        self.state = [{k: v.expand(batch, *v.shape).clone() for k, v in m.get_initial_state().items()} for m in members]
        self.last = torch.full((batch,), -1)

    def reset(self, row: int) -> None:
        for m, s in zip(self.members, self.state):
            for k, v in m.get_initial_state().items():
                s[k][row] = v
        self.last[row] = -1

    @torch.no_grad()
    def act(self, obs_B: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The committee's actions for the given rows, each member's choice (M, B) and which rows decided now (B,)
        bools: every row when members act alone (each member's held decision counts as its vote at every step),
        the rows at a planning decision when the planners are pooled (elsewhere every member's choice is the
        action held)."""
        rows_t = torch.as_tensor(rows)
        latents = [m.real_latent(obs_B) for m in self.members]
        if self.pool_plans:
            action, votes_M_B, now = self._pooled_plan(latents, rows_t)
        else:
            votes = []
            for m, s, z in zip(self.members, self.state, latents):
                h, c, prev, steps = s["h"][rows_t], s["c"][rows_t], s["prev_action"][rows_t], s["steps_taken"][rows_t]
                choice = m.controller.act(m.controller_input.build(z, h, c, prev))
                decided = held_actions(
                    choice.to(s["decided"].dtype), s["decided"][rows_t], steps.long(), m.controller_interval()
                )
                s["decided"][rows_t] = decided
                votes.append(decided.long())
            votes_M_B = torch.stack(votes)
            action = plurality(votes_M_B, self.last[rows_t], int(self.members[0].action_space.n))
            now = torch.ones(len(rows_t), dtype=torch.bool)
        for m, s, z in zip(self.members, self.state, latents):
            h, c, a_enc = m.remember(z, action, s["h"][rows_t], s["c"][rows_t])
            s["h"][rows_t], s["c"][rows_t], s["prev_action"][rows_t] = h, c, a_enc.to(s["prev_action"].dtype)
            s["steps_taken"][rows_t] += 1
        self.last[rows_t] = action
        return action, votes_M_B, now

    def _pooled_plan(
        self, latents: list[torch.Tensor], rows_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """At the rows due for a decision, the first action with the best dreamed return summed over the members'
        planners (each dreaming from its own model state in its own M); the held action elsewhere."""
        steps = self.state[0]["steps_taken"][rows_t].long()  # every member has taken the same steps
        now = steps % self.interval == 0
        due = torch.nonzero(now).squeeze(1)
        action = self.decided[rows_t].clone()
        votes_M_B = action.expand(len(self.members), -1).clone()
        if due.numel():
            total = None
            for i, (m, s, z) in enumerate(zip(self.members, self.state, latents)):
                h, c, prev = (s[k][rows_t][due] for k in ("h", "c", "prev_action"))
                scores = m.planner().scores(z[due], h, c, prev).cpu()  # (due, actions): dreamed return in M_i
                votes_M_B[i, due] = scores.argmax(-1)
                total = scores if total is None else total + scores
            action[due] = total.argmax(-1)
        self.decided[rows_t] = action
        return action, votes_M_B, now


def play_committee(
    members: list[WorldModelsRLModule], make_env, episodes: int, seed: int, num_envs: int = 8, pool_plans: bool = False
) -> dict:
    """Returns of `episodes` real episodes (episode i reset with seed + i) played by the committee, and how often the
    members disagreed (share of decisions without a unanimous choice) and the played action went against each
    member's choice. Members act alone and vote, or (`pool_plans`) plan and the committee pools their planners;
    a decision is every step when members vote (their held choices), every planning decision when pooled."""
    game = SeededEpisodes([make_env() for _ in range(num_envs)], episodes, seed)
    committee = Committee(members, num_envs, pool_plans)
    decisions, split, overruled = 0, 0, np.zeros(len(members))
    while game.live.any():
        idx = np.flatnonzero(game.live)
        obs = torch.as_tensor(np.stack([game.obs[i] for i in idx]))
        action, votes, now = committee.act(obs, idx)
        votes, played = votes[:, now], action[now]
        decisions += int(now.sum())
        split += int((votes != votes[0]).any(0).sum())
        overruled += (votes != played).sum(1).numpy()
        for j, i in enumerate(idx):
            if game.step(i, int(action[j]))[0] is not None:
                committee.reset(i)
    game.close()
    decisions = max(decisions, 1)
    return {
        "returns": game.returns,
        "split_share": split / decisions,
        "overruled_share": (overruled / decisions).tolist(),
        "decisions": decisions,
    }


def summary(returns: np.ndarray) -> dict:
    return {"real_mean": float(returns.mean()), "real_std": float(returns.std()), "real_returns": returns.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="WorldModels checkpoint folders (members)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20000)
    parser.add_argument(
        "--plan-horizon",
        type=int,
        default=0,
        help="every member plans this many dream steps ahead and the committee pools their planners' dreamed returns "
        "(0: members act alone and vote)",
    )
    parser.add_argument("--plan-every", type=int, default=3, help="the planners' decision interval (steps)")
    parser.add_argument("--samples", type=int, default=16, help="the planners' dreams per candidate first action")
    parser.add_argument("--temperature", type=float, default=1.15, help="the planners' look-ahead tau")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vote.json"))
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        parser.error("--checkpoints: a committee needs at least 2 members")
    torch.set_num_threads(2)
    members = []
    for c in args.checkpoints:
        m, _ = load_planning_agent(Path(c), temperature=args.temperature, samples=args.samples)
        m.plan_horizon.fill_(args.plan_horizon)  # 0: as deployed without a planner, C alone
        m.plan_every.fill_(args.plan_every)
        try:  # the planner's own checks, with the flags' names
            m.plan_settings().check_plannable(m.action_space, m.action_repeat)
        except ValueError as err:
            parser.error(f"--plan-horizon / --plan-every: {err}")
        members.append(m)
    pooled = args.plan_horizon > 0
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
        every = m.planner().interval if pooled else m.controller_interval()
        rows.append({"agent": ckpt, "decides_every": every, **summary(returns)})
        rows[-1]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "real_returns"}), flush=True)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    voted = play_committee(members, make_env, args.episodes, args.seed, pool_plans=pooled)
    name = "committee (planners' dreamed returns summed)" if pooled else "committee (plurality vote)"
    committee = {"agent": name, **summary(voted.pop("returns")), **voted}
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
        "plan": {
            "horizon": args.plan_horizon,
            "every": args.plan_every,
            "samples": args.samples,
            "temperature": args.temperature,
        }
        if pooled
        else None,
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
    split = f"members split on {100 * committee['split_share']:.0f}% of {'decisions' if pooled else 'steps'}"
    score = f"{committee['real_mean']:.1f} ± {committee['real_std']:.1f}"
    how = f"pooled planners of {len(members)}" if pooled else f"plurality of {len(members)}"
    print(f"| committee, {how} ({split}) | {score} | — |")


if __name__ == "__main__":
    main()
