"""`rllib-worldmodel`: the command line (Ray >= 2.42 ships no `rllib` CLI).

Commands:
  train     run the WorldModels algorithm (collect real -> fit V, M -> train C in the dream -> evaluate on the real
            env), print the real score and save an RLlib checkpoint (atomically) each iteration, and write a
            real-vs-dream GIF at the end; `--resume` continues from a checkpoint.
  evaluate  evaluate a saved WorldModels checkpoint on the real env (mean ± std over N episodes) and in the dream.
  distill   fit a checkpoint's C to its planner's dreamed choices at the replay's newest real states and write the
            agent that deploys it (no new real steps, unless `--distill-check-episodes` plays the fitted and the
            searched C in the real game to keep the better).
  fit       collect real episodes with the paper's random-hold policy, fit V then M, save a world-model checkpoint,
            and write a GIF of real frames next to V's reconstruction and M's dream.
  dream     write GIFs of dreams from a saved world-model checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rllib_worldmodel.calibration import CALIBRATION_ANCHORS
from rllib_worldmodel.data import write_folder_atomically
from rllib_worldmodel.distill import DISTILL_DEPLOY
from rllib_worldmodel.envs.vizdoom import add_view_args, episode_steps, frame_skip_of, takecover_view
from rllib_worldmodel.planning import PLAN_ROLLOUTS, PlanSettings
from rllib_worldmodel.precision import PRECISIONS
from rllib_worldmodel.rl_module import REAL_Z

ENV_PRESETS = {
    # paper §A: Doom z=64, LSTM 512; CarRacing z=32, LSTM 256. frame_cap: the real default cap (TakeCover's is
    # make_takecover's, in frames).
    "takecover": {"z_size": 64, "rnn_size": 512},
    "carracing": {"z_size": 32, "rnn_size": 256, "frame_cap": 1000},
}
ENV_NAMES = {"takecover": "WorldModels/TakeCover-v0", "carracing": "WorldModels/CarRacing-v0"}


def _given(**settings: Any) -> dict[str, Any]:
    """The settings that were given (not None), so the env's own defaults apply to the rest."""
    return {k: v for k, v in settings.items() if v is not None}


def _real_env_config(args: argparse.Namespace) -> tuple[str, dict]:
    """(registered env name, env_config) for the CLI's --env/--skill/--frame-cap."""
    if args.env in ENV_NAMES:
        real = _given(skill=args.skill, frame_cap=args.frame_cap)
        if args.env == "carracing":
            real.pop("skill", None)
        else:
            real.update(takecover_view(args))
        return ENV_NAMES[args.env], {"real": real}
    return "WorldModels/Real-v0", {"real": {"env_id": args.env}}


def _dream_cap(args: argparse.Namespace) -> int:
    """The dream's step cap: the real episode's, in env steps (a TakeCover cap in frames over its frame skip), or
    --dream-cap for envs without a preset."""
    if args.env == "takecover":
        return episode_steps(_real_env_config(args)[1]["real"])  # the env the algorithm will play
    preset = ENV_PRESETS.get(args.env, {})
    if "frame_cap" not in preset:
        return args.dream_cap
    return args.frame_cap or preset["frame_cap"]


def _score_line(ev: dict) -> str:
    line = (
        f"real {ev['real/episode_return_mean']:.1f} ± {ev['real/episode_return_std']:.1f} "
        f"over {int(ev['real/num_episodes'])} episodes"
    )
    if ev.get("real/plan_horizon"):
        line += f" (planning {int(ev['real/plan_horizon'])} ahead every {int(ev['real/decision_every'])})"
    if "dream_real_gap" in ev:
        line += f" | dream {ev['dream/episode_return_mean']:.1f} | gap {ev['dream_real_gap']:+.1f}"
    return line


def _init_ray(num_cpus: int) -> bool:
    """Start a local Ray unless one runs, and (re-)register our names in it: Ray's registry is per cluster, and a
    second `ray.init` in one process starts a new one that has not seen the registrations made at import time.
    Returns whether this call started Ray (and so must shut it down)."""
    import ray

    from rllib_worldmodel.registration import register_all, register_trainable_name

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus or None, include_dashboard=False)
    register_all()
    register_trainable_name()
    return started


def train_config(args: argparse.Namespace):
    """The `WorldModelsConfig` that `rllib-worldmodel train` runs for these parsed arguments (not validated)."""
    import rllib_worldmodel as rw

    preset = ENV_PRESETS.get(args.env, {})
    env_name, env_config = _real_env_config(args)
    return (
        rw.WorldModelsConfig()
        .environment(env_name, env_config=env_config)
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=args.num_envs_per_env_runner)
        .learners(num_learners=args.num_learners, num_gpus_per_learner=args.num_gpus_per_learner)
        .world_model(
            z_size=args.z_size or preset.get("z_size", 32),
            rnn_size=args.rnn_size or preset.get("rnn_size", 256),
            num_heads=args.num_heads,
            done_bias_init=args.done_bias_init,
            vae_epochs_per_iteration=args.vae_epochs,
            vae_warmup_epochs=args.vae_warmup_epochs,
            mdn_epochs_per_iteration=args.mdn_epochs,
            mdn_seq_len=args.seq_len,
            fit_epochs_over=args.fit_epochs_over,
            vae_focus_fraction=args.vae_focus_fraction,
            vae_focus_weight=args.vae_focus_weight,
            closed_loop=args.closed_loop,
            closed_loop_horizon=args.closed_loop_horizon,
            mdn_latents=args.mdn_latents,
            done_refit_horizon=args.done_refit_horizon,
            precision=args.precision,
            **({} if args.replay_capacity is None else {"replay_capacity": args.replay_capacity}),
            mdn_recency_half_life=args.mdn_recency_half_life,
        )
        .collection(
            real_episodes_per_iteration=args.episodes_per_iteration,
            curiosity=args.curiosity,
            curiosity_bonus=args.curiosity_bonus,
            surprise_exploration=args.surprise_exploration,
            random_hold_steps=tuple(args.hold),
        )
        .dream(
            temperature=args.temperature,
            max_episode_steps=_dream_cap(args),
            pessimism=args.pessimism,
            done_ensemble=args.done_ensemble,
            done_mode=args.done_mode,
            calibrate_deaths=args.calibrate_deaths,
            done_logit_scale=args.done_logit_scale,
            start=args.dream_start,
            branch_horizon=args.branch_horizon,
            branch_focus=args.branch_focus,
            **rw.ControllerInput.from_flags(args).flags(),
        )
        .exploit_guard(enabled=args.guard)
        .controller(
            trainer=args.controller,
            cma_population=args.cma_population,
            cma_rollouts=args.cma_rollouts,
            cma_generations_per_iteration=args.cma_generations,
            real_z=args.real_z or args.mdn_latents,  # by default the agent reads real frames the way M was trained
            action_repeat=args.action_repeat,
            plan_horizon=args.plan_horizon,
            plan_samples=args.plan_samples,
            plan_every=args.plan_every,
            plan_dream_episodes=args.plan_dream_episodes,
            plan_collect=args.plan_collect,
            plan_rollouts=args.plan_rollouts,
            plan_collect_horizon=args.plan_collect_horizon,
            plan_collect_every=args.plan_collect_every,
            plan_terminal_value=args.plan_terminal_value,
            distill_states=args.distill_states,
            distill_every=args.distill_every,
            distill_epochs=args.distill_epochs,
            distill_deploy=args.distill_deploy,
            distill_check_episodes=args.distill_check_episodes,
        )
        .evaluation(evaluation_duration=args.eval_episodes)
        .debugging(seed=args.seed)
    )


def _checkpoint_folder(path: str, flag: str) -> Path:
    """The RLlib checkpoint folder `path`, or a clear error naming `flag` (and the swap leftover, if any)."""
    folder = Path(path).resolve()
    if (folder / "algorithm_state.pkl").exists():
        return folder
    previous = folder.with_name(folder.name + ".previous")
    hint = (
        f"; {previous} holds the checkpoint before an interrupted save: pass that instead"
        if (previous / "algorithm_state.pkl").exists()
        else ""
    )
    raise FileNotFoundError(
        f"{flag} {folder} is not an RLlib checkpoint folder (written by `rllib-worldmodel train`){hint}"
    )


def save_checkpoint_atomically(algo: Any, folder: str | os.PathLike) -> Path:
    """Write `algo`'s checkpoint to `folder` so that a crash at any moment leaves a complete checkpoint behind
    (`data.write_folder_atomically`: `folder` or `<folder>.previous` always holds one).

    Args:
        algo: The algorithm (anything with RLlib's `save_to_path`).
        folder: Where the checkpoint lives.

    Returns:
        The checkpoint folder.
    """
    return write_folder_atomically(folder, lambda path: algo.save_to_path(str(path)))


def _set_aside_rows_after(progress: Path, iteration: int) -> None:
    """Move the rows of `progress` (a run's progress.jsonl) past `iteration` to progress.superseded.jsonl beside it.

    A run resumed into its own folder from a checkpoint at `iteration` redoes every later iteration (a crash between
    an iteration's row and its checkpoint, or an older checkpoint passed on purpose), so rows past it would describe
    iterations that no checkpoint holds and would be written twice. They are kept, not deleted: moved aside, in order.
    """
    if not progress.exists():
        return
    lines = [line for line in progress.read_text().splitlines() if line.strip()]
    past = [json.loads(line).get("iteration", 0) > iteration for line in lines]
    if not any(past):
        return
    aside = progress.with_name(progress.stem + ".superseded.jsonl")
    with aside.open("a") as f:
        f.write("".join(line + "\n" for line, p in zip(lines, past) if p))
    partial = progress.with_name(progress.name + ".partial")
    partial.write_text("".join(line + "\n" for line, p in zip(lines, past) if not p))
    os.replace(partial, progress)  # atomic: the file holds the old rows or the kept ones, never a torn write
    print(f"{progress}: {sum(past)} row(s) past iteration {iteration} moved to {aside.name}", flush=True)


def _training_scalars(result: dict) -> dict:
    """The numbers a `WorldModels` training iteration logged for itself (`world_model/…`, `dream/…`, `real/…`) and
    the seconds each of its phases took (`timers/<phase>_s`), from one `Algorithm.train()` result."""
    from rllib_worldmodel.algorithm import WorldModels

    # NaN: a metric an earlier iteration logged and this one did not (e.g. the random-hold calibration once the
    # deaths are anchored to the controller); left out rather than written as a measurement
    scalars = {
        k: float(v) for k, v in result.items() if "/" in k and isinstance(v, (int, float, np.number)) and np.isfinite(v)
    }
    scalars.update({f"timers/{phase}_s": float(result["timers"][phase]) for phase in WorldModels.PHASES})
    return scalars


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    import ray

    # Phase timings and CMA-ES progress (logged at INFO by rllib_worldmodel.algorithm): long iterations stay audible.
    pkg_logger = logging.getLogger("rllib_worldmodel")
    pkg_logger.setLevel(logging.INFO)
    if not pkg_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        pkg_logger.addHandler(handler)

    import rllib_worldmodel as rw
    from rllib_worldmodel.video import dream_comparison, write_gif

    if args.iterations < 1:
        raise ValueError(
            f"--iterations {args.iterations}: need at least 1 (each iteration collects, fits, trains, evaluates)"
        )
    if args.until_iteration is not None and args.until_iteration < 1:
        raise ValueError(f"--until-iteration {args.until_iteration}: need at least 1 (a run's first is iteration 1)")
    config = train_config(args)
    config.validate()  # bad settings fail here, in a second, before Ray starts

    resume = _checkpoint_folder(args.resume, "--resume") if args.resume else None
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started_ray = _init_ray(args.num_cpus)
    algo = config.build_algo()
    if resume is not None:
        algo.restore_from_path(str(resume))
        algo.set_real_z(config.real_z)  # the restored agent reads frames as saved; this run's flags decide
        _plan_as_resumed(algo, args)
        _set_aside_rows_after(out / "progress.jsonl", algo.iteration)
    todo = args.iterations
    if args.until_iteration is not None:
        todo = min(todo, args.until_iteration - algo.iteration)
        if todo <= 0:
            print(f"at iteration {algo.iteration} already (--until-iteration {args.until_iteration})", flush=True)
    t0 = time.perf_counter()
    rows = []
    ckpt = resume
    try:
        for _ in range(todo):
            r = algo.train()
            ev = r["evaluation"]
            row = {
                "iteration": r["training_iteration"],
                "real_env_steps": int(r["real/num_env_steps_sampled_lifetime"]),  # every step taken, kept or not
                "dream_env_steps": int(r["dream/num_env_steps_sampled_lifetime"]),
                "wall_s": round(time.perf_counter() - t0, 1),
                **{k: v for k, v in ev.items() if "/" in k or k == "dream_real_gap"},
                # The training phases' own scalars (world-model updates, the done-logit offset and scale, CMA-ES's
                # dream score, exploration counts) apart from the evaluation's: both have a dream/episode_return_mean.
                "training": _training_scalars(r),
            }
            rows.append(row)
            print(
                f"[iteration {row['iteration']}] {_score_line(ev)} | real steps {row['real_env_steps']} | "
                f"{row['wall_s']:.0f} s",
                flush=True,
            )
            with (out / "progress.jsonl").open("a") as f:
                f.write(json.dumps(row, default=float) + "\n")
            # Every iteration: a crash in iteration n+1 keeps the real episodes and models of iteration n.
            ckpt = save_checkpoint_atomically(algo, out / "checkpoint")
            if args.keep_agents:  # the checkpoint is overwritten next iteration; each iteration's agent stays
                algo.save_agent(out / "agents" / f"iteration_{row['iteration']:03d}")
            if args.until_gap is not None and "dream_real_gap" in ev:
                ratio = abs(ev["dream_real_gap"]) / max(abs(ev["real/episode_return_mean"]), 1.0)
                if ratio < args.until_gap:
                    print(f"gap closed: |dream - real| / real = {ratio:.2f} < {args.until_gap}", flush=True)
                    break
        algo.export_world_model(out / "world_model.pt")
        if algo.world_model.config.obs_kind == "image":
            ep = algo.replay.episodes[-1]
            episode = rw.Episode(
                np.asarray(ep.get_observations()),
                np.asarray(ep.get_actions()),
                np.asarray(ep.get_rewards(), dtype=np.float32),
                ep.is_terminated,
                ep.is_truncated,
            )
            gif = dream_comparison(algo.world_model, episode, temperature=args.temperature)
            write_gif(gif, out / "real_vs_dream.gif")
        print(f"checkpoint: {ckpt}")
        if rows:
            print(f"final: {_score_line(rows[-1])}")
    finally:
        algo.stop()
        if started_ray:
            ray.shutdown()
    return 0


@contextmanager
def _restored(args: argparse.Namespace) -> Iterator[Any]:
    """The algorithm of `args.checkpoint` (Ray started if needed), its agent planning as the --plan-* flags say when
    --plan-horizon is given (else as its checkpoint did); stopped, and Ray shut down if started here, on exit."""
    import ray
    from ray.rllib.algorithms.algorithm import Algorithm

    import rllib_worldmodel  # noqa: F401  (registers env names before the checkpoint is read)

    path = _checkpoint_folder(args.checkpoint, "--checkpoint")
    started_ray = _init_ray(args.num_cpus)
    try:
        algo = Algorithm.from_checkpoint(str(path))
        try:
            if args.agent is not None:  # an earlier iteration's agent the run kept, on this checkpoint's run
                algo.load_agent(args.agent)
            if args.real_z is not None:  # else the agent reads real frames as its checkpoint did
                algo.set_real_z(args.real_z)
            if args.precision is not None:  # else V and M compute as its checkpoint's config says
                algo.set_precision(args.precision)
            if args.plan_horizon is not None:  # plan with the checkpoint's world model and controller, re-scored
                _set_planning(algo, args)
            yield algo
        finally:
            algo.stop()
    finally:
        if started_ray:
            ray.shutdown()


def cmd_evaluate(args: argparse.Namespace) -> int:
    with _restored(args) as algo:
        print(_score_line(algo.evaluate_real(args.episodes)))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from rllib_worldmodel.distill import DistillSettings

    if args.states < 1:
        raise ValueError(f"--states {args.states}: label at least 1 real state (e.g. 16000)")
    settings = DistillSettings(
        states=args.states,
        every=args.distill_every,
        epochs=args.distill_epochs,
        deploy=args.distill_deploy,
        check_episodes=args.distill_check_episodes,
    )
    if args.eval_episodes < 0:
        raise ValueError(f"--eval-episodes {args.eval_episodes}: 0 (no evaluation) or more real episodes")
    out = Path(args.out).resolve()
    if out / "checkpoint" == _checkpoint_folder(args.checkpoint, "--checkpoint"):
        raise ValueError(f"--out {args.out}: write the distilled agent beside its source, not over it")
    with _restored(args) as algo:  # the planner whose choices C learns: --plan-* or the checkpoint's
        metrics = algo.distill_controller(settings)
        print(
            f"C fitted to the planner's choices at {int(metrics['dream/distill_states'])} real states: held-out "
            f"regret {metrics['dream/distill_regret_before']:.3f} -> {metrics['dream/distill_regret_after']:.3f}, "
            f"agreement {metrics['dream/distill_agreement_before']:.0%} -> "
            f"{metrics['dream/distill_agreement_after']:.0%} ({metrics['dream/distill_s']:.0f} s)",
            flush=True,
        )
        if "dream/distill_label_agreement" in metrics:  # the ceiling the agreement above reads against
            print(
                f"the planner's labels, drawn twice, agree on {metrics['dream/distill_label_agreement']:.0%} of the "
                f"held-out states (regret {metrics['dream/distill_label_regret']:.3f}): the most a fitted C can read",
                flush=True,
            )
        if settings.check_episodes:
            print(
                f"checked in the real game over {settings.check_episodes} episodes each: fitted C "
                f"{metrics['real/distill_check_fitted_mean']:.1f}, searched C "
                f"{metrics['real/distill_check_searched_mean']:.1f} -> the "
                f"{'fitted' if metrics['real/distill_check_kept_fitted'] else 'searched'} C is deployed",
                flush=True,
            )
        out.mkdir(parents=True, exist_ok=True)
        ckpt = save_checkpoint_atomically(algo, out / "checkpoint")
        algo.export_world_model(out / "world_model.pt")
        print(f"checkpoint: {ckpt}", flush=True)
        if args.eval_episodes:
            print(_score_line(algo.evaluate_real(args.eval_episodes)))
    return 0


def _add_distill_deploy_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--distill-deploy",
        choices=DISTILL_DEPLOY,
        default="planner",
        help="what the agent deploys after the fit: planner (it plans on the fitted C) or alone (the fitted C acts "
        "alone at the planner's interval, at C's cost per decision; the planner only labels)",
    )
    parser.add_argument(
        "--distill-check-episodes",
        type=int,
        default=0,
        help="after the fit, play the fitted and CMA-ES's searched C on this many real episodes each (no "
        "exploration) and deploy the better one; counted as real steps (0: off, the fit is deployed unchecked)",
    )


def make_env(name: str, skill: int | None = None, frame_cap: int | None = None, **takecover_view: bool):
    """Real env by CLI name: "takecover", "carracing", or any gymnasium id (adapted to image/vector obs).

    Args:
        name: "takecover", "carracing" or a gymnasium id.
        skill: TakeCover Doom skill (None: the default).
        frame_cap: Episode cap (None: the env's default); TakeCover counts it in frames (game tics).
        **takecover_view: TakeCover options (screen_flashes, render_hud, frame_skip, damage_penalty).
    """
    from rllib_worldmodel.envs import make_car_racing, make_real_env, make_takecover

    if name == "takecover":
        return make_takecover(**takecover_view, **_given(skill=skill, frame_cap=frame_cap))
    if frame_skip_of(takecover_view) != 1:
        raise ValueError(f"--frame-skip is a TakeCover setting; --env {name} steps every frame.")
    if name == "carracing":
        return make_car_racing(**({"frame_cap": frame_cap} if frame_cap else {}))
    return make_real_env(name)


def _print_metrics(phase: str, epoch: int, metrics: dict[str, float]) -> None:
    keys = {
        "vae": ["vae_loss", "vae_recon", "vae_kl", "vae_images_per_s"],
        "mdn": ["mdn_nll", "val_mdn_nll", "reward_mse", "done_loss", "val_done_recall", "mdn_tokens_per_s"],
    }[phase]
    shown = " ".join(f"{k}={metrics[f'world_model/{k}']:.4g}" for k in keys if f"world_model/{k}" in metrics)
    print(f"[{phase} epoch {epoch}] {shown}", flush=True)


def _check_recorded_settings(data_dir: Path, settings: dict, has_episodes: bool) -> None:
    """Refuse to mix episodes recorded under other env settings (another skill, HUD, reward shaping) into one fit.

    The settings are kept in DATA_DIR/env_settings.json, written with the first episodes; a folder of episodes
    from before this file existed is taken to match and gets one.
    """
    marker = data_dir / "env_settings.json"
    if has_episodes and marker.exists():
        recorded = json.loads(marker.read_text())
        if recorded != settings:
            raise ValueError(
                f"the episodes in {data_dir} were recorded with {recorded}, this fit asks for {settings}: pass the "
                "same --env/--skill/--frame-cap/--frame-skip/--screen-flashes/--render-hud/--damage-penalty, or "
                "another --data-dir."
            )
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(settings, sort_keys=True))


def cmd_fit(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tensorboardX import SummaryWriter

    import rllib_worldmodel as rw
    from rllib_worldmodel.video import dream_comparison, free_dreams, write_gif

    if not 0.0 <= args.closed_loop <= 1.0:  # before any episode is collected
        raise ValueError(f"--closed-loop {args.closed_loop}: a probability in [0, 1] (0: teacher forcing, paper).")
    if args.done_refit_horizon < 0:
        raise ValueError(f"--done-refit-horizon {args.done_refit_horizon}: an integer >= 0 (0: off; e.g. 100).")
    if args.fresh_m and not args.init_from:
        raise ValueError("--fresh-m keeps the V of --init-from and starts M afresh: give --init-from CHECKPOINT.")
    if args.closed_loop_horizon < 1:
        raise ValueError(
            f"--closed-loop-horizon {args.closed_loop_horizon}: an integer >= 1 (1: own samples drawn per step; "
            "e.g. 30: M dreams 29 steps between real latents)."
        )
    hold = tuple(args.hold)
    if not 1 <= hold[0] <= hold[1]:
        raise ValueError(f"--hold {hold[0]} {hold[1]}: need 1 <= MIN <= MAX steps (paper: --hold 1 10).")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = ENV_PRESETS.get(args.env, {})
    env_settings = {
        **_given(skill=args.skill, frame_cap=args.frame_cap, damage_penalty=args.damage_penalty or None),
        **takecover_view(args),
    }
    data_dir = Path(args.data_dir) if args.data_dir else out / "episodes"
    existing = sorted(data_dir.glob("episode_*.npz")) if data_dir.exists() else []
    _check_recorded_settings(data_dir, {"env": args.env, **env_settings}, bool(existing))
    env = make_env(args.env, **env_settings)
    t0 = time.perf_counter()
    episodes = rw.load_episodes(data_dir)[: args.episodes] if existing else []
    if len(episodes) < args.episodes:
        print(
            f"collecting {args.episodes - len(episodes)} real episodes of {args.env} "
            f"(random actions held {hold[0]}-{hold[1]} steps)"
        )
        new = rw.collect_random_episodes(
            env,
            args.episodes - len(episodes),
            hold=hold,
            seed=args.seed + len(existing) * 1000,
            min_length=args.min_length,
        )
        rw.save_episodes(new, data_dir, start_index=len(existing))
        episodes += new
    env.close()
    lengths = np.array([len(e) for e in episodes])
    collect_s = time.perf_counter() - t0
    print(f"{len(episodes)} episodes, {lengths.sum()} real steps, length {lengths.mean():.0f} ± {lengths.std():.0f}")

    architecture = _given(
        z_size=args.z_size, rnn_size=args.rnn_size, num_mixtures=args.mixtures, num_heads=args.num_heads
    )
    if args.init_from:  # fine-tune: the architecture is the checkpoint's; flags that contradict it are an error
        model = rw.WorldModel.load(args.init_from)
        cfg = model.config
        env_cfg = rw.WorldModelConfig.from_spaces(env.observation_space, env.action_space)
        for k in ("obs_kind", "obs_shape", "action_kind", "action_dim"):
            if getattr(env_cfg, k) != getattr(cfg, k):
                raise ValueError(
                    f"--init-from {args.init_from}: the checkpoint's {k} is {getattr(cfg, k)!r} but --env {args.env} "
                    f"gives {getattr(env_cfg, k)!r}; fine-tune a world model of this env (same view settings)."
                )
        clash = {k: (v, getattr(cfg, k)) for k, v in architecture.items() if getattr(cfg, k) != v}
        if clash:
            detail = ", ".join(f"--{k.replace('_', '-')} {a} but the checkpoint has {b}" for k, (a, b) in clash.items())
            raise ValueError(f"--init-from {args.init_from}: {detail}; drop those flags to fine-tune it as it is.")
        if args.fresh_m:  # same V, an M fitted independently of the checkpoint's (seeded by --seed)
            model.mdn_rnn = rw.WorldModel(cfg).mdn_rnn
    else:
        cfg = rw.WorldModelConfig.from_spaces(
            env.observation_space,
            env.action_space,
            **{"z_size": preset.get("z_size", 32), "rnn_size": preset.get("rnn_size", 256), **architecture},
            done_bias_init=args.done_bias_init,
            vae_focus_fraction=args.vae_focus_fraction,
            vae_focus_weight=args.vae_focus_weight,
        )
        model = rw.WorldModel(cfg)
    rng = np.random.default_rng(args.seed)
    held_out = episodes[int(rng.integers(len(episodes)))]
    metrics_file = (out / "metrics.jsonl").open("a")

    def on_metrics(phase, epoch, metrics):
        _print_metrics(phase, epoch, metrics)
        metrics_file.write(json.dumps({"phase": phase, "epoch": epoch, **metrics}) + "\n")
        metrics_file.flush()

    model.set_precision(args.precision)
    with SummaryWriter(str(out / "tensorboard")) as writer:
        trainer = rw.WorldModelTrainer(
            model,
            device=args.device,
            vae_lr=args.vae_lr,
            mdn_lr=args.mdn_lr,
            seed=args.seed,
            on_metrics=on_metrics,
            writer=writer,
            mdn_latents=args.mdn_latents,
        )
        t1 = time.perf_counter()
        history = trainer.fit(
            episodes,
            vae_epochs=args.vae_epochs,
            mdn_epochs=args.mdn_epochs,
            vae_batch_size=args.vae_batch_size,
            mdn_batch_size=args.mdn_batch_size,
            seq_len=args.seq_len,
            closed_loop=args.closed_loop,
            closed_loop_horizon=args.closed_loop_horizon,
            done_refit_horizon=args.done_refit_horizon,
            done_refit_temperature=args.temperature,
        )
        fit_s = time.perf_counter() - t1
    metrics_file.close()
    ckpt = model.save(
        out / "world_model.pt",
        metadata={
            "env": args.env,
            # how the real frames were made, so tools that play the real env again play the same one
            "env_settings": env_settings,
            "episodes": len(episodes),
            "real_steps": int(lengths.sum()),
            # what M was trained on: tools that play the real game turn frames into z the same way
            "mdn_latents": args.mdn_latents,
            "done_refit_horizon": args.done_refit_horizon,
        },
    )
    summary = {
        "env": args.env,
        "checkpoint": str(ckpt),
        "episodes": len(episodes),
        "real_steps": int(lengths.sum()),
        "collect_s": round(collect_s, 1),
        "hold": list(hold),  # of the episodes collected by this call (older ones keep whatever they were made with)
        "fit_s": round(fit_s, 1),
        "init_from": args.init_from,
        "fresh_m": args.fresh_m,
        "closed_loop": args.closed_loop,
        "closed_loop_horizon": args.closed_loop_horizon,
        "mdn_latents": args.mdn_latents,
        "precision": args.precision,
        "precision_used": model.resolved_precision(),  # what "auto" became on --device
        "vae_first": history["vae"][0] if history["vae"] else None,  # None: V kept as loaded (--vae-epochs 0)
        "vae_last": history["vae"][-1] if history["vae"] else None,
        "mdn_first": history["mdn"][0] if history["mdn"] else None,  # None: M kept as loaded (--mdn-epochs 0)
        "mdn_last": history["mdn"][-1] if history["mdn"] else None,
        "done_refit_horizon": args.done_refit_horizon,
        "done_refit": history["done_refit"][0] if history["done_refit"] else None,
    }
    if cfg.obs_kind == "image":
        comp = dream_comparison(model, held_out, temperature=args.temperature, max_steps=args.video_steps)
        summary["comparison_gif"] = str(write_gif(comp, out / "real_vs_dream.gif"))
        dreams = free_dreams(model, num=4, steps=args.video_steps, temperature=args.temperature, seed=args.seed)
        summary["dreams_gif"] = str(write_gif(dreams, out / "dreams.gif"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=2))
    return 0


def cmd_dream(args: argparse.Namespace) -> int:
    import rllib_worldmodel as rw
    from rllib_worldmodel.video import free_dreams, write_gif

    model = rw.WorldModel.load(args.checkpoint, device=args.device)
    frames = free_dreams(model, num=args.num, steps=args.steps, temperature=args.temperature, seed=args.seed)
    print(write_gif(frames, args.out))
    return 0


def add_controller_input_args(parser: argparse.ArgumentParser) -> None:
    """--action-repeat, --include-cell, --include-prev-action, --no-hidden: when C decides and what it reads (the
    CLI and the benchmarks that train controllers share them)."""
    parser.add_argument(
        "--action-repeat", type=int, default=1, help="C decides every k-th step and holds its action (1: paper)"
    )
    parser.add_argument(
        "--include-cell", action="store_true", help="C reads [z, h, c] (the paper's Doom controller) instead of [z, h]"
    )
    parser.add_argument(
        "--include-prev-action",
        action="store_true",
        help="C also reads the action taken last step (one-hot): a linear C can then keep a course until it turns",
    )
    parser.add_argument(
        "--no-hidden",
        dest="include_hidden",
        action="store_false",
        help="C reads z without M's hidden state h (the paper's 'V only' controller)",
    )


def _number_or_fit(text: str) -> float | str:
    """argparse type of --done-logit-scale: a number, or "fit"."""
    if text == "fit":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'fit'") from None


def _plan_as_resumed(algo, args: argparse.Namespace) -> None:
    """Set a resumed run's planning from its flags: the restored module acts as its checkpoint did (planning buffers
    included), and this run's flags decide. With --distill-deploy alone the --plan-* flags name the planner C is
    fitted to, not a deployed one: the agent acts as C alone, as the loop's fit leaves it, and only a collecting
    planner (--plan-collect) plans."""
    _set_planning(algo, args, collect=args.plan_collect, deployed=args.distill_deploy != "alone")


def _set_planning(algo, args: argparse.Namespace, collect: bool | None = None, deployed: bool = True) -> None:
    """`WorldModels.set_planning` with the --plan-* flags (`_add_plan_args`); `collect` None: the config's.
    `deployed` False: no planner acts without exploration (C alone), and a collecting planner (`collect`) takes the
    flags' look-ahead (`--plan-collect-horizon` or `--plan-horizon`, `--plan-collect-every` or `--plan-every`)."""
    # train's collecting-planner flags (evaluate and distill do not collect: the config's then)
    collect_horizon = getattr(args, "plan_collect_horizon", None)
    collect_every = getattr(args, "plan_collect_every", None)
    if not deployed and collect:  # the collecting planner's own look-ahead, resolved as PlanSettings resolves it
        look = PlanSettings(
            horizon=args.plan_horizon,
            every=args.plan_every,
            collect=True,
            collect_horizon=collect_horizon or 0,
            collect_every=collect_every or 0,
        ).collection()
        collect_horizon, collect_every = look.horizon, look.every
    algo.set_planning(
        args.plan_horizon if deployed else 0,
        samples=args.plan_samples,
        dream_episodes=args.plan_dream_episodes,
        every=args.plan_every,
        collect=collect,
        rollouts=args.plan_rollouts,
        collect_horizon=collect_horizon,
        collect_every=collect_every,
        terminal_value=args.plan_terminal_value,
    )


def _add_plan_args(parser: argparse.ArgumentParser, default: int | None = 0) -> None:
    """Decision-time planning in the dream (`WorldModelsConfig.controller(plan_*)`, `WorldModels.set_planning`).
    `default` None (evaluate): keep what the checkpoint's agent does unless --plan-horizon is given."""
    parser.add_argument(
        "--plan-horizon",
        type=int,
        default=default,
        help="plan each decision in the dream from the real state: the first action (held one decision) with the "
        "best expected return over this many dream steps, C acting after it (0: C alone)",
    )
    parser.add_argument("--plan-samples", type=int, default=16, help="dreams per candidate first action")
    parser.add_argument(
        "--plan-every", type=int, default=0, help="the planning agent's decision interval in steps (0: C's own)"
    )
    parser.add_argument(
        "--plan-dream-episodes", type=int, default=16, help="whole dreams the planning agent's dream score uses"
    )
    parser.add_argument(
        "--plan-rollouts",
        default="controller",
        choices=PLAN_ROLLOUTS,
        help="what follows the first decision in the look-ahead: C, or 'parallel': C and each action held, each "
        "first action scored by its best (1 + actions times the dreams)",
    )
    parser.add_argument(
        "--plan-terminal-value",
        type=float,
        default=0.0,
        help="steps credited to a look-ahead dream for being alive at its end (0: the dreamed steps only; e.g. 100 "
        "ranks first actions by their chance of surviving the horizon)",
    )


def _add_hold_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hold",
        type=int,
        nargs=2,
        default=(1, 10),
        metavar=("MIN", "MAX"),
        help="random collection: each random action is held MIN-MAX steps (paper: 1 10). TakeCover's real survival "
        "depends on sustained moves that 1-10 holds rarely make; 1 100 records them",
    )


def _add_agent_arg(parser: argparse.ArgumentParser) -> None:
    """--agent: an agent the run kept (`WorldModels.load_agent`) deployed on the restored --checkpoint."""
    parser.add_argument(
        "--agent",
        help="a kept agent's folder, e.g. OUT/agents/iteration_015 (train keeps one per iteration): it replaces the "
        "checkpoint's agent (V, M, C, its settings and calibrated dream), the checkpoint giving the run's env "
        "settings and replay; default: the checkpoint's own agent",
    )


def _add_precision_arg(parser: argparse.ArgumentParser, default: str | None, default_is: str) -> None:
    """--precision: V's and M's compute precision (`rllib_worldmodel.precision`); `default_is` says what the default
    means."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=default,
        help="V's and M's compute precision in fits, dreams and the planner's look-aheads: bf16 runs their matrix "
        "multiplies in bfloat16 (weights and losses float32), faster on CPUs with AVX512-BF16/AMX and recent GPUs "
        "(benchmarks/devices.py --precisions fp32 bf16 measures it); auto: bf16 on each device that has bfloat16 "
        f"units, else fp32; default: {default_is}",
    )


def _add_real_z_arg(parser: argparse.ArgumentParser, default_is: str) -> None:
    """--real-z: how the agent reads real frames (`WorldModels.set_real_z`); `default_is` says what None keeps."""
    parser.add_argument(
        "--real-z",
        choices=REAL_Z,
        help="how the agent turns a real frame into z, in real collection and evaluation: a draw from V's posterior "
        f"(sample, the paper) or its mean (M still fits as --mdn-latents says); default: {default_is}",
    )


def _add_m_training_args(p: argparse.ArgumentParser) -> None:
    """M's training options shared by fit and train: latents, scheduled sampling, the done refit, precision."""
    _add_precision_arg(p, "fp32", "fp32")
    p.add_argument(
        "--mdn-latents",
        choices=["sample", "mean"],
        default="sample",
        help="M's latents: sampled from V's posterior (paper) or its mean (dreams without V's per-frame noise; "
        "see WorldModelTrainer); with train, the agent reads real frames the same way",
    )
    p.add_argument(
        "--closed-loop",
        type=float,
        default=0.0,
        help="scheduled sampling: probability that M's input latent is its own sample (0: teacher forcing, paper)",
    )
    p.add_argument(
        "--closed-loop-horizon",
        type=int,
        default=1,
        help="with --closed-loop: length of the free-running segments (1: drawn per step; k: M re-reads the real "
        "latent every k steps and dreams the steps in between)",
    )
    p.add_argument(
        "--done-refit-horizon",
        type=int,
        default=0,
        help="after M, refit its done head on dreams of this many steps from real states, labelled with the real "
        "deaths (0: off, paper; TakeCover: 100)",
    )


def _add_vae_focus_args(p: argparse.ArgumentParser) -> None:
    """V's hard-pixel focus (`losses.vae_loss`), shared by `train` and `fit`."""
    p.add_argument(
        "--vae-focus-fraction", type=float, default=0.0, help="share of worst pixels V counts again (0: off)"
    )
    p.add_argument("--vae-focus-weight", type=float, default=0.0, help="extra weight of those pixels (e.g. 10)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rllib-worldmodel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="run the WorldModels algorithm and report real-env scores")
    train.add_argument("--env", default="takecover", help="takecover | carracing | any gymnasium id")
    train.add_argument("--out", default="runs/train", help="output folder (checkpoint, progress.jsonl, GIF)")
    train.add_argument("--iterations", type=int, default=3, help="iterations this command runs (the most)")
    train.add_argument(
        "--until-iteration",
        type=int,
        help="stop once the run's iteration, counted across --resume, reaches this: resumed from the run's own "
        "checkpoint after a crash, the same command runs only the iterations left",
    )
    train.add_argument(
        "--until-gap", type=float, help="stop once |dream - real| / real is below this (rounds until the gap closes)"
    )
    train.add_argument("--episodes-per-iteration", type=int, default=100, help="real episodes collected per iteration")
    train.add_argument("--eval-episodes", type=int, default=100, help="real evaluation episodes per iteration")
    train.add_argument("--controller", default="cma", help="cma (paper: CMA-ES) | rllib (PPO on dream EnvRunners)")
    train.add_argument("--cma-population", type=int, default=64, help="CMA-ES population (paper: 64)")
    train.add_argument("--cma-rollouts", type=int, default=16, help="dreams per candidate (paper: 16)")
    train.add_argument("--cma-generations", type=int, default=10, help="CMA-ES generations per iteration")
    add_controller_input_args(train)
    _add_plan_args(train)
    train.add_argument(
        "--plan-collect",
        action="store_true",
        help="the planning agent (--plan-horizon > 0) also acts in real collection after the random phase, "
        "exploration on top: new data from where the deployed agent goes",
    )
    train.add_argument(
        "--plan-collect-horizon",
        type=int,
        default=0,
        help="with --plan-collect: the collecting planner's horizon, when it should differ from the deployed "
        "planner's (0: --plan-horizon's; e.g. collect with 12 every 3, deploy 50 every 25)",
    )
    train.add_argument(
        "--plan-collect-every",
        type=int,
        default=0,
        help="with --plan-collect: the collecting planner's decision interval in steps (0: --plan-every's)",
    )
    train.add_argument(
        "--distill-states",
        type=int,
        default=0,
        help="after every CMA-ES search, fit C to the planner's dreamed choices at this many of the replay's newest "
        "real states (needs --plan-horizon > 0; 0: off); the agent deploys the fitted C, which decides at the "
        "planner's interval when it acts alone (e.g. evaluate --plan-horizon 0)",
    )
    train.add_argument(
        "--distill-every", type=int, default=0, help="every n-th state of an episode (0: the planner's interval)"
    )
    train.add_argument("--distill-epochs", type=int, default=200, help="Adam's passes over the labelled states")
    _add_distill_deploy_arg(train)
    train.add_argument("--temperature", type=float, default=1.15, help="dream temperature tau (paper: 1.15)")
    train.add_argument("--dream-cap", type=int, default=1000, help="dream step cap for envs without a preset")
    train.add_argument("--skill", type=int, help="TakeCover Doom skill 1-5 (default 4)")
    train.add_argument("--frame-cap", type=int, help="real episode cap (TakeCover: frames, default 2100)")
    add_view_args(train)
    train.add_argument("--z-size", type=int)
    train.add_argument("--rnn-size", type=int)
    train.add_argument("--num-heads", type=int, default=1, help="M ensemble size (>= 2 for pessimism/disagreement)")
    train.add_argument("--done-bias-init", type=float, help="initial done-logit bias (a prior on deaths, e.g. -5)")
    train.add_argument(
        "--vae-epochs",
        type=float,
        default=1.0,
        help="V passes over the replay per iteration (0: V frozen after the first fit's --vae-warmup-epochs; a "
        "resumed run's V stays as restored, and only new episodes are encoded)",
    )
    train.add_argument("--vae-warmup-epochs", type=float, default=0.0, help="extra V passes in the first iteration")
    train.add_argument(
        "--mdn-epochs", type=float, default=10.0, help="M passes over the replay per iteration, counted in transitions"
    )
    train.add_argument("--seq-len", type=int, default=128, help="M's training window length in steps")
    train.add_argument(
        "--fit-epochs-over",
        default="replay",
        help="what V's and M's epochs count: replay (the whole replay; fits grow with it) | new (this iteration's "
        "new steps, drawn from the whole replay: a fixed training ratio, every fit costs about the same)",
    )
    train.add_argument(
        "--replay-capacity",
        type=int,
        default=None,
        help="real env steps the replay keeps; when full it drops its oldest episodes (default: the config's "
        "400000; full, with 64x64 frames: ~2.7 GB a checkpoint (lz4-packed), ~15 GB resident while fitting)",
    )
    train.add_argument(
        "--mdn-recency-half-life",
        type=int,
        default=None,
        help="draw M's training windows weighted to recent data: a stored step's weight halves with every this many "
        "real steps collected after it (default: uniform over the replay)",
    )
    _add_vae_focus_args(train)
    train.add_argument("--pessimism", type=float, default=0.0, help="dream reward penalty per unit of disagreement")
    train.add_argument("--done-ensemble", default="mean", help="mean | max (pessimistic) over the members' deaths")
    train.add_argument("--curiosity", type=float, default=0.0, help="explorer's intrinsic-bonus weight (0: off)")
    train.add_argument("--curiosity-bonus", default="disagreement", help="disagreement | novelty | surprise")
    train.add_argument("--surprise-exploration", type=float, default=0.0, help="surprise-driven random holds")
    _add_hold_arg(train)
    train.add_argument("--guard", action="store_true", help="exploit guard: react to a large dream-real gap")
    train.add_argument(
        "--done-mode", default="threshold", help="dream deaths: threshold (paper, p > 0.5) | sample | expected"
    )
    train.add_argument(
        "--calibrate-deaths",
        nargs="?",
        const="behaviour",
        default=False,
        choices=CALIBRATION_ANCHORS,
        help="after each fit, offset M's done logits so the dream is as deadly as the real game for an anchor "
        "policy: 'behaviour' (the default when the flag is given alone): the random-hold collection policy's real "
        "survival; 'policy': the last real-evaluated controller's real return",
    )
    train.add_argument(
        "--done-logit-scale",
        type=_number_or_fit,
        default=1.0,
        help="multiply M's done logits by this before the calibrated offset (> 1: sharper safe/dangerous contrast); "
        "'fit': the scale under which the real deaths are most likely, re-fitted after every fit",
    )
    _add_m_training_args(train)
    train.add_argument(
        "--dream-start",
        default="episode",
        help="episode (paper) | branch (C trains in dreams from real mid-episode states)",
    )
    train.add_argument("--branch-horizon", type=int, default=30, help="dream steps per branched rollout")
    train.add_argument("--branch-focus", type=float, default=0.0, help="share of branched dreams started near a death")
    train.add_argument("--num-env-runners", type=int, default=0)
    train.add_argument("--num-envs-per-env-runner", type=int, default=8)
    train.add_argument("--num-learners", type=int, default=0)
    train.add_argument("--num-gpus-per-learner", type=float, default=0)
    train.add_argument("--num-cpus", type=int, default=0, help="CPUs for a local Ray (0: all)")
    train.add_argument(
        "--resume",
        help="an RLlib checkpoint folder to continue from (replay, models, CMA-ES state): e.g. <out>/checkpoint",
    )
    train.add_argument(
        "--keep-agents",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep every iteration's agent (its RLModule and world_model.pt, ~60 MB for TakeCover, no replay) in "
        "OUT/agents/iteration_NNN, to play any of them again later (benchmarks/dream_planning.py --checkpoint "
        "OUT/agents/iteration_NNN/agent); OUT/checkpoint holds only the last iteration's whole run",
    )
    _add_real_z_arg(train, "as --mdn-latents")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a WorldModels checkpoint on the real env")
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint folder written by `train`")
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--num-cpus", type=int, default=0)
    _add_plan_args(evaluate, default=None)
    _add_agent_arg(evaluate)
    _add_real_z_arg(evaluate, "as the checkpoint's agent")
    _add_precision_arg(evaluate, None, "as the checkpoint's config")
    evaluate.set_defaults(func=cmd_evaluate)

    distill = sub.add_parser(
        "distill",
        help="fit a checkpoint's C to its planner's dreamed choices at the replay's newest real states and write the "
        "agent that deploys it (no new real steps unless --distill-check-episodes)",
    )
    distill.add_argument("--checkpoint", required=True, help="checkpoint folder written by `train`")
    distill.add_argument("--out", required=True, help="output folder: OUT/checkpoint and OUT/world_model.pt")
    distill.add_argument("--states", type=int, default=16000, help="real states the planner labels")
    distill.add_argument(
        "--distill-every", type=int, default=0, help="every n-th state of an episode (0: the planner's interval)"
    )
    distill.add_argument("--distill-epochs", type=int, default=200, help="Adam's passes over the labelled states")
    _add_distill_deploy_arg(distill)
    distill.add_argument(
        "--eval-episodes", type=int, default=0, help="then evaluate the distilled agent on this many real episodes"
    )
    distill.add_argument("--num-cpus", type=int, default=0)
    _add_plan_args(distill, default=None)
    _add_agent_arg(distill)
    _add_real_z_arg(distill, "as the checkpoint's agent (the planner labels states read this way)")
    _add_precision_arg(
        distill, None, "as the checkpoint's config (a setting for this run: the written agent keeps the checkpoint's)"
    )
    distill.set_defaults(func=cmd_distill)

    fit = sub.add_parser("fit", help="collect real episodes, fit V and M, write checkpoint and dream GIFs")
    fit.add_argument("--env", default="takecover", help="takecover | carracing | any gymnasium id")
    fit.add_argument("--out", default="runs/world_model", help="output folder")
    fit.add_argument("--episodes", type=int, default=100, help="real episodes to collect (paper: 10,000)")
    fit.add_argument("--data-dir", help="reuse/extend episodes stored here (default: OUT/episodes)")
    fit.add_argument("--min-length", type=int, default=0, help="drop shorter episodes (paper's Doom code: 100)")
    _add_hold_arg(fit)
    fit.add_argument(
        "--skill", type=int, help="TakeCover Doom skill 1-5 (default 4: reproduces the paper's random baseline)"
    )
    fit.add_argument("--frame-cap", type=int, help="episode cap (TakeCover: frames, default 2100)")
    add_view_args(fit)
    fit.add_argument(
        "--damage-penalty",
        type=float,
        default=0.0,
        help="TakeCover: reward M learns = 1 per frame - this x health lost (0: the game's reward)",
    )
    fit.add_argument("--num-heads", type=int, help="M ensemble size (default 1)")
    fit.add_argument("--done-bias-init", type=float, help="initial done-logit bias (a prior on deaths, e.g. -5)")
    fit.add_argument("--z-size", type=int, help="V latent size (preset: takecover 64, carracing 32, else 32)")
    fit.add_argument("--rnn-size", type=int, help="M LSTM units (preset: takecover 512, carracing 256, else 256)")
    fit.add_argument("--mixtures", type=int, help="Gaussian mixtures per latent dim (default 5, paper)")
    fit.add_argument(
        "--init-from",
        help="start from this world-model checkpoint instead of a fresh one (fine-tuning; with --vae-epochs 0 only M "
        "trains); its architecture is kept",
    )
    fit.add_argument(
        "--fresh-m",
        action="store_true",
        help="with --init-from: keep its V but start M from new random weights (seeded by --seed), e.g. a second, "
        "independently fitted M on the same V (benchmarks/cross_dream.py)",
    )
    fit.add_argument("--vae-epochs", type=float, default=1.0, help="passes of V over all frames (may be fractional)")
    fit.add_argument("--vae-batch-size", type=int, default=100)
    fit.add_argument("--vae-lr", type=float, default=1e-3, help="V learning rate (see WorldModelTrainer)")
    _add_vae_focus_args(fit)
    fit.add_argument("--mdn-epochs", type=int, default=20)
    fit.add_argument("--mdn-batch-size", type=int, default=32, help="episodes per M batch")
    fit.add_argument("--mdn-lr", type=float, default=1e-3)
    fit.add_argument("--seq-len", type=int, default=500, help="truncated-BPTT length (paper code: 500)")
    _add_m_training_args(fit)
    fit.add_argument("--temperature", type=float, default=1.15, help="dream temperature for the GIFs")
    fit.add_argument("--video-steps", type=int, default=300)
    fit.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    fit.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=cmd_fit)

    dream = sub.add_parser("dream", help="write a GIF of dreams from a world-model checkpoint")
    dream.add_argument("--checkpoint", required=True)
    dream.add_argument("--out", default="dreams.gif")
    dream.add_argument("--num", type=int, default=4)
    dream.add_argument("--steps", type=int, default=300)
    dream.add_argument("--temperature", type=float, default=1.15)
    dream.add_argument("--device", default="cpu")
    dream.add_argument("--seed", type=int, default=0)
    dream.set_defaults(func=cmd_dream)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rllib-worldmodel` command."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:  # configuration errors: say what to fix, no traceback
        if os.environ.get("RLLIB_WORLDMODEL_DEBUG"):
            raise
        print(f"rllib-worldmodel {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
