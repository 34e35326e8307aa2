"""The world model W = (V, M): its architecture record, action encoding and versioned checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rllib_worldmodel.models.mdn_rnn import MDNRNN
from rllib_worldmodel.models.vae import ConvVAE, MLPVAE
from rllib_worldmodel.precision import autocast, check_precision, resolve_precision

CHECKPOINT_FORMAT = "rllib_worldmodel.world_model"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A world-model checkpoint is missing, unreadable or does not fit the requested architecture."""


# Fields that shape the training loss only: a checkpoint fitted with other values still fits the architecture.
LOSS_ONLY_FIELDS = ("loss_weights", "vae_focus_fraction", "vae_focus_weight")


@dataclass
class WorldModelConfig:
    """Architecture of a world model; recorded in every checkpoint.

    Args:
        obs_kind: "image" (uint8 64x64xC frames, ConvVAE) or "vector" (flat floats, MLPVAE).
        obs_shape: Observation shape, (64, 64, C) for images or (D,) for vectors.
        action_kind: "discrete" (one-hot encoded for M) or "continuous" (fed to M as is).
        action_dim: Number of discrete actions, or the size of a continuous action.
        action_low: Lower bounds of a continuous action (empty for discrete).
        action_high: Upper bounds of a continuous action (empty for discrete).
        z_size: V's latent size (paper §A.1: 32 CarRacing, 64 Doom).
        rnn_size: M's LSTM units (paper §A.2: 256 CarRacing, 512 Doom).
        num_mixtures: Gaussian components per latent dimension (paper §A.2: 5).
        vae_hidden: Hidden width of the MLP VAE (vector observations only).
        kl_tolerance: Free nats per latent dimension in V's KL term (paper code: 0.5).
        done_pos_weight: Weight of positive (episode-end) examples in the done BCE (paper code: 10).
        logsigma_min: Floor on M's component log-sigma.
        logsigma_max: Ceiling on M's component log-sigma.
        loss_weights: Weights of M's losses; keys must be exactly "mdn", "reward", "done".
        num_heads: M's ensemble size E (1: the paper's single M; >= 2: E heads whose disagreement is measured).
        done_bias_init: Initial done-logit bias (a prior on deaths); None keeps PyTorch's default init.
        vae_focus_fraction: Share of each frame's worst-reconstructed values that V's loss counts again (0: off,
            the paper's plain squared error); see `losses.vae_loss`.
        vae_focus_weight: Extra weight of those values.
    """

    obs_kind: str
    obs_shape: tuple[int, ...]
    action_kind: str
    action_dim: int
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    z_size: int = 32
    rnn_size: int = 256
    num_mixtures: int = 5
    vae_hidden: int = 64
    kl_tolerance: float = 0.5
    done_pos_weight: float = 10.0
    logsigma_min: float = -6.0
    logsigma_max: float = 3.0
    loss_weights: dict[str, float] = field(default_factory=lambda: {"mdn": 1.0, "reward": 1.0, "done": 1.0})
    num_heads: int = 1
    done_bias_init: float | None = None
    vae_focus_fraction: float = 0.0
    vae_focus_weight: float = 0.0

    def __post_init__(self) -> None:
        self.obs_shape = tuple(int(s) for s in self.obs_shape)
        self.action_low = tuple(float(x) for x in self.action_low)
        self.action_high = tuple(float(x) for x in self.action_high)
        self.loss_weights = {k: float(v) for k, v in self.loss_weights.items()}
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field and the fix for any inconsistent setting."""
        if self.obs_kind not in ("image", "vector"):
            raise ValueError(f"obs_kind={self.obs_kind!r}: use 'image' (64x64xC uint8 frames) or 'vector'.")
        if self.obs_kind == "image" and (len(self.obs_shape) != 3 or self.obs_shape[:2] != (64, 64)):
            raise ValueError(
                f"obs_shape={self.obs_shape}: image observations must be (64, 64, C); wrap the env with "
                "rllib_worldmodel.envs.ImageObservation(env, size=64)."
            )
        if self.obs_kind == "vector" and len(self.obs_shape) != 1:
            raise ValueError(f"obs_shape={self.obs_shape}: vector observations must be flat (D,); flatten them.")
        if self.action_kind not in ("discrete", "continuous"):
            raise ValueError(f"action_kind={self.action_kind!r}: use 'discrete' or 'continuous'.")
        if self.action_kind == "continuous" and not (len(self.action_low) == len(self.action_high) == self.action_dim):
            raise ValueError("action_low/action_high must each have action_dim entries for continuous actions.")
        for name in ("action_dim", "z_size", "rnn_size", "num_mixtures", "vae_hidden", "num_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive integer.")
        if self.kl_tolerance < 0 or self.done_pos_weight <= 0:
            raise ValueError("kl_tolerance must be >= 0 and done_pos_weight > 0.")
        if not 0.0 <= self.vae_focus_fraction <= 1.0 or self.vae_focus_weight < 0:
            raise ValueError(
                f"vae_focus_fraction={self.vae_focus_fraction}, vae_focus_weight={self.vae_focus_weight}: the "
                "fraction must be in [0, 1] (e.g. 0.02) and the weight >= 0 (e.g. 10); 0 turns the focus off."
            )
        if set(self.loss_weights) != {"mdn", "reward", "done"}:
            raise ValueError(
                f"loss_weights keys {sorted(self.loss_weights)} must be exactly ['done', 'mdn', 'reward']."
            )

    @classmethod
    def from_spaces(cls, observation_space: gym.Space, action_space: gym.Space, **overrides: Any) -> WorldModelConfig:
        """Derive the observation/action fields from gymnasium spaces.

        Args:
            observation_space: A uint8 Box (64, 64, C) for images or a 1-D Box for vectors.
            action_space: Discrete or 1-D Box.
            **overrides: Any other WorldModelConfig field (z_size, rnn_size, ...).
        """
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError(
                f"observation space {observation_space} is not a Box: wrap the env with ImageObservation "
                "(images, Dict obs with an image key) or VectorObservation."
            )
        obs_kind = "image" if len(observation_space.shape) == 3 else "vector"
        if isinstance(action_space, gym.spaces.Discrete):
            act = {"action_kind": "discrete", "action_dim": int(action_space.n)}
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            act = {
                "action_kind": "continuous",
                "action_dim": int(action_space.shape[0]),
                "action_low": tuple(action_space.low.tolist()),
                "action_high": tuple(action_space.high.tolist()),
            }
        else:
            raise ValueError(f"action space {action_space} is not supported: use Discrete or a 1-D Box.")
        return cls(obs_kind=obs_kind, obs_shape=observation_space.shape, **act, **overrides)

    def observation_space(self) -> gym.spaces.Box:
        """The real env's observation space this model was built for."""
        if self.obs_kind == "image":
            return gym.spaces.Box(0, 255, self.obs_shape, np.uint8)
        return gym.spaces.Box(-np.inf, np.inf, self.obs_shape, np.float32)

    def action_space(self) -> gym.Space:
        """The real env's action space this model was built for."""
        if self.action_kind == "discrete":
            return gym.spaces.Discrete(self.action_dim)
        return gym.spaces.Box(np.array(self.action_low, np.float32), np.array(self.action_high, np.float32))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists, numbers, strings) stored in checkpoints."""
        d = dataclasses.asdict(self)
        for k in ("obs_shape", "action_low", "action_high"):
            d[k] = list(d[k])
        return d


class WorldModel(nn.Module):
    """V and M together, with the initial latents used to start dreams.

    Args:
        config: Architecture.
    """

    def __init__(self, config: WorldModelConfig):
        super().__init__()
        self.config = config
        if config.obs_kind == "image":
            self.vae: ConvVAE | MLPVAE = ConvVAE(config.z_size, in_channels=config.obs_shape[-1])
        else:
            self.vae = MLPVAE(config.obs_shape[0], config.z_size, hidden=config.vae_hidden)
        self.mdn_rnn = MDNRNN(
            config.z_size,
            config.action_dim,
            hidden_size=config.rnn_size,
            num_mixtures=config.num_mixtures,
            logsigma_min=config.logsigma_min,
            logsigma_max=config.logsigma_max,
            num_heads=config.num_heads,
            done_bias_init=config.done_bias_init,
        )
        # paper: dreams start from stored (mu, logvar) of real first frames; (N, 2, Z), empty until fitted. Not part
        # of state_dict (its size varies with the data, which would break weight syncs); `save` stores it.
        self.register_buffer("initial_states", torch.zeros(0, 2, config.z_size), persistent=False)
        # Branch points: real visited states to start dreams from mid-episode (DreamSettings.start="branch"). Rows
        # [z_mu, z_logvar, h, c] (N, 2Z + 2H): V's posterior of the frame and M's LSTM state after the real history
        # up to it; outcomes (N, 2): [real steps the episode still lasted, 1 if it ended by termination].
        self.register_buffer("branch_states", torch.zeros(0, 2 * (config.z_size + config.rnn_size)), persistent=False)
        self.register_buffer("branch_outcomes", torch.zeros(0, 2), persistent=False)
        # How V and M compute (`precision.PRECISIONS`): a runtime setting, not part of the architecture or the
        # checkpoint; the algorithm sets it from `WorldModelsConfig.world_model(precision=...)`.
        self.precision = "fp32"

    @property
    def device(self) -> torch.device:
        return self.mdn_rnn.mdn_head.weight.device

    def set_precision(self, precision: str) -> None:
        """Compute V's and M's matrix multiplies and convolutions in "fp32", "bf16" or "auto" (bf16 where the
        model's device has bfloat16 units, decided at each computation, so moving the model re-decides); weights
        stay float32; see `rllib_worldmodel.precision`. Applies to fits, dreams, planning and `encode_frames`."""
        self.precision = check_precision(precision)

    def resolved_precision(self) -> str:
        """What the model computes at on its current device: "fp32" or "bf16" (`precision.resolve_precision`)."""
        return resolve_precision(self.precision, self.device)

    def compute(self) -> contextlib.AbstractContextManager:
        """The context V and M run in at this model's precision (`torch.autocast` for "bf16", else a no-op); what
        leaves it is cast back to float32 by the caller."""
        return autocast(self.precision, self.device)

    def death_probability(self, done_logit: torch.Tensor) -> torch.Tensor:
        """M's per-step death probability from its done logits: the done BCE weights deaths by `done_pos_weight`,
        which inflates the odds by that factor, so its log is taken off before the sigmoid."""
        return torch.sigmoid(done_logit - math.log(self.config.done_pos_weight))

    @torch.no_grad()
    def encode_frames(self, obs_T: Any, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """V's posterior (mu, logvar), each (T, Z) on the CPU, for a sequence of observations (array or tensor, any
        length), encoded `batch_size` at a time on the model's device."""
        obs = torch.as_tensor(obs_T)
        with self.compute():
            parts = [self.vae.encode(obs[s : s + batch_size].to(self.device)) for s in range(0, len(obs), batch_size)]
        return torch.cat([mu.float().cpu() for mu, _ in parts]), torch.cat([lv.float().cpu() for _, lv in parts])

    @torch.no_grad()
    def teacher_forced_done_logits(self, z_T_Z: torch.Tensor, actions_T_A: torch.Tensor) -> torch.Tensor:
        """Every ensemble member's done logit at each step, (E, T), while M reads the real latents z_0..z_{T-1}
        and the real actions, encoded for M (teacher forcing from a zero LSTM state: a whole episode)."""
        return self.teacher_forced_done_logits_of([(z_T_Z, actions_T_A)])[0]

    @torch.no_grad()
    def teacher_forced_done_logits_of(
        self, episodes: Sequence[tuple[torch.Tensor, torch.Tensor]], batch_size: int = 64
    ) -> list[torch.Tensor]:
        """`teacher_forced_done_logits` of several episodes, each (z (T, Z), encoded actions (T, A)), run
        `batch_size` at a time; returns each episode's (E, T) logits, in order."""
        return [self.mdn_rnn.done_head(h).movedim(-1, 0) for h in self.teacher_forced_states_of(episodes, batch_size)]

    @torch.no_grad()
    def teacher_forced_states_of(
        self, episodes: Sequence[tuple[torch.Tensor, torch.Tensor]], batch_size: int = 64
    ) -> list[torch.Tensor]:
        """M's LSTM output after each step (T, H) of several episodes, each (z (T' >= T, Z), encoded actions
        (T, A)), while it reads the real latents and actions from a zero state: the states its output heads read
        at those steps. Run `batch_size` at a time (padded at the end: the LSTM is causal, so padding never
        reaches a real step); returned in order."""
        dev, out = self.device, [None] * len(episodes)
        order = sorted(range(len(episodes)), key=lambda i: len(episodes[i][1]))  # similar lengths share a batch
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            lengths = [len(episodes[i][1]) for i in idx]
            z = torch.nn.utils.rnn.pad_sequence([episodes[i][0][: len(episodes[i][1])] for i in idx], batch_first=True)
            a = torch.nn.utils.rnn.pad_sequence([episodes[i][1] for i in idx], batch_first=True)
            h_B_T_H = self.mdn_rnn.hidden(z.to(dev), a.to(dev))[0]
            for j, (i, t) in enumerate(zip(idx, lengths)):
                out[i] = h_B_T_H[j, :t]
        return out

    def encode_action(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions (..., ) ints or (..., A) floats -> M's input encoding (..., action_dim) float."""
        if self.config.action_kind == "discrete":
            return nn.functional.one_hot(actions.long(), self.config.action_dim).float()
        if actions.shape[-1] != self.config.action_dim:
            raise ValueError(f"continuous actions must end in {self.config.action_dim}, got {tuple(actions.shape)}")
        return actions.float()

    def set_initial_states(self, mu_N_Z: torch.Tensor, logvar_N_Z: torch.Tensor) -> None:
        """Store posterior (mu, logvar) of real episode-start frames as the dream's start distribution."""
        self.initial_states = torch.stack([mu_N_Z, logvar_N_Z], dim=1).detach().to(self.device)

    def set_branch_points(self, states_N_D: torch.Tensor, outcomes_N_2: torch.Tensor) -> None:
        """Store real visited states as dream branch points (see `store_branch_points`)."""
        width = 2 * (self.config.z_size + self.config.rnn_size)
        if states_N_D.dim() != 2 or states_N_D.shape[1] != width or tuple(outcomes_N_2.shape) != (len(states_N_D), 2):
            raise ValueError(
                f"branch points must be states (N, {width}) = [z_mu, z_logvar, h, c] and outcomes (N, 2); got "
                f"{tuple(states_N_D.shape)} and {tuple(outcomes_N_2.shape)}"
            )
        self.branch_states = states_N_D.detach().float().to(self.device)
        self.branch_outcomes = outcomes_N_2.detach().float().to(self.device)

    def split_branch_states(
        self, rows_N_D: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Branch-point rows (N, 2Z + 2H) -> (z_mu, z_logvar, h, c), the layout `store_branch_points` writes."""
        zs, hs = self.config.z_size, self.config.rnn_size
        return torch.split(rows_N_D, [zs, zs, hs, hs], dim=-1)

    @torch.no_grad()
    def branch_point_states(
        self,
        episodes: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]],
        every: int = 10,
        batch_size: int = 64,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every `every`-th real state of whole episodes, as `store_branch_points` stores them, without storing.

        Args: as `store_branch_points`.

        Returns:
            states (N, 2Z + 2H) = [z_mu, z_logvar, h, c] (`split_branch_states`), outcomes (N, 2) = (steps the
            episode still lasted, terminated), and where each state is: (N, 2) = (index into `episodes`, step).
        """
        if every < 1:
            raise ValueError(f"every={every} must be >= 1 (store every n-th visited state).")
        if not episodes:
            raise ValueError("store_branch_points needs at least one episode.")
        m_rnn, dev, zs = self.mdn_rnn, self.device, self.config.z_size
        was_training = m_rnn.training
        m_rnn.eval()
        states, outcomes, where = [], [], []
        for s in range(0, len(episodes), batch_size):
            chunk = episodes[s : s + batch_size]
            lengths = torch.tensor([len(act) for _, _, act, _ in chunk], device=dev)
            t_max, b = int(lengths.max()), len(chunk)
            mu, lv = torch.zeros(b, t_max, zs, device=dev), torch.zeros(b, t_max, zs, device=dev)
            act = torch.zeros(b, t_max, self.config.action_dim, device=dev)
            for i, (m, v, a, _) in enumerate(chunk):
                n = len(a)
                mu[i, :n], lv[i, :n], act[i, :n] = m[:n].to(dev), v[:n].to(dev), a.to(dev)
            ended = torch.tensor([float(term) for *_, term in chunk], device=dev)
            h, c = m_rnn.initial_state(b, dev)
            for t in range(t_max):
                if t % every == 0:
                    live = lengths > t
                    states.append(torch.cat([mu[live, t], lv[live, t], h[live], c[live]], dim=-1).cpu())
                    outcomes.append(torch.stack([(lengths - t)[live].float(), ended[live]], dim=-1).cpu())
                    rows = live.nonzero().squeeze(1).cpu() + s
                    where.append(torch.stack([rows, torch.full_like(rows, t)], dim=-1))
                h, c = m_rnn.step(mu[:, t], act[:, t], (h, c))
        m_rnn.train(was_training)
        return torch.cat(states), torch.cat(outcomes), torch.cat(where)

    def store_branch_points(
        self,
        episodes: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]],
        every: int = 10,
        batch_size: int = 64,
    ) -> int:
        """Store every `every`-th real state of whole episodes as a dream branch point; returns how many.

        A branch point is V's posterior of the frame plus M's LSTM state after reading the real history up to it
        (teacher-forced, posterior means), so a dream started there (`DreamSettings(start="branch")`) begins where a
        real episode really was, danger included, and a controller sees the [z, h] it will see in the real env.
        The real outcome (steps the episode still lasted, terminated or not) is stored beside each point: it is what
        the collecting policy really achieved from there (`calibration.real_branch_survival`).

        Args:
            episodes: Per episode, from its first step: V's posterior means (T, Z) and log-variances (T, Z) of its
                frames, its actions encoded for M (T, action_dim) (`encode_action`), and whether it ended by
                termination. Only the first T rows of the latents are used (T = number of actions).
            every: Keep every n-th step of each episode (0, n, 2n, ...).
            batch_size: Episodes run through M at once.
        """
        states, outcomes, _ = self.branch_point_states(episodes, every, batch_size)
        self.set_branch_points(states, outcomes)
        return int(self.branch_states.shape[0])

    def save(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
        """Write a versioned checkpoint atomically (a crash mid-write never leaves a truncated file).

        Args:
            path: Target file (conventionally `*.pt`); parent folders are created.
            metadata: Extra JSON-like information to store (training stats, env id, ...).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "initial_states": self.initial_states.detach().cpu(),
            "branch_states": self.branch_states.detach().cpu(),
            "branch_outcomes": self.branch_outcomes.detach().cpu(),
            "metadata": metadata or {},
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        expected_config: WorldModelConfig | None = None,
    ) -> WorldModel:
        """Load a checkpoint written by `save`.

        Args:
            path: Checkpoint file.
            device: Where to put the model.
            expected_config: If given, the architecture the caller needs; any difference raises CheckpointError.

        Raises:
            CheckpointError: The file is missing, unreadable/corrupt, of another format or version, or its
                architecture differs from `expected_config`.
        """
        payload = read_checkpoint(path)
        try:
            config = WorldModelConfig(**payload["config"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"world-model checkpoint {path} has an invalid architecture record: {e}") from e
        if expected_config is not None:
            diff = {
                k: (v, getattr(config, k))
                for k, v in expected_config.to_dict().items()
                if k not in LOSS_ONLY_FIELDS and config.to_dict()[k] != v
            }
            if diff:
                detail = ", ".join(f"{k}: expected {a!r}, checkpoint has {b!r}" for k, (a, b) in diff.items())
                raise CheckpointError(
                    f"world-model checkpoint {path} has a different architecture ({detail}). Build the model with "
                    "the checkpoint's settings, or train a new world model for this architecture."
                )
        model = cls(config)
        try:
            model.initial_states = payload["initial_states"].reshape(-1, 2, config.z_size).clone()
            if "branch_states" in payload:  # checkpoints written before branch points existed have none
                model.set_branch_points(payload["branch_states"], payload["branch_outcomes"])
            model.load_state_dict(payload["state_dict"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"world-model checkpoint {path} does not match its architecture record: {e}") from e
        return model.to(device)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check the envelope of a world-model checkpoint (format, version) without building the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"world-model checkpoint {path} does not exist; train one with `rllib-worldmodel fit` "
            "or WorldModelTrainer(...).save(path)."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/garbage files
        raise CheckpointError(
            f"world-model checkpoint {path} is unreadable or corrupt ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an rllib_worldmodel world-model checkpoint.")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"world-model checkpoint {path} has format version {payload.get('version')}; this rllib_worldmodel "
            f"reads version {CHECKPOINT_VERSION}. Use the release that wrote it, or re-train."
        )
    return payload
