"""Chains side by side, iteration by iteration: each run's own real evaluations from its progress rows.

    python benchmarks/chain_rows.py \
        --chain 'focus=benchmarks/results/chain_vaefocus_1207_leg*_progress.jsonl' \
        --reference 'keep400k=benchmarks/results/chain_keep400k_1205_leg*_progress.jsonl' \
                    'replicate=benchmarks/results/chain_keep400k_replicate_1206_leg*_progress.jsonl' \
                    'keep600k=benchmarks/results/chain_keep600k_1206_leg*_progress.jsonl' \
                    'fp32c=benchmarks/results/chain_fp32c_1207_leg*_progress.jsonl'

`bash scripts/run_chain.sh` writes one `progress.jsonl` per leg, a row per loop iteration with the run's own real
evaluation (`real/episode_return_mean` over its evaluation episodes: C alone up to iteration 14, the planning agent
at 15-16; rows written since 2026-12-07 say which in `real/plan_horizon`, and the table marks a planner's with *)
and the real env steps so far. A variant chain is judged first on these rows against several runs of the
plain chain, whose draw alone spans a wide range (RESULTS.md, "A fourth float32 chain"): per iteration, the
references' range and mean and each chain's difference from that mean; over a span of iterations (`--span`,
default 2 to the last iteration every chain has), each chain's mean and at how many iterations it lies below every
reference. Nothing is played here; it only reads. The 600-episode play (`dream_planning.py`, paired by
`paired_agents.py`) settles a chain's planner; these rows say how its loop went. Writes JSON (with --out) and
prints the table last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from paired_agents import _files, named

SCORE = "real/episode_return_mean"
PLANNER = "real/plan_horizon"  # the evaluated agent's look-ahead (0: C alone); rows written before 2026-12-07 lack it


def agent(row: dict) -> str | None:
    """Which agent a row's evaluation played: "planner", "C" (alone), or None where the row does not say."""
    if PLANNER not in row:
        return None
    return "planner" if row[PLANNER] > 0 else "C"


def named_globs(values: list[str], flag: str) -> dict[str, list[Path]]:
    """NAME=GLOB arguments as {name: files}, a clear error naming `flag` for a malformed, repeated or empty one."""
    given = named(values, flag, "GLOB", "'plain=runs/chain/leg*/progress.jsonl'")
    what = "run_chain.sh's progress.jsonl files"
    return {name: _files(pattern, f"{flag} {name}", what) for name, pattern in given.items()}


def read_rows(files: list[Path]) -> dict[int, dict]:
    """A chain's rows by iteration from its legs' progress files. An iteration found twice (a leg re-run from an
    older checkpoint) keeps the row of the file read last, the files read in name order (leg1, leg2, ...)."""
    rows: dict[int, dict] = {}
    for path in files:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if "iteration" not in row or SCORE not in row:
                raise ValueError(f"{path}: a row without 'iteration' or {SCORE!r}; pass run_chain.sh's progress.jsonl")
            rows[int(row["iteration"])] = row
    return rows


def compare(chains: dict[str, dict[int, dict]], references: dict[str, dict[int, dict]], span=None) -> dict:
    """Per iteration each chain's score against the references' range and mean; over `span` (first, last
    iteration; default 2 to the last iteration every chain and reference has) each one's mean and the iterations
    where a chain lies below every reference."""
    every = {**references, **chains}
    iterations = sorted(set().union(*(rows.keys() for rows in every.values())))
    if span is None:
        common = set.intersection(*(set(rows) for rows in every.values()))
        if not common:
            raise ValueError("no iteration is in every chain's rows: give --span FIRST LAST")
        span = (min(2, max(common)), max(common))
    first, last = span
    inside = list(range(first, last + 1))
    for name, rows in every.items():
        missing = [i for i in inside if i not in rows]
        if missing:
            raise ValueError(f"{name} has no row for iterations {missing} of --span {first} {last}")
    table = []
    for i in iterations:
        ref = [rows[i][SCORE] for rows in references.values() if i in rows]
        entry = {"iteration": i, "reference_min": None, "reference_max": None, "reference_mean": None}
        if ref:
            entry.update(reference_min=min(ref), reference_max=max(ref), reference_mean=float(np.mean(ref)))
        for name, rows in chains.items():
            score = rows[i][SCORE] if i in rows else None
            entry[name] = score
            entry[f"{name}_agent"] = agent(rows[i]) if i in rows else None
            entry[f"{name}_minus_reference_mean"] = (
                score - entry["reference_mean"] if ref and score is not None else None
            )
        table.append(entry)
    summary = {
        name: {
            "mean": float(np.mean([rows[i][SCORE] for i in inside])),
            "real_env_steps": rows[max(rows)].get("real_env_steps"),
            "last_iteration": max(rows),
        }
        for name, rows in every.items()
    }
    for name, rows in chains.items():
        below = [i for i in inside if all(rows[i][SCORE] < ref[i][SCORE] for ref in references.values())]
        summary[name]["below_every_reference"] = below
    return {"span": [first, last], "iterations": table, "summary": summary}


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def render(result: dict, chains: list[str], references: list[str]) -> str:
    """The comparison as markdown: one row per iteration, then the span's means."""
    head = ["iteration", *chains, "references (min-max)", "reference mean", *(f"{c} - mean" for c in chains)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in result["iterations"]:
        rng = "—" if e["reference_min"] is None else f"{e['reference_min']:.1f}-{e['reference_max']:.1f}"
        marked = [_fmt(e[c]) + ("*" if e[f"{c}_agent"] == "planner" else "") for c in chains]
        cells = [str(e["iteration"]), *marked, rng, _fmt(e["reference_mean"])]
        cells += [
            ("—" if e[f"{c}_minus_reference_mean"] is None else f"{e[f'{c}_minus_reference_mean']:+.1f}")
            for c in chains
        ]
        lines.append("| " + " | ".join(cells) + " |")
    first, last = result["span"]
    if any(e[f"{c}_agent"] == "planner" for e in result["iterations"] for c in chains):
        lines += ["", "*: the planning agent played that evaluation (its row's real/plan_horizon > 0), not C alone"]
    lines += ["", f"mean over iterations {first}-{last}:"]
    for name in [*chains, *references]:
        s = result["summary"][name]
        extra = ""
        if "below_every_reference" in s:
            below = s["below_every_reference"]
            extra = f"; below every reference at {len(below)} of {last - first + 1} iterations {below}"
        lines.append(
            f"  {name}: {s['mean']:.1f} (to iteration {s['last_iteration']}, {s['real_env_steps']} real steps{extra})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", nargs="+", required=True, metavar="NAME=GLOB", help="the chains judged")
    parser.add_argument(
        "--reference", nargs="+", required=True, metavar="NAME=GLOB", help="runs of the recipe they are judged against"
    )
    parser.add_argument("--span", nargs=2, type=int, metavar=("FIRST", "LAST"), help="iterations the means cover")
    parser.add_argument("--out", help="write the comparison here as JSON")
    args = parser.parse_args(argv)
    try:
        chains = {n: read_rows(f) for n, f in named_globs(args.chain, "--chain").items()}
        references = {n: read_rows(f) for n, f in named_globs(args.reference, "--reference").items()}
        clash = set(chains) & set(references)
        if clash:
            raise ValueError(f"--chain and --reference both name {sorted(clash)}: give each run one name")
        if args.span and args.span[0] > args.span[1]:
            raise ValueError(f"--span {args.span[0]} {args.span[1]}: FIRST must not be after LAST")
        result = compare(chains, references, tuple(args.span) if args.span else None)
    except ValueError as err:
        parser.error(str(err))
    if args.out:
        Path(args.out).write_text(json.dumps({"chain": args.chain, "reference": args.reference, **result}, indent=1))
    print(render(result, list(chains), list(references)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
