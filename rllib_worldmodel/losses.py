"""World-model losses as pure functions.

Every function returns `(loss, metrics)`: `loss` is a scalar tensor to minimise, `metrics` a dict of detached
Python floats named `world_model/<name>`. Masks are float or bool tensors, 1 where a time step is real data and 0
where it is padding; every mean below is over the masked-in elements only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `x` over the elements where `mask` is set (all of them without a mask)."""
    if mask is None:
        return x.mean()
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def gaussian_kl(mu_B_Z: torch.Tensor, logvar_B_Z: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample.

    KL = -1/2 * sum_z (1 + logvar - mu^2 - exp(logvar)).

    Args:
        mu_B_Z: Posterior means, (B, Z).
        logvar_B_Z: Posterior log-variances, (B, Z).

    Returns:
        KL per sample, (B,).
    """
    return -0.5 * (1.0 + logvar_B_Z - mu_B_Z.pow(2) - logvar_B_Z.exp()).sum(dim=-1)


def vae_loss(
    recon_B_X: torch.Tensor,
    target_B_X: torch.Tensor,
    mu_B_Z: torch.Tensor,
    logvar_B_Z: torch.Tensor,
    *,
    kl_tolerance: float = 0.5,
    kl_weight: float = 1.0,
    focus_fraction: float = 0.0,
    focus_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's VAE loss: summed squared error plus KL with a free-bits floor, optionally with hard-pixel focus.

    e_x = (recon_x - target_x)^2
    loss = mean_B [ sum_x e_x + focus_weight * sum_{x in topk(e, k)} e_x + kl_weight * max(KL_b, kl_tolerance * Z) ]
    with k = ceil(focus_fraction * X) per sample.

    The floor (paper code: `kl_tolerance = 0.5`) stops the KL term from pushing once it is below
    `kl_tolerance` nats per latent dimension, so the posterior keeps information. The focus term up-weights the
    worst-reconstructed values of each frame: small objects (TakeCover's distant fireballs and imps, a few pixels
    each) are where a young V's error concentrates, and a plain sum lets the large, easy background dominate.

    Args:
        recon_B_X: Decoder output, any shape with batch first, e.g. (B, C, H, W) or (B, D).
        target_B_X: Preprocessed observation, same shape as `recon_B_X`.
        mu_B_Z: Posterior means, (B, Z).
        logvar_B_Z: Posterior log-variances, (B, Z).
        kl_tolerance: Free nats per latent dimension; 0 disables the floor.
        kl_weight: Weight of the (floored) KL term.
        focus_fraction: Share of each sample's values (0-1] counted again in the focus term; 0 disables it.
        focus_weight: Extra weight of those worst values.

    Returns:
        (loss, metrics) with metrics `world_model/vae_{loss,recon,kl}` (`recon` is always the plain summed squared
        error, comparable with and without focus) and `world_model/vae_focus` when the focus term is on.
    """
    if recon_B_X.shape != target_B_X.shape:
        raise ValueError(f"recon shape {tuple(recon_B_X.shape)} != target shape {tuple(target_B_X.shape)}")
    err_B_X = (recon_B_X - target_B_X).pow(2).flatten(1)
    recon_B = err_B_X.sum(dim=1)
    kl_B = gaussian_kl(mu_B_Z, logvar_B_Z)
    kl_floored_B = kl_B.clamp_min(kl_tolerance * mu_B_Z.shape[-1])
    total_B = recon_B + kl_weight * kl_floored_B
    metrics = {}
    if focus_fraction > 0 and focus_weight > 0:
        k = max(1, math.ceil(focus_fraction * err_B_X.shape[1]))
        focus_B = err_B_X.topk(k, dim=1, sorted=False).values.sum(dim=1)
        total_B = total_B + focus_weight * focus_B
        metrics["world_model/vae_focus"] = focus_B.mean().item()
    loss = total_B.mean()
    metrics.update(
        {
            "world_model/vae_loss": loss.item(),
            "world_model/vae_recon": recon_B.mean().item(),
            "world_model/vae_kl": kl_B.mean().item(),
        }
    )
    return loss, metrics


def mdn_log_prob(
    logpi_B_T_Z_K: torch.Tensor, mu_B_T_Z_K: torch.Tensor, logsigma_B_T_Z_K: torch.Tensor, target_B_T_Z: torch.Tensor
) -> torch.Tensor:
    """Log-density of `target` under a per-dimension Gaussian mixture.

    log p(x_z) = logsumexp_k [ log pi_k - log sigma_k - 1/2 log(2 pi) - 1/2 ((x_z - mu_k) / sigma_k)^2 ]

    Args:
        logpi_B_T_Z_K: Log mixture weights (already log-softmaxed over K).
        mu_B_T_Z_K: Component means.
        logsigma_B_T_Z_K: Component log standard deviations.
        target_B_T_Z: Values to score.

    Returns:
        Log-density per dimension, (B, T, Z).
    """
    x = target_B_T_Z.unsqueeze(-1)
    normal = -logsigma_B_T_Z_K - 0.5 * LOG_2PI - 0.5 * ((x - mu_B_T_Z_K) * torch.exp(-logsigma_B_T_Z_K)).pow(2)
    return torch.logsumexp(logpi_B_T_Z_K + normal, dim=-1)


def mdn_nll(
    logpi_B_T_Z_K: torch.Tensor,
    mu_B_T_Z_K: torch.Tensor,
    logsigma_B_T_Z_K: torch.Tensor,
    target_B_T_Z: torch.Tensor,
    mask_B_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative log-likelihood of the next latent under M's mixture, per latent dimension.

    loss = mean_{b,t in mask} mean_z [ -log p(z_{t+1} | z_t, a_t, h_t) ]   (see `mdn_log_prob`)

    Args:
        logpi_B_T_Z_K: Log mixture weights, (B, T, Z, K), log-softmaxed over K.
        mu_B_T_Z_K: Component means, (B, T, Z, K).
        logsigma_B_T_Z_K: Component log standard deviations, (B, T, Z, K).
        target_B_T_Z: Next latents, (B, T, Z).
        mask_B_T: Valid steps, (B, T); None means all valid.

    Returns:
        (loss, metrics) with metric `world_model/mdn_nll` (nats per latent dimension).
    """
    nll_B_T = -mdn_log_prob(logpi_B_T_Z_K, mu_B_T_Z_K, logsigma_B_T_Z_K, target_B_T_Z).mean(dim=-1)
    loss = _masked_mean(nll_B_T, mask_B_T)
    return loss, {"world_model/mdn_nll": loss.item()}


def done_loss(
    logits_B_T: torch.Tensor,
    targets_B_T: torch.Tensor,
    mask_B_T: torch.Tensor | None = None,
    *,
    pos_weight: float = 10.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted binary cross-entropy of the episode-end (done) head.

    loss = mean_{b,t in mask} [ -w * y * log sigmoid(l) - (1 - y) * log(1 - sigmoid(l)) ],  w = pos_weight

    Deaths are rare (one per episode), so positives are up-weighted (paper code: `restart_factor = 10`).

    Args:
        logits_B_T: Done logits, (B, T).
        targets_B_T: 1 where the transition ended the episode by termination, else 0, (B, T).
        mask_B_T: Valid steps, (B, T); None means all valid.
        pos_weight: Weight of positive examples.

    Returns:
        (loss, metrics) with `world_model/done_{loss,recall,precision}` at threshold p > 0.5.
    """
    targets = targets_B_T.to(logits_B_T.dtype)
    bce = F.binary_cross_entropy_with_logits(
        logits_B_T, targets, pos_weight=torch.tensor(pos_weight, dtype=logits_B_T.dtype), reduction="none"
    )
    loss = _masked_mean(bce, mask_B_T)
    with torch.no_grad():
        valid = torch.ones_like(targets, dtype=torch.bool) if mask_B_T is None else mask_B_T.bool()
        pred = (logits_B_T > 0) & valid
        pos = (targets > 0.5) & valid
        tp = (pred & pos).sum().item()
        metrics = {
            "world_model/done_loss": loss.item(),
            # Recall/precision are undefined without positives/predictions; report NaN rather than a fake 0 or 1.
            "world_model/done_recall": tp / pos.sum().item() if pos.any() else float("nan"),
            "world_model/done_precision": tp / pred.sum().item() if pred.any() else float("nan"),
        }
    return loss, metrics


def reward_loss(
    pred_B_T: torch.Tensor, target_B_T: torch.Tensor, mask_B_T: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean squared error of the reward head.

    loss = mean_{b,t in mask} (r_hat - r)^2

    Args:
        pred_B_T: Predicted rewards, (B, T).
        target_B_T: Real rewards, (B, T).
        mask_B_T: Valid steps, (B, T); None means all valid.

    Returns:
        (loss, metrics) with `world_model/reward_mse`.
    """
    loss = _masked_mean((pred_B_T - target_B_T.to(pred_B_T.dtype)).pow(2), mask_B_T)
    return loss, {"world_model/reward_mse": loss.item()}


def mdn_rnn_loss_at_valid(
    pred,
    z_next_B_T_Z: torch.Tensor,
    reward_B_T: torch.Tensor,
    done_B_T: torch.Tensor,
    valid_B_T: torch.Tensor,
    *,
    loss_weights: dict[str, float],
    done_pos_weight: float,
    member_weights_E_B: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """`mdn_rnn_loss` of M's predictions at a padded batch's valid steps only (`MDNRNN.forward_valid`): the targets
    and each row's bootstrap weights are gathered at the same steps, so the loss, metrics and gradients are those of
    the padded batch with `valid_B_T` as its mask.

    Args:
        pred: M's predictions at the N valid steps, fields leading with (E, N) (row-major order of `valid_B_T`).
        z_next_B_T_Z: Next latents of the padded batch.
        reward_B_T: Real rewards.
        done_B_T: 1 where the transition terminated the episode.
        valid_B_T: Bool, the valid steps.
        loss_weights: Weights keyed exactly "mdn", "reward", "done".
        done_pos_weight: Weight of positive (done) examples.
        member_weights_E_B: Per-member row weights (bootstrap counts); None gives every member every row.

    Returns:
        (loss, metrics) as `mdn_rnn_loss`.
    """
    weights = None if member_weights_E_B is None else member_weights_E_B[:, valid_B_T.nonzero()[:, 0]]
    return mdn_rnn_loss(
        pred,
        z_next_B_T_Z[valid_B_T],
        reward_B_T[valid_B_T],
        done_B_T[valid_B_T],
        None,
        loss_weights=loss_weights,
        done_pos_weight=done_pos_weight,
        member_weights_E_B=weights,
    )


def weighted_sum(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Sum of losses times weights; the key sets must match exactly so no loss is silently dropped.

    Args:
        losses: Scalar losses by name.
        weights: Weight by the same names.
    """
    if set(losses) != set(weights):
        raise KeyError(f"loss weights {sorted(weights)} do not match computed losses {sorted(losses)}")
    return sum(weights[k] * losses[k] for k in sorted(losses))


def _nan_mean(values: list[float]) -> float:
    """Mean of the defined values (recall/precision are NaN where a member saw no positives); NaN if none."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def mdn_rnn_loss(
    pred,
    z_next_B_T_Z: torch.Tensor,
    reward_B_T: torch.Tensor,
    done_B_T: torch.Tensor,
    mask_B_T: torch.Tensor | None,
    *,
    loss_weights: dict[str, float],
    done_pos_weight: float,
    member_weights_E_B: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """M's total loss: weights["mdn"] * mdn_nll + weights["reward"] * reward_loss + weights["done"] * done_loss.

    With an ensemble (fields leading with E members) the loss is the mean of the members' losses, each member
    seeing its own bootstrap resample of the batch (`member_weights_E_B`: how often row b counts for member e).
    Metrics are the members' mean.

    The (B, T) axes may be any leading shape: M's predictions at the valid steps only (N,), with targets gathered
    the same way (`mdn_rnn_loss_at_valid`), give the same loss as the padded (B, T) batch with its mask.

    Args:
        pred: M's predictions with fields logpi, mu, logsigma ([E,] B, T, Z, K), reward and done_logit ([E,] B, T)
            (an `MDNOutput`; without the E axis it is one model).
        z_next_B_T_Z: Next latents.
        reward_B_T: Real rewards.
        done_B_T: 1 where the transition terminated the episode.
        mask_B_T: Valid steps; None means all valid.
        loss_weights: Weights keyed exactly "mdn", "reward", "done".
        done_pos_weight: Weight of positive (done) examples.
        member_weights_E_B: Per-member weights of the first leading axis (bootstrap counts of rows b, or of steps
            when the steps are flattened); None gives every member every row.

    Returns:
        (loss, metrics) with the three parts' metrics and `world_model/mdn_total_loss`.
    """
    if pred.reward.dim() == reward_B_T.dim():  # a single model without the member axis
        pred = type(pred)(*(x.unsqueeze(0) for x in pred))
    base = torch.ones_like(reward_B_T, dtype=pred.reward.dtype) if mask_B_T is None else mask_B_T.to(pred.reward.dtype)
    # unbind, not pred.logpi[e]: each indexing's backward writes a zero tensor the size of all E members' outputs
    # (measured: a fifth of a 5-member M update), unbind's backward stacks the members' gradients once.
    per_member = zip(*(x.unbind(0) for x in pred))
    totals, rows = [], []
    for e, (logpi, mu, logsigma, reward, done_logit) in enumerate(per_member):
        mask = base
        if member_weights_E_B is not None:
            weights = member_weights_E_B[e].to(base.dtype)
            mask = base * weights.view(*weights.shape, *([1] * (base.dim() - weights.dim())))
        l_mdn, m1 = mdn_nll(logpi, mu, logsigma, z_next_B_T_Z, mask)
        l_rew, m2 = reward_loss(reward, reward_B_T, mask)
        l_done, m3 = done_loss(done_logit, done_B_T, mask, pos_weight=done_pos_weight)
        totals.append(weighted_sum({"mdn": l_mdn, "reward": l_rew, "done": l_done}, loss_weights))
        rows.append({**m1, **m2, **m3})
    total = torch.stack(totals).mean()
    metrics = {k: _nan_mean([r[k] for r in rows]) for k in rows[0]}
    return total, {**metrics, "world_model/mdn_total_loss": total.item()}
