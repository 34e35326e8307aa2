"""Fitting the world model on recorded episodes: V first, then M on latents sampled from V's posterior.

This is the offline path (the paper's pipeline and the `rllib-worldmodel fit` command). Each phase reports per-epoch
metrics named `world_model/...` to a callback and, if given, a tensorboardX writer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rllib_worldmodel.data import Episode
from rllib_worldmodel.done_refit import EncodedEpisode, refit_done_on_dreams
from rllib_worldmodel.losses import mdn_rnn_loss_at_valid, vae_loss
from rllib_worldmodel.models.world_model import WorldModel

MetricsCallback = Callable[[str, int, dict[str, float]], None]
MDN_LATENTS = ("sample", "mean")
# The log-variance that makes a posterior a point (std e^-15): how "mean" latents are stored, so every consumer of
# (mu, logvar) pairs (M's batches, the dream's start states, branch points) gets mu without a special case.
POINT_LOGVAR = -30.0


def latent_logvar(logvar: torch.Tensor, mdn_latents: str) -> torch.Tensor:
    """The log-variances M's latents are drawn with: V's own ("sample", the paper) or `POINT_LOGVAR` ("mean")."""
    return torch.full_like(logvar, POINT_LOGVAR) if mdn_latents == "mean" else logvar


@dataclass
class EpisodeLatents:
    """V's posterior for every observation of one episode: mu and logvar, each (T+1, Z), on the CPU."""

    mu: torch.Tensor
    logvar: torch.Tensor


def _mean_metrics(rows: list[dict[str, float]], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Per-key (weighted) mean over rows, ignoring NaNs (e.g. recall in a batch without deaths)."""
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=float)
    out = {}
    for k in rows[0]:
        v = np.array([r[k] for r in rows], dtype=float)
        ok = ~np.isnan(v) & (w > 0)
        out[k] = float(np.average(v[ok], weights=w[ok])) if ok.any() else float("nan")
    return out


class WorldModelTrainer:
    """Optimisers and loops that fit a `WorldModel` on episodes.

    Args:
        model: The world model to train (moved to `device`).
        device: Torch device ("cpu", "cuda", ...).
        vae_lr: Adam learning rate for V (paper code: 1e-4).
        mdn_lr: Adam learning rate for M (paper code: 1e-3).
        grad_clip: Global gradient-norm clip for both (paper code: 1.0).
        seed: Seeds batch order and latent sampling.
        on_metrics: Called as on_metrics(phase, epoch, metrics) after every epoch.
        writer: Optional tensorboardX SummaryWriter; metrics are added as scalars.
        mdn_latents: What M reads and predicts: "sample" (paper: z drawn from V's posterior anew every batch) or
            "mean" (V's posterior mean, so M models the scene's dynamics without V's per-frame noise). Measured on
            TakeCover (benchmarks/dream_position.py): dreamed latents stay nearer the real ones (about half as
            many read as a position outside the room) and dreamed always-left reaches the left wall; the dream's
            survival ranking did not improve (RESULTS.md). Dream start states and branch points then hold the means
            too; play the real game with the agent's `real_z="mean"`.
    """

    def __init__(
        self,
        model: WorldModel,
        device: str | torch.device = "cpu",
        vae_lr: float = 1e-3,
        mdn_lr: float = 1e-3,
        grad_clip: float = 1.0,
        seed: int = 0,
        on_metrics: MetricsCallback | None = None,
        writer=None,
        mdn_latents: str = "sample",
    ):
        if mdn_latents not in MDN_LATENTS:
            raise ValueError(f"mdn_latents={mdn_latents!r}: use one of {MDN_LATENTS} ('sample': the paper).")
        self.mdn_latents = mdn_latents
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.vae_opt = torch.optim.Adam(model.vae.parameters(), lr=vae_lr)
        self.mdn_opt = torch.optim.Adam(model.mdn_rnn.parameters(), lr=mdn_lr)
        self.grad_clip = grad_clip
        self.rng = np.random.default_rng(seed)
        self.torch_gen = torch.Generator(device=self.device).manual_seed(seed)
        self._cpu_gen = torch.Generator().manual_seed(seed)  # latent sampling for M's batches (built on the CPU)
        self.on_metrics = on_metrics
        self.writer = writer
        self._global_step = {"vae": 0, "mdn": 0}

    def _report(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        if self.writer is not None:
            for k, v in metrics.items():
                if not math.isnan(v):
                    self.writer.add_scalar(k, v, self._global_step[phase])
        if self.on_metrics is not None:
            self.on_metrics(phase, epoch, metrics)

    def _optimise(self, loss: torch.Tensor, opt: torch.optim.Optimizer, params) -> float:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if not torch.isfinite(norm):
            # A non-finite gradient would poison the weights; skip the step and say so in the metrics.
            opt.zero_grad(set_to_none=True)
            return float("nan")
        opt.step()
        return float(norm)

    # ----------------------------------------------------------------------------------------------------- V
    def fit_vae(self, episodes: Sequence[Episode], epochs: float = 1.0, batch_size: int = 100) -> list[dict]:
        """Train V on every observation of `episodes` (uniformly shuffled), for a possibly fractional number of epochs.

        Returns:
            One metrics dict per (partial) epoch: `world_model/vae_{loss,recon,kl}`, images per second.
        """
        index = np.concatenate(
            [np.stack([np.full(len(e) + 1, i), np.arange(len(e) + 1)], 1) for i, e in enumerate(episodes)]
        )
        per_epoch = math.ceil(len(index) / batch_size)
        total_batches = max(1, round(epochs * per_epoch))
        vae, history, cfg = self.model.vae, [], self.model.config
        vae.train()
        for epoch in range(math.ceil(total_batches / per_epoch)):
            order = self.rng.permutation(len(index))
            rows, t0 = [], time.perf_counter()
            n_batches = min(per_epoch, total_batches - epoch * per_epoch)
            for b in range(n_batches):
                idx = index[order[b * batch_size : (b + 1) * batch_size]]
                obs = torch.from_numpy(np.stack([episodes[e].obs[t] for e, t in idx])).to(self.device)
                with self.model.compute():  # the model's precision (`WorldModel.set_precision`); losses in float32
                    target = vae.preprocess(obs)
                    mu, logvar = vae.encode_target(target)
                    noise = torch.randn(mu.shape, device=self.device, generator=self.torch_gen)
                    recon = vae.decode(mu + (0.5 * logvar).exp() * noise)
                loss, m = vae_loss(
                    recon.float(),
                    target.float(),
                    mu.float(),
                    logvar.float(),
                    kl_tolerance=cfg.kl_tolerance,
                    focus_fraction=cfg.vae_focus_fraction,
                    focus_weight=cfg.vae_focus_weight,
                )
                m["world_model/vae_grad_norm"] = self._optimise(loss, self.vae_opt, vae.parameters())
                rows.append(m)
                self._global_step["vae"] += 1
            metrics = _mean_metrics(rows)
            metrics["world_model/vae_images_per_s"] = n_batches * batch_size / (time.perf_counter() - t0)
            history.append(metrics)
            self._report("vae", epoch, metrics)
        vae.eval()
        return history

    @torch.no_grad()
    def encode_episodes(self, episodes: Sequence[Episode], batch_size: int = 512) -> list[EpisodeLatents]:
        """V's posterior (mu, logvar) for every observation, and store episode starts as the dream's initial states.
        With `mdn_latents="mean"` the log-variances are `POINT_LOGVAR`: the posterior is its mean."""
        self.model.vae.eval()
        out = []
        for ep in episodes:
            mu, logvar = self.model.encode_frames(ep.obs, batch_size)
            out.append(EpisodeLatents(mu, latent_logvar(logvar, self.mdn_latents)))
        self.model.set_initial_states(
            torch.stack([lat.mu[0] for lat in out]), torch.stack([lat.logvar[0] for lat in out])
        )
        return out

    @torch.no_grad()
    def store_branch_points(
        self, episodes: Sequence[Episode], latents: Sequence[EpisodeLatents], every: int = 10, batch_size: int = 64
    ) -> int:
        """Store every `every`-th real state of `episodes` as a dream branch point (`WorldModel.store_branch_points`);
        returns how many."""
        return self.model.store_branch_points(
            self.encoded_episodes(episodes, latents), every=every, batch_size=batch_size
        )

    def encoded_episodes(self, episodes: Sequence[Episode], latents: Sequence[EpisodeLatents]) -> list[EncodedEpisode]:
        """Episodes with their latents (`encode_episodes`) as `done_refit.EncodedEpisode`s: what branch points and
        the done refit read."""
        enc = self.model.encode_action
        return [
            (lat.mu, lat.logvar, enc(torch.as_tensor(ep.actions, device=self.device)).cpu(), bool(ep.terminated))
            for ep, lat in zip(episodes, latents)
        ]

    def refit_done_on_dreams(
        self, episodes: Sequence[Episode], latents: Sequence[EpisodeLatents], **settings
    ) -> dict[str, float]:
        """Refit M's done head on dreams from these episodes' real states, labelled with their real deaths
        (`done_refit.refit_done_on_dreams`; `settings` are its keyword arguments). Reports and returns its metrics."""
        metrics = refit_done_on_dreams(self.model, self.encoded_episodes(episodes, latents), **settings)
        self._report("mdn", 0, metrics)
        return metrics

    # ----------------------------------------------------------------------------------------------------- M
    def _mdn_batch(self, episodes: Sequence[Episode], latents: Sequence[EpisodeLatents]) -> dict:
        """Pad a batch of episodes to the longest; z is re-sampled from V's posterior every time (paper)."""
        t_pad = max(len(e) for e in episodes)
        b, zs = len(episodes), self.model.config.z_size
        z = torch.zeros(b, t_pad + 1, zs)
        act = torch.zeros(b, t_pad, self.model.config.action_dim)
        rew, done, mask = torch.zeros(b, t_pad), torch.zeros(b, t_pad), torch.zeros(b, t_pad)
        for i, (ep, lat) in enumerate(zip(episodes, latents)):
            t = len(ep)
            eps = torch.randn(lat.mu.shape, generator=self._cpu_gen)
            z[i, : t + 1] = lat.mu + (0.5 * lat.logvar).exp() * eps
            act[i, :t] = self.model.encode_action(torch.as_tensor(ep.actions))
            rew[i, :t] = torch.as_tensor(ep.rewards)
            done[i, t - 1] = float(ep.terminated)
            mask[i, :t] = 1.0
        d = self.device
        return {
            "z_in": z[:, :-1].to(d),
            "z_next": z[:, 1:].to(d),
            "a": act.to(d),
            "r": rew.to(d),
            "done": done.to(d),
            "mask": mask.to(d),
            "T": t_pad,
        }

    def mdn_losses(
        self, batch: dict, seq_len: int, train: bool, closed_loop: float = 0.0, closed_loop_horizon: int = 1
    ) -> dict[str, float]:
        """Truncated BPTT over one padded batch; the LSTM state starts at zero (episode start) and is carried across
        chunks. With `train`, M takes an optimiser step per chunk. `closed_loop` > 0: scheduled sampling with
        free-running segments of `closed_loop_horizon` steps (see `MDNRNN.forward_closed_loop`)."""
        m_rnn, weights = self.model.mdn_rnn, self.model.config.loss_weights
        state, rows, tokens = None, [], []
        members = None
        if train and m_rnn.num_heads > 1:  # online bootstrap: each member sees each episode Poisson(1) times
            rows_b = batch["mask"].shape[0]
            members = torch.from_numpy(self.rng.poisson(1.0, (m_rnn.num_heads, rows_b)).astype(np.float32))
            members = members.to(batch["mask"].device)
        for s in range(0, batch["T"], seq_len):
            sl = slice(s, s + seq_len)
            mask = batch["mask"][:, sl]
            tokens.append(mask.sum().item())
            if tokens[-1] == 0:
                break
            valid = mask > 0  # M's heads and loss only where the chunk holds steps (padding has weight 0)
            with self.model.compute():
                out, state = m_rnn.forward_valid(
                    batch["z_in"][:, sl],
                    batch["a"][:, sl],
                    valid,
                    state,
                    closed_loop,
                    self.torch_gen,
                    closed_loop_horizon,
                )
            out = type(out)(*(x.float() for x in out))
            state = tuple(x.detach().float() for x in state)
            loss, row = mdn_rnn_loss_at_valid(
                out,
                batch["z_next"][:, sl],
                batch["r"][:, sl],
                batch["done"][:, sl],
                valid,
                loss_weights=weights,
                done_pos_weight=self.model.config.done_pos_weight,
                member_weights_E_B=members,
            )
            if train:
                row["world_model/mdn_grad_norm"] = self._optimise(loss, self.mdn_opt, m_rnn.parameters())
            rows.append(row)
        return _mean_metrics(rows, tokens[: len(rows)])  # token-weighted, so chunking does not skew the means

    def fit_mdn(
        self,
        episodes: Sequence[Episode],
        latents: Sequence[EpisodeLatents],
        epochs: int = 20,
        batch_size: int = 32,
        seq_len: int = 500,
        val_fraction: float = 0.1,
        closed_loop: float = 0.0,
        closed_loop_horizon: int = 1,
    ) -> list[dict]:
        """Train M on latent sequences; a held-out fraction of episodes reports `world_model/mdn_val_nll`.

        Args:
            episodes: The episodes (actions, rewards, terminations).
            latents: `encode_episodes(episodes)`.
            epochs: Passes over the training episodes.
            batch_size: Episodes per batch.
            seq_len: Truncated-BPTT chunk length (paper code: 500).
            val_fraction: Share of episodes held out (none if it rounds to 0 or fewer than 5 episodes).
            closed_loop: Scheduled sampling: probability that an input latent is M's own sample instead of the real
                one (0: teacher forcing, the paper; see `MDNRNN.forward_closed_loop`). Validation stays
                teacher-forced, so its NLL is comparable across settings.
            closed_loop_horizon: Length of the free-running segments (1: the choice is drawn per step; k >= 2: M
                re-reads the real latent every k steps and, with probability `closed_loop`, dreams the k - 1 in
                between, so it learns what sustained actions do).
        """
        if len(episodes) != len(latents):
            raise ValueError("episodes and latents must have the same length")
        n_val = int(len(episodes) * val_fraction) if len(episodes) >= 5 else 0
        perm = self.rng.permutation(len(episodes))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        history = []
        for epoch in range(epochs):
            self.model.mdn_rnn.train()
            rows, t0, tokens = [], time.perf_counter(), 0
            order = self.rng.permutation(train_idx)
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                batch = self._mdn_batch([episodes[i] for i in idx], [latents[i] for i in idx])
                rows.append(self.mdn_losses(batch, seq_len, True, closed_loop, closed_loop_horizon))
                tokens += int(batch["mask"].sum().item())
                self._global_step["mdn"] += 1
            metrics = _mean_metrics(rows)
            metrics["world_model/mdn_tokens_per_s"] = tokens / (time.perf_counter() - t0)
            if n_val:
                metrics.update(
                    self.evaluate_mdn([episodes[i] for i in val_idx], [latents[i] for i in val_idx], seq_len)
                )
            history.append(metrics)
            self._report("mdn", epoch, metrics)
        self.model.mdn_rnn.eval()
        return history

    @torch.no_grad()
    def evaluate_mdn(self, episodes: Sequence[Episode], latents: Sequence[EpisodeLatents], seq_len: int = 500) -> dict:
        """Held-out M metrics, renamed `world_model/val_*`."""
        self.model.mdn_rnn.eval()
        m = self.mdn_losses(self._mdn_batch(episodes, latents), seq_len, train=False)
        return {k.replace("world_model/", "world_model/val_"): v for k, v in m.items()}

    def fit(
        self,
        episodes: Sequence[Episode],
        vae_epochs: float = 1.0,
        mdn_epochs: int = 20,
        vae_batch_size: int = 100,
        mdn_batch_size: int = 32,
        seq_len: int = 500,
        closed_loop: float = 0.0,
        closed_loop_horizon: int = 1,
        done_refit_horizon: int = 0,
        done_refit_temperature: float = 1.15,
    ) -> dict[str, list[dict]]:
        """Fit V, encode every episode (storing dream start states), fit M (`closed_loop`, `closed_loop_horizon`: see
        `fit_mdn`), optionally refit the done head on dreams (`done_refit_horizon` > 0 steps at τ
        `done_refit_temperature`: `refit_done_on_dreams`), then store branch points (every 10th real state,
        `store_branch_points`). Returns the histories ("vae", "mdn", and "done_refit": [metrics] or []).

        `vae_epochs=0` keeps V as it is (fine-tuning M of a loaded world model); V's history is then empty.
        `mdn_epochs=0` likewise keeps M (e.g. only the done refit on a loaded world model).
        """
        if not episodes:
            raise ValueError("fit needs at least one episode")
        if vae_epochs < 0:
            raise ValueError(f"vae_epochs={vae_epochs} must be >= 0 (0 keeps V as it is).")
        vae_hist = self.fit_vae(episodes, epochs=vae_epochs, batch_size=vae_batch_size) if vae_epochs > 0 else []
        latents = self.encode_episodes(episodes)
        mdn_hist = self.fit_mdn(
            episodes,
            latents,
            epochs=mdn_epochs,
            batch_size=mdn_batch_size,
            seq_len=seq_len,
            closed_loop=closed_loop,
            closed_loop_horizon=closed_loop_horizon,
        )
        refit = []
        if done_refit_horizon > 0:
            refit.append(
                self.refit_done_on_dreams(
                    episodes, latents, horizon=done_refit_horizon, temperature=done_refit_temperature
                )
            )
        self.store_branch_points(episodes, latents)
        return {"vae": vae_hist, "mdn": mdn_hist, "done_refit": refit}
