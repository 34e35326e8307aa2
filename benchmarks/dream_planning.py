"""Decision-time planning in the dream vs the controller alone, on the same REAL episodes.

    python benchmarks/dream_planning.py --checkpoint runs/train_skip4_r6_from_r12_it14/checkpoint --episodes 100

Loads the agent of a `WorldModels` checkpoint (its RLModule: V, M, C and C's action repeat, read with RLlib's
`RLModule.from_checkpoint`), sets its planning buffers to the dream of the world model exported beside it
(`<checkpoint>/../world_model.pt`: the calibrated done-logit offset and scale; the real env's settings), and plays
real TakeCover episodes through the module's own inference path (`forward_inference`, as RLlib's evaluation
EnvRunners do) once with C alone and once per `--horizons` entry with `planning.DreamPlanner` choosing each
decision; with `--real-z sample mean` every row is played once per reading of real frames (a draw from V's
posterior, or its mean); with `--versus-sweep 25` the fixed right-first sweep plays the same episodes and every
row is paired with it (the open-loop bar: RESULTS.md, "The coarse planner on these world models is the open-loop
sweep"). Every row plays the same episode seeds. Score = frames survived. No real reward reaches
any decision: C was trained only in the dream, and the planner only dreams. Writes JSON and prints the table last.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from sweep_baseline import sweep_returns
from takecover_tau import SeededEpisodes

from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel
from rllib_worldmodel.planning import check_terminal_value, PLAN_ROLLOUTS, PlanSettings, rollouts_index
from rllib_worldmodel.precision import PRECISIONS
from rllib_worldmodel.rl_module import REAL_Z, WorldModelsRLModule


def load_agent(checkpoint: Path) -> WorldModelsRLModule:
    """The acting module of a WorldModels checkpoint folder, or of an agent a run kept
    (`OUT/agents/iteration_NNN/agent`, `WorldModels.save_agent`; its world_model.pt is beside it, as a checkpoint's
    is)."""
    path = checkpoint.resolve()
    if (path / "learner_group").exists():  # a whole run's checkpoint, not an RLModule's own folder
        path = path / "learner_group" / "learner" / "rl_module" / "default_policy"
    if not path.exists():
        raise SystemExit(
            f"--checkpoint {checkpoint}: no RLModule at {path} (a WorldModels checkpoint folder, or a kept agent's "
            "OUT/agents/iteration_NNN/agent?)"
        )
    module = RLModule.from_checkpoint(str(path)).cpu().eval()
    module.set_random_only(False)
    return module


def load_planning_agent(
    checkpoint: Path,
    world_model: Path | None = None,
    controller: Path | None = None,
    temperature: float = 1.15,
    samples: int = 16,
    controller_every: int | None = None,
) -> tuple[WorldModelsRLModule, dict]:
    """The acting module of a checkpoint, set to plan in the dream of the world model it plans with.

    Args:
        checkpoint: A WorldModels checkpoint folder, or a kept agent's `agent` folder (`WorldModels.save_agent`).
        world_model: A world-model file whose V and M replace the checkpoint's (same architecture); None: the
            checkpoint's own, whose metadata (calibrated deaths, env settings) is `<checkpoint>/../world_model.pt`.
        controller: C's weights to play instead of the checkpoint's (`controller_weights`).
        temperature: The look-ahead dream's tau.
        samples: Dreams per candidate first action.
        controller_every: The interval C decides at when it acts alone; None: the checkpoint's, or, for
            `controller` from another checkpoint, that agent's (a state-dict file does not say: a C that
            `distill_planner.py` fitted to a planner deciding every 3 steps needs 3 here).

    Returns:
        The module, its look-ahead dream set to the world model's calibrated deaths, `temperature` and `samples`
        (horizon and interval are left to the caller), and the world model's metadata.
    """
    module = load_agent(checkpoint)
    if world_model is not None:
        wm = WorldModel.load(world_model, expected_config=module.wm_config)
        module.world_model.load_state_dict(wm.state_dict())
    meta = read_checkpoint(world_model_file(checkpoint, world_model))["metadata"]
    if controller is not None:
        weights, every = controller_weights(controller)
        module.controller.load_state_dict(weights)
        if every is not None:  # another agent's C decides alone at that agent's interval
            module.controller_every.fill_(every)
    if controller_every is not None:
        if controller_every < 1:
            raise ValueError(f"controller_every={controller_every} must be >= 1 (C decides every that many steps).")
        module.controller_every.fill_(controller_every)
    module.plan_temperature.fill_(temperature)
    module.plan_done_offset.fill_(float(meta.get("done_logit_offset", 0.0)))
    module.plan_done_scale.fill_(float(meta.get("done_logit_scale", 1.0)))
    module.plan_samples.fill_(samples)
    return module, meta


def world_model_file(checkpoint: Path, world_model: Path | None = None) -> Path:
    """The world-model file an agent plans with: `world_model` if given, else the checkpoint's own export
    (`<checkpoint>/../world_model.pt`, which holds its calibrated deaths and env settings)."""
    return world_model if world_model is not None else checkpoint.parent / "world_model.pt"


def controller_weights(path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """C's state dict from a saved state dict file or from another WorldModels checkpoint folder's agent, and the
    interval that agent's C decides at alone (its `controller_every`; None for a file, which does not say: C alone
    then decides at the checkpoint's interval)."""
    if not path.is_dir():
        return torch.load(path), None
    agent = load_agent(path)
    return agent.controller.state_dict(), int(agent.controller_every)


class ActionLog:
    """What an agent does in the real game, for `play`'s `observe`: how often it takes each action and how often it
    changes action from one env step to the next within an episode (on TakeCover, left-right dithering keeps the
    player where the imps aim: the fine planner on a world model of random holds changes direction every 7-8 steps
    where C, deciding every 25, changes at nearly every decision; RESULTS.md, "Fine planning on a world model of
    random holds").

    Args:
        num_actions: Size of the Discrete action space.
    """

    def __init__(self, num_actions: int):
        self.counts = np.zeros(num_actions, dtype=np.int64)
        self.changes = 0
        self._last: dict[int, int] = {}  # episode index -> its last action

    def __call__(self, envs: list[gym.Env], episodes: np.ndarray, state: dict, out: dict) -> None:
        for episode, action in zip(episodes.tolist(), out[Columns.ACTIONS][:, 0].tolist()):
            self.counts[action] += 1
            self.changes += int(self._last.get(episode, action) != action)
            self._last[episode] = action

    def summary(self) -> dict[str, list[float] | float]:
        """Each action's share of the env steps, and action changes per env step."""
        steps = max(int(self.counts.sum()), 1)
        return {
            "action_shares": [round(float(c) / steps, 4) for c in self.counts],
            "action_changes_per_step": round(self.changes / steps, 4),
        }


@torch.no_grad()
def play(
    module: WorldModelsRLModule,
    make_env: Callable[[], gym.Env],
    episodes: int,
    seed: int,
    num_envs: int = 8,
    observe: Callable[[list[gym.Env], np.ndarray, dict, dict], None] | None = None,
) -> np.ndarray:
    """Returns of `episodes` real episodes (episode i reset with seed + i), `num_envs` envs from `make_env` stepped
    together through `module.forward_inference` with the module's recurrent state carried as an EnvRunner carries
    it. `observe`, if given, is called after each forward pass, before the envs step, with the envs of the batch's
    rows, the episodes they play, the module's input state and its output."""
    play = SeededEpisodes([make_env() for _ in range(num_envs)], episodes, seed)
    init = module.get_initial_state()
    state = {k: v.expand(num_envs, *v.shape).clone() for k, v in init.items()}
    while play.live.any():
        idx = np.flatnonzero(play.live)
        batch = {
            Columns.OBS: torch.as_tensor(np.stack([play.obs[i] for i in idx]))[:, None],
            Columns.STATE_IN: {k: v[idx] for k, v in state.items()},
        }
        out = module.forward_inference(batch)
        if observe is not None:
            observe([play.envs[i] for i in idx], play.episode[idx].copy(), batch[Columns.STATE_IN], out)
        for k, v in out[Columns.STATE_OUT].items():
            state[k][idx] = v.to(state[k].dtype)
        actions = out[Columns.ACTIONS][:, 0]
        for j, i in enumerate(idx):
            if play.step(i, int(actions[j]))[0] is not None:  # a new episode: the module's state starts afresh
                for k, v in init.items():
                    state[k][i] = v
    play.close()
    return play.returns


def plan_rows(
    horizons: list[int], every: list[int], rollouts: list[str], action_space: gym.Space, action_repeat: int
) -> list[tuple[int, int, str]]:
    """The rows to play, (horizon, interval, rollouts): C alone first, then every horizon with every interval and
    every rollout policy. Each planning row is checked before any episode is played (a row that cannot plan would
    otherwise end the run after the rows before it, losing them): a ValueError names the flags."""
    rows = [(h, e, r) for h in horizons if h for e in every for r in rollouts]  # 0: C alone, played first anyway
    for h, e, r in rows:
        try:
            PlanSettings(horizon=h, every=e, rollouts=r).check_plannable(action_space, action_repeat)
        except ValueError as err:
            raise ValueError(
                f"--horizons {h} with --every {e}: {err} (each horizon is played with each interval)"
            ) from None
    return [(0, 0, "controller"), *rows]


def _add_gain(row: dict, base: Sequence[float], name: str) -> None:
    """`row[name + "_mean"]` and `row[name + "_se"]`: its returns minus `base`'s, episode by episode (same seeds)."""
    diff = np.asarray(row["real_returns"]) - np.asarray(base)
    row[f"{name}_mean"], row[f"{name}_se"] = float(diff.mean()), float(diff.std() / np.sqrt(len(diff)))


def add_paired_gains(rows: list[dict]) -> None:
    """Paired differences on the same episode seeds, in place: every row after the first against the first (C alone,
    as the first reading reads real frames): `paired_gain_mean`/`_se`; and every row read another way against the
    same agent read the first way: `real_z_gain_mean`/`_se`."""
    agent = ("plan_horizon", "decides_every", "plan_rollouts")
    for row in rows[1:]:
        _add_gain(row, rows[0]["real_returns"], "paired_gain")
        if row["real_z"] != rows[0]["real_z"]:
            twin = next(r for r in rows if r["real_z"] == rows[0]["real_z"] and all(r[k] == row[k] for k in agent))
            _add_gain(row, twin["real_returns"], "real_z_gain")


def add_sweep_pairing(rows: list[dict], sweep: np.ndarray) -> None:
    """Every row against the fixed sweep on the same episode seeds, in place: `sweep_gain_mean`/`_se` (paired) and
    `same_as_sweep`, the episodes it survives exactly as long as the sweep (to the frame: in practice the sweep's
    own game, the same actions from the same start). An agent at or below the sweep has not beaten a fixed rhythm."""
    for row in rows:
        _add_gain(row, sweep, "sweep_gain")
        row["same_as_sweep"] = int((np.asarray(row["real_returns"]) == sweep).sum())


@torch.no_grad()
def step_cost(world_model, dreams: int, steps: int = 48, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per look-ahead step of `dreams` dreams, side by side: the full dream step (every ensemble
    member's mixture, for the disagreement diagnostic) and the planner's (`report_disagreement=False`: only the
    sampled member's). Best of `repeats` timings of `steps` steps each, after a warm-up."""
    out = {}
    for name, report in (("full_step_ms", True), ("planner_step_ms", False)):
        sim = DreamSimulator(
            world_model, DreamSettings(temperature=1.15, done_mode="expected", report_disagreement=report)
        )
        action = torch.zeros(dreams, dtype=torch.long)
        z, h = torch.zeros(dreams, world_model.config.z_size), torch.zeros(dreams, world_model.config.rnn_size)
        best = float("inf")
        for _ in range(repeats):
            sim.start_at(z, h, h)
            sim.step(action)
            t0 = time.perf_counter()
            for _ in range(steps):
                sim.step(action)
            best = min(best, (time.perf_counter() - t0) / steps * 1000)
        out[name] = round(best, 2)
    out["speedup"] = round(out["full_step_ms"] / out["planner_step_ms"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a WorldModels RLlib checkpoint folder")
    parser.add_argument(
        "--world-model",
        help="a world model to plan and act with instead of the checkpoint's own (its V, M and calibrated deaths; "
        "same architecture); default: the checkpoint's, calibrated in <checkpoint>/../world_model.pt",
    )
    parser.add_argument(
        "--controller",
        help="C's weights to play instead of the checkpoint's: a state dict (e.g. the fitted C that "
        "distill_planner.py saves as <out>.controller.pt) or another WorldModels checkpoint folder (its C)",
    )
    parser.add_argument(
        "--controller-every",
        type=int,
        help="the interval C decides at alone (default: the checkpoint's, or --controller's checkpoint's); a C "
        "that distill_planner.py fitted to a planner deciding every 3 steps: 3",
    )
    parser.add_argument(
        "--horizons", type=int, nargs="+", default=[24], help="planning horizons (dream steps; 0 alone: C alone only)"
    )
    parser.add_argument("--samples", type=int, default=16, help="dreams per candidate first action")
    parser.add_argument(
        "--every",
        type=int,
        nargs="+",
        default=[0],
        help="the planner's decision intervals (0: C's own); each horizon is played with each interval",
    )
    parser.add_argument(
        "--rollouts",
        nargs="+",
        default=["controller"],
        choices=PLAN_ROLLOUTS,
        help="what follows the first decision in the look-ahead, per horizon and interval ('parallel': C and each "
        "action held, an action scored by its best)",
    )
    parser.add_argument(
        "--real-z",
        nargs="+",
        choices=REAL_Z,
        help="how the agent reads real frames, each row played once per reading: a draw from V's posterior (sample, "
        "the paper) or its mean; default: as the checkpoint's agent",
    )
    parser.add_argument(
        "--versus-sweep",
        type=int,
        default=0,
        metavar="PERIOD",
        help="also play the fixed sweep of PERIOD steps each way from its first action (no V, M or C; "
        "sweep_baseline.py --start first) on the same episodes and pair every row with it: the gain over it and the "
        "episodes played exactly as long as it (25 for a C deciding every 25 steps); 0: off",
    )
    parser.add_argument("--temperature", type=float, default=1.15, help="the look-ahead dream's tau")
    parser.add_argument(
        "--terminal-value",
        type=float,
        default=0.0,
        help="steps credited to a look-ahead dream for being alive at its end (PlanSettings.terminal_value; 0: the "
        "dreamed steps only, as the planner was tuned; 100: ranks first actions by their chance of surviving)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="V's and M's compute precision while playing (the planner's look-aheads); default: the checkpoint's",
    )
    parser.add_argument("--episodes", type=int, default=100, help="real episodes per row (0: the step cost only)")
    parser.add_argument("--seed", type=int, default=5000, help="episode i is reset with seed + i")
    parser.add_argument(
        "--noise-seed",
        type=int,
        help="seeds the agent's own randomness (V's draws of real frames, the look-ahead's dreams) at the start of "
        "every row; default: --seed. Another value plays the same games with other draws: the agent's test-retest",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dream_planning.json"))
    args = parser.parse_args()
    noise_seed = args.seed if args.noise_seed is None else args.noise_seed
    try:
        check_terminal_value(args.terminal_value, "--terminal-value")
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(2)
    checkpoint = Path(args.checkpoint)
    world_model = Path(args.world_model) if args.world_model else None
    module, meta = load_planning_agent(
        checkpoint,
        world_model,
        args.controller and Path(args.controller),
        temperature=args.temperature,
        samples=args.samples,
        controller_every=args.controller_every,
    )
    if args.precision:
        module.world_model.set_precision(args.precision)
    env_settings = dict(meta.get("env_settings", {}))
    # what one look-ahead step costs for 8 envs' decisions at once (each: every action x samples dreams)
    cost = step_cost(module.world_model, 8 * int(module.action_space.n) * args.samples)
    print(json.dumps({"look_ahead_step": cost}), flush=True)
    try:
        configs = plan_rows(args.horizons, args.every, args.rollouts, module.action_space, module.action_repeat)
    except ValueError as err:
        parser.error(str(err))
    readings = args.real_z or [module.real_z]
    rows = []
    for real_z, (horizon, every, rollouts) in [(r, c) for r in readings for c in configs] if args.episodes else []:
        module.real_z = real_z
        module.plan_horizon.fill_(horizon)
        module.plan_every.fill_(every)
        module.plan_rollouts.fill_(rollouts_index(rollouts))
        module.plan_terminal_value.fill_(args.terminal_value)
        # V's z draws and the look-ahead's noise start alike in every row
        torch.manual_seed(noise_seed)
        t0 = time.perf_counter()
        actions = ActionLog(int(module.action_space.n))
        returns = play(
            module, functools.partial(make_takecover, **env_settings), args.episodes, args.seed, observe=actions
        )
        rows.append(
            {
                "plan_horizon": horizon,
                "plan_samples": args.samples if horizon else 0,
                "plan_rollouts": rollouts if horizon else None,
                "plan_terminal_value": args.terminal_value if horizon else None,
                "real_z": real_z,
                "decides_every": module.plan_settings().interval(module.action_repeat)
                if horizon
                else module.controller_interval(),
                "real_mean": float(returns.mean()),
                "real_std": float(returns.std()),
                "real_se": float(returns.std() / np.sqrt(len(returns))),
                "real_returns": returns.tolist(),
                **actions.summary(),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "real_returns"}), flush=True)
    add_paired_gains(rows)  # on the episode seeds: the same start, the same game randomness until they differ
    sweep = None
    if args.versus_sweep and rows:
        env = make_takecover(**env_settings)
        name, returns = sweep_returns(env, args.versus_sweep, args.episodes, args.seed, start_turn=0)
        env.close()
        add_sweep_pairing(rows, returns)
        sweep = {"policy": name, "period_steps": args.versus_sweep, "start": "first", "real_returns": returns.tolist()}
        sweep.update(real_mean=float(returns.mean()), real_std=float(returns.std()))
    result = {
        "checkpoint": str(checkpoint),
        "controller": args.controller,
        "world_model": str(world_model_file(checkpoint, world_model)),
        "real_steps_of_the_world_model": meta.get("real_steps"),
        "action_repeat": module.action_repeat,
        "controller_decides_every": module.controller_interval(),
        "env_settings": env_settings,
        "temperature": args.temperature,
        "precision": module.world_model.precision,
        "terminal_value": args.terminal_value,
        "done_logit_offset": float(module.plan_done_offset),
        "episodes": args.episodes,
        "seed": args.seed,
        "noise_seed": noise_seed,
        "look_ahead_step": cost,
        "sweep": sweep,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"\none look-ahead step of {8 * int(module.action_space.n) * args.samples} dreams: {cost['full_step_ms']} ms "
        f"with every member's mixture, {cost['planner_step_ms']} ms as the planner steps ({cost['speedup']}x)"
    )
    if not rows:
        return
    print(
        f"\nreal TakeCover, {args.episodes} episodes (seeds {args.seed}+), frames survived; C alone decides every "
        f"{module.controller_interval()} steps; z of real frames: {' / '.join(readings)}; {env_settings}"
    )
    read_as = {"sample": "V's draws", "mean": "V's means"}  # what the agent reads real frames as
    paired = "paired gain over C alone" + (f" on {read_as[readings[0]]}" if len(readings) > 1 else "")
    by_reading = f" paired gain over the same agent on {read_as[readings[0]]} |" if len(readings) > 1 else ""
    if sweep is not None:
        print(
            f"the fixed sweep, {args.versus_sweep} steps each way from the first (no V, M or C), on the same episodes: "
            f"{sweep['real_mean']:.0f} ± {sweep['real_std']:.0f}"
        )
    versus = " vs the sweep (episodes as long as it) |" if sweep is not None else ""
    print(f"| agent | real mean ± std | {paired} |{by_reading}{versus} action changes per 100 steps | wall |")
    print("|---|---|---|---|---|" + ("---|" if by_reading else "") + ("---|" if versus else ""))
    for row in rows:
        name = (
            f"C alone, deciding every {row['decides_every']} steps"
            if row["plan_horizon"] == 0
            else f"planning {row['plan_horizon']} steps x {args.samples} dreams, deciding every {row['decides_every']}"
            + (", parallel rollouts (C and each action held)" if row["plan_rollouts"] == "parallel" else "")
            + (f", alive at the end worth {args.terminal_value:g} steps" if args.terminal_value else "")
        ) + (f", on {read_as[row['real_z']]}" if by_reading else "")
        gain = f"{row['paired_gain_mean']:+.0f} ± {row['paired_gain_se']:.0f}" if "paired_gain_mean" in row else "—"
        score, changes = f"{row['real_mean']:.0f} ± {row['real_std']:.0f}", 100 * row["action_changes_per_step"]
        reading = (
            f" {row['real_z_gain_mean']:+.0f} ± {row['real_z_gain_se']:.0f} |" if "real_z_gain_mean" in row else ""
        )
        if by_reading and not reading:
            reading = " — |"
        if versus:
            reading += f" {row['sweep_gain_mean']:+.0f} ± {row['sweep_gain_se']:.0f} ({row['same_as_sweep']}) |"
        print(f"| {name} | {score} | {gain} |{reading} {changes:.1f} | {row['wall_s']:.0f} s |")


if __name__ == "__main__":
    main()
