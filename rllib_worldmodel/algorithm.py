"""The `WorldModels` RLlib algorithm: collect real -> fit V and M -> train C only in the dream -> evaluate for real.

One `training_step` runs four named phases:
1. `_collect_real`: RLlib EnvRunners play the real env with the agent module (V + M + C, stateful). The first
   `random_iterations` act with random holds (`random_hold_steps`, paper: actions held 1-10 steps); later ones act
   with the controller plus exploration (random holds, epsilon, surprise-driven holds), so new data comes from
   where the policy goes; with curiosity on, a share of the episodes is played by the EXPLORER, a second controller
   trained in the dream on extrinsic + intrinsic reward. Episodes from every round go into RLlib's EpisodeReplayBuffer.
2. `_fit_world_model`: the LearnerGroup updates V on frames, then M on latent windows (exact LSTM state from each
   window's episode prefix; state resets at episode starts).
3. `_train_controller`: CMA-ES, where every generation's population x rollouts is one batched DreamSimulator
   run (paper mode), or an RLlib algorithm (PPO by default) on DreamVectorEnv EnvRunners (`dream_rllib.py`).
   tau, pessimism and curiosity follow their schedules (plus the exploit guard's offsets).
   Dream steps are counted under `dream/...`, never as real env steps.
4. Evaluation (RLlib's evaluation EnvRunners on the REAL env, via `evaluation.evaluate_real_and_dream`): real return
   mean/std/min/max over N episodes, the same controller's dream return, and `dream_real_gap`.
Weights flow the RLlib way: the Learner's module state is synced to (evaluation) EnvRunners.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.env import INPUT_ENV_SINGLE_SPACES
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, LEARNER_RESULTS
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger
from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

from rllib_worldmodel.calibration import (
    calibrate_done_offset,
    controller_dream_return,
    fit_done_logit_scale,
    random_hold_survival,
)
from rllib_worldmodel.cma_es import CMAESTrainer, evaluate_population
from rllib_worldmodel.config import WorldModelsConfig
from rllib_worldmodel.data import (
    pack_replay_state,
    recency_weights,
    steps_stored_after,
    unpack_replay_state,
    write_folder_atomically,
)
from rllib_worldmodel.distill import distill_planner, DistillSettings
from rllib_worldmodel.done_refit import EncodedEpisode, refit_done_on_dreams
from rllib_worldmodel.dream import doomed_branch_points, DreamSettings, DreamSimulator
from rllib_worldmodel.dream_rllib import DreamRLlibTrainer
from rllib_worldmodel.evaluation import evaluate_real_and_dream, evaluation_episodes, sample_episodes
from rllib_worldmodel.models.controller import ControllerInput
from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel
from rllib_worldmodel.planning import (
    check_count,
    planner_dream_returns,
    PlanSettings,
    rollouts_index,
)
from rllib_worldmodel.precision import check_precision
from rllib_worldmodel.rl_module import check_real_z
from rllib_worldmodel.schedules import Schedule
from rllib_worldmodel.trainer import latent_logvar

logger = logging.getLogger(__name__)


def _peek(metrics: MetricsLogger, key: str) -> Any:
    """The metric's value, or None where it was never logged (RLlib 2.60's `peek(key, default=...)` raises a
    KeyError for a missing key that holds a "/")."""
    try:
        return metrics.peek(key)
    except KeyError:
        return None


def _set_runner_module_state(env_runner, update: dict[str, Any]) -> None:
    """Load a (partial) agent-module state on one EnvRunner; a local runner beside remote ones has no module."""
    module = getattr(env_runner, "module", None)
    if isinstance(module, MultiRLModule):
        module = module[DEFAULT_MODULE_ID]
    if module is not None:  # load_state_dict: RLlib's set_state refuses partial states on inference-only modules
        module.load_state_dict({k: torch.as_tensor(v) for k, v in update.items()}, strict=False)


def _warn_if_replay_outgrows_memory(capacity: int, observation_space: Any) -> bool:
    """Warn, before anything is collected, when a full replay of `capacity` real steps would not fit this machine.

    The replay holds every observation in memory, and a run that outgrows the memory is killed mid-iteration (the
    last checkpoint survives, the iteration in flight does not). Measured on TakeCover (64x64 frames): the process
    held about twice the replay's frames after a restore and three times at a fit's peak, so the warning fires when
    twice the frames exceed the machine's total memory. Only a warning: a run may stop long before the replay is full.

    Args:
        capacity: `replay_capacity`, in real env steps.
        observation_space: One env step's observation space (a space without a fixed shape is not estimated).

    Returns:
        Whether it warned.
    """
    shape, dtype = getattr(observation_space, "shape", None), getattr(observation_space, "dtype", None)
    if not shape or dtype is None:
        return False
    try:  # POSIX; elsewhere the machine's memory is not read and nothing is estimated
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return False
    frames = capacity * math.prod(shape) * np.dtype(dtype).itemsize
    if 2 * frames <= total:
        return False
    logger.warning(
        "replay_capacity=%d real steps of %s %s observations is %.1f GB of frames when full; this machine has %.1f GB "
        "and a run holds about 2-3x the frames (measured). Lower replay_capacity (`.world_model(replay_capacity=...)`, "
        "CLI --replay-capacity) to what the run will collect, or run on a machine with more memory.",
        capacity,
        "x".join(map(str, shape)),
        np.dtype(dtype).name,
        frames / 1e9,
        total / 1e9,
    )
    return True


class WorldModels(Algorithm):
    """World Models (Ha & Schmidhuber 2018) on RLlib's new API stack. Configure with `WorldModelsConfig`."""

    # One training iteration, in order; each phase is the method `_<name>` and is timed as `timers/<name>`.
    PHASES = ("collect_real", "fit_world_model", "train_controller")

    @classmethod
    def get_default_config(cls) -> WorldModelsConfig:
        return WorldModelsConfig()

    def setup(self, config: WorldModelsConfig) -> None:
        super().setup(config)
        self.replay = EpisodeReplayBuffer(capacity=self.config.replay_capacity, batch_size_B=1, batch_length_T=1)
        self._warned_eviction = False
        spaces = self.env_runner_group.get_spaces()
        _warn_if_replay_outgrows_memory(self.config.replay_capacity, spaces[INPUT_ENV_SINGLE_SPACES][0])
        # A local copy of the agent module: dreams run here (on `dream_device`) from the Learner's latest weights.
        self.local_module = self.config.get_rl_module_spec(spaces=spaces, inference_only=False).build()
        # ... starting as the Learner's (built with its own random init): CMA-ES starts from this C, and the real
        # evaluation plays the Learner's, so before the first search both must be the same agent.
        self._sync_local_module()
        self.dream_device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu")
            if self.config.dream_device == "auto"
            else self.config.dream_device
        )
        self.local_module.to(self.dream_device)
        self.cma = CMAESTrainer(
            self.local_module.controller,
            popsize=self.config.cma_population,
            rollouts=self.config.cma_rollouts,
            sigma_init=self.config.cma_sigma_init,
            seed=self.config.seed or 0,
            common_noise=self.config.cma_common_noise,
            action_repeat=self.config.action_repeat,
        )
        c = self.config
        self.schedules = {
            name: Schedule(getattr(c, name), name, strict=name == "temperature")
            for name in ("temperature", "pessimism", "curiosity")
        }
        # The explorer: a second controller, trained in the dream on extrinsic + curiosity * bonus (Plan2Explore's
        # exploration policy); it only ever collects real data, it is never deployed or evaluated as the agent.
        self.explorer = None
        if self.schedules["curiosity"].max_value() > 0:
            self.explorer = CMAESTrainer(
                copy.deepcopy(self.local_module.controller),
                popsize=c.cma_population,
                rollouts=c.cma_rollouts,
                sigma_init=c.cma_sigma_init,
                seed=(c.seed or 0) + 1,
                prefix="dream/explorer_",
                common_noise=c.cma_common_noise,
                action_repeat=c.action_repeat,
            )
        self.guard_state = {"temperature_offset": 0.0, "pessimism_offset": 0.0, "extra_episodes": 0, "triggers": 0}
        self._novelty_ref: torch.Tensor | None = None
        self.done_logit_offset = 0.0
        # the dream's done-logit scale: the configured number, or (done_logit_scale="fit") fitted after every fit
        self.done_logit_scale = 1.0 if self.config.done_logit_scale == "fit" else float(self.config.done_logit_scale)
        self._new_steps = 0  # real env steps collected in this iteration (`fit_epochs_over="new"`)
        self._behaviour_lengths: list[int] = []  # real lengths of the random-hold (behaviour) episodes
        # The last controller evaluated on the real env and its real returns: calibrate_deaths="policy"'s anchor.
        self._policy_anchor: dict[str, Any] | None = None
        self.dream_trainer = None
        if self.config.controller_trainer == "rllib":
            from ray.rllib.algorithms.ppo import PPOConfig

            self.dream_trainer = DreamRLlibTrainer(
                self.config.dream_algo_config or PPOConfig(),
                self.dream_settings(),
                controller_hidden=self.config.controller_hidden,
                num_envs=self.config.dream_num_envs,
                workdir=self.logdir,
            )
        self.dream_score: dict[str, float] = {}
        self.plan_dream_episodes = self.config.plan_dream_episodes  # `set_planning` may change it after training
        # Per stored episode, refreshed after every V update: (mu, logvar, encoded actions, rewards, done targets).
        self._latents: dict[str, tuple[torch.Tensor, ...]] = {}
        self._explorer_params: np.ndarray | None = None
        self._rng = np.random.default_rng(self.config.seed)
        self._torch_gen = torch.Generator().manual_seed(self.config.seed or 0)  # M's latent samples, reproducible

    @property
    def world_model(self) -> WorldModel:
        """The latest world model (synced from the Learner after every fit)."""
        return self.local_module.world_model

    # ------------------------------------------------------------------------------------------- phases
    def training_step(self) -> None:
        random_phase = self.iteration < self.config.random_iterations
        self._set_agent_state(random_only=random_phase)
        if self.config.calibrate_deaths == "policy" and self._policy_anchor is None and not random_phase:
            self._measure_policy_anchor()
        for name in self.PHASES:
            t0 = time.perf_counter()
            # window=1: this iteration's seconds (RLlib's default EMA would report the first iteration's for long)
            with self.metrics.log_time(("timers", name), reduce="mean", window=1):
                getattr(self, f"_{name}")()
            logger.info("iteration %d: %s took %.1f s", self.iteration + 1, name, time.perf_counter() - t0)
        self.metrics.log_value("real/acted_randomly", float(random_phase), window=1)

    def _set_agent_state(
        self,
        random_only: bool | None = None,
        controller: dict | None = None,
        surprise_baseline: float | None = None,
        plan: dict[str, float] | None = None,
        controller_every: int = 0,
        real_z: str | None = None,
    ) -> None:
        """Change the Learner's module (random-only flag, controller weights, surprise baseline, planning buffers
        `plan_<name>`, how real frames are read) and sync it to the EnvRunners. New controller weights come with
        the interval C decides at when it acts alone, `controller_every`: 0 (C's `action_repeat`, where CMA-ES
        searches it) unless given."""
        update = {f"plan_{k}": torch.tensor(float(v)) for k, v in (plan or {}).items()}
        if random_only is not None:
            update["random_only"] = torch.tensor(1.0 if random_only else 0.0)
        if real_z is not None:
            update["real_z_mean"] = torch.tensor(float(real_z == "mean"))
        if surprise_baseline is not None:
            update["surprise_baseline"] = torch.tensor(float(surprise_baseline))
        if controller is not None:
            update.update({f"controller.{k}": v for k, v in controller.items()})
            update["controller_every"] = torch.tensor(float(controller_every))
        self._push_module_state(update)

    def _push_module_state(self, update: dict[str, Any]) -> None:
        """Set `update` (module state: some or all of its parameters and buffers) on the Learner's module, the local
        module and every EnvRunner's, training and evaluation alike."""
        self.learner_group.set_weights({DEFAULT_MODULE_ID: update})
        self.local_module.set_state(update)
        # The evaluation EnvRunners too: they play the next real evaluation (`evaluate_real` after `set_planning`).
        for group in (self.env_runner_group, self.eval_env_runner_group):
            if group is None:
                continue
            # New world-model weights (the Learner's seq no moved since the last sync) go the RLlib way ...
            group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)
            # ... but an EnvRunner skips any sync whose WEIGHTS_SEQ_NO is not newer than its own, and set_weights
            # does not bump it: without this push, a second change between two Learner updates (the explorer's
            # weights, the end of the random phase, `set_planning` after an evaluation) never reaches the runners,
            # which then act with stale weights.
            group.foreach_env_runner(lambda er: _set_runner_module_state(er, update), local_env_runner=True)

    def _report_evictions(self, evicted: int) -> None:
        """Count the real steps the full replay dropped (its oldest whole episodes) and say so once per run: V and M
        are fitted on what the replay keeps, so a long run forgets its first rounds unless `replay_capacity`
        holds them all."""
        self.metrics.log_value("real/replay_evicted_env_steps_lifetime", evicted, reduce="lifetime_sum")
        if evicted > 0 and not self._warned_eviction:
            self._warned_eviction = True
            logger.warning(
                "The replay is full (replay_capacity=%d real steps) and dropped its oldest %d: V and M are fitted "
                "on the newest %d from now on. To keep every round's data, raise replay_capacity "
                "(`.world_model(replay_capacity=...)`, CLI --replay-capacity; 12 KiB a 64x64 frame, in memory and "
                "in every checkpoint).",
                self.config.replay_capacity,
                evicted,
                self.replay.get_num_timesteps(),
            )

    def _warn_if_restored_replay_outgrows_capacity(self) -> None:
        """Say at restore, before anything is lost, when the checkpoint's replay holds more real steps than this run's
        `replay_capacity`: the buffer's state does not carry its capacity, so the restored steps all stay until the
        next collection, which then drops the oldest of them for good (e.g. a chain resumed without the capacity it
        was started with)."""
        held, capacity = self.replay.get_num_timesteps(), self.config.replay_capacity
        if held > capacity:
            logger.warning(
                "The restored replay holds %d real steps, more than replay_capacity=%d: the next collection drops "
                "its oldest %d or more for good. To keep them, resume with replay_capacity >= %d "
                "(`.world_model(replay_capacity=...)`, CLI --replay-capacity).",
                held,
                capacity,
                held - capacity,
                held,
            )

    def _controller_state(self, flat: np.ndarray) -> dict[str, torch.Tensor]:
        ctrl = copy.deepcopy(self.local_module.controller).cpu()
        ctrl.set_flat(flat)
        return ctrl.state_dict()

    def _deployed_controller(self) -> dict[str, Any]:
        """The deployed C as `_set_agent_state` keywords (its weights and the interval it decides at alone), to put
        back after another C has acted. Cloned: state_dict tensors alias the parameters the next C overwrites."""
        module = self.local_module
        return {
            "controller": {k: v.detach().cpu().clone() for k, v in module.controller.state_dict().items()},
            "controller_every": int(module.controller_every),
        }

    def _searched_controller(self, who: str) -> dict[str, torch.Tensor]:
        """CMA-ES's mean as C's weights (the searched C, which decides at C's action_repeat); `who` names the caller
        in the error a trainer without a mean gets."""
        if self.dream_trainer is not None:
            raise ValueError(
                f"{who} needs trainer='cma': the searched C is CMA-ES's mean (the RLlib dream trainer has none)."
            )
        return self._controller_state(self.cma.mean_params())

    def _sample_real(self, n: int) -> list:
        """`n` real episodes from the EnvRunners with the module as it is now (exploration on): the first `n` to
        start, each whole (`evaluation.first_started_episodes`). Every env step it took is counted in
        `real/num_env_steps_sampled_lifetime`, the dropped ones too."""
        episodes, steps, runner_metrics = sample_episodes(self.env_runner_group, n, explore=True)
        self.metrics.aggregate(runner_metrics, key=ENV_RUNNER_RESULTS)
        self.metrics.log_value("real/num_env_steps_sampled_lifetime", steps, reduce="lifetime_sum")
        return episodes

    def _collect_real(self) -> None:
        c = self.config
        n = c.real_episodes_per_iteration + self.guard_state["extra_episodes"]
        self.guard_state["extra_episodes"] = 0
        n_explorer = 0
        if self.iteration >= c.random_iterations and self._explorer_params is not None:
            n_explorer = int(round(c.real_episodes_per_iteration * c.explorer_fraction))
        episodes = []
        if n_explorer:
            deployed = self._deployed_controller()
            self._set_agent_state(controller=self._controller_state(self._explorer_params))
            explored = self._sample_real(n_explorer)
            self._set_agent_state(**deployed)
            self.metrics.log_value("real/explorer_episodes", len(explored), window=1)
            self.metrics.log_value(
                "real/explorer_episode_len_mean", float(np.mean([len(ep) for ep in explored])), window=1
            )
            episodes += explored
        if n - n_explorer > 0:
            episodes += self._sample_real(n - n_explorer)
        kept_before = self.replay.get_num_timesteps()
        self.replay.add(episodes)
        if self.iteration < c.random_iterations:
            self._behaviour_lengths += [len(ep) for ep in episodes if ep.is_done]
        steps = sum(len(ep) for ep in episodes)
        self._report_evictions(kept_before + steps - self.replay.get_num_timesteps())
        self._new_steps = steps
        lengths = [len(ep) for ep in episodes]
        self.metrics.log_value("real/num_env_steps_collected_lifetime", steps, reduce="lifetime_sum")
        self.metrics.log_value("real/collect_episode_len_mean", float(np.mean(lengths)), window=1)
        self.metrics.log_value("real/replay_num_env_steps", self.replay.get_num_timesteps(), window=1)

    def _update(self, columns: dict[str, np.ndarray]) -> None:
        """One gradient step on the LearnerGroup (the batch is split across learners along its first axis).

        One call per minibatch: RLlib's minibatch iterator needs SEQ_LENS for stateful modules, and these batches
        are not RLlib sequences (V batches are single frames, M batches carry their own prefixes and masks).
        """
        batch = MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(columns)}, env_steps=len(next(iter(columns.values()))))
        self.metrics.aggregate(self.learner_group.update(batch=batch, num_epochs=1), key=LEARNER_RESULTS)

    def _fit_world_model(self) -> None:
        cfg = self.config
        # What the epochs count: the whole replay, or this iteration's new steps (a fixed training ratio). Either way
        # the samples are drawn uniformly from the whole replay.
        frames = self.replay.get_num_timesteps() if cfg.fit_epochs_over == "replay" else self._new_steps
        # V: uniformly sampled frames, several minibatches per LearnerGroup call.
        epochs = cfg.vae_epochs_per_iteration + (cfg.vae_warmup_epochs if self.iteration == 0 else 0.0)
        n_vae = math.ceil(epochs * frames / cfg.vae_batch_size)  # 0: V frozen (vae_epochs_per_iteration=0)
        t0 = time.perf_counter()
        for _ in range(n_vae):
            self._update(
                {"vae_obs": self.replay.sample(batch_size_B=cfg.vae_batch_size, batch_length_T=1)["obs"][:, 0]}
            )
        if n_vae:
            self._sync_local_module()
        # A frozen V gives the stored episodes the latents they have: encode only the new ones (most of this phase's
        # time on a large replay: 325k frames took ~100 s on 2 CPU cores).
        self._encode_replay(only_new=n_vae == 0)
        t0 = self._log_seconds("world_model/vae_s", t0)  # V's updates and the replay's encoding
        # M: latent windows with their episode prefix (exact LSTM state; resets at episode starts). An epoch counts
        # the transitions the windows really hold: a window starts at a uniform position, so it is often cut by the
        # episode's end (random-hold TakeCover at 4 tics a step: 66-step episodes, windows of ~33 of 128 steps),
        # and counting windows as full would train M on a quarter of the epochs asked for.
        target, n_mdn, n_transitions = cfg.mdn_epochs_per_iteration * frames, 0, 0
        while n_mdn == 0 or n_transitions < target:
            batch = self._mdn_batch(cfg.mdn_batch_size, cfg.mdn_seq_len)
            n_transitions += int(batch["mask"].sum())
            n_mdn += 1
            self._update(batch)
        self._sync_local_module()
        t0 = self._log_seconds("world_model/mdn_s", t0)
        if cfg.done_refit_horizon > 0:
            self._refit_done_head()
            t0 = self._log_seconds("world_model/done_refit_s", t0)
        if cfg.dream_start == "branch":
            self._store_branch_points()
        if cfg.surprise_exploration > 0:  # surprise is measured against what M now achieves on its training data
            nll = self.metrics.peek((LEARNER_RESULTS, DEFAULT_MODULE_ID, "world_model/mdn_nll"), default=None)
            if nll is not None:
                self._set_agent_state(surprise_baseline=float(nll))
        if cfg.done_logit_scale == "fit":
            self._fit_done_logit_scale()
        if cfg.calibrate_deaths:
            t0 = time.perf_counter()
            self._calibrate_deaths()
            self._log_seconds("world_model/calibration_s", t0)
        self.metrics.log_value("world_model/vae_updates", n_vae, window=1)
        self.metrics.log_value("world_model/mdn_updates", n_mdn, window=1)
        self.metrics.log_value("world_model/mdn_transitions", n_transitions, window=1)
        self.metrics.log_value("world_model/mdn_sample_age_steps", self._mdn_sample_age(), window=1)

    def _mdn_episode_draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored episodes' lengths, recency weights (`mdn_recency_half_life`) and the probability that
        `_mdn_batch` draws each for a window (length x weight, normalized), oldest first."""
        lengths = np.array([len(ep) for ep in self.replay.episodes], dtype=float)
        recency = recency_weights(lengths, self.config.mdn_recency_half_life)
        p = lengths * recency
        return lengths, recency, p / p.sum()

    def _mdn_sample_age(self) -> float:
        """Mean age (real steps stored after it) of a step in M's windows as `_mdn_batch` draws them: half the
        replay when uniform, less under `mdn_recency_half_life` (death windows not counted)."""
        lengths, _, p = self._mdn_episode_draw()
        return float(np.sum(p * (steps_stored_after(lengths) + (lengths - 1) / 2)))

    def _log_seconds(self, key: str, since: float) -> float:
        """Log the seconds since `since` under `key` (this iteration's, window 1); returns now."""
        now = time.perf_counter()
        self.metrics.log_value(key, now - since, window=1)
        return now

    def _calibrate_deaths(self) -> None:
        """Offset M's done logits so the dream is as deadly as the real env for the anchor policy
        (`config.calibrate_deaths`): the last real-evaluated controller ("policy", once there is one) or the
        random-hold collection policy. Kept as it was while neither has a real measurement."""
        cfg, settings = self.config, self.dream_settings(scoring=True)
        seed, hold = (cfg.seed or 0) + 11, tuple(cfg.random_hold_steps)
        anchor = self._policy_anchor if cfg.calibrate_deaths == "policy" else None
        if anchor is not None:
            controller = self.local_module.controller
            target = anchor["real_return_mean"]

            def dream_score(s: DreamSettings) -> float:
                return controller_dream_return(
                    self.world_model, s, controller, anchor["params"], seed=seed, action_repeat=anchor["action_repeat"]
                )

            self.done_logit_offset, score = calibrate_done_offset(
                self.world_model, settings, target, seed=seed, dream_score=dream_score
            )
            self.metrics.log_value("dream/calibrated_policy_return", score, window=1)
            self.metrics.log_value("real/policy_return_mean", target, window=1)
            if "real_return_std" in anchor:  # not kept by the first checkpoints with an anchor
                self.metrics.log_value("real/policy_return_std", anchor["real_return_std"], window=1)
            if self._behaviour_lengths:  # what the policy's anchor makes of the random holds' deaths
                calibrated = dataclasses.replace(settings, done_logit_offset=self.done_logit_offset)
                survival = float(random_hold_survival(self.world_model, calibrated, hold=hold, seed=seed).mean())
                self.metrics.log_value("dream/behaviour_survival", survival, window=1)
        elif self._behaviour_lengths:
            target = float(np.mean(self._behaviour_lengths))
            self.done_logit_offset, survival = calibrate_done_offset(
                self.world_model, settings, target, seed=seed, hold=hold
            )
            self.metrics.log_value("dream/calibrated_behaviour_survival", survival, window=1)
        else:
            return
        if self._behaviour_lengths:
            self.metrics.log_value("real/behaviour_episode_len_mean", float(np.mean(self._behaviour_lengths)), window=1)
        self.metrics.log_value("dream/calibration_anchor", float(anchor is not None), window=1)
        self.metrics.log_value("dream/done_logit_offset", self.done_logit_offset, window=1)

    def _measure_policy_anchor(self) -> None:
        """Play the deployed controller on the real env without exploration (as an evaluation does) before this
        iteration's fit changes the V and M it reads: the anchor of calibrate_deaths="policy" when the state holds
        no real evaluation of it (a checkpoint from before the option). Its steps are counted as evaluation steps
        are, apart from the collected ones."""
        _, returns, _ = evaluation_episodes(self._synced_evaluation_group(), self.config.evaluation_duration)
        self.record_real_evaluation(returns)
        self.metrics.log_value("real/policy_anchor_measured_episodes", len(returns), window=1)
        logger.info("calibration anchor measured: %s", {k: v for k, v in self._policy_anchor.items() if k != "params"})

    def record_real_evaluation(self, returns: np.ndarray) -> None:
        """Remember the deployed controller's real returns (called by every real evaluation): the anchor of
        `calibrate_deaths="policy"` at the next fit, whatever CMA-ES deploys in between.

        Args:
            returns: The real episodes' returns, played by the controller deployed now.
        """
        if self.local_module.plan_settings().enabled:
            return  # a planning agent's score is the planner's, not an anchor for C's own dream return
        self._policy_anchor = {
            "params": self.local_module.controller.get_flat().copy(),
            "real_return_mean": float(np.mean(returns)),
            "real_return_std": float(np.std(returns)),
            "num_episodes": len(returns),
            # played in the dream as it was in the game (a fitted C at the planner's interval), even if a resumed
            # run changes the repeat
            "action_repeat": self.local_module.controller_interval(),
        }

    def _whole_episodes(self) -> list[EncodedEpisode]:
        """Every whole stored episode (not cut by the replay's capacity), encoded: what branch points and the done
        refit read."""
        return [
            (*self._latents[ep.id_][:3], bool(ep.is_terminated))
            for ep in self.replay.episodes
            if ep.t_started == 0 and ep.id_ in self._latents
        ]

    def _fit_done_logit_scale(self) -> None:
        """done_logit_scale="fit": the scale under which the replay's real deaths are most likely while M reads the
        real frames (`calibration.fit_done_logit_scale`); kept as it was when the replay holds no death yet."""
        episodes = self._whole_episodes()
        if not any(ep[3] for ep in episodes):
            return
        fit = fit_done_logit_scale(self.world_model, episodes, self.dream_settings(scoring=True))
        self.done_logit_scale = fit["scale"]
        self.metrics.log_value("dream/done_logit_scale", fit["scale"], window=1)
        for key in ("nll_as_fitted", "nll_offset_only", "nll"):
            self.metrics.log_value(f"world_model/done_scale_{key}", fit[key], window=1)

    def _refit_done_head(self) -> None:
        """Refit M's done head on dreams from the replay's real states (`done_refit`) and give the learners the
        refitted weights, so checkpoints hold them and the next fit starts from them."""
        c = self.config
        metrics = refit_done_on_dreams(
            self.world_model,
            self._whole_episodes(),
            horizon=c.done_refit_horizon,
            every=c.done_refit_every,
            temperature=self.current_dream_knobs()["temperature"],
            steps=c.done_refit_steps,
            max_starts=c.done_refit_max_starts,
            seed=(c.seed or 0) + 7919 * self.iteration,
        )
        for k, v in metrics.items():
            self.metrics.log_value(k, v, window=1)
        if not metrics["world_model/done_refit_skipped"]:
            self.learner_group.set_weights({DEFAULT_MODULE_ID: self.local_module.get_state()})

    def _store_branch_points(self) -> None:
        """Every `branch_every`-th state of every whole stored episode as a dream branch point, with the current M."""
        n = self.world_model.store_branch_points(self._whole_episodes(), every=self.config.branch_every)
        self.metrics.log_value("dream/branch_points", n, window=1)
        doomed = doomed_branch_points(self.world_model, self.config.branch_horizon).numel()
        self.metrics.log_value("dream/branch_points_doomed", doomed, window=1)

    def _sync_local_module(self) -> None:
        state = self.learner_group.get_weights(module_ids=[DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
        self.local_module.set_state(state)

    @torch.no_grad()
    def _encode_replay(self, only_new: bool = False) -> None:
        """V's posterior for every stored frame; also refreshes the dream's initial states (episode starts).

        Args:
            only_new: Keep the latents of episodes encoded before (V unchanged since) and encode the others.
        """
        wm, dev, latents = self.world_model, self.dream_device, {}
        known = self._latents if only_new else {}
        for ep in self.replay.episodes:
            if ep.id_ in known and len(known[ep.id_][0]) == len(ep) + 1:  # one latent per observation
                latents[ep.id_] = known[ep.id_]
                continue
            mu, logvar = wm.encode_frames(np.asarray(ep.get_observations()))
            done = torch.zeros(len(ep))
            done[-1] = float(ep.is_terminated)
            actions = wm.encode_action(torch.as_tensor(np.asarray(ep.get_actions()), device=dev)).cpu()
            rewards = torch.as_tensor(np.asarray(ep.get_rewards()), dtype=torch.float32)
            logvar = latent_logvar(logvar, self.config.mdn_latents)  # points when M reads means
            latents[ep.id_] = (mu, logvar, actions, rewards, done)
        self._latents = latents
        recent = torch.cat([latents[ep.id_][0] for ep in list(self.replay.episodes)[-200:]])
        self._novelty_ref = recent[-self.config.novelty_reference_size :].to(dev)
        starts = [latents[ep.id_] for ep in self.replay.episodes if ep.t_started == 0]
        wm.set_initial_states(torch.stack([lat[0][0] for lat in starts]), torch.stack([lat[1][0] for lat in starts]))

    def _mdn_batch(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        """Windows of up to `seq_len` transitions at uniformly random positions, with their episode prefixes; the
        batch is padded to its longest window, not to `seq_len`. Episodes are drawn by their length, times their
        recency weight under `mdn_recency_half_life` (`data.recency_weights`)."""
        episodes = self.replay.episodes
        _, recency, p = self._mdn_episode_draw()
        picks = self._rng.choice(len(episodes), size=batch_size, p=p)
        z_size = self.world_model.config.z_size
        rows = []
        frac = self.config.death_window_fraction
        deaths = np.array([i for i, ep in enumerate(episodes) if ep.is_terminated] if frac > 0 else [], np.int64)
        # Unweighted, deaths are drawn with `integers` as before the option, so such runs keep their random stream.
        weighted = bool(len(deaths)) and self.config.mdn_recency_half_life is not None
        p_death = recency[deaths] / recency[deaths].sum() if weighted else None
        for i in picks:
            to_death = bool(len(deaths)) and self._rng.random() < frac
            if to_death:  # a window that contains the death (the done head's rare positives)
                j = self._rng.choice(len(deaths), p=p_death) if weighted else self._rng.integers(len(deaths))
                i = int(deaths[j])
            ep = episodes[i]
            mu, logvar, a, r, done = self._latents[ep.id_]
            t = len(ep)
            o = int(self._rng.integers(max(0, t - seq_len), t)) if to_death else int(self._rng.integers(0, t))
            w = min(seq_len, t - o)
            mu, logvar = mu[: o + w + 1], logvar[: o + w + 1]  # only what the prefix and window use
            z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=self._torch_gen)  # paper: z ~ V(o)
            rows.append((z, a, r, done, o, w))
        p_max = max(max(o for *_, o, _ in rows), 1)
        # Windows cut by an episode's end are often far shorter than seq_len (66-step random-hold episodes at 4 tics
        # a step against a 500-step seq_len), and the LSTM runs over the padding too.
        t_max = max(w for *_, w in rows)
        a_dim = rows[0][1].shape[-1]
        out = {
            "z_prefix": np.zeros((batch_size, p_max, z_size), np.float32),
            "a_prefix": np.zeros((batch_size, p_max, a_dim), np.float32),
            "prefix_len": np.zeros(batch_size, np.int64),
            "z_in": np.zeros((batch_size, t_max, z_size), np.float32),
            "z_next": np.zeros((batch_size, t_max, z_size), np.float32),
            "a": np.zeros((batch_size, t_max, a_dim), np.float32),
            "r": np.zeros((batch_size, t_max), np.float32),
            "done": np.zeros((batch_size, t_max), np.float32),
            "mask": np.zeros((batch_size, t_max), np.float32),
        }
        for b, (z, a, r, done, o, w) in enumerate(rows):
            out["z_prefix"][b, :o], out["a_prefix"][b, :o], out["prefix_len"][b] = z[:o], a[:o], o
            out["z_in"][b, :w], out["z_next"][b, :w] = z[o : o + w], z[o + 1 : o + 1 + w]
            out["a"][b, :w], out["r"][b, :w], out["done"][b, :w] = a[o : o + w], r[o : o + w], done[o : o + w]
            out["mask"][b, :w] = 1.0
        members = self.world_model.mdn_rnn.num_heads
        if members > 1:  # online bootstrap: each member sees each window Poisson(1) times
            out["member_weights"] = self._rng.poisson(1.0, (batch_size, members)).astype(np.float32)
        if self.config.mdn_closed_loop > 0:  # a column, so it survives the split across learners
            out["closed_loop"] = np.full(batch_size, self.config.mdn_closed_loop, np.float32)
            out["closed_loop_horizon"] = np.full(batch_size, self.config.mdn_closed_loop_horizon, np.int64)
        return out

    def current_dream_knobs(self) -> dict[str, float]:
        """tau, pessimism and curiosity for this iteration: schedules plus the exploit guard's offsets."""
        c, it, g = self.config, self.iteration, self.guard_state
        tau = self.schedules["temperature"].value(it)
        if g["temperature_offset"]:
            tau = max(tau, min(tau + g["temperature_offset"], c.guard_temperature_max))
        pess = self.schedules["pessimism"].value(it)
        if g["pessimism_offset"]:
            pess = max(pess, min(pess + g["pessimism_offset"], c.guard_pessimism_max))
        return {"temperature": tau, "pessimism": pess, "curiosity": self.schedules["curiosity"].value(it)}

    def dream_settings(self, explorer: bool = False, scoring: bool = False) -> DreamSettings:
        """The dream the controller trains in.

        Args:
            explorer: The explorer's dream, with the curiosity bonus and without pessimism.
            scoring: The dream the controller is scored in (its dream score, `dream_real_gap`) and deaths are
                calibrated in: whole dreams from real episode starts, even when training dreams are branched.
        """
        c, knobs = self.config, self.current_dream_knobs()
        branched = c.dream_start == "branch" and not scoring
        focus = c.branch_focus if branched else 0.0
        if focus and doomed_branch_points(self.world_model, c.branch_horizon).numel() == 0:
            focus = 0.0  # no real death within the horizon yet (early data): uniform starts until one is stored
        return DreamSettings(
            temperature=knobs["temperature"],
            done_mode=c.done_mode,
            max_episode_steps=c.branch_horizon if branched else c.dream_max_episode_steps,
            start="branch" if branched else "episode",
            branch_focus=focus,
            **ControllerInput.from_flags(c).flags(),
            device=str(self.dream_device),
            seed=c.seed,
            deterministic=c.deterministic_dream,
            initial_noise=c.initial_noise,
            done_ensemble=c.done_ensemble,
            pessimism=0.0 if explorer else knobs["pessimism"],
            curiosity=knobs["curiosity"] if explorer else 0.0,
            curiosity_bonus=c.curiosity_bonus,
            done_logit_offset=self.done_logit_offset,
            done_logit_scale=self.done_logit_scale,
            reward_range=c.reward_range,
        )

    def exploit_guard(self, dream_mean: float, real_mean: float) -> dict[str, float]:
        """React to a dream-real gap (called after each real evaluation); returns `guard/...` metrics.

        Args:
            dream_mean: The deployed controller's mean dream return.
            real_mean: Its mean real return.
        """
        c, g = self.config, self.guard_state
        ratio = (dream_mean - real_mean) / max(abs(real_mean), 1.0)
        triggered = bool(c.guard_enabled and ratio > c.guard_gap_ratio)
        if triggered:
            g["triggers"] += 1
            g["temperature_offset"] += c.guard_temperature_step
            g["pessimism_offset"] += c.guard_pessimism_step
            g["extra_episodes"] = int(c.guard_extra_episodes)
            logger.info("exploit guard: gap ratio %.2f > %.2f -> %s", ratio, c.guard_gap_ratio, g)
        return {
            "guard/gap_ratio": float(ratio),
            "guard/triggered": float(triggered),
            "guard/triggers": float(g["triggers"]),
            "guard/temperature_offset": g["temperature_offset"],
            "guard/pessimism_offset": g["pessimism_offset"],
            "guard/extra_episodes_next": float(g["extra_episodes"]),
        }

    def _train_controller(self) -> None:
        sim = DreamSimulator(self.world_model, self.dream_settings())
        sim.set_novelty_reference(self._novelty_ref)
        controller, dream_steps = self.local_module.controller, 0
        for k, v in self.current_dream_knobs().items():
            self.metrics.log_value(f"dream/{k}", v, window=1)
        if self.dream_trainer is not None:
            weights, m = self.dream_trainer.train(
                self.world_model, self.config.dream_algo_iterations, settings=self.dream_settings()
            )
            controller.load_state_dict(weights)
            metrics = [m]
        else:
            metrics = [self.cma.step(sim) for _ in range(self.config.cma_generations_per_iteration)]
            controller.set_flat(self.cma.mean_params())
        if self.explorer is not None and self.current_dream_knobs()["curiosity"] > 0:
            explore_sim = DreamSimulator(self.world_model, self.dream_settings(explorer=True))
            explore_sim.set_novelty_reference(self._novelty_ref)
            metrics += [self.explorer.step(explore_sim) for _ in range(self.config.cma_generations_per_iteration)]
            self._explorer_params = self.explorer.mean_params()
        for m in metrics:
            logger.info("dream: %s", {k: round(v, 2) for k, v in m.items()})
            dream_steps += m.pop("dream/num_env_steps_sampled")
            for k, v in m.items():
                self.metrics.log_value(k, v, window=1)
        self._set_agent_state(
            controller={k: v.cpu() for k, v in controller.state_dict().items()}, plan=self._plan_dream()
        )
        if self.config.distill_settings().enabled:  # (config validation: planning is on)
            self._distill(self.config.distill_settings())
        dream_steps += self._score_in_dream()
        # Dream steps are counted here only: never in env_runners/num_env_steps_* (real steps drive schedules/stops).
        self.metrics.log_value("dream/num_env_steps_sampled_lifetime", dream_steps, reduce="lifetime_sum")

    def _plan_dream(self) -> dict[str, float]:
        """The dream a planning agent looks ahead in: the scoring dream's tau and calibrated deaths."""
        s = self.dream_settings(scoring=True)
        return {"temperature": s.temperature, "done_offset": s.done_logit_offset, "done_scale": s.done_logit_scale}

    def _score_in_dream(self) -> int:
        """The deployed agent's dream score (`self.dream_score`, reported beside its real score): C alone over
        `dream_eval_episodes` whole dreams (at the interval it acts at alone), or, when the agent plans, the planning
        agent over `plan_dream_episodes` (C alone is then logged as `dream/controller_return_mean`). Returns C's
        dream steps."""
        c, controller = self.config, self.local_module.controller
        settings = self.dream_settings(scoring=True)
        score = evaluate_population(
            DreamSimulator(self.world_model, settings),
            controller,
            controller.get_flat()[None],
            c.dream_eval_episodes,
            seed=(c.seed or 0) + 7,
            action_repeat=self.local_module.controller_interval(),
        )
        returns = score.returns[0]
        plan = self.local_module.plan_settings()
        if plan.enabled:
            self.metrics.log_value("dream/controller_return_mean", float(returns.mean()), window=1)
            returns = planner_dream_returns(
                self.world_model,
                settings,
                controller,
                plan,
                self.plan_dream_episodes,
                seed=(c.seed or 0) + 7,
                action_repeat=c.action_repeat,
            )
        self.dream_score = {
            "mean": float(returns.mean()),
            "std": float(returns.std()),
            "min": float(returns.min()),
            "max": float(returns.max()),
        }
        for k, v in self.dream_score.items():
            self.metrics.log_value(f"dream/episode_return_{k}", v, window=1)
        return score.dream_steps

    def set_planning(
        self,
        horizon: int,
        samples: int | None = None,
        dream_episodes: int | None = None,
        every: int | None = None,
        collect: bool | None = None,
        rollouts: str | None = None,
        collect_horizon: int | None = None,
        collect_every: int | None = None,
        terminal_value: float | None = None,
    ) -> dict:
        """Switch decision-time planning in the dream on (horizon > 0) or off (0) for the agent as it is now, e.g.
        a restored checkpoint, and re-score it in the dream (the dream score beside its next real evaluation).

        Args:
            horizon: Dream steps looked ahead (`WorldModelsConfig.controller(plan_horizon=...)`); 0: C alone.
            samples: Dreams per candidate first action (default: the config's `plan_samples`).
            dream_episodes: Whole dreams the planning agent is scored in (default: `plan_dream_episodes`).
            every: The planning agent's decision interval in steps (default: the config's `plan_every`; 0: C's
                action repeat).
            collect: Whether a planner also acts in real collection (default: the config's `plan_collect` while
                a planner is set, off otherwise); needs horizon > 0 or collect_horizon > 0.
            rollouts: What follows the first decision in the look-ahead: "controller" or "parallel" (default: the
                config's `plan_rollouts`).
            collect_horizon: The collecting planner's horizon (0: `horizon`'s; default: the config's
                `plan_collect_horizon` when collecting, else 0).
            collect_every: The collecting planner's decision interval (0: `every`'s; default: the config's
                `plan_collect_every` when collecting, else 0).
            terminal_value: Steps credited to a look-ahead dream for being alive at its end (default: the
                config's `plan_terminal_value`; 0: the dreamed steps only).

        Returns:
            The new dream score (mean, std, min, max).
        """
        samples = self.config.plan_samples if samples is None else samples
        every = self.config.plan_every if every is None else every
        rollouts = self.config.plan_rollouts if rollouts is None else rollouts
        terminal_value = self.config.plan_terminal_value if terminal_value is None else terminal_value
        default_horizon, default_every = self.config.plan_collect_horizon, self.config.plan_collect_every
        if collect is None:  # the config's, off without a planner to collect with
            look = default_horizon if collect_horizon is None else collect_horizon
            collect = bool(self.config.plan_collect) and (horizon > 0 or look > 0)
        if not collect:  # C collects: the config's collecting planner does not apply (given values are refused)
            default_horizon, default_every = 0, 0
        collect_horizon = default_horizon if collect_horizon is None else collect_horizon
        collect_every = default_every if collect_every is None else collect_every
        plan = PlanSettings(
            horizon=horizon,
            samples=samples,
            every=every,
            collect=collect,
            rollouts=rollouts,
            collect_horizon=collect_horizon,
            collect_every=collect_every,
            terminal_value=terminal_value,
        )
        plan.check_plannable(self.local_module.action_space, self.config.action_repeat)
        if dream_episodes is not None:
            check_count("dream_episodes", dream_episodes, 1, "whole dreams the planning agent is scored in")
            self.plan_dream_episodes = dream_episodes
        self._set_agent_state(
            plan={
                "horizon": horizon,
                "samples": samples,
                "every": every,
                "collect": collect,
                "rollouts": rollouts_index(rollouts),
                "collect_horizon": collect_horizon,
                "collect_every": collect_every,
                "terminal_value": terminal_value,
                **self._plan_dream(),
            }
        )
        self._score_in_dream()
        return dict(self.dream_score)

    def set_real_z(self, real_z: str) -> None:
        """Read real frames as V's posterior mean ("mean") or a draw from it ("sample", the paper) from now on, in
        real collection and evaluation alike (the Learner's module and every EnvRunner), e.g. for a restored
        checkpoint; the saved agent keeps the reading. M is fitted as `mdn_latents` says either way, and the dream
        is untouched: only what the agent sees of the real game changes (a distill that follows labels states read
        this way).

        Args:
            real_z: "sample" or "mean". An M fitted on V's means (`mdn_latents="mean"`) needs "mean".
        """
        if check_real_z(real_z) != "mean" and self.config.mdn_latents == "mean":
            raise ValueError(
                "real_z='sample' with an M fitted on V's posterior means (mdn_latents='mean'): M would read draws it "
                "never saw; keep real_z='mean'."
            )
        self._set_agent_state(real_z=real_z)

    def set_precision(self, precision: str) -> None:
        """Compute V and M at `precision` from now on wherever they run: the Learner's fits, the local module's
        dreams (CMA-ES, calibration, the done refit) and every EnvRunner's planner and encoding, e.g. a restored
        checkpoint evaluated on other hardware. A compute setting only: the weights stay float32 and the checkpoint
        keeps its config's `precision` (restored agents start from that again).

        Args:
            precision: "fp32", "bf16" or "auto" (`rllib_worldmodel.precision`).
        """
        check_precision(precision)

        def apply(module: Any) -> None:
            module.world_model.set_precision(precision)

        self.learner_group.foreach_learner(lambda learner: apply(learner.module[DEFAULT_MODULE_ID]))
        apply(self.local_module)
        for group in (self.env_runner_group, self.eval_env_runner_group):
            if group is not None:
                group.foreach_env_runner(lambda er: apply(er.module), local_env_runner=True)

    def deploy_searched_controller(self) -> dict[str, float]:
        """Deploy CMA-ES's current mean, the C the last search found, in place of the deployed C (e.g. a C fitted to
        the planner, which then decides at `action_repeat` again), on the Learner and every EnvRunner, and re-score
        the agent in the dream. A fit that follows (`distill_controller`) starts from it and its planner rolls it out,
        as in the loop.

        Returns:
            The new dream score (mean, std, min, max).
        """
        self._set_agent_state(controller=self._searched_controller("deploy_searched_controller"))
        self._score_in_dream()
        return dict(self.dream_score)

    def distill_controller(self, settings: DistillSettings | None = None) -> dict[str, float]:
        """Fit C to the planner's dreamed choices at the replay's newest real states (`distill.distill_planner`),
        e.g. on a restored checkpoint, give the Learner and the EnvRunners the fitted C, and re-score the agent in
        the dream. The loop does the same after every CMA-ES search when `distill_states` > 0.

        Args:
            settings: How many states and how C is fitted (default: the config's `distill_*`). Needs planning on
                (`plan_horizon` > 0 or `set_planning`: the planner labels the states) and a replay.

        Returns:
            The `dream/distill_*` metrics (also logged).
        """
        settings = settings or self.config.distill_settings()
        if not (self.local_module.plan_settings().enabled or self.config.plan_settings().enabled):
            raise ValueError(
                "distill_controller fits C to the planner's choices, and this agent does not plan: switch planning "
                "on first (plan_horizon > 0, `set_planning`; CLI: --plan-horizon 12 --plan-every 3)."
            )
        metrics = self._distill(settings)
        self._score_in_dream()
        return metrics

    def _distill(self, settings: DistillSettings) -> dict[str, float]:
        """`distill_controller` without the checks and the dream score: distill, log, sync C everywhere. The fitted C
        decides at the planner's interval when it acts alone: its labels are the planner's first actions, each
        held that long. The planner that labels is the agent's own; an agent that acts alone (`deploy="alone"`
        switched its planning off) is labelled by the config's planner. With `deploy="alone"` planning is switched
        off afterwards (a collecting planner, `plan_collect`, keeps collecting)."""
        t0 = time.perf_counter()
        seed = (self.config.seed or 0) + 104729 * (self.iteration + 1)
        module = self.local_module
        planner = module.planner() if module.plan_settings().enabled else module.planner(look=self._config_look())
        metrics = distill_planner(planner, self._whole_episodes(), settings, seed=seed, real_z=module.real_z)
        metrics["dream/distill_s"] = time.perf_counter() - t0
        # which planner labelled the states (the agent's own, or the config's for an agent that acts alone)
        metrics["dream/distill_plan_horizon"] = float(planner.settings.horizon)
        metrics["dream/distill_plan_every"] = float(planner.interval)
        metrics["dream/distill_plan_parallel"] = float(planner.settings.rollouts == "parallel")
        for k, v in metrics.items():
            self.metrics.log_value(k, v, window=1)
        logger.info("C distilled from the planner: %s", {k: round(v, 3) for k, v in metrics.items()})
        plan = None
        if settings.deploy == "alone":
            now = module.plan_settings()
            collecting = now.collection() if now.collect else None  # its look-ahead, kept without a deployed one
            plan = {
                "horizon": 0,
                "collect_horizon": collecting.horizon if collecting else 0,
                "collect_every": collecting.every if collecting else 0,
            }
        self._set_agent_state(
            controller={k: v.cpu() for k, v in module.controller.state_dict().items()},
            controller_every=planner.interval,
            plan=plan,
        )
        if settings.check_episodes:
            metrics.update(self._check_fit_in_real(settings.check_episodes))
        return metrics

    def _check_fit_in_real(self, num_episodes: int) -> dict[str, float]:
        """Play the fitted C (deployed now) and CMA-ES's searched C, each as deployed now (planning on or off), on
        `num_episodes` real episodes each without exploration, and keep the one with the higher real mean (the
        fitted one on a tie). On the training EnvRunners: the evaluation EnvRunners' episodes stay unseen by this
        selection. The steps are counted as sampled real steps; the episodes are not stored (evaluation data).

        Args:
            num_episodes: Real episodes per candidate.

        Returns:
            `real/distill_check_{fitted,searched}_{mean,std}`, `real/distill_check_kept_fitted` (1: the fit is
            kept, 0: the searched C is deployed instead) and `real/distill_check_env_steps` (also logged).
        """
        fitted, searched = self._deployed_controller(), self._searched_controller("distill_check_episodes")
        played, steps = {}, 0
        for name in ("fitted", "searched"):
            if name == "searched":  # at C's action_repeat, where CMA-ES searched it
                self._set_agent_state(controller=searched)
            lengths, returns, _ = evaluation_episodes(self.env_runner_group, num_episodes)
            played[name], steps = returns, steps + int(lengths.sum())
        keep_fitted = played["fitted"].mean() >= played["searched"].mean()
        if keep_fitted:
            self._set_agent_state(**fitted)
        self.record_real_evaluation(played["fitted" if keep_fitted else "searched"])
        metrics = {
            f"real/distill_check_{k}_{stat}": float(getattr(v, stat)())
            for k, v in played.items()
            for stat in ("mean", "std")
        }
        metrics["real/distill_check_kept_fitted"] = float(keep_fitted)
        metrics["real/distill_check_env_steps"] = float(steps)
        for k, v in metrics.items():
            self.metrics.log_value(k, v, window=1)
        self.metrics.log_value("real/num_env_steps_sampled_lifetime", steps, reduce="lifetime_sum")
        logger.info(
            "fit checked in the real game over %d episodes each: fitted C %.1f, searched C %.1f -> %s deployed",
            num_episodes,
            metrics["real/distill_check_fitted_mean"],
            metrics["real/distill_check_searched_mean"],
            "fitted" if keep_fitted else "searched",
        )
        return metrics

    def _config_look(self) -> PlanSettings:
        """The config's planning look-ahead in the run's calibrated dream (the planner that labels a C deployed
        alone)."""
        dream = self._plan_dream()
        return dataclasses.replace(
            self.config.plan_settings().deployed(),
            temperature=dream["temperature"],
            done_logit_offset=dream["done_offset"],
            done_logit_scale=dream["done_scale"],
        )

    # ------------------------------------------------------------------------------------------- state
    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if components is None:
            state["world_models"] = {
                "dream_rllib": self.dream_trainer.get_state() if self.dream_trainer else None,
                "replay": pack_replay_state(self.replay.get_state()),
                "cma": self.cma.get_state(),
                "explorer": self.explorer.get_state() if self.explorer else None,
                "explorer_params": self._explorer_params,
                "guard": dict(self.guard_state),
                "done_logit_offset": self.done_logit_offset,
                "done_logit_scale": self.done_logit_scale,
                "behaviour_lengths": list(self._behaviour_lengths),
                "policy_anchor": self._policy_anchor,
                "dream_score": self.dream_score,
            }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        kept = _peek(self.metrics, "real/num_env_steps_collected_lifetime")
        if kept and _peek(self.metrics, "real/num_env_steps_sampled_lifetime") is None:
            # A checkpoint from before every real step was counted: its kept steps are the best record of the steps
            # it took (a few % low), so a resumed run's count goes on from there instead of from 0.
            self.metrics.log_value("real/num_env_steps_sampled_lifetime", kept, reduce="lifetime_sum")
        extra = state.get("world_models")
        if extra is not None:
            self.replay.set_state(unpack_replay_state(extra["replay"]))
            self._warn_if_restored_replay_outgrows_capacity()
            self.cma.set_state(extra["cma"])
            if self.explorer is not None and extra.get("explorer") is not None:
                self.explorer.set_state(extra["explorer"])
            self._explorer_params = extra.get("explorer_params")
            self.guard_state.update(extra.get("guard", {}))
            self.done_logit_offset = float(extra.get("done_logit_offset", 0.0))
            self.done_logit_scale = float(extra.get("done_logit_scale", self.done_logit_scale))
            self._behaviour_lengths = list(extra.get("behaviour_lengths", []))
            # absent in checkpoints from before the option; one without its action repeat is measured again
            anchor = extra.get("policy_anchor")
            self._policy_anchor = anchor if anchor is not None and "action_repeat" in anchor else None
            self.dream_score = extra["dream_score"]
        self._sync_local_module()
        if self.replay.get_num_timesteps():
            self._encode_replay()
            if self.config.dream_start == "branch":  # branch points are not weights: rebuild them from the replay
                self._store_branch_points()
        if extra is not None and self.dream_trainer is not None:
            self.dream_trainer.set_state(extra.get("dream_rllib"), self.world_model)

    def cleanup(self) -> None:
        if getattr(self, "dream_trainer", None) is not None:
            self.dream_trainer.stop()
        super().cleanup()

    def evaluate_real(self, num_episodes: int) -> dict[str, Any]:
        """Evaluate the current agent on `num_episodes` real episodes (beside its dream score), outside `train()`."""
        return evaluate_real_and_dream(self, self._synced_evaluation_group(), num_episodes=num_episodes, react=False)[0]

    def _synced_evaluation_group(self):
        """The EnvRunners that play real evaluations (the training ones when there are no evaluation ones), with
        the Learner's current weights."""
        group = self.eval_env_runner_group or self.env_runner_group
        group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)
        return group

    def save_agent(self, folder: str | os.PathLike) -> Path:
        """Write the acting agent alone, without the replay, the optimizers or CMA-ES's state: `folder/agent` (its
        RLModule, as RLlib saves one: V, M, C, C's interval, the planning settings and how it reads real frames;
        `RLModule.from_checkpoint` loads it) and `folder/world_model.pt` (`export_world_model`: the calibrated
        deaths and the real env's settings). About 60 MB for TakeCover's V and M, against gigabytes for a checkpoint
        with a full replay, so a run can keep every iteration's agent (`rllib-worldmodel train` does, in
        `OUT/agents/iteration_NNN`) and any of them can be played again later
        (`benchmarks/dream_planning.py --checkpoint OUT/agents/iteration_NNN/agent`). Written beside `folder` and
        renamed into place (`data.write_folder_atomically`), so `folder` holds a whole agent or none.

        Returns:
            `folder`.
        """

        def write(path: Path) -> None:
            path.mkdir(parents=True)
            self.local_module.save_to_path(str(path / "agent"))
            self.export_world_model(path / "world_model.pt")

        return write_folder_atomically(folder, write)

    def load_agent(self, folder: str | os.PathLike) -> dict[str, float]:
        """Deploy an agent a run kept (`save_agent`, e.g. `OUT/agents/iteration_015` of `rllib-worldmodel train`) in
        place of the current one: its V, M and C, C's interval, its planning settings and how it reads real frames,
        on the Learner and every EnvRunner, with its dream's deaths calibrated as they were when it was saved (the
        done-logit offset and scale in its world_model.pt); then re-scored in that dream. The replay, the optimizers
        and CMA-ES's state stay this algorithm's, so an evaluation (`evaluate_real`) plays the kept agent with this
        run's env settings and evaluation EnvRunners; a `train()` after it continues from the kept agent's models.

        Args:
            folder: The kept agent's folder (holding `agent/` and `world_model.pt`).

        Returns:
            Its dream score (mean, std, min, max).
        """
        folder = Path(folder)
        if not (folder / "agent").is_dir() or not (folder / "world_model.pt").is_file():
            raise FileNotFoundError(
                f"{folder} is not a kept agent's folder: it needs agent/ and world_model.pt "
                "(`WorldModels.save_agent`; `rllib-worldmodel train` keeps OUT/agents/iteration_NNN)"
            )
        kept = RLModule.from_checkpoint(str((folder / "agent").resolve()))
        if kept.wm_config != self.world_model.config:
            raise ValueError(
                f"the agent in {folder} has another world-model architecture ({kept.wm_config}) than this run's "
                f"({self.world_model.config}): deploy it on a checkpoint of the run that kept it"
            )
        meta = read_checkpoint(folder / "world_model.pt")["metadata"]
        self._push_module_state(kept.get_state())
        self.done_logit_offset = float(meta.get("done_logit_offset", 0.0))
        self.done_logit_scale = float(meta.get("done_logit_scale", 1.0))
        self._score_in_dream()
        return dict(self.dream_score)

    def export_world_model(self, path) -> Any:
        """Write the current world model as a standalone checkpoint (loadable by `WorldModels/Dream-v0`)."""
        return self.world_model.save(
            path,
            metadata={
                "iteration": self.iteration,
                "real_steps": int(self.replay.get_added_timesteps()),
                # pass both as dream settings to reproduce this dream
                "done_logit_offset": self.done_logit_offset,
                "done_logit_scale": self.done_logit_scale,
                # the real env's settings (TakeCover: skill, cap, render switches, frame skip), so benchmarks that
                # load this file play the game the model was fitted on
                "env_settings": dict((self.config.env_config or {}).get("real", {})),
            },
        )
