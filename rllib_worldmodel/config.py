"""WorldModelsConfig: every setting of the World Models loop, with defaults that cite their source."""

from __future__ import annotations

import math
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_worldmodel.dream import DONE_MODES, validate_temperature
from rllib_worldmodel.evaluation import evaluate_real_and_dream

CONTROLLER_TRAINERS = ("cma", "rllib")


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
        # world model fitting (per iteration)
        self.vae_lr = 1e-3  # measured: 1e-3 beats the paper code's 1e-4 on small data (trainer.py)
        self.mdn_lr = 1e-3  # paper code
        self.vae_batch_size = 100  # paper code
        self.vae_epochs_per_iteration = 1.0
        self.mdn_batch_size = 32
        self.mdn_seq_len = 128
        self.mdn_epochs_per_iteration = 10.0
        self.replay_capacity = 200_000  # real steps kept (uint8 64x64x3: 12 KiB each, ~2.3 GiB)
        # real data collection
        self.real_episodes_per_iteration = 100
        self.random_iterations = 1  # paper: the first data comes from random actions held 1-10 steps
        self.random_hold_prob = 0.05
        self.explore_epsilon = 0.0
        # dream
        self.temperature = 1.15  # paper's best TakeCover tau
        self.dream_max_episode_steps = 2100  # paper's TakeCover cap
        self.done_mode = "threshold"  # paper: done where p > 0.5
        self.include_cell = False
        self.dream_device = "auto"
        # controller
        self.controller_trainer = "cma"
        self.controller_hidden = 0  # paper: one linear layer
        self.cma_population = 64  # paper
        self.cma_rollouts = 16  # paper
        self.cma_sigma_init = 0.1  # paper code
        self.cma_generations_per_iteration = 10
        self.dream_algo_config = None  # for trainer="rllib": an RLlib AlgorithmConfig; None -> PPOConfig()
        self.dream_algo_iterations = 5
        self.dream_num_envs = 64
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
        replay_capacity: int = NotProvided,
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
            vae_epochs_per_iteration: V passes over the replay per iteration (fractional allowed).
            mdn_batch_size: Sequence windows per M update.
            mdn_seq_len: Window length; each window starts from the exact LSTM state of its episode prefix.
            mdn_epochs_per_iteration: M passes (in steps) over the replay per iteration.
            replay_capacity: Real env steps kept in the EpisodeReplayBuffer.
        """
        return self._set_provided({k: v for k, v in locals().items() if k != "self"})

    def collection(
        self,
        *,
        real_episodes_per_iteration: int = NotProvided,
        random_iterations: int = NotProvided,
        random_hold_prob: float = NotProvided,
        explore_epsilon: float = NotProvided,
    ) -> WorldModelsConfig:
        """Real-data collection (iterative training: later iterations collect with the current agent).

        Args:
            real_episodes_per_iteration: Real episodes collected per iteration.
            random_iterations: Iterations that act only with random actions held 1-10 steps (paper).
            random_hold_prob: Per-step chance that the agent starts a random action held 1-10 steps.
            explore_epsilon: Per-step chance of one uniformly random action.
        """
        return self._set_provided({k: v for k, v in locals().items() if k != "self"})

    def dream(
        self,
        *,
        temperature: float = NotProvided,
        max_episode_steps: int = NotProvided,
        done_mode: str = NotProvided,
        include_cell: bool = NotProvided,
        device: str = NotProvided,
    ) -> WorldModelsConfig:
        """The dream the controller trains in.

        Args:
            temperature: tau > 0 (paper's best TakeCover: 1.15).
            max_episode_steps: Dream truncation (paper TakeCover: 2100).
            done_mode: "threshold" (p > 0.5, paper) or "sample".
            include_cell: Controller input [z, h, c] instead of [z, h].
            device: Where the controller's dreams run: "auto", "cpu", "cuda", ...
        """
        return self._set_provided(
            {
                "temperature": temperature,
                "dream_max_episode_steps": max_episode_steps,
                "done_mode": done_mode,
                "include_cell": include_cell,
                "dream_device": device,
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
        dream_eval_episodes: int = NotProvided,
        real_z: str = NotProvided,
        dream_algo_config: AlgorithmConfig = NotProvided,
        dream_algo_iterations: int = NotProvided,
        dream_num_envs: int = NotProvided,
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
            dream_eval_episodes: Dreams used to score the deployed controller (reported beside its real score).
            real_z: "sample" (paper) or "mean": how the agent turns a real frame into z.
            dream_algo_config: For trainer="rllib": the inner algorithm's config (default PPOConfig()); its env,
                RLModule and vectorization are set by WorldModels.
            dream_algo_iterations: For trainer="rllib": inner training iterations per WorldModels iteration.
            dream_num_envs: For trainer="rllib": dreams per inner EnvRunner.
        """
        return self._set_provided(
            {
                "controller_trainer": trainer,
                "controller_hidden": hidden,
                "cma_population": cma_population,
                "cma_rollouts": cma_rollouts,
                "cma_sigma_init": cma_sigma_init,
                "cma_generations_per_iteration": cma_generations_per_iteration,
                "dream_eval_episodes": dream_eval_episodes,
                "real_z": real_z,
                "dream_algo_config": dream_algo_config,
                "dream_algo_iterations": dream_algo_iterations,
                "dream_num_envs": dream_num_envs,
            }
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
            "include_cell": self.include_cell,
            "real_z": self.real_z,
            "random_hold_prob": self.random_hold_prob,
            "epsilon": self.explore_epsilon,
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
        for name in ("vae_epochs_per_iteration", "mdn_epochs_per_iteration", "vae_lr", "mdn_lr", "cma_sigma_init"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f"{name}={v!r} must be > 0.")
        for name in ("random_hold_prob", "explore_epsilon"):
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, f"{name}={v!r} must be a probability in [0, 1].")
        try:
            validate_temperature(self.temperature)
        except ValueError as e:
            errors.append(str(e))
        need(self.done_mode in DONE_MODES, f"done_mode={self.done_mode!r}: use one of {DONE_MODES}.")
        need(
            self.controller_trainer in CONTROLLER_TRAINERS,
            f"controller trainer={self.controller_trainer!r}: use one of {CONTROLLER_TRAINERS}.",
        )
        need(
            self.dream_algo_config is None or isinstance(self.dream_algo_config, AlgorithmConfig),
            f"dream_algo_config={self.dream_algo_config!r} must be an RLlib AlgorithmConfig (e.g. PPOConfig()).",
        )
        need(self.real_z in ("sample", "mean"), f"real_z={self.real_z!r}: use 'sample' (paper) or 'mean'.")
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
