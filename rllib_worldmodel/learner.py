"""The world-model Learner: fits V and M of the agent module inside RLlib's LearnerGroup (CPU or GPUs).

Two batch kinds arrive through `learner_group.update(batch=...)`, each trains one part:
- V batch: `vae_obs` (B, *obs_shape) raw frames -> `vae_loss`.
- M batch: windows of latent sequences with their episode prefix, so M starts each window from the exact LSTM
  state it would have had from the episode start (state resets at episode starts; the prefix is run without
  gradients): `z_prefix` (B, P, Z), `a_prefix` (B, P, A), `prefix_len` (B,), `z_in`/`z_next` (B, T, Z), `a` (B, T, A),
  `r`/`done`/`mask` (B, T) -> `mdn_nll` + `reward_loss` + `done_loss`, weighted by the architecture's loss_weights.
V and M have separate optimizers (and gradient clipping); C is not trained by gradients here.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from torch.nn.utils.rnn import pack_padded_sequence

from rllib_worldmodel.losses import done_loss, mdn_nll, reward_loss, vae_loss, weighted_sum


class WorldModelsLearner(TorchLearner):
    """Learner with one optimizer for V ("vae") and one for M ("mdn")."""

    def configure_optimizers_for_module(self, module_id: str, config=None) -> None:
        module = self.module[module_id]
        for name, part, lr in (
            ("vae", module.world_model.vae, config.vae_lr),
            ("mdn", module.world_model.mdn_rnn, config.mdn_lr),
        ):
            params = self.get_parameters(part)
            optimizer = torch.optim.Adam(params)
            self.register_optimizer(
                module_id=module_id, optimizer_name=name, optimizer=optimizer, params=params, lr_or_lr_schedule=lr
            )

    def compute_loss_for_module(self, *, module_id: str, config=None, batch: dict[str, Any], fwd_out) -> torch.Tensor:
        wm = self.module[module_id].world_model
        losses, metrics = [], {}
        if "vae_obs" in batch:
            target = wm.vae.preprocess(batch["vae_obs"])
            mu, logvar = wm.vae.encode_target(target)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            loss, m = vae_loss(wm.vae.decode(z), target, mu, logvar, kl_tolerance=wm.config.kl_tolerance)
            losses.append(loss)
            metrics.update(m)
        if "z_in" in batch:
            loss, m = self._mdn_loss(wm, batch)
            losses.append(loss)
            metrics.update(m)
        if not losses:
            raise ValueError(f"world-model batch has neither 'vae_obs' nor 'z_in' columns: {sorted(batch)}")
        for k, v in metrics.items():
            self.metrics.log_value((module_id, k), v, window=1)
        return sum(losses)

    @staticmethod
    def _mdn_loss(wm, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        m_rnn = wm.mdn_rnn
        b = batch["z_in"].shape[0]
        h0, c0 = m_rnn.initial_state(b, batch["z_in"].device)
        lengths = batch["prefix_len"].long()
        has_prefix = lengths > 0
        if has_prefix.any():
            with torch.no_grad():
                x = torch.cat([batch["z_prefix"], batch["a_prefix"]], dim=-1)[has_prefix]
                packed = pack_padded_sequence(x, lengths[has_prefix].cpu(), batch_first=True, enforce_sorted=False)
                _, (hn, cn) = m_rnn.lstm(packed)
            h0, c0 = h0.clone(), c0.clone()
            h0[has_prefix], c0[has_prefix] = hn[0], cn[0]
        out, _, _ = m_rnn(batch["z_in"], batch["a"], (h0, c0))
        mask = batch["mask"]
        l_mdn, m1 = mdn_nll(out.logpi, out.mu, out.logsigma, batch["z_next"], mask)
        l_rew, m2 = reward_loss(out.reward, batch["r"], mask)
        l_done, m3 = done_loss(out.done_logit, batch["done"], mask, pos_weight=wm.config.done_pos_weight)
        total = weighted_sum({"mdn": l_mdn, "reward": l_rew, "done": l_done}, wm.config.loss_weights)
        return total, {**m1, **m2, **m3, "world_model/mdn_total_loss": total.item()}
