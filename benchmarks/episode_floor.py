"""Where the agents' early deaths come from: several agents' REAL episodes on the same seeds, read side by side.

    python benchmarks/episode_floor.py \
        --agent 400k='benchmarks/results/dream_planning_chain_keep400k_it16_seeds*.json' \
        --agent 600k='benchmarks/results/dream_planning_chain_keep600k_it16_seeds*.json' ...

Every agent `dream_planning.py` played on the same episode seeds met the same game at its start. Per agent this
reports its mean and how its episodes spread: the share that ends before `--early` frames (the floor every
TakeCover agent here has: 11-16% of episodes), at `--long` frames or more, and at the frame cap. Across agents, per
seed, it counts how many of them died early there, against the count expected if each agent's early deaths fell on
the seeds independently (each with its own rate: a Poisson-binomial); more seeds where none or many died early than
expected means some seeds are hard openings. Whether a hard opening is the game's or the agents' is read from the
best any agent did there: if most hard seeds were survived long by some agent, a policy can get through them. Also
the share of the score's variance that lies between seeds (per-seed means over the agents), and how often an early
death ends on the very frame another agent's did on that seed (the same opening played the same way). Nothing is
played here; it only reads. Writes JSON (with --out) and prints the table last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from paired_agents import _files, _kind, _sets, named

from rllib_worldmodel.envs.vizdoom import FRAME_CAP


def returns_by_seed(sets: dict[tuple[int, int], dict], horizon: int, flag: str) -> dict[int, float]:
    """One agent's real return per episode seed, from its row with look-ahead `horizon` (0: C alone) in each set.

    Args:
        sets: The agent's results by episode set (`paired_agents._sets`).
        horizon: The row to read: the planner with this horizon, or C alone for 0.
        flag: The agent's flag, for errors.
    """
    out = {}
    for (seed, _), result in sets.items():
        rows = [r for r in result["rows"] if _kind(r)[0] == horizon]
        if len(rows) != 1:
            raise ValueError(
                f"{flag}: {result['path']} has {len(rows)} rows with plan_horizon {horizon} (0: C alone): pass files "
                "with exactly one such row, or another --horizon"
            )
        out.update({seed + i: float(r) for i, r in enumerate(rows[0]["real_returns"])})
    return out


def poisson_binomial(p: np.ndarray) -> np.ndarray:
    """P(k of the independent events with probabilities `p` happen), k = 0..len(p)."""
    dist = np.zeros(len(p) + 1)
    dist[0] = 1.0
    for q in p:
        dist[1:] = dist[1:] * (1 - q) + dist[:-1] * q
        dist[0] *= 1 - q
    return dist


def floor(
    returns: np.ndarray, early: float = 300.0, long: float = 1000.0, survived: float = 600.0, cap: float = 2100.0
) -> dict:
    """The spread of several agents' returns on the same episodes, and whether their early deaths share seeds.

    Args:
        returns: (agents, episodes) real returns, column j the same episode seed for every agent.
        early: An episode ending before this many frames is an early death.
        long: Episodes at or above this many frames count as long.
        survived: A hard seed (at least half the agents died early there) counts as survivable when some agent
            lasted this long on it.
        cap: The episode's frame cap (capped episodes survived it).

    Returns:
        `agents` (per agent: mean, std, early/long/capped shares), `early_per_seed` (seeds by how many agents died
        early on them, observed and expected if independent), `hard_seeds`, `hard_survived_share` (of those, the
        share some agent survived `survived` frames on), `hard_best_median` (the best agent's frames there, median),
        `seed_variance_share`, `episode_correlation` (two agents' returns on the same seeds, over every pair: mean,
        min and max), and `same_frame_share` (early deaths that end on the frame another agent's episode
        on that seed ended, against that share for all other episodes: `same_frame_share_elsewhere`).
    """
    returns = np.asarray(returns, dtype=float)
    if returns.ndim != 2 or returns.shape[0] < 2:
        raise ValueError(f"returns of shape {returns.shape}: need (agents >= 2, episodes)")
    n = returns.shape[0]
    dead = returns < early
    rates = dead.mean(axis=1)
    counts = dead.sum(axis=0)
    expected = poisson_binomial(rates) * returns.shape[1]
    hard = counts >= (n + 1) // 2
    best = returns[:, hard].max(axis=0) if hard.any() else np.zeros(0)
    # an episode ends on another agent's frame on its seed: the same game, the same way, to the frame
    same = np.array([[(np.delete(col, i) == col[i]).any() for col in returns.T] for i in range(n)])
    seed_means = returns.mean(axis=0)
    corr = np.corrcoef(returns)[np.triu_indices(n, 1)]  # every pair of agents, episode by episode
    return {
        "agents": [
            {
                "mean": float(r.mean()),
                "std": float(r.std(ddof=1)),
                "early_share": float((r < early).mean()),
                "long_share": float((r >= long).mean()),
                "capped_share": float((r >= cap).mean()),
            }
            for r in returns
        ],
        "episodes": int(returns.shape[1]),
        "early_per_seed": {
            "observed": np.bincount(counts, minlength=n + 1).tolist(),
            "expected_if_independent": [round(float(e), 1) for e in expected],
        },
        "hard_seeds": int(hard.sum()),
        "hard_survived_share": float((best >= survived).mean()) if hard.any() else float("nan"),
        "hard_best_median": float(np.median(best)) if hard.any() else float("nan"),
        "hard_agent_means": [float(r[hard].mean()) if hard.any() else float("nan") for r in returns],
        "other_agent_means": [float(r[~hard].mean()) for r in returns],
        "seed_variance_share": float(seed_means.var() / returns.var()),
        "episode_correlation": {"mean": float(corr.mean()), "min": float(corr.min()), "max": float(corr.max())},
        "same_frame_share": float(same[dead].mean()) if dead.any() else float("nan"),
        "same_frame_share_elsewhere": float(same[~dead].mean()) if (~dead).any() else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--agent",
        action="append",
        required=True,
        metavar="NAME=GLOB",
        help="an agent's dream_planning.py JSON files (a quoted glob), named; twice or more, on the same seeds",
    )
    parser.add_argument("--horizon", type=int, default=12, help="the planner row to read (0: C alone)")
    parser.add_argument("--early", type=float, default=300.0, help="frames: an episode ending before is early")
    parser.add_argument("--long", type=float, default=1000.0, help="frames: an episode at or above is long")
    parser.add_argument(
        "--survived", type=float, default=600.0, help="frames some agent must last on a hard seed to get through it"
    )
    parser.add_argument("--out", help="write the result here as JSON")
    args = parser.parse_args(argv)
    try:
        agents, settings = {}, set()
        given = named(args.agent, "--agent", "GLOB", "400k='results/dream_planning_x_seeds*.json'")
        for name, pattern in given.items():
            flag = f"--agent {name}"
            sets = _sets(_files(pattern, flag), flag)
            settings |= {tuple(sorted(r.get("env_settings", {}).items())) for r in sets.values()}
            agents[name] = returns_by_seed(sets, args.horizon, flag)
        if len(agents) < 2:
            raise ValueError("--agent: pass two agents or more (the spread across agents is the point)")
        seeds = sorted(set.intersection(*(set(r) for r in agents.values())))
        if not seeds:
            raise ValueError("the agents share no episode seed: play them on the same --seed and --episodes")
        if len(settings) > 1:
            raise ValueError(
                f"the agents played different games ({settings}): the same seeds are not the same episodes"
            )
        cap = float(dict(next(iter(settings))).get("frame_cap", FRAME_CAP))
        result = floor(
            np.array([[r[s] for s in seeds] for r in agents.values()]), args.early, args.long, args.survived, cap
        )
    except ValueError as err:
        parser.error(str(err))
    result = {"names": list(agents), "seeds": [seeds[0], seeds[-1]], **vars(args), **result}  # vars: the flags
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"\n{result['episodes']} real episodes (seeds {seeds[0]}-{seeds[-1]}) played by every agent, "
        f"{'C alone' if not args.horizon else f'planning {args.horizon} ahead'}; early: < {args.early:g} frames\n"
    )
    print(f"| agent | mean ± std | early | ≥ {args.long:g} | capped |")
    print("|---|---|---|---|---|")
    for name, a in zip(agents, result["agents"]):
        print(
            f"| {name} | {a['mean']:.1f} ± {a['std']:.1f} | {a['early_share']:.1%} | {a['long_share']:.1%} | "
            f"{a['capped_share']:.1%} |"
        )
    n = len(agents)
    print("\n| how many agents died early on a seed | " + " | ".join(str(k) for k in range(n + 1)) + " |")
    print("|---|" + "---|" * (n + 1))
    print("| seeds, observed | " + " | ".join(str(c) for c in result["early_per_seed"]["observed"]) + " |")
    print(
        "| seeds, expected if independent | "
        + " | ".join(f"{c:.1f}" for c in result["early_per_seed"]["expected_if_independent"])
        + " |"
    )
    print(
        f"\nhard seeds (≥ {(n + 1) // 2} of {n} agents died early): {result['hard_seeds']}; some agent lasted "
        f"≥ {args.survived:g} frames on {result['hard_survived_share']:.0%} of them (best agent's median "
        f"{result['hard_best_median']:.0f}); the seed holds {result['seed_variance_share']:.0%} of the score's "
        f"variance (about 1/{n} = {1 / n:.0%} if it did not matter); two agents' returns on a seed correlate "
        f"{result['episode_correlation']['mean']:.2f} ({result['episode_correlation']['min']:.2f} to "
        f"{result['episode_correlation']['max']:.2f}); early deaths ending on another agent's frame: "
        f"{result['same_frame_share']:.0%} (other episodes: {result['same_frame_share_elsewhere']:.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
