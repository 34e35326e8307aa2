"""Two agents on the same REAL episodes: paired differences from `dream_planning.py` results already written.

    python benchmarks/paired_agents.py \
        --a 'benchmarks/results/dream_planning_chain_keep400k_it16_seeds*.json' \
        --b 'benchmarks/results/dream_planning_chain_it16_seeds*.json' --names 400k 200k

`dream_planning.py` plays one agent on a set of episode seeds (`--seed S --episodes N`: episode i reset with seed
S + i). Two agents played on the same sets met the same game randomness at their starts, so each episode's
difference is a paired measurement: its standard error is several times smaller than that of two unpaired means
(RESULTS.md, "The whole chain with a 400,000-step replay in every leg": +133 ± 27 paired where the unpaired
reading was ±80). This script matches A's files to B's by their episode seeds, and within each matched set each
row of A to B's row of the same kind (C alone, or the planner with the same horizon, interval, rollouts, terminal
value and reading of real frames). Per kind it reports both agents' means, the paired difference A - B with its
standard error over all matched episodes, and per set, with how many sets go A's way. Nothing is played here; it
only reads. Writes JSON (with --out) and prints the table last.

Two settings of one agent played in separate runs on the same seeds pair the same way, with `--ignore` naming the
settings that may differ: the replicate's planner with parallel rollouts (A) against the same planner with C's
rollouts (B), each file also holding C alone:

    python benchmarks/paired_agents.py \
        --a 'benchmarks/results/dream_planning_chain_keep400k_rep_it16_parallel_seeds*.json' \
        --b 'benchmarks/results/dream_planning_chain_keep400k_rep_it16_seeds*.json' \
        --names parallel controller --ignore plan_rollouts
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

# A row's kind: what the agent did on those episodes. Two agents' rows pair only when all of these agree, except
# those named in --ignore (IGNORABLE: a C-alone row never pairs with a planner row).
KIND = ("plan_horizon", "decides_every", "plan_rollouts", "plan_terminal_value", "real_z")
IGNORABLE = KIND[1:]


def _files(pattern: str, flag: str, what: str = "dream_planning.py's JSON files") -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(pattern))
    if not files:
        raise ValueError(f"{flag} {pattern!r} matches no file: pass {what} (a glob)")
    return files


def named(values: list[str], flag: str, what: str, example: str) -> dict[str, str]:
    """NAME=VALUE arguments of `flag` as {name: value}; a clear error naming `flag` for a missing `=`, name or
    value (`what` and `example` say what to write) or a name given twice. The benchmarks' one parser of them."""
    out: dict[str, str] = {}
    for pair in values:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{flag} {pair!r}: write NAME={what} (e.g. {example})")
        if name in out:
            raise ValueError(f"{flag} {name}: named twice (a name given twice); give each its own name")
        out[name] = value
    return out


def _sets(files: list[Path], flag: str) -> dict[tuple[int, int], dict]:
    """The files of one agent by their episode set (seed, episodes); two files on the same set are refused."""
    sets = {}
    for path in files:
        result = json.loads(path.read_text())
        if "rows" not in result or "seed" not in result or "episodes" not in result:
            raise ValueError(f"{flag}: {path} is not a dream_planning.py result (no seed, episodes and rows)")
        key = (int(result["seed"]), int(result["episodes"]))
        if key in sets:
            raise ValueError(f"{flag}: {path} and {sets[key]['path']} both play seeds {key[0]}+{key[1]}: pass one")
        sets[key] = {**result, "path": str(path)}
    return sets


def _kind(row: dict) -> tuple:
    """The row's KIND. C alone pairs with C alone at whatever interval each C decides (the agent's own, not the
    protocol's: `a_every`/`b_every` in the output say which). Files written before a setting existed lack it: they
    played what is now its default (V's posterior draws, terminal value 0)."""
    if not row.get("plan_horizon"):
        return (0, None, None, None, row.get("real_z") or "sample")
    return (
        row["plan_horizon"],
        row.get("decides_every"),
        row.get("plan_rollouts") or "controller",
        float(row.get("plan_terminal_value") or 0.0),
        row.get("real_z") or "sample",
    )


def _describe(kind: tuple) -> str:
    horizon, every, rollouts, terminal, real_z = kind
    if not horizon:
        return f"C alone (z: {real_z})"
    extra = (f", {rollouts} rollouts" if rollouts not in (None, "controller") else "") + (
        f", terminal value {terminal:g}" if terminal else ""
    )
    return f"planning {horizon} ahead every {every or 'C interval'}{extra} (z: {real_z})"


def _masked(kind: tuple, ignore: tuple[str, ...]) -> tuple:
    """The kind with the ignored settings blanked: what must agree for two rows to pair."""
    return tuple(None if name in ignore else value for name, value in zip(KIND, kind))


def _se(values: np.ndarray) -> float:
    """The standard error of the mean (sample standard deviation); NaN for a single value."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def pair(a: dict[tuple[int, int], dict], b: dict[tuple[int, int], dict], ignore: tuple[str, ...] = ()) -> list[dict]:
    """Per row kind both agents played on the same episode sets: the paired comparison (A minus B).

    Args:
        a: Agent A's results by episode set (`_sets`).
        b: Agent B's results by episode set.
        ignore: Settings of `IGNORABLE` that may differ between a row of A and the row of B it pairs with (e.g.
            `plan_rollouts`: A's parallel-rollout planner against B's planner with C's rollouts). Where two of B's
            rows in one set would then pair with one of A's, that is refused.

    Returns:
        One dict per kind of A, in A's row order: `kind`, `agent` (in words), `b_agent` (B's kind in words: the
        same as `agent` unless `ignore` let them differ), `episodes`, `sets` (per matched set: seed, episodes, both
        means, the paired difference and its standard error), both agents' mean/std/se over all matched episodes,
        `paired_diff_mean`/`_se`, and `sets_a_ahead`.
    """
    unknown = sorted(set(ignore) - set(IGNORABLE))
    if unknown:
        raise ValueError(f"--ignore {' '.join(unknown)}: not a row setting; choose among {' '.join(IGNORABLE)}")
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError(
            f"no episode set in common: A plays seeds {sorted(a)}, B {sorted(b)} (seed, episodes); play both on the "
            "same --seed and --episodes"
        )
    for key in shared:
        if a[key].get("env_settings") != b[key].get("env_settings"):
            raise ValueError(
                f"seeds {key[0]}+{key[1]}: A played {a[key].get('env_settings')}, B {b[key].get('env_settings')}: "
                "different games are not the same episodes"
            )
    kinds = []
    for key in shared:
        for row in a[key]["rows"]:
            if _kind(row) not in kinds:
                kinds.append(_kind(row))
    out = []
    for kind in kinds:
        per_set, ra, rb, b_kinds = [], [], [], []
        for key in shared:
            row_a = next((r for r in a[key]["rows"] if _kind(r) == kind), None)
            rows_b = [r for r in b[key]["rows"] if _masked(_kind(r), ignore) == _masked(kind, ignore)]
            if len({_kind(r) for r in rows_b}) > 1:
                raise ValueError(
                    f"seeds {key[0]}+{key[1]}: B's rows {' and '.join(_describe(_kind(r)) for r in rows_b)} both "
                    f"pair with A's {_describe(kind)} under --ignore {' '.join(ignore)}: ignore fewer settings"
                )
            if row_a is None or not rows_b:
                continue
            row_b = rows_b[0]
            if _kind(row_b) not in b_kinds:
                b_kinds.append(_kind(row_b))
            x, y = np.asarray(row_a["real_returns"], float), np.asarray(row_b["real_returns"], float)
            d = x - y
            per_set.append(
                {
                    "seed": key[0],
                    "episodes": key[1],
                    "a_every": row_a.get("decides_every"),
                    "b_every": row_b.get("decides_every"),
                    "a_mean": float(x.mean()),
                    "b_mean": float(y.mean()),
                    "diff_mean": float(d.mean()),
                    "diff_se": _se(d),
                }
            )
            ra.append(x)
            rb.append(y)
        if not per_set:
            continue
        x, y = np.concatenate(ra), np.concatenate(rb)
        d = x - y
        out.append(
            {
                "kind": dict(zip(KIND, kind)),
                "agent": _describe(kind),
                "b_agent": " / ".join(_describe(k) for k in b_kinds),
                "episodes": len(d),
                "sets": per_set,
                **{f"{n}_mean": float(v.mean()) for n, v in (("a", x), ("b", y))},
                **{f"{n}_std": float(v.std(ddof=1)) for n, v in (("a", x), ("b", y))},
                **{f"{n}_se": _se(v) for n, v in (("a", x), ("b", y))},
                "paired_diff_mean": float(d.mean()),
                "paired_diff_se": _se(d),
                "sets_a_ahead": sum(s["diff_mean"] > 0 for s in per_set),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="agent A's dream_planning.py JSON files (a glob, quoted)")
    parser.add_argument("--b", required=True, help="agent B's, played on the same seeds")
    parser.add_argument("--names", nargs=2, default=["A", "B"], metavar=("A", "B"), help="the agents' names")
    parser.add_argument(
        "--ignore",
        nargs="+",
        default=[],
        metavar="SETTING",
        help=f"row settings that may differ between the paired rows ({', '.join(IGNORABLE)}): two settings of one "
        "agent played in separate runs on the same seeds",
    )
    parser.add_argument("--out", help="write the comparison here as JSON")
    args = parser.parse_args(argv)
    try:
        a, b = _sets(_files(args.a, "--a"), "--a"), _sets(_files(args.b, "--b"), "--b")
        rows = pair(a, b, tuple(args.ignore))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out:
        result = {"a": {"name": args.names[0], "files": args.a}, "b": {"name": args.names[1], "files": args.b}}
        result["ignore"] = list(args.ignore)
        Path(args.out).write_text(json.dumps({**result, "rows": rows}, indent=1) + "\n")
    na, nb = args.names
    print(f"frames survived on the same real episodes, {na} - {nb} paired episode by episode")
    print(f"| agent | episodes | {na} | {nb} | paired {na} - {nb} | sets {na} ahead |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        agent, intervals = r["agent"], {(s["a_every"], s["b_every"]) for s in r["sets"]}
        if not r["kind"]["plan_horizon"] and len(intervals) == 1:
            a_every, b_every = intervals.pop()
            if a_every != b_every:  # two Cs deciding at different intervals: say so beside their scores
                agent += f", every {a_every} / {b_every} steps"
        if r["b_agent"] != r["agent"]:  # --ignore paired two settings: name both
            agent = f"{agent} vs {r['b_agent']}"
        print(
            f"| {agent} | {r['episodes']} | {r['a_mean']:.1f} ± {r['a_std']:.1f} | {r['b_mean']:.1f} ± "
            f"{r['b_std']:.1f} | {r['paired_diff_mean']:+.1f} ± {r['paired_diff_se']:.1f} | "
            f"{r['sets_a_ahead']} of {len(r['sets'])} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
