"""The world-model Learner: fits V and M of the agent module inside RLlib's LearnerGroup (CPU or GPUs).

Two batch kinds arrive through `learner_group.update(batch=...)`, each trains one part:
- V batch: `vae_obs` (B, *obs_shape) raw frames -> `vae_loss`.
- M batch: windows of latent sequences with their episode prefix, so M starts each window from the exact LSTM
  state it would have had from the episode start (state resets at episode starts; the prefix runs without
  gradients): `z_prefix` (B, P, Z), `a_prefix` (B, P, A), `prefix_len` (B,), `z_in`/`z_next` (B, T, Z), `a` (B, T, A),
  `r`/`done`/`mask` (B, T), optional `member_weights` (B, E) bootstrap counts of an ensemble M -> `mdn_nll` +
  `reward_loss` + `done_loss`, weighted by the architecture's loss_weights (the members' mean for an ensemble),
  computed at the `mask`ed steps only (M's heads run only there).
The forward passes happen in the module's `_forward_train` (so multi-learner DDP all-reduces the gradients); this
class turns them into losses. V and M have separate optimizers (and gradient clipping); C is not trained here.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rllib_worldmodel.losses import mdn_rnn_loss_at_valid, vae_loss
from rllib_worldmodel.models.mdn_rnn import MDNOutput


def window_batch_loss(fwd_out: dict[str, Any], batch: dict[str, Any], wm_config) -> tuple[torch.Tensor, dict]:
    """M's loss on a window batch from M's predictions at its valid steps (`rl_module._forward_train`, fields
    `mdn_*` leading with (E, N)): the targets and the bootstrap weights are gathered at the same steps.

    Args:
        fwd_out: The module's training outputs.
        batch: The window batch (`z_next`, `r`, `done`, `mask` (B, T), optional `member_weights` (B, E)).
        wm_config: The world model's `WorldModelConfig` (loss weights, done positive weight).

    Returns:
        (loss, metrics) as `losses.mdn_rnn_loss`.
    """
    return mdn_rnn_loss_at_valid(
        MDNOutput(*(fwd_out[f"mdn_{k}"] for k in MDNOutput._fields)),
        batch["z_next"],
        batch["r"],
        batch["done"],
        batch["mask"] > 0,
        loss_weights=wm_config.loss_weights,
        done_pos_weight=wm_config.done_pos_weight,
        member_weights_E_B=batch["member_weights"].T if "member_weights" in batch else None,
    )


class WorldModelsLearner(TorchLearner):
    """Learner with one optimizer for V ("vae") and one for M ("mdn")."""

    def _agent(self, module_id: str):
        module = self.module[module_id]
        return module.unwrapped() if hasattr(module, "unwrapped") else module  # DDP wrapper with num_learners > 1

    def configure_optimizers_for_module(self, module_id: str, config=None) -> None:
        wm = self._agent(module_id).world_model
        for name, part, lr in (("vae", wm.vae, config.vae_lr), ("mdn", wm.mdn_rnn, config.mdn_lr)):
            params = self.get_parameters(part)
            optimizer = torch.optim.Adam(params)
            self.register_optimizer(
                module_id=module_id, optimizer_name=name, optimizer=optimizer, params=params, lr_or_lr_schedule=lr
            )

    def compute_loss_for_module(self, *, module_id: str, config=None, batch: dict[str, Any], fwd_out) -> torch.Tensor:
        world_model = self._agent(module_id).world_model
        wm_config = world_model.config
        # what this Learner's device made of the precision setting ("auto" resolves per device): 1 for bfloat16
        losses, metrics = [], {"world_model/bf16": float(world_model.resolved_precision() == "bf16")}
        if "vae_recon" in fwd_out:
            loss, m = vae_loss(
                fwd_out["vae_recon"],
                fwd_out["vae_target"],
                fwd_out["vae_mu"],
                fwd_out["vae_logvar"],
                kl_tolerance=wm_config.kl_tolerance,
                focus_fraction=wm_config.vae_focus_fraction,
                focus_weight=wm_config.vae_focus_weight,
            )
            losses.append(loss)
            metrics.update(m)
        if "mdn_logpi" in fwd_out:
            total, m = window_batch_loss(fwd_out, batch, wm_config)
            losses.append(total)
            metrics.update(m)
        if not losses:
            raise ValueError(f"world-model batch has neither 'vae_obs' nor 'z_in' columns: {sorted(batch)}")
        for k, v in metrics.items():
            self.metrics.log_value((module_id, k), v, window=1)
        return sum(losses)
