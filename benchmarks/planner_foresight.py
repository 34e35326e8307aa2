"""Does the planner see the real hits coming? Its dreamed scores at each real decision against the hits that follow.

    python benchmarks/planner_foresight.py --checkpoint runs/plan_collect_from_it14/checkpoint \
        --controller benchmarks/results/distill_planner_it16_seeds7000.controller.pt --episodes 100 --seed 11000

Plays a `WorldModels` checkpoint's agent with decision-time planning on real TakeCover, through the module's own
inference path (as `dream_planning.py` does; same loading, same episode seeds), and records the player's health
(ViZDoom's HEALTH) before every step and, at every decision, the planner's expected dreamed return of each first
action (`DreamPlanner.scores`, frames over the look-ahead). It reports what limits the planner:

- the hits (steps that lose health): per episode, damage per hit, and how many deaths were one hit from full health;
- foresight: ROC AUC of the chosen action's dreamed score (lower = more danger dreamed) for "a real hit within the
  look-ahead", over all decisions;
- how far apart the planner's candidates score (the chosen action's margin over the runner-up, in frames), before
  hits and elsewhere, and how often it switches action between decisions;
- with `--switch-margin m ...` (one row each, same episode seeds): the agent keeps the action it took unless another
  scores more than m frames better. That asks whether the small margins the planner acts on carry signal: if they
  were noise, holding the action longer would cost nothing.

No real reward reaches any decision (health is read only to score the planner afterwards). Writes JSON and prints
the table last.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch
from dream_planning import load_planning_agent, play
from ray.rllib.core.columns import Columns

from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.envs.vizdoom import episode_steps, health
from rllib_worldmodel.planning import DreamPlanner


class Recorder:
    """Health before every step and the planner's candidate scores at every decision, per episode.

    Args:
        planner: The module's DreamPlanner; its `scores` are recorded (and, with `switch_margin` > 0, its `act`
            keeps the action the agent took unless another scores more than `switch_margin` better).
        switch_margin: Frames of dreamed return another action must gain over the current one to be taken.
    """

    def __init__(self, planner: DreamPlanner, switch_margin: float = 0.0):
        self.planner, self.switch_margin = planner, float(switch_margin)
        self.health: dict[int, list[float]] = {}
        self.actions: dict[int, list[int]] = {}
        self.scores: dict[int, dict[int, list[float]]] = {}  # episode -> step -> candidate scores
        self._latest: torch.Tensor | None = None
        self._scores, self._act = planner.scores, planner.act
        planner.act = self.act

    def act(self, z, h, c, prev_action):
        """The planner's choice (with the switch margin applied), its scores kept for `observe`."""
        scores = self._scores(z, h, c, prev_action)
        self._latest = scores.cpu()
        if self.switch_margin > 0:  # prev_action is the one-hot of the action taken (all zeros at an episode start)
            scores = scores + self.switch_margin * prev_action.to(scores.device)
        return scores.argmax(-1)

    def observe(self, envs, episodes: np.ndarray, state_in: dict, out: dict) -> None:
        """`dream_planning.play`'s hook: which rows decided (their scores are the latest), their health, actions."""
        steps = state_in["steps_taken"].long().numpy()
        due = np.flatnonzero(steps % self.planner.interval == 0)
        actions = out[Columns.ACTIONS][:, 0].numpy()
        for j, (env, ep) in enumerate(zip(envs, episodes)):
            self.health.setdefault(int(ep), []).append(health(env))
            self.actions.setdefault(int(ep), []).append(int(actions[j]))
        for row, j in enumerate(due):
            self.scores.setdefault(int(episodes[j]), {})[int(steps[j])] = self._latest[row].tolist()
        self._latest = None

    def close(self) -> None:
        self.planner.act = self._act


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive's value > a negative's), ties counted half (Mann-Whitney)."""
    values = np.concatenate([positive, negative])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based ranks, ties at their average
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def foresight(rec: Recorder, cap_steps: int, horizon: int) -> dict:
    """Hits, one-hit deaths, the AUC of the chosen action's score for a hit within `horizon` steps, margins and
    switches, from one recorded row; an episode shorter than `cap_steps` steps ended in a death."""
    hits, one_hit_deaths, deaths, damage = [], 0, 0, []
    danger, calm, margin_before, margin_else, switches, decisions = [], [], [], [], 0, 0
    for ep, hp in rec.health.items():
        hp = np.asarray(hp)
        steps = len(hp)
        died = steps < cap_steps
        drops = np.maximum(hp[:-1] - hp[1:], 0.0)
        hit_steps = list(np.flatnonzero(drops > 0))
        damage += list(drops[drops > 0])
        if died:
            deaths += 1
            hit_steps.append(steps - 1)
            damage.append(hp[-1])  # the lethal step takes what was left
            one_hit_deaths += int(hp[-1] >= 100.0)
        hits.append(len(hit_steps))
        previous = None
        for step, scores in sorted(rec.scores.get(ep, {}).items()):
            chosen = rec.actions[ep][step]
            s = np.sort(scores)
            margin = float(s[-1] - s[-2])
            ahead = any(step <= t < step + horizon for t in hit_steps)
            if step + horizon <= steps or ahead:  # a window the episode fully shows
                (danger if ahead else calm).append(scores[chosen])
                (margin_before if ahead else margin_else).append(margin)
            if previous is not None:
                decisions += 1
                switches += int(chosen != previous)
            previous = chosen
    return {
        "hits_per_episode": float(np.mean(hits)),
        "damage_per_hit": float(np.mean(damage)) if damage else 0.0,
        "deaths": deaths,
        "one_hit_deaths": one_hit_deaths,
        # low chosen score = danger dreamed: the AUC of the negated score
        "foresight_auc": roc_auc(-np.asarray(danger), -np.asarray(calm)) if danger and calm else None,
        "decisions_before_a_hit": len(danger),
        "decisions_elsewhere": len(calm),
        "margin_before_a_hit_median": float(np.median(margin_before)) if margin_before else None,
        "margin_elsewhere_median": float(np.median(margin_else)) if margin_else else None,
        "switch_share": switches / decisions if decisions else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a WorldModels RLlib checkpoint folder")
    parser.add_argument(
        "--world-model", help="a world model (V, M, calibrated deaths) to plan with instead of the checkpoint's own"
    )
    parser.add_argument("--controller", help="C to roll out: a state dict or another checkpoint folder's C")
    parser.add_argument("--horizon", type=int, default=12, help="look-ahead in dream steps")
    parser.add_argument("--every", type=int, default=3, help="the planner's decision interval in steps")
    parser.add_argument("--samples", type=int, default=16, help="dreams per candidate first action")
    parser.add_argument("--switch-margin", type=float, nargs="+", default=[0.0], help="frames; one row each")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=11000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "planner_foresight.json"))
    args = parser.parse_args()
    if args.horizon < 1 or any(m < 0 for m in args.switch_margin):
        raise SystemExit("--horizon must be >= 1 and every --switch-margin >= 0 (frames of dreamed return)")
    torch.set_num_threads(2)
    checkpoint = Path(args.checkpoint)
    module, meta = load_planning_agent(
        checkpoint,
        args.world_model and Path(args.world_model),
        args.controller and Path(args.controller),
        1.15,
        args.samples,
    )
    env_settings = dict(meta.get("env_settings", {}))
    module.plan_horizon.fill_(args.horizon)
    module.plan_every.fill_(args.every)
    rows = []
    for margin in args.switch_margin:
        rec = Recorder(module.planner(), margin)
        torch.manual_seed(args.seed)  # V's z draws start alike in every row
        t0 = time.perf_counter()
        make_env = functools.partial(make_takecover, **env_settings)
        returns = play(module, make_env, args.episodes, args.seed, observe=rec.observe)
        rec.close()
        row = {
            "switch_margin": margin,
            "real_mean": float(returns.mean()),
            "real_std": float(returns.std()),
            "real_se": float(returns.std() / np.sqrt(len(returns))),
            **foresight(rec, episode_steps(env_settings), args.horizon),
            "wall_s": round(time.perf_counter() - t0, 1),
            "real_returns": returns.tolist(),
        }
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "real_returns"}), flush=True)
    result = {
        "checkpoint": str(checkpoint),
        "controller": args.controller,
        "world_model": args.world_model,
        "plan": {"horizon": args.horizon, "every": args.every, "samples": args.samples, "temperature": 1.15},
        "env_settings": env_settings,
        "episodes": args.episodes,
        "seed": args.seed,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"\nreal TakeCover, {args.episodes} episodes (seeds {args.seed}+), frames survived; planning {args.horizon} "
        f"steps x {args.samples} dreams every {args.every}; {env_settings}"
    )
    print(
        "| keeps its action unless another is better by | real mean ± std | hits / episode | one-hit deaths / deaths "
        "| foresight AUC | margin before a hit / elsewhere (frames) | switches |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        auc = f"{r['foresight_auc']:.2f}" if r["foresight_auc"] is not None else "—"
        print(
            f"| {r['switch_margin']:g} frames | {r['real_mean']:.0f} ± {r['real_std']:.0f} | "
            f"{r['hits_per_episode']:.2f} | {r['one_hit_deaths']} / {r['deaths']} | {auc} | "
            f"{r['margin_before_a_hit_median']:.2f} / {r['margin_elsewhere_median']:.2f} | {r['switch_share']:.0%} |"
        )


if __name__ == "__main__":
    main()
