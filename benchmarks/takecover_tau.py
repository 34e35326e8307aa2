"""The paper's temperature table on this machine: one fitted world model, C trained by CMA-ES in the dream at each
tau, every controller judged on the REAL game.

    rllib-worldmodel fit --env takecover --episodes 100 --vae-epochs 3 --mdn-epochs 20 --out runs/takecover_world_model
    python benchmarks/takecover_tau.py --world-model runs/takecover_world_model/world_model.pt

For each tau: CMA-ES (population x rollouts per generation, one batched dream), the deployed controller's dream
score over `--dream-episodes` dreams at that tau, and its real score over `--eval-episodes` real episodes
(mean ± std). Writes JSON (default benchmarks/results/takecover_tau.json) and prints the table last.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rllib_worldmodel.calibration import add_calibration_args, calibrate_done_offset, real_branch_survival
from rllib_worldmodel.cli import add_controller_input_args
from rllib_worldmodel.cma_es import CMAESTrainer, evaluate_population
from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.envs import make_takecover
from rllib_worldmodel.envs.vizdoom import add_view_args, episode_steps, takecover_view
from rllib_worldmodel.fidelity import real_episodes
from rllib_worldmodel.models.controller import Controller, ControllerInput, held_actions
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel
from rllib_worldmodel.trainer import latent_logvar


class SeededEpisodes:
    """`episodes` episodes played on `envs` side by side, episode i reset with seed + i, each env taking the next
    episode when its own ends: which episode each env plays (`episode`), its latest observation (`obs`), whether it
    still plays (`live`), and every episode's return (`returns`, in episode order).

    Args:
        envs: The envs, stepped one at a time by `step`.
        episodes: How many episodes to play in all.
        seed: Episode i is reset with seed + i, whichever env plays it.
    """

    def __init__(self, envs: list[gym.Env], episodes: int, seed: int):
        self.envs, self.episodes, self.seed, self.started = envs, episodes, seed, 0
        self.returns = np.zeros(episodes)
        self.obs: list = [None] * len(envs)
        self.episode = np.zeros(len(envs), int)
        self.live = np.zeros(len(envs), bool)
        for i in range(len(envs)):
            self._next(i)

    def _next(self, i: int) -> None:
        if self.started < self.episodes:
            self.obs[i], _ = self.envs[i].reset(seed=self.seed + self.started)
            self.live[i], self.episode[i], self.started = True, self.started, self.started + 1
        else:
            self.live[i] = False

    def step(self, i: int, action) -> tuple[int | None, bool]:
        """Step env i; returns (the episode that just ended, or None; whether it terminated). An env whose episode
        ended is reset for the next one (or stops playing)."""
        self.obs[i], r, term, trunc, _ = self.envs[i].step(action)
        played = int(self.episode[i])
        self.returns[played] += r
        if not (term or trunc):
            return None, False
        self._next(i)
        return played, bool(term)

    def close(self) -> None:
        for env in self.envs:
            env.close()


@torch.no_grad()
def play_real(
    world_model: WorldModel,
    controller: Controller,
    episodes: int,
    num_envs: int = 8,
    controller_input: ControllerInput | None = None,
    z_mode: str = "sample",
    seed: int = 0,
    skill: int = 4,
    frame_cap: int = 2100,
    view: dict[str, bool] | None = None,
    flats: np.ndarray | None = None,
    recorded: dict[int, tuple] | None = None,
    action_repeat: int = 1,
    make_env: Callable[[], gym.Env] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns of `episodes` real TakeCover episodes played by V + M + C (`num_envs` at a time, one V batch), in
    episode order (episode i reset with seed + i), and the share of steps spent on each action. `view`: render
    switches (screen_flashes, render_hud) of make_takecover, which must be those V was fitted on. `flats`
    (episodes, N): episode i is played by these controller parameters (`Controller.get_flat` layout, e.g. CMA-ES
    candidates) instead of `controller`'s own. `recorded`: if a dict, episode i is stored there as the
    `done_refit.EncodedEpisode` (the latents V gave the controller, M's action encoding, terminated).
    `action_repeat`: the controller decides every k-th step and holds its action in between.
    `controller_input`: what the controller reads, as in the dream it was trained in (`DreamSettings.controller_input`;
    None: the paper's [z, h]).
    `make_env`: builds each real env instead of TakeCover with `skill`, `frame_cap` and `view` (any env with V's
    frames and M's discrete actions)."""
    controller_input = controller_input or ControllerInput()
    if make_env is None:
        make_env = functools.partial(make_takecover, skill=skill, frame_cap=frame_cap, **(view or {}))
    play = SeededEpisodes([make_env() for _ in range(num_envs)], episodes, seed)
    gen = torch.Generator().manual_seed(seed)
    w = None if flats is None else torch.as_tensor(flats, dtype=torch.float32)
    counts = np.zeros(world_model.config.action_dim)
    taken = torch.zeros(num_envs, dtype=torch.long)  # steps of each env's current episode
    held = torch.zeros(num_envs, dtype=torch.long)
    h, c = world_model.mdn_rnn.initial_state(num_envs)
    prev = torch.zeros(num_envs, world_model.config.action_dim)  # each env's last action, encoded for M
    trace = [([], [], []) for _ in range(num_envs)]  # per env: latents' mu, logvar, encoded actions
    while play.live.any():
        idx = np.flatnonzero(play.live)
        mu, logvar = world_model.vae.encode(torch.as_tensor(np.stack([play.obs[i] for i in idx])))
        z = mu if z_mode == "mean" else mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
        hi, ci = h[idx], c[idx]
        x = controller_input.build(z, hi, ci, prev[idx])
        if w is None:
            action = controller.act(x)
        else:
            action = controller.to_action(controller.batched_forward(w[play.episode[idx]], x.unsqueeze(1)).squeeze(1))
        action = held_actions(action, held[idx], taken[idx], action_repeat)
        held[idx], taken[idx] = action, taken[idx] + 1
        encoded = world_model.encode_action(action)
        hn, cn = world_model.mdn_rnn.step(z, encoded, (hi, ci))
        h[idx], c[idx], prev[idx] = hn, cn, encoded
        counts += np.bincount(action.numpy(), minlength=len(counts))
        for j, i in enumerate(idx):
            ended, term = play.step(i, int(action[j]))
            if recorded is not None:
                for part, value in zip(trace[i], (mu[j], logvar[j], encoded[j])):
                    part.append(value)
            if ended is not None:
                if recorded is not None:
                    mus, logvars, acts = trace[i]
                    lv = latent_logvar(torch.stack(logvars), z_mode)  # points when M reads means
                    recorded[ended] = (torch.stack(mus), lv, torch.stack(acts), term)
                    trace[i] = ([], [], [])
                h[i], c[i], prev[i], taken[i] = 0.0, 0.0, 0.0, 0
    play.close()
    return play.returns, counts / counts.sum()


def train_in_dream(
    wm: WorldModel,
    settings: DreamSettings,
    args,
    common_noise: bool = True,
    snapshot_at: tuple[int, ...] = (),
    controller_hidden: int = 0,
) -> tuple[Controller, list[dict], CMAESTrainer, dict[int, np.ndarray]]:
    """CMA-ES in the dream; returns the controller at CMA-ES's mean, the per-generation metrics, the search, and
    CMA-ES's mean parameters after each generation in `snapshot_at` (the generation curve). `controller_hidden`:
    hidden units of C (0: the paper's linear C)."""
    controller = Controller(
        settings.controller_input.size(wm.config),
        wm.config.action_space(),
        hidden=controller_hidden,
    )
    cma = CMAESTrainer(
        controller,
        args.cma_population,
        args.cma_rollouts,
        seed=args.seed,
        common_noise=common_noise,
        action_repeat=args.action_repeat,
    )
    sim = DreamSimulator(wm, settings)
    log, snapshots = [], {}
    for _ in range(args.cma_generations):
        m = cma.step(sim)
        log.append(m)
        if cma.generation in snapshot_at:
            snapshots[cma.generation] = cma.mean_params()
        print({k: round(v, 2) for k, v in m.items()}, flush=True)
    controller.set_flat(cma.mean_params())
    return controller, log, cma, snapshots


def calibrated_to(
    wm: WorldModel, settings: DreamSettings, target: float, hold: tuple[int, int], seed: int
) -> DreamSettings:
    """`settings` with the done-logit offset under which the dream's random-hold survival (actions held `hold`
    steps) equals `target` env steps (`calibration.calibrate_done_offset`); prints the offset found."""
    offset, survival = calibrate_done_offset(wm, settings, target, seed=seed, hold=hold)
    print(f"calibrated done-logit offset {offset:.2f}: dream random-hold survival {survival:.0f}", flush=True)
    return dataclasses.replace(settings, done_logit_offset=offset)


def dream_returns(wm: WorldModel, settings: DreamSettings, controller: Controller, args) -> np.ndarray:
    """The deployed controller's returns over `args.dream_episodes` dreams (seed 7: the same dreams for every row)."""
    flat = controller.get_flat()[None]
    sim = DreamSimulator(wm, settings)
    return evaluate_population(
        sim, controller, flat, args.dream_episodes, seed=7, action_repeat=args.action_repeat
    ).returns[0]


def run_row(wm: WorldModel, name: str, settings: DreamSettings, args, common_noise: bool | None = None) -> dict:
    """Train C in the dream with `settings`, score it in the dream and on the real game."""
    t0 = time.perf_counter()
    common_noise = not args.no_common_noise if common_noise is None else common_noise
    controller, log, _, snapshots = train_in_dream(
        wm, settings, args, common_noise, args.curve_generations, args.controller_hidden
    )

    def judge(c: Controller) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dream returns, real returns and real action shares of one controller (the same dreams and real seeds
        for every controller, so a generation curve compares like with like)."""
        real, share = play_real(
            wm,
            c,
            args.eval_episodes,
            seed=args.seed + 1000,
            controller_input=settings.controller_input,
            view=args.view,
            z_mode=args.z_mode,
            action_repeat=args.action_repeat,
        )
        return dream_returns(wm, settings, c, args), real, share

    def curve_point(generation: int, dream: np.ndarray, real: np.ndarray) -> dict:
        """One point of the generation curve: the judged scores and CMA-ES's state after `generation`."""
        m = log[generation - 1]
        return {
            "generation": generation,
            "dream_mean": float(dream.mean()),
            "real_mean": float(real.mean()),
            "real_std": float(real.std()),
            "cma_fitness_mean": m["dream/cma_fitness_mean"],
            "cma_sigma": m["dream/cma_sigma"],
        }

    curve = []
    for generation, flat in sorted(snapshots.items()):
        earlier = Controller(controller.input_size, wm.config.action_space(), hidden=controller.hidden)
        earlier.set_flat(flat)
        curve.append(curve_point(generation, *judge(earlier)[:2]))
        print(json.dumps(curve[-1]), flush=True)
    dream, real, action_share = judge(controller)
    row = {
        "name": name,
        "start": settings.start,
        "dream_horizon": settings.max_episode_steps,
        "branch_focus": settings.branch_focus,
        "tau": settings.temperature,
        "done_mode": settings.done_mode,
        "done_logit_offset": settings.done_logit_offset,
        "done_logit_scale": settings.done_logit_scale,
        "reward_range": settings.reward_range,
        "pessimism": settings.pessimism,
        "done_ensemble": settings.done_ensemble,
        "initial_noise": settings.initial_noise,
        "controller_input": settings.controller_input.describe(),
        "action_repeat": args.action_repeat,
        "cma_common_noise": common_noise,
        "dream_mean": float(dream.mean()),
        "dream_std": float(dream.std()),
        "real_mean": float(real.mean()),
        "real_std": float(real.std()),
        "real_episodes": len(real),
        "real_action_share": [round(float(x), 3) for x in action_share],
        "real_z": args.z_mode,
        "cma_generations": len(log),
        "cma_fitness_last": log[-1]["dream/cma_fitness_mean"],
        "cma_sigma_last": log[-1]["dream/cma_sigma"],
        "cma_episode_len_last": log[-1]["dream/cma_episode_len_mean"],
        # reward parts per dream episode in the last generation: extrinsic, ensemble disagreement, penalty paid
        "cma_parts_last": {k[len("dream/cma_") :]: v for k, v in log[-1].items() if k.endswith("_mean")},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if curve:
        # the deployed controller closes the curve: real score against CMA-ES generations, one search
        row["generation_curve"] = curve + [curve_point(len(log), dream, real)]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", default="runs/takecover_world_model/world_model.pt")
    parser.add_argument("--mode", default="tau", choices=["tau", "ablation"], help="tau table or lever ablation")
    parser.add_argument("--taus", default="0.1,0.5,1.0,1.15,1.3")
    parser.add_argument("--done-mode", default="threshold", choices=["threshold", "sample", "expected"])
    parser.add_argument("--pessimism", type=float, default=0.0)
    parser.add_argument("--done-ensemble", default="mean", choices=["mean", "max"])
    parser.add_argument("--initial-noise", type=float, default=0.0)
    parser.add_argument("--done-logit-offset", type=float, default=0.0)
    parser.add_argument(
        "--done-logit-scale", type=float, default=1.0, help="multiply M's done logits by this before the offset"
    )
    parser.add_argument(
        "--reward-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="clip the dream's reward to this range"
    )
    add_calibration_args(parser)
    parser.add_argument(
        "--start",
        default="episode",
        choices=["episode", "branch"],
        help="dreams start at real episode starts (paper) or at real mid-episode branch points",
    )
    parser.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="dream steps per rollout (default: the real 2100-frame cap in the world model's env steps; short "
        "with --start branch). With --start branch and sampled "
        "deaths, deaths are calibrated to the real outcome stored with the branch points",
    )
    parser.add_argument(
        "--branch-focus", type=float, default=0.0, help="--start branch: share of dreams started at doomed points"
    )
    add_view_args(parser)
    add_controller_input_args(parser)
    parser.add_argument(
        "--controller-hidden", type=int, default=0, help="hidden tanh units in C (0: the paper's linear C)"
    )
    parser.add_argument("--cma-population", type=int, default=32)
    parser.add_argument("--cma-rollouts", type=int, default=8)
    parser.add_argument("--cma-generations", type=int, default=10)
    parser.add_argument(
        "--curve-generations",
        default="",
        help="comma-separated generations (below --cma-generations) after which CMA-ES's mean controller is also "
        "judged in the dream and on the real game (same dreams, same real seeds): the generation curve of one search",
    )
    parser.add_argument(
        "--no-common-noise", action="store_true", help="tau mode: independent dreams per CMA-ES candidate"
    )
    parser.add_argument("--dream-episodes", type=int, default=256)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppo", action="store_true", help="also RLlib PPO on the real game, same real steps as M")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "takecover_tau.json"))
    args = parser.parse_args()
    try:
        args.curve_generations = tuple(int(g) for g in args.curve_generations.split(",") if g.strip())
    except ValueError:
        parser.error(f"--curve-generations={args.curve_generations!r}: give comma-separated integers, e.g. 8,16,32")
    if any(g < 1 or g >= args.cma_generations for g in args.curve_generations):
        parser.error(
            f"--curve-generations {args.curve_generations}: each must be >= 1 and below --cma-generations "
            f"({args.cma_generations}), which is the curve's last point"
        )
    torch.set_num_threads(2)
    wm = WorldModel.load(args.world_model).eval()
    # The real data behind the world model: the only real env steps any controller in this table was trained on.
    metadata = read_checkpoint(args.world_model)["metadata"]
    real_steps = int(metadata.get("real_steps", 0))
    args.view = takecover_view(args, metadata)
    if args.horizon is None:  # 60 game seconds, however many tics a step of this world model is
        args.horizon = episode_steps(args.view)
    args.z_mode = metadata.get("mdn_latents", "sample")  # real frames become z as M's training latents did
    base = DreamSettings(
        temperature=1.15,
        done_mode=args.done_mode,
        max_episode_steps=args.horizon,
        start=args.start,
        branch_focus=args.branch_focus,
        seed=args.seed,
        pessimism=args.pessimism,
        done_ensemble=args.done_ensemble,
        initial_noise=args.initial_noise,
        done_logit_offset=args.done_logit_offset,
        done_logit_scale=args.done_logit_scale,
        reward_range=tuple(args.reward_range) if args.reward_range else None,
        **ControllerInput.from_flags(args).flags(),
    )

    def calibrated(settings: DreamSettings) -> DreamSettings:
        """Sampled deaths anchored to the real random-hold survival, for exactly these settings (the ensemble rule
        changes how deadly the dream is, so each variant gets its own offset). Branched dreams are anchored to what
        the random-hold policy really survived, capped at the horizon, from their branch points."""
        if settings.done_mode == "threshold":
            return settings
        if settings.start == "branch":
            target = real_branch_survival(wm, settings.max_episode_steps, settings.branch_focus)
        elif args.calibrate_to:
            target = args.calibrate_to
        else:
            return settings
        return calibrated_to(wm, settings, target, tuple(args.calibrate_hold), seed=args.seed + 11)

    rows = []
    if args.mode == "tau":
        base = calibrated(base)  # one offset for the whole table: tau is the only thing that varies
        for tau in [float(t) for t in args.taus.split(",")]:
            rows.append(run_row(wm, f"tau={tau}", dataclasses.replace(base, temperature=tau), args))
    else:
        # Cumulative: each row adds one lever to the row above it.
        paper = dataclasses.replace(
            base, done_mode="threshold", done_logit_offset=0.0, pessimism=0.0, done_ensemble="mean", initial_noise=0.0
        )
        # (name, dream settings, CMA-ES common random numbers)
        variants = [("paper: threshold deaths, independent dreams", paper, False)]
        deaths = calibrated(dataclasses.replace(paper, done_mode="sample"))
        variants.append(("+ sampled deaths" + (", calibrated" if args.calibrate_to else ""), deaths, False))
        variants.append(("+ common random numbers in CMA-ES", deaths, True))
        last = deaths
        if wm.mdn_rnn.num_heads > 1:
            last = calibrated(dataclasses.replace(last, pessimism=args.pessimism or 1000.0, done_ensemble="max"))
            variants.append(("+ ensemble pessimism, done max", last, True))
        if args.initial_noise:
            variants.append(("+ initial noise", dataclasses.replace(last, initial_noise=args.initial_noise), True))
        rows = [run_row(wm, name, s, args, crn) for name, s, crn in variants]
    result = {"settings": {**vars(args), "world_model_real_steps": real_steps}, "rows": rows}
    if args.action_repeat > 1:
        # the baseline a repeat needs: uniformly random decisions at the same interval, in the real game
        env = make_takecover(**args.view)
        episodes = real_episodes(env, (args.action_repeat,) * 2, None, args.eval_episodes, seed=args.seed + 1000)
        lengths = np.array([ep.rewards.sum() for ep in episodes], dtype=float)  # frames survived, the score
        env.close()
        del episodes
        result["random_at_same_repeat"] = {
            "real_mean": float(lengths.mean()),
            "real_std": float(lengths.std()),
            "real_episodes": len(lengths),
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))  # keep the table even if the baseline fails
    if args.ppo:
        import os
        import sys

        import ray

        sys.path.insert(0, str(Path(__file__).parent))
        from takecover import run_ppo

        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
        result["ppo_same_real_steps"] = run_ppo(real_steps, args)
        ray.shutdown()
        out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    print(f"trained only in the dream of a world model fitted on {real_steps} real steps")
    if "ppo_same_real_steps" in result:
        p = result["ppo_same_real_steps"]
        print(f"RLlib PPO on the real game, {p['real_env_steps']} real steps: {p['real_mean']:.0f} (greedy)")
    if "random_at_same_repeat" in result:
        b = result["random_at_same_repeat"]
        print(f"random decisions every {args.action_repeat} steps, real: {b['real_mean']:.0f} ± {b['real_std']:.0f}")
    print("setting | dream | real (mean ± std over episodes)")
    for r in rows:
        print(
            f"{r['name']} | {r['dream_mean']:.0f} ± {r['dream_std']:.0f} | {r['real_mean']:.0f} ± {r['real_std']:.0f}"
        )


if __name__ == "__main__":
    main()
