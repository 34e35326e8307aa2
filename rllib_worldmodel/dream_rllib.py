"""Controller trainer (b): a stock RLlib algorithm (PPO by default) trained on the dream through EnvRunners.

The inner algorithm steps `WorldModels/Dream-v0` (DreamVectorEnv, latent observations [z, h(, c)]) with its own
EnvRunners and Learner. Its policy network IS our `Controller` (inside `DreamControllerModule`, which adds a value
head for actor-critic algorithms), so after training the weights copy 1:1 into the acting agent and the real-env
agent takes exactly the greedy action the dream policy would. The world model reaches the inner EnvRunners with
`set_world_model_state` after every fit. Dream metrics are reported under `dream/rllib/...`; dream steps never enter
the outer algorithm's real-step counters.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rllib_worldmodel.dream import DreamSettings
from rllib_worldmodel.models.controller import Controller
from rllib_worldmodel.models.world_model import WorldModel
from rllib_worldmodel.registration import DREAM_ENV


class DreamControllerModule(TorchRLModule, ValueFunctionAPI):
    """Policy = our Controller (logits for Discrete actions); value = a small MLP. model_config: `hidden`,
    `vf_hidden`."""

    def setup(self) -> None:
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise ValueError("the 'rllib' controller trainer supports Discrete actions; use 'cma' for Box actions.")
        d = int(self.observation_space.shape[0])
        self.pi = Controller(d, self.action_space, hidden=int(self.model_config.get("hidden", 0)))
        h = int(self.model_config.get("vf_hidden", 64))
        self.vf = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, 1))

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        return self.vf(batch[Columns.OBS]).squeeze(-1)


class DreamRLlibTrainer:
    """Trains the controller with an RLlib algorithm on the dream env.

    Args:
        algo_config: The inner algorithm's config (PPO, APPO, IMPALA: actor-critic algorithms whose policy can be
            `DreamControllerModule`). Its env, module and runner settings are filled in here.
        settings: The dream settings (temperature, cap, ...).
        controller_hidden: Hidden units of the Controller (must match the acting agent's).
        num_envs: Dreams per inner EnvRunner.
        workdir: Where the initial world-model checkpoint for the dream env is written.
    """

    def __init__(
        self,
        algo_config: AlgorithmConfig,
        settings: DreamSettings,
        controller_hidden: int,
        num_envs: int,
        workdir: str | os.PathLike,
    ):
        self.algo_config = algo_config
        self.settings = settings
        self.controller_hidden = controller_hidden
        self.num_envs = num_envs
        self.workdir = Path(workdir)
        self.algo = None

    def _build(self, world_model: WorldModel) -> None:
        path = world_model.save(self.workdir / "dream_world_model.pt")
        # every setting (calibrated done-logit offset, pessimism, reward clipping, ...), not only tau and the cap
        # (no seed: every inner EnvRunner would otherwise dream the same noise; RLlib seeds their resets)
        settings = {k: v for k, v in dataclasses.asdict(self.settings).items() if k != "seed"}
        dream = {"world_model": str(path), **settings}
        cfg = (
            self.algo_config.copy(copy_frozen=False)
            .environment(DREAM_ENV, env_config={"dream": dream})
            .env_runners(num_envs_per_env_runner=self.num_envs, gym_env_vectorize_mode="vector_entry_point")
            .rl_module(
                rl_module_spec=RLModuleSpec(
                    module_class=DreamControllerModule, model_config={"hidden": self.controller_hidden}
                )
            )
        )
        self.algo = cfg.build_algo()

    def sync_world_model(self, world_model: WorldModel, settings: DreamSettings | None = None) -> None:
        """Push the latest world model (weights and dream start states) and dream settings (this iteration's tau,
        pessimism, done-logit offset, ...) into every inner dream EnvRunner."""
        if settings is not None:
            self.settings = settings
        if self.algo is None:
            self._build(world_model)
            return
        state = {k: v.cpu() for k, v in world_model.state_dict().items()}
        init, current = world_model.initial_states.cpu(), self.settings

        def push(er):
            if er.env is not None:  # a local EnvRunner beside remote ones has no env
                er.env.unwrapped.set_world_model_state(state, initial_states=init, settings=current)

        self.algo.env_runner_group.foreach_env_runner(push, local_env_runner=True)

    def train(
        self, world_model: WorldModel, iterations: int, settings: DreamSettings | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Run the inner algorithm; return the trained controller's state dict and `dream/rllib/...` metrics.

        Args:
            world_model: The latest world model.
            iterations: Inner `train()` calls.
            settings: This iteration's dream settings (None: the last ones).
        """
        self.sync_world_model(world_model, settings)
        steps_before = self._steps()
        result = {}
        for _ in range(iterations):
            result = self.algo.train()
        runners = result.get("env_runners", {})
        metrics = {
            "dream/rllib/episode_return_mean": float(runners.get("episode_return_mean", float("nan"))),
            "dream/rllib/episode_len_mean": float(runners.get("episode_len_mean", float("nan"))),
            "dream/num_env_steps_sampled": self._steps() - steps_before,
        }
        module = self.algo.get_module(DEFAULT_MODULE_ID)
        return {k: v.detach().cpu() for k, v in module.pi.state_dict().items()}, metrics

    def _steps(self) -> int:
        if self.algo is None:
            return 0
        return int(self.algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"), default=0))

    def get_state(self) -> dict | None:
        """The inner algorithm's state (module, optimizer, counters) for checkpoints."""
        return None if self.algo is None else self.algo.get_state()

    def set_state(self, state: dict | None, world_model: WorldModel) -> None:
        """Rebuild the inner algorithm from `state` (after a restore)."""
        if state is not None:
            self._build(world_model)
            self.algo.set_state(state)

    def stop(self) -> None:
        if self.algo is not None:
            self.algo.stop()
