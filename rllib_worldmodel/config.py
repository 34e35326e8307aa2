"""WorldModelsConfig: every setting of the World Models loop, with defaults that cite their source."""

from __future__ import annotations

import math
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_worldmodel.calibration import CALIBRATION_ANCHORS
from rllib_worldmodel.distill import DistillSettings
from rllib_worldmodel.done_refit import validate_refit_settings
from rllib_worldmodel.dream import CURIOSITY_BONUSES, DONE_ENSEMBLE, DONE_MODES, DreamSettings, STARTS
from rllib_worldmodel.envs.vizdoom import episode_steps, FRAME_CAP, frame_skip_of
from rllib_worldmodel.evaluation import evaluate_real_and_dream
from rllib_worldmodel.planning import check_count, PlanSettings
from rllib_worldmodel.precision import check_precision
from rllib_worldmodel.registration import TAKECOVER_ENV
from rllib_worldmodel.rl_module import REAL_Z
from rllib_worldmodel.schedules import Schedule
from rllib_worldmodel.trainer import MDN_LATENTS

CONTROLLER_TRAINERS = ("cma", "rllib")
FIT_EPOCHS_OVER = ("replay", "new")


class WorldModelsConfig(AlgorithmConfig):
    """Configuration of the `WorldModels` algorithm (collect real -> fit V, M -> train C in the dream -> evaluate).

    Example:
        >>> config = (WorldModelsConfig().environment("WorldModels/TakeCover-v0")
        ...           .world_model(z_size=64, rnn_size=512).dream(temperature=1.15, max_episode_steps=2100))
    """

    def __init__(self, algo_class=None):
        from rllib_worldmodel.algorithm import WorldModels

        super().__init__(algo_class=algo_class or WorldModels)
        # world model architecture (paper §A.1-A.2: Doom z=64, LSTM 512, 5 mixtures)
        self.z_size = 64
        self.rnn_size = 512
        self.num_mixtures = 5
        self.vae_hidden = 64
        self.kl_tolerance = 0.5  # paper code
        self.done_pos_weight = 10.0  # paper code: restart_factor
        self.wm_loss_weights = {"mdn": 1.0, "reward": 1.0, "done": 1.0}
        self.num_heads = 1  # paper: one M; >= 2 is an ensemble (pessimism, disagreement curiosity)
        self.done_bias_init = None
        self.vae_focus_fraction = 0.0  # paper: plain squared error
        self.vae_focus_weight = 0.0
        self.vae_warmup_epochs = 0.0
        self.death_window_fraction = 0.0
        self.mdn_closed_loop = 0.0  # paper: teacher forcing
        self.mdn_closed_loop_horizon = 1
        self.mdn_latents = "sample"  # paper: M reads z sampled from V's posterior
        self.done_refit_horizon = 0  # paper: the done head only ever reads real latents
        self.done_refit_every = 10
        self.done_refit_steps = 300
        self.done_refit_max_starts = 8000
        self.precision = "fp32"  # compute precision of V and M (weights stay float32); `rllib_worldmodel.precision`
        # world model fitting (per iteration)
        self.vae_lr = 1e-3  # measured: 1e-3 beats the paper code's 1e-4 on small data (trainer.py)
        self.mdn_lr = 1e-3  # paper code
        self.vae_batch_size = 100  # paper code
        self.vae_epochs_per_iteration = 1.0
        self.mdn_batch_size = 32
        self.mdn_seq_len = 128
        self.mdn_epochs_per_iteration = 10.0
        self.fit_epochs_over = "replay"  # epochs count the whole replay (cost grows with it) or the new steps
        # Real steps kept. Measured: a 200,000-step replay that dropped the first rounds' data cost 108 +- 42 frames
        # of real TakeCover score against one that kept it (RESULTS.md); 400,000 fits a 24 GiB machine.
        self.replay_capacity = 400_000
        self.mdn_recency_half_life = None  # M's windows drawn uniformly over the replay's steps
        # real data collection
        self.real_episodes_per_iteration = 100
        self.random_iterations = 1  # paper: the first data comes from random actions held 1-10 steps
        self.random_hold_prob = 0.05
        self.random_hold_steps = (1, 10)  # paper; TakeCover survives far longer on sustained moves (RESULTS.md)
        self.explore_epsilon = 0.0
        self.surprise_exploration = 0.0
        self.curiosity = 0.0
        self.curiosity_bonus = "disagreement"
        self.explorer_fraction = 0.5
        self.novelty_reference_size = 4096
        # dream
        self.temperature = 1.15  # paper's best TakeCover tau
        self.dream_max_episode_steps = 2100  # paper's TakeCover cap
        self.done_mode = "threshold"  # paper: done where p > 0.5
        self.deterministic_dream = False
        self.initial_noise = 0.0
        self.reward_range = None
        self.done_ensemble = "mean"
        self.pessimism = 0.0
        self.calibrate_deaths = False
        self.done_logit_scale = 1.0
        self.include_cell = False
        self.include_prev_action = False
        self.include_hidden = True
        self.dream_device = "auto"
        self.dream_start = "episode"  # paper: dreams start at real episode starts
        self.branch_horizon = 30
        self.branch_focus = 0.0
        self.branch_every = 10
        # controller
        self.controller_trainer = "cma"
        self.controller_hidden = 0  # paper: one linear layer
        self.action_repeat = 1  # paper: C decides every step
        self.cma_population = 64  # paper
        self.cma_rollouts = 16  # paper
        self.cma_sigma_init = 0.1  # paper code
        self.cma_common_noise = True  # candidates compared on the same dreams (benchmarks/takecover_tau.py ablation)
        self.cma_generations_per_iteration = 10
        self.dream_algo_config = None  # for trainer="rllib": an RLlib AlgorithmConfig; None -> PPOConfig()
        self.dream_algo_iterations = 5
        self.dream_num_envs = 64
        # decision-time planning in the dream when acting without exploration (off: C acts alone, the paper)
        self.plan_horizon = 0
        self.plan_samples = 16
        self.plan_every = 0  # the planning agent's decision interval (0: C's action_repeat)
        self.plan_collect = False  # real collection acts with C (plus exploration), not the planner
        self.plan_collect_horizon = 0  # the collecting planner's look-ahead (0: plan_horizon's)
        self.plan_collect_every = 0  # the collecting planner's decision interval (0: plan_every's)
        self.plan_rollouts = "controller"  # what follows the first decision in the look-ahead ("parallel": + holds)
        self.plan_terminal_value = 0.0  # steps credited for surviving the look-ahead (0: the dreamed steps only)
        self.plan_dream_episodes = 16
        # C fitted to the planner's dreamed choices at real states after every CMA-ES search (0 states: off)
        self.distill_states = 0
        self.distill_every = 0
        self.distill_epochs = 200
        self.distill_lr = 1e-3
        self.distill_deploy = "planner"
        self.distill_check_episodes = 0  # real episodes each for the fitted vs the searched C after a fit (0: off)
        # exploit guard (off by default): reacts to a large dream-real gap
        self.guard_enabled = False
        self.guard_gap_ratio = 0.5
        self.guard_temperature_step = 0.1
        self.guard_temperature_max = 1.6
        self.guard_pessimism_step = 0.0
        self.guard_pessimism_max = 10.0
        self.guard_extra_episodes = 0
        # evaluation
        self.dream_eval_episodes = 256
        self.real_z = "sample"  # paper: z sampled from V's posterior when acting in the real game
        # RLlib settings that fit this algorithm
        self.num_env_runners = 0
        self.grad_clip = 1.0  # paper code
        self.grad_clip_by = "global_norm"
        self.evaluation_interval = 1
        self.evaluation_duration = 20
        self.evaluation_duration_unit = "episodes"
        self.evaluation_num_env_runners = 0
        self.custom_evaluation_function = evaluate_real_and_dream
        # With num_learners > 1 (DDP): a V batch leaves M unused and vice versa, and C is never trained by gradients.
        self.torch_ddp_kwargs = {"find_unused_parameters": True}

    def world_model(
        self,
        *,
        z_size: int = NotProvided,
        rnn_size: int = NotProvided,
        num_mixtures: int = NotProvided,
        vae_hidden: int = NotProvided,
        kl_tolerance: float = NotProvided,
        done_pos_weight: float = NotProvided,
        wm_loss_weights: dict[str, float] = NotProvided,
        vae_lr: float = NotProvided,
        mdn_lr: float = NotProvided,
        vae_batch_size: int = NotProvided,
        vae_epochs_per_iteration: float = NotProvided,
        mdn_batch_size: int = NotProvided,
        mdn_seq_len: int = NotProvided,
        mdn_epochs_per_iteration: float = NotProvided,
        fit_epochs_over: str = NotProvided,
        replay_capacity: int = NotProvided,
        mdn_recency_half_life: int | None = NotProvided,
        num_heads: int = NotProvided,
        done_bias_init: float | None = NotProvided,
        vae_warmup_epochs: float = NotProvided,
        death_window_fraction: float = NotProvided,
        vae_focus_fraction: float = NotProvided,
        vae_focus_weight: float = NotProvided,
        closed_loop: float = NotProvided,
        closed_loop_horizon: int = NotProvided,
        mdn_latents: str = NotProvided,
        done_refit_horizon: int = NotProvided,
        done_refit_every: int = NotProvided,
        done_refit_steps: int = NotProvided,
        done_refit_max_starts: int | None = NotProvided,
        precision: str = NotProvided,
    ) -> WorldModelsConfig:
        """World-model architecture and fitting.

        Args:
            z_size: V's latent size (paper: 64 Doom, 32 CarRacing).
            rnn_size: M's LSTM units (paper: 512 Doom, 256 CarRacing).
            num_mixtures: Gaussian components per latent dimension (paper: 5).
            vae_hidden: Hidden width of the MLP VAE (vector observations).
            kl_tolerance: Free nats per latent dimension in V's KL (paper code: 0.5).
            done_pos_weight: Weight of deaths in the done BCE (paper code: 10).
            wm_loss_weights: Weights of M's losses, keys exactly "mdn", "reward", "done".
            vae_lr: V's Adam learning rate.
            mdn_lr: M's Adam learning rate.
            vae_batch_size: Frames per V update.
            vae_epochs_per_iteration: V passes over the replay per iteration (fractional allowed; 0: V is frozen
                after the first fit's `vae_warmup_epochs`, and only new episodes are encoded, e.g. for later
                rounds that refit M alone on a large replay).
            mdn_batch_size: Sequence windows per M update.
            mdn_seq_len: Window length; each window starts from the exact LSTM state of its episode prefix.
            mdn_epochs_per_iteration: M passes over the replay per iteration, counted in transitions trained on
                (windows cut short by an episode's end count what they hold), as the offline `fit` counts them.
            fit_epochs_over: What the epochs above count. "replay" (default): passes over the whole replay, so an
                iteration's fit grows with everything collected so far (TakeCover, 100 episodes per iteration:
                245 s in iteration 1, 1,348 s in iteration 6). "new": passes over the steps collected this
                iteration, drawn uniformly from the whole replay, a fixed training ratio as in DreamerV3 (model
                steps trained per real step collected), so every iteration's V and M updates cost about the same.
            replay_capacity: Real env steps kept in the EpisodeReplayBuffer. When full, it drops its oldest whole
                episodes (counted in `real/replay_evicted_env_steps_lifetime`, with a warning the first time), and V
                and M are fitted on the newest steps only. The default keeps 400,000 steps; with 64x64 frames that
                costs, when full, about 2.7 GB a checkpoint (the replay lz4-packed: 6,835 bytes a step measured on
                the main job) and 15 GB resident at a fit's peak (measured at 266k steps: 9.9 GB). Raise it to keep
                every round's data of longer runs, lower it on a small machine.
            mdn_recency_half_life: Draw M's training windows (and its death windows) weighted to recent data: a
                stored step's weight halves with every this many real steps collected after its episode
                (`data.recency_weights`), so M keeps every round's data but fits the newest rounds, where the
                current agent plays, most. None (default): uniform over the replay's steps. V's frames stay
                uniform. `world_model/mdn_sample_age_steps` reports the mean age of a drawn step either way.
                Measured on TakeCover: 100,000 in the last leg of a 400,000-step chain made no difference, C −12 ± 20
                and the planner −13 ± 27 on 600 real episodes against the same leg run uniform (RESULTS.md, "M
                fitted on recent rounds").
            num_heads: M's ensemble size (1: paper; >= 2: heads trained on bootstrap resamples whose disagreement
                drives pessimism and curiosity).
            done_bias_init: Initial done-logit bias, a prior on deaths (e.g. -5); None keeps PyTorch's init.
            vae_warmup_epochs: Extra V passes over the replay in the first fit only (V sees little data later).
            death_window_fraction: Share of M's training windows placed so they contain an episode's death (the
                done head's only positives: about 1 step in 300 on TakeCover); 0 samples windows uniformly.
            vae_focus_fraction: Share of each frame's worst-reconstructed values counted again in V's loss (small
                objects such as fireballs live there); 0 is the paper's plain squared error.
            vae_focus_weight: Extra weight of those values (benchmarks/vae_focus.py measures the effect).
            closed_loop: Scheduled sampling: probability that each of M's input latents is M's own sample instead
                of the real one, so M learns to predict from what it meets when dreaming (0: teacher forcing,
                paper; see `MDNRNN.forward_closed_loop`). Steps the LSTM one by one: M updates ~2.7x slower
                (TakeCover, 2 CPU cores).
            closed_loop_horizon: Length of the closed loop's free-running segments: 1 draws own samples per step;
                k >= 2 feeds the real latent every k steps and, for a share `closed_loop` of segments, M's own
                samples in between, so M must carry what sustained actions do over k - 1 steps.
            mdn_latents: "sample" (paper) or "mean": M reads V's posterior mean instead of a sample, and dreams
                carry less of V's noise (see `WorldModelTrainer`). Needs `controller(real_z="mean")`.
            done_refit_horizon: After each fit, refit M's done head on dreams of this many steps from real states
                of the replay (the real actions replayed, the real deaths as labels; `done_refit`), so the head
                that decides dreamed deaths is fitted on dreamed states. Real episodes the controller played are
                in the replay, so its exploits get labelled (DAgger-style). 0 (paper) keeps the teacher-forced
                head. TakeCover, 100: the dream ranks seven reference policies with Spearman +0.89 to +0.96 (was
                +0.64); per-frame controllers trained there stayed at the random level, controllers deciding every
                50th frame (`controller(action_repeat=50)`) scored 558 ± 45 real across three seeds (RESULTS.md).
            done_refit_every: A refit dream starts at every n-th real state.
            done_refit_steps: Adam steps (8192 pairs each) of the refit.
            done_refit_max_starts: At most this many refit starts per fit (memory: starts x horizon x LSTM size
                floats); None for all.
            precision: "fp32" (default) or "bf16": V's and M's matrix multiplies and convolutions in bfloat16
                under `torch.autocast` wherever they run (the Learner's fits, CMA-ES's dreams, the planner's
                look-aheads on the EnvRunners, encoding the replay), with weights, optimizer state, M's LSTM cell
                state in the dream and every loss in float32. Faster only on hardware with bfloat16 units (CPUs with
                AVX512-BF16 or AMX, GPUs from Ampere on); `benchmarks/devices.py --precisions fp32 bf16` measures it
                (RESULTS.md, "bfloat16 where the hardware has it"). "auto": bf16 on each device that has them
                (`precision.bf16_supported`), fp32 elsewhere, decided where the work runs (a GPU Learner and CPU
                EnvRunners each get their own); the `world_model/bf16` metric says what the Learner computed at.
                Level with fp32 for one iteration; iterated over the whole chain in bf16 it ran 1.12x faster and
                its planner played 12-162 frames below three fp32 chains' on the same 600 real episodes
                (RESULTS.md, "The chain in bfloat16"), so keep runs of several iterations at fp32.
        """
        provided = {k: v for k, v in locals().items() if k not in ("self", "closed_loop", "closed_loop_horizon")}
        return self._set_provided(
            {**provided, "mdn_closed_loop": closed_loop, "mdn_closed_loop_horizon": closed_loop_horizon}
        )

    def collection(
        self,
        *,
        real_episodes_per_iteration: int = NotProvided,
        random_iterations: int = NotProvided,
        random_hold_prob: float = NotProvided,
        random_hold_steps: tuple[int, int] = NotProvided,
        explore_epsilon: float = NotProvided,
        surprise_exploration: float = NotProvided,
        curiosity: float | list | tuple = NotProvided,
        curiosity_bonus: str = NotProvided,
        explorer_fraction: float = NotProvided,
        novelty_reference_size: int = NotProvided,
    ) -> WorldModelsConfig:
        """Real-data collection (iterative training: later iterations collect with the current agent).

        Args:
            real_episodes_per_iteration: Real episodes collected per iteration.
            random_iterations: Iterations that act only with random holds (paper: actions held 1-10 steps).
            random_hold_prob: Per-step chance that the agent starts a random hold.
            random_hold_steps: (min, max) steps a random hold lasts, drawn uniformly (paper: (1, 10)). The death
                calibration plays the same holds in the dream, so its anchor stays this policy's real survival.
            explore_epsilon: Per-step chance of one uniformly random action.
            surprise_exploration: Surprise bonus of real collection: the chance of starting a random hold grows by
                this much per nat (per latent dimension) that M's NLL of what really happened exceeds M's training
                NLL, so new data comes from where the model is wrong. 0 = off.
            curiosity: Weight (or schedule) of the intrinsic bonus of the EXPLORER: a second controller trained by
                CMA-ES in the dream on extrinsic + curiosity * bonus, which collects `explorer_fraction` of the
                real episodes. The deployed controller never sees the bonus. 0 = off.
            curiosity_bonus: "disagreement" (ensemble variance, Plan2Explore; needs num_heads >= 2), "novelty"
                (distance to the nearest recently visited real latent) or "surprise" (M's NLL of its own sample,
                the prediction-error bonus).
            explorer_fraction: Share of the agent-collected real episodes played by the explorer.
            novelty_reference_size: Recent real latents kept as the novelty bonus's reference set.
        """
        return self._set_provided({k: v for k, v in locals().items() if k != "self"})

    def dream(
        self,
        *,
        temperature: float = NotProvided,
        max_episode_steps: int = NotProvided,
        done_mode: str = NotProvided,
        include_cell: bool = NotProvided,
        include_prev_action: bool = NotProvided,
        include_hidden: bool = NotProvided,
        device: str = NotProvided,
        deterministic: bool = NotProvided,
        initial_noise: float = NotProvided,
        done_ensemble: str = NotProvided,
        pessimism: float | list | tuple = NotProvided,
        calibrate_deaths: bool | str = NotProvided,
        done_logit_scale: float | str = NotProvided,
        reward_range: tuple[float, float] | None = NotProvided,
        start: str = NotProvided,
        branch_horizon: int = NotProvided,
        branch_focus: float = NotProvided,
        branch_every: int = NotProvided,
    ) -> WorldModelsConfig:
        """The dream the controller trains in.

        Args:
            temperature: tau > 0 (paper's best TakeCover: 1.15), or a schedule over iterations:
                ("linear", start, end, iterations) or a list of per-round values.
            max_episode_steps: Dream truncation (paper TakeCover: 2100).
            done_mode: "threshold" (p > 0.5, paper) or "sample" (calibrated Bernoulli).
            include_cell: Controller input [z, h, c] instead of [z, h].
            include_prev_action: Append the action taken last step (one-hot for discrete actions) to the
                controller's input, in the dream and in the real env alike, so a linear controller can keep a
                course until its view says turn (hysteresis).
            include_hidden: False: the controller reads z without M's hidden state h (the paper's "V only"
                controller: it reacts to what V sees now and cannot steer by M's memory); default True, [z, h].
            device: Where the controller's dreams run: "auto", "cpu", "cuda", ...
            deterministic: Dream M's mode instead of sampling (tau is then unused).
            initial_noise: Std of extra Gaussian noise on each dream's initial latent.
            done_ensemble: "mean" or "max" (pessimistic) over an ensemble's death probabilities.
            pessimism: Reward penalty per unit of ensemble disagreement (number or schedule; needs num_heads >= 2).
            calibrate_deaths: After every fit, offset M's done logits so the dream is as deadly as the real env for
                one anchor policy (see `rllib_worldmodel.calibration`). True or "behaviour": the random-hold
                collection policy of the first iterations (its dream survival = its real mean survival).
                "policy": the last controller evaluated on the real env (its dream return = its real mean return,
                so the deployed controller's dream-real gap starts each iteration at zero; the random-hold anchor
                is used until a controller has been evaluated). False: no calibration.
            done_logit_scale: M's done logits are multiplied by this (before the calibrated offset): > 1 sharpens
                the difference between safe and dangerous states that an under-confident done head blurs
                (`DreamSettings.done_logit_scale`; RESULTS.md: TakeCover). "fit": after every fit, the scale under
                which the replay's real deaths are most likely while M reads their real frames (Platt scaling,
                `calibration.fit_done_logit_scale`; needs done_mode "sample" or "expected").
            reward_range: (low, high) to clip M's predicted reward to (e.g. the real rewards' range); None: none.
            start: Where the controller's training dreams begin: "episode" (paper: real episode starts, up to
                `max_episode_steps`) or "branch" (real mid-episode states of the replay, `branch_horizon` steps
                each; short branched rollouts against compounding model error). The dream score reported beside
                the real one (`dream_real_gap`) always comes from whole dreams from episode starts, and
                `calibrate_deaths` calibrates on those too. CMA-ES controller trainer only.
            branch_horizon: Dream steps per branched rollout.
            branch_focus: Share of branched dreams started where the real episode terminated within
                `branch_horizon` steps (0: uniform over the branch points).
            branch_every: Every n-th real state of each stored episode becomes a branch point (re-computed after
                every fit, with the new M).
        """
        return self._set_provided(
            {
                "deterministic_dream": deterministic,
                "initial_noise": initial_noise,
                "done_ensemble": done_ensemble,
                "pessimism": pessimism,
                # True is the random-hold anchor by its name, so a config reads the same however it was set
                "calibrate_deaths": "behaviour" if calibrate_deaths is True else calibrate_deaths,
                "done_logit_scale": done_logit_scale,
                "reward_range": reward_range,
                "temperature": temperature,
                "dream_max_episode_steps": max_episode_steps,
                "done_mode": done_mode,
                "include_cell": include_cell,
                "include_prev_action": include_prev_action,
                "include_hidden": include_hidden,
                "dream_device": device,
                "dream_start": start,
                "branch_horizon": branch_horizon,
                "branch_focus": branch_focus,
                "branch_every": branch_every,
            }
        )

    def controller(
        self,
        *,
        trainer: str = NotProvided,
        hidden: int = NotProvided,
        cma_population: int = NotProvided,
        cma_rollouts: int = NotProvided,
        cma_sigma_init: float = NotProvided,
        cma_generations_per_iteration: int = NotProvided,
        cma_common_noise: bool = NotProvided,
        dream_eval_episodes: int = NotProvided,
        real_z: str = NotProvided,
        dream_algo_config: AlgorithmConfig = NotProvided,
        dream_algo_iterations: int = NotProvided,
        dream_num_envs: int = NotProvided,
        action_repeat: int = NotProvided,
        plan_horizon: int = NotProvided,
        plan_samples: int = NotProvided,
        plan_every: int = NotProvided,
        plan_dream_episodes: int = NotProvided,
        plan_collect: bool = NotProvided,
        plan_rollouts: str = NotProvided,
        plan_collect_horizon: int = NotProvided,
        plan_collect_every: int = NotProvided,
        plan_terminal_value: float = NotProvided,
        distill_states: int = NotProvided,
        distill_every: int = NotProvided,
        distill_epochs: int = NotProvided,
        distill_lr: float = NotProvided,
        distill_deploy: str = NotProvided,
        distill_check_episodes: int = NotProvided,
    ) -> WorldModelsConfig:
        """The controller and how it is trained in the dream.

        Args:
            trainer: "cma" (paper: CMA-ES, whole population in one batched dream) or "rllib" (an RLlib
                actor-critic algorithm, PPO by default, on DreamVectorEnv EnvRunners; Discrete actions).
            hidden: Hidden units of C; 0 = the paper's linear controller.
            cma_population: CMA-ES population (paper: 64).
            cma_rollouts: Dreams per candidate (paper: 16).
            cma_sigma_init: Initial CMA-ES step size (paper code: 0.1).
            cma_generations_per_iteration: Generations per training iteration.
            cma_common_noise: Common random numbers: every candidate is scored on the same R dream noise streams
                (False: independent dreams per candidate, as the paper's code).
            dream_eval_episodes: Dreams used to score the deployed controller (reported beside its real score).
            real_z: "sample" (paper) or "mean": how the agent turns a real frame into z, in real collection and
                evaluation (C and the planner read it; M is fitted as `mdn_latents` says either way). Kept with the
                agent's weights; `WorldModels.set_real_z` switches a restored agent. `mdn_latents="mean"` needs
                "mean".
            dream_algo_config: For trainer="rllib": the inner algorithm's config (default PPOConfig()); its env,
                RLModule and vectorization are set by WorldModels.
            dream_algo_iterations: For trainer="rllib": inner training iterations per WorldModels iteration.
            dream_num_envs: For trainer="rllib": dreams per inner EnvRunner.
            action_repeat: C decides every k-th step of an episode and holds its action in between, in the dream
                (CMA-ES, the dream score) and in the real env alike; M still steps every frame. 1: the paper.
                TakeCover survives on sustained moves (sweeping 50 steps each way: 609 real frames; random holds
                1-10: 311), which a per-step linear C rarely finds (RESULTS.md). CMA-ES trainer only.
            plan_horizon: Decision-time planning in the dream (`planning.DreamPlanner`; 0: off, C acts alone). When
                the agent acts without exploration (evaluation, deployment), each of C's decisions is replaced by
                the first action (held one decision) with the best expected return over this many dream steps,
                dreamed from the agent's real model state with C acting after the first decision; dream deaths,
                tau and calibration are the training dream's. Real collection acts with C unless `plan_collect`.
                Discrete actions;
                at least `action_repeat` steps. Also switchable after training: `WorldModels.set_planning`.
                TakeCover at 4 tics a step, measured on 100 real episodes: 9-12 steps (about one fireball flight)
                plan best; 6 sees too little, and 24 or 48 lose to a dream that drifts from the game (RESULTS.md).
            plan_samples: Dreams per candidate first action.
            plan_every: The planning agent's decision interval in steps (0: C's `action_repeat`); finer than C's
                own interval, the planner can react where C, trained to decide less often, cannot.
            plan_dream_episodes: Whole dreams the planning agent is scored in (its dream score beside the real
                one; each decision plans inside the dream, so this costs ~(actions x plan_samples) dreams each, 1 +
                actions times that with parallel rollouts).
            plan_collect: The planning agent, not C alone, also acts in real collection after the random phase,
                with the exploration (random holds, epsilon) on top: the new data comes from where the deployed
                agent goes, which is where its planner looks into M (or, with `plan_collect_horizon` /
                `plan_collect_every`, where a planner of its own settings goes). Needs plan_horizon > 0 or
                plan_collect_horizon > 0. Costs the planner's look-ahead per collected decision (TakeCover, 12
                steps every 3: about 1.7 s per real episode).
            plan_rollouts: What follows the first decision in the look-ahead dreams: "controller" (C) or "parallel"
                (C and each action held to the horizon, in separate dreams; each first action scores its best
                policy's expected return: at least as good as the best of them, in the dream; 1 + actions times
                the dreams). TakeCover: RESULTS.md, "Parallel rollouts".
            plan_collect_horizon: The look-ahead of the planner that collects (`plan_collect`), when it should
                differ from the deployed one's (0: plan_horizon's). Lets collection plan finely, where M's
                short-range holes are, while the agent deploys a coarser planner; with plan_horizon=0 the planner
                collects and C alone deploys. Needs plan_collect. Measured on TakeCover (RESULTS.md, "Two more
                rounds, the second collecting with the fine planner"): a fine collector (12 steps every 3) with the
                coarse planner (50 every 25) deployed left the coarse planner playing a fixed 25-step sweep, 803 vs
                the sweep's 808 on the same episodes.
            plan_collect_every: The collecting planner's decision interval in steps (0: plan_every's).
            plan_terminal_value: Steps of return credited to a look-ahead dream per unit of its chance of being
                alive at the horizon's end (`PlanSettings.terminal_value`; 0: the dreamed steps only, as the
                planner was tuned). With a value of the order of the rest of an episode (e.g. 100) the planner
                ranks first actions by their chance of surviving the horizon, instead of counting a death at the
                horizon's last step as one step lost. TakeCover: RESULTS.md, "Crediting the look-ahead for
                surviving its horizon".
            distill_states: After every search of C, fit C to the planner's dreamed choices (`distill`: the
                planner scores every first action in the dream at this many real states of the replay, newest
                first, and C minimises the planner's regret of its own choice). 0: off. Needs plan_horizon > 0 and
                the CMA-ES trainer; CMA-ES keeps searching from its own mean, the agent deploys the fitted C (and
                plans with it, when planning). TakeCover: the fitted C alone recovers half to all of the planner's
                gain over C at C's cost per decision (RESULTS.md, "C learns the planner's choices"). Whenever the
                fitted C acts alone (planning switched off with `set_planning(horizon=0)`, collection without
                `plan_collect`) it decides at the planner's interval, where its labels were chosen (the module's
                `controller_every`, kept in checkpoints); the next CMA-ES search gives C back its `action_repeat`.
                At C's longer `action_repeat` it plays far worse: a C fitted at 3 steps played 336 at 25 steps, where
                another played 798 at 3 (RESULTS.md, "Two more rounds with the fine planner deployed on a C fitted
                to it").
            distill_every: Take every n-th real state of an episode (0: the planner's decision interval).
            distill_epochs: Adam's passes over the labelled states.
            distill_lr: Adam's learning rate.
            distill_deploy: "planner" (the agent plans on the fitted C) or "alone": the fitted C acts alone at the
                planner's interval, at C's cost per decision, and the planner (plan_horizon, plan_every, ...) only
                labels C's states (planning is off in evaluation and deployment; with `plan_collect` the planner
                still collects). TakeCover, on world models of random holds: the fitted C alone played 834 and 824
                over 300 real episodes where planning on top of it lost 76 and 68 (RESULTS.md, "Fine planning on a
                world model of random holds"). Only as good as the planner: on one of three seeds the fine planner
                was exploited and its fitted C played 237 where the searched C played 721, and the dream cannot
                tell (RESULTS.md, "C fitted to the fine planner, deployed alone: two seeds in three");
                `distill_check_episodes` guards against that.
            distill_check_episodes: After every fit, play the fitted C and CMA-ES's searched C (each deployed as
                `distill_deploy` says) on this many real episodes each (no exploration, on the training
                EnvRunners, so the evaluation's episodes stay unseen) and deploy the one with the higher real
                mean: the fit is kept only where it plays better in the real game, which the dream cannot judge
                when the planner it copies is exploited. Selection on the real score, as the Tune search does; its
                real steps are counted (`real/distill_check_*`, `real/num_env_steps_sampled_lifetime`). 0: off.
                Needs distill_states > 0. TakeCover, 50 episodes each on three seeds: it put the searched C back
                where the fit had collapsed (397 against 825 in the check; the run then played 744.8) and kept the
                fit on the other two (RESULTS.md, "The fit checked in the real game").
        """
        return self._set_provided(
            {
                "controller_trainer": trainer,
                "controller_hidden": hidden,
                "cma_population": cma_population,
                "cma_rollouts": cma_rollouts,
                "cma_sigma_init": cma_sigma_init,
                "cma_generations_per_iteration": cma_generations_per_iteration,
                "cma_common_noise": cma_common_noise,
                "dream_eval_episodes": dream_eval_episodes,
                "real_z": real_z,
                "dream_algo_config": dream_algo_config,
                "dream_algo_iterations": dream_algo_iterations,
                "dream_num_envs": dream_num_envs,
                "action_repeat": action_repeat,
                "plan_horizon": plan_horizon,
                "plan_samples": plan_samples,
                "plan_every": plan_every,
                "plan_dream_episodes": plan_dream_episodes,
                "plan_collect": plan_collect,
                "plan_rollouts": plan_rollouts,
                "plan_collect_horizon": plan_collect_horizon,
                "plan_collect_every": plan_collect_every,
                "plan_terminal_value": plan_terminal_value,
                "distill_states": distill_states,
                "distill_every": distill_every,
                "distill_epochs": distill_epochs,
                "distill_lr": distill_lr,
                "distill_deploy": distill_deploy,
                "distill_check_episodes": distill_check_episodes,
            }
        )

    def exploit_guard(
        self,
        *,
        enabled: bool = NotProvided,
        gap_ratio: float = NotProvided,
        temperature_step: float = NotProvided,
        temperature_max: float = NotProvided,
        pessimism_step: float = NotProvided,
        pessimism_max: float = NotProvided,
        extra_episodes: int = NotProvided,
    ) -> WorldModelsConfig:
        """React to a controller that exploits the dream: after each real evaluation, when
        (dream mean - real mean) / max(real mean, 1) exceeds `gap_ratio`, the next iteration dreams with tau raised by
        `temperature_step` (up to `temperature_max`), pessimism raised by `pessimism_step` (up to `pessimism_max`)
        and collects `extra_episodes` more real episodes along the deployed controller's path. Every reaction is
        reported under `guard/...` in the evaluation results.

        Args:
            enabled: Switch the guard on.
            gap_ratio: Relative gap that triggers a reaction.
            temperature_step: Added to tau per trigger (0: leave tau alone).
            temperature_max: Cap on the raised tau.
            pessimism_step: Added to pessimism per trigger (needs num_heads >= 2 when > 0).
            pessimism_max: Cap on the raised pessimism.
            extra_episodes: Extra real episodes collected with the deployed controller after a trigger.
        """
        return self._set_provided({f"guard_{k}": v for k, v in locals().items() if k != "self"})

    def plan_settings(self) -> PlanSettings:
        """The `plan_*` fields as `planning.PlanSettings`, in the default dream (the algorithm plans in the run's
        calibrated one). Raises a ValueError naming a bad field."""
        return PlanSettings(
            horizon=self.plan_horizon,
            samples=self.plan_samples,
            every=self.plan_every,
            collect=self.plan_collect,
            rollouts=self.plan_rollouts,
            collect_horizon=self.plan_collect_horizon,
            collect_every=self.plan_collect_every,
            terminal_value=self.plan_terminal_value,
        )

    def distill_settings(self) -> DistillSettings:
        """The `distill_*` fields as `distill.DistillSettings` (raises a ValueError naming a bad one)."""
        return DistillSettings(
            states=self.distill_states,
            every=self.distill_every,
            epochs=self.distill_epochs,
            lr=self.distill_lr,
            deploy=self.distill_deploy,
            check_episodes=self.distill_check_episodes,
        )

    def _set_provided(self, values: dict[str, Any]) -> WorldModelsConfig:
        """Set every attribute whose value is not NotProvided (the builders' shared body)."""
        for k, v in values.items():
            if v is not NotProvided:
                setattr(self, k, v)
        return self

    # ------------------------------------------------------------------------------------------- RLlib hooks
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from rllib_worldmodel.rl_module import WorldModelsRLModule

        return RLModuleSpec(module_class=WorldModelsRLModule)

    def get_default_learner_class(self):
        from rllib_worldmodel.learner import WorldModelsLearner

        return WorldModelsLearner

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return {
            "z_size": self.z_size,
            "rnn_size": self.rnn_size,
            "num_mixtures": self.num_mixtures,
            "vae_hidden": self.vae_hidden,
            "kl_tolerance": self.kl_tolerance,
            "done_pos_weight": self.done_pos_weight,
            "loss_weights": dict(self.wm_loss_weights),
            "controller_hidden": self.controller_hidden,
            "action_repeat": self.action_repeat,
            "plan_horizon": self.plan_horizon,
            "plan_samples": self.plan_samples,
            "plan_every": self.plan_every,
            "plan_collect": bool(self.plan_collect),
            "plan_rollouts": self.plan_rollouts,
            "plan_collect_horizon": self.plan_collect_horizon,
            "plan_collect_every": self.plan_collect_every,
            "plan_terminal_value": self.plan_terminal_value,
            "include_cell": self.include_cell,
            "include_prev_action": self.include_prev_action,
            "include_hidden": self.include_hidden,
            "real_z": self.real_z,
            "random_hold_prob": self.random_hold_prob,
            "hold_min": int(self.random_hold_steps[0]),
            "hold_max": int(self.random_hold_steps[1]),
            "epsilon": self.explore_epsilon,
            "surprise_exploration": self.surprise_exploration,
            "num_heads": self.num_heads,
            "done_bias_init": self.done_bias_init,
            "vae_focus_fraction": self.vae_focus_fraction,
            "vae_focus_weight": self.vae_focus_weight,
            "precision": self.precision,
        }

    def validate(self) -> None:
        super().validate()
        errors = []

        def need(ok: bool, msg: str) -> None:
            if not ok:
                errors.append(msg)

        for name in (
            "z_size",
            "rnn_size",
            "num_mixtures",
            "vae_batch_size",
            "mdn_batch_size",
            "mdn_seq_len",
            "real_episodes_per_iteration",
            "dream_max_episode_steps",
            "cma_rollouts",
            "cma_generations_per_iteration",
            "dream_eval_episodes",
            "replay_capacity",
            "dream_algo_iterations",
            "dream_num_envs",
        ):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, f"{name}={v!r} must be an integer >= 1.")
        need(
            isinstance(self.random_iterations, int) and self.random_iterations >= 1,
            f"random_iterations={self.random_iterations!r} must be >= 1: the first data comes from random play "
            "(paper); the controller has nothing to act on before a world model exists.",
        )
        need(self.cma_population >= 2, f"cma_population={self.cma_population} must be >= 2 (paper: 64).")
        need(
            self.fit_epochs_over in FIT_EPOCHS_OVER,
            f"fit_epochs_over={self.fit_epochs_over!r}: use one of {FIT_EPOCHS_OVER} ('replay': passes over the whole "
            "replay; 'new': over the steps collected this iteration, a fixed training ratio).",
        )
        for name in ("mdn_epochs_per_iteration", "vae_lr", "mdn_lr", "cma_sigma_init"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f"{name}={v!r} must be > 0.")
        v = self.vae_epochs_per_iteration
        need(
            isinstance(v, (int, float)) and math.isfinite(v) and v >= 0,
            f"vae_epochs_per_iteration={v!r} must be >= 0 (V passes over the replay; 0: V frozen after its first fit).",
        )
        need(
            v != 0 or self.vae_warmup_epochs != 0,
            "vae_epochs_per_iteration=0 and vae_warmup_epochs=0: a new run would never train V. To freeze V after "
            "its first fit, set vae_warmup_epochs > 0 (passes in the first fit only; a resumed run skips them).",
        )
        for name in ("random_hold_prob", "explore_epsilon"):
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, f"{name}={v!r} must be a probability in [0, 1].")
        hold = self.random_hold_steps
        need(
            isinstance(hold, (tuple, list))
            and len(hold) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in hold)
            and 1 <= hold[0] <= hold[1],
            f"random_hold_steps={hold!r} must be (min, max) integers with 1 <= min <= max (paper: (1, 10)).",
        )
        need(
            0.0 <= self.vae_focus_fraction <= 1.0 and self.vae_focus_weight >= 0,
            f"vae_focus_fraction={self.vae_focus_fraction!r} must be in [0, 1] (e.g. 0.02) and "
            f"vae_focus_weight={self.vae_focus_weight!r} >= 0 (e.g. 10); 0 turns the focus off.",
        )
        schedules = {}
        for name, strict in (("temperature", True), ("pessimism", False), ("curiosity", False)):
            try:
                schedules[name] = Schedule(getattr(self, name), name, minimum=0.0, strict=strict)
            except ValueError as e:
                errors.append(str(e) + (" (paper: tau = 1.15 for TakeCover)" if name == "temperature" else ""))
        need(
            self.calibrate_deaths in (False, True, *CALIBRATION_ANCHORS),
            f"calibrate_deaths={self.calibrate_deaths!r}: use True or 'behaviour' (anchor the dream's deaths to the "
            "random-hold collection policy's real survival), 'policy' (to the last evaluated controller's real "
            "return) or False (no calibration).",
        )
        fitted_scale = self.done_logit_scale == "fit"
        for settings, hint in (
            ({"reward_range": self.reward_range}, ""),
            ({} if fitted_scale else {"done_logit_scale": self.done_logit_scale}, ' Or "fit": see done_logit_scale.'),
        ):
            try:
                DreamSettings(**settings)
            except ValueError as e:
                errors.append(str(e) + hint)
        need(
            not fitted_scale or self.done_mode in ("sample", "expected"),
            f'done_logit_scale="fit" fits death probabilities; done_mode={self.done_mode!r} decides deaths by a '
            'threshold. Use done_mode="sample" (or "expected"), or a number for done_logit_scale.',
        )
        need(
            isinstance(self.mdn_closed_loop, (int, float)) and 0.0 <= self.mdn_closed_loop <= 1.0,
            f"world_model closed_loop={self.mdn_closed_loop!r} must be a probability in [0, 1] (0: teacher forcing, "
            "paper; 0.5 measured in benchmarks/branch_fidelity.py).",
        )
        need(
            isinstance(self.mdn_closed_loop_horizon, int) and self.mdn_closed_loop_horizon >= 1,
            f"world_model closed_loop_horizon={self.mdn_closed_loop_horizon!r} must be an integer >= 1 (1: own "
            "samples drawn per step; e.g. 30: M dreams 29 steps between real latents).",
        )
        try:
            validate_refit_settings(
                self.done_refit_horizon or 1, self.done_refit_every, self.done_refit_steps, self.done_refit_max_starts
            )
            need(self.done_refit_horizon >= 0, f"done_refit_horizon={self.done_refit_horizon} must be >= 0 (0: off).")
        except (ValueError, TypeError) as e:
            errors.append(f"world_model: {e}")
        need(
            self.dream_start in STARTS,
            f"dream start={self.dream_start!r}: use one of {STARTS} ('branch': dreams from real mid-episode states).",
        )
        need(
            isinstance(self.branch_focus, (int, float)) and 0.0 <= self.branch_focus <= 1.0,
            f"dream branch_focus={self.branch_focus!r} must be a share in [0, 1] (0: uniform branch points).",
        )
        need(
            self.branch_focus == 0 or self.dream_start == "branch",
            f"dream branch_focus={self.branch_focus} needs .dream(start='branch') (it picks branch points).",
        )
        for name in ("branch_horizon", "branch_every"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, f"dream {name}={v!r} must be an integer >= 1.")
        need(
            self.dream_start == "episode" or self.controller_trainer == "cma",
            f"dream start={self.dream_start!r} works with .controller(trainer='cma') only (the RLlib dream env starts "
            "at episode starts); use start='episode' with trainer='rllib'.",
        )
        need(self.done_mode in DONE_MODES, f"done_mode={self.done_mode!r}: use one of {DONE_MODES}.")
        need(self.done_ensemble in DONE_ENSEMBLE, f"done_ensemble={self.done_ensemble!r}: use one of {DONE_ENSEMBLE}.")
        need(
            self.curiosity_bonus in CURIOSITY_BONUSES,
            f"curiosity_bonus={self.curiosity_bonus!r} is unknown: use one of {CURIOSITY_BONUSES}.",
        )
        need(
            isinstance(self.num_heads, int) and self.num_heads >= 1,
            f"num_heads={self.num_heads!r} must be an integer >= 1 (1: one M; an ensemble needs >= 2).",
        )
        ensemble = isinstance(self.num_heads, int) and self.num_heads >= 2
        uses_ensemble = [
            n
            for n, on in (
                ("pessimism", "pessimism" in schedules and schedules["pessimism"].max_value() > 0),
                ("guard pessimism_step", self.guard_enabled and self.guard_pessimism_step > 0),
                (
                    "curiosity_bonus='disagreement'",
                    "curiosity" in schedules
                    and schedules["curiosity"].max_value() > 0
                    and self.curiosity_bonus == "disagreement",
                ),
            )
            if on
        ]
        need(
            ensemble or not uses_ensemble,
            f"{', '.join(uses_ensemble)} need(s) an ensemble of at least 2 heads: set "
            f".world_model(num_heads=5) (now num_heads={self.num_heads}), or switch those off.",
        )
        for name in (
            "surprise_exploration",
            "initial_noise",
            "vae_warmup_epochs",
            "guard_temperature_step",
            "guard_pessimism_step",
            "guard_extra_episodes",
        ):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"{name}={v!r} must be >= 0.")
        h = self.mdn_recency_half_life
        need(
            h is None or (isinstance(h, int) and not isinstance(h, bool) and h >= 1),
            f"mdn_recency_half_life={h!r} must be None (uniform over the replay) or an integer >= 1 (real steps over "
            "which a stored step's sampling weight halves).",
        )
        need(
            0.0 <= self.death_window_fraction <= 1.0,
            f"death_window_fraction={self.death_window_fraction!r} must be in [0, 1].",
        )
        need(0.0 <= self.explorer_fraction <= 1.0, f"explorer_fraction={self.explorer_fraction!r} must be in [0, 1].")
        need(self.guard_gap_ratio > 0, f"guard gap_ratio={self.guard_gap_ratio!r} must be > 0.")
        real_env = self.env_config.get("real") if isinstance(self.env_config, dict) else None
        shaping = real_env.get("damage_penalty") if isinstance(real_env, dict) else None
        need(
            not shaping,
            f"env_config['real']['damage_penalty']={shaping!r}: the algorithm scores agents and "
            "the dream-real gap by episode return, which a shaped reward would change; drop it here and use "
            "`rllib-worldmodel fit --damage-penalty` with benchmarks/takecover_tau.py, which score frames survived.",
        )
        skip = frame_skip_of(real_env) if isinstance(real_env, dict) else 1
        if self.env == TAKECOVER_ENV and skip != 1:
            # a dream longer than the real episode would train C to survive past the real cap
            cap = episode_steps(real_env)
            need(
                self.dream_max_episode_steps <= cap,
                f"dream max_episode_steps={self.dream_max_episode_steps} is longer than the real episode: "
                f"env_config['real'] has frame_skip={skip}, so its {real_env.get('frame_cap', FRAME_CAP)}-frame cap "
                f"is {cap} steps; set .dream(max_episode_steps={cap}).",
            )
        need(
            self.guard_temperature_max > 0 and self.guard_pessimism_max >= 0,
            "guard temperature_max must be > 0 and pessimism_max >= 0.",
        )
        need(
            isinstance(self.novelty_reference_size, int) and self.novelty_reference_size >= 1,
            f"novelty_reference_size={self.novelty_reference_size!r} must be an integer >= 1.",
        )
        need(
            self.controller_trainer in CONTROLLER_TRAINERS,
            f"controller trainer={self.controller_trainer!r}: use one of {CONTROLLER_TRAINERS}.",
        )
        need(
            self.dream_algo_config is None or isinstance(self.dream_algo_config, AlgorithmConfig),
            f"dream_algo_config={self.dream_algo_config!r} must be an RLlib AlgorithmConfig (e.g. PPOConfig()).",
        )
        need(
            isinstance(self.action_repeat, int) and self.action_repeat >= 1,
            f"controller action_repeat={self.action_repeat!r} must be an integer >= 1 (1: C decides every step, "
            "paper; e.g. 50: every 50th step).",
        )
        need(
            self.action_repeat == 1 or self.controller_trainer == "cma",
            f"controller action_repeat={self.action_repeat} needs trainer='cma' (the RLlib dream trainer's own "
            "module decides every step): set action_repeat=1 or trainer='cma'.",
        )
        need(self.real_z in REAL_Z, f"controller real_z={self.real_z!r}: use one of {REAL_Z} ('sample': the paper).")
        try:  # each of the two reports its own error
            self.plan_settings().check_plannable(None, self.action_repeat)
        except ValueError as e:
            errors.append(f"controller {e}")
        try:
            check_count(
                "plan_dream_episodes", self.plan_dream_episodes, 1, "whole dreams the planning agent is scored in"
            )
        except ValueError as e:
            errors.append(f"controller {e}")
        try:
            distill = self.distill_settings()
        except ValueError as e:
            errors.append(f"controller {e}")
        else:
            need(
                not distill.enabled or (isinstance(self.plan_horizon, int) and self.plan_horizon > 0),
                f"controller distill_states={self.distill_states} fits C to the planner's choices: set "
                "plan_horizon > 0 (e.g. 12) or distill_states=0.",
            )
            need(
                not distill.enabled or self.controller_trainer == "cma",
                f"controller distill_states={self.distill_states} needs trainer='cma' (the RLlib dream trainer keeps "
                "its own policy): set trainer='cma' or distill_states=0.",
            )
            need(
                distill.enabled or distill.deploy == "planner",
                f"controller distill_deploy={self.distill_deploy!r} deploys a fitted C, and distill_states=0 fits "
                "none: set distill_states > 0 (e.g. 8000) or distill_deploy='planner'.",
            )
            need(
                distill.enabled or distill.check_episodes == 0,
                f"controller distill_check_episodes={self.distill_check_episodes} checks a fitted C in the real "
                "game, and distill_states=0 fits none: set distill_states > 0 (e.g. 8000) or "
                "distill_check_episodes=0.",
            )
        need(
            not (isinstance(self.plan_horizon, int) and self.plan_horizon > 0 and self.calibrate_deaths == "policy"),
            f"controller plan_horizon={self.plan_horizon} with dream calibrate_deaths='policy': the policy anchor is "
            "C's own real score, and a planning agent's evaluations score the planner; use "
            "calibrate_deaths='behaviour', or train without planning and switch it on afterwards "
            "(WorldModels.set_planning, `rllib-worldmodel evaluate --plan-horizon`).",
        )
        try:  # the module's own check, so config time and build time say the same
            check_precision(self.precision)
        except ValueError as e:
            errors.append(f"world_model {e}")
        need(
            self.mdn_latents in MDN_LATENTS,
            f"world_model mdn_latents={self.mdn_latents!r}: use one of {MDN_LATENTS} ('sample': the paper).",
        )
        need(
            self.mdn_latents != "mean" or self.real_z == "mean",
            "world_model(mdn_latents='mean') trains M on V's posterior means, so the agent must read real frames the "
            "same way: add .controller(real_z='mean') (CLI: --real-z mean, or leave --real-z out).",
        )
        need(
            set(self.wm_loss_weights) == {"mdn", "reward", "done"},
            f"wm_loss_weights keys {sorted(self.wm_loss_weights)} must be exactly ['done', 'mdn', 'reward'].",
        )
        need(
            self.evaluation_duration_unit == "episodes",
            "evaluation_duration_unit must be 'episodes': real scores are reported per episode.",
        )
        need(self.env is not None, "no env: call .environment('WorldModels/TakeCover-v0') or any image/vector env.")
        if errors:
            raise ValueError("invalid WorldModelsConfig:\n  - " + "\n  - ".join(errors))
