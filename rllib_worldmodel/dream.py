"""The learned simulator ("the dream"): M rolled forward on its own samples, many dreams in one tensor op.

- `DreamSimulator`: batched torch core; `reset(B)` starts B dreams from latents of real episode starts, `step`
  advances all of them with one forward pass. Device-agnostic.
- `DreamVectorEnv`: the same simulator as a gymnasium VectorEnv with NEXT_STEP autoreset (what RLlib's
  EnvRunners expect), so any RLlib algorithm can train in the dream.
- `DreamEnv`: a single-env view (gymnasium.Env) for tools that want one.

Temperature tau follows the paper's code: mixture logits / tau, Gaussian noise * sqrt(tau); tau -> 0 is the mode
(`deterministic=True` is exactly the mode).

With an ensemble M (E >= 2 heads) every dream step draws the next latent from one randomly picked member (so the
dream is as uncertain as the members are unsure), and the members' disagreement (variance of their predicted next
latent, averaged over dimensions) is measured at every step. It feeds two opposite levers, each with its own
coefficient:
- pessimism: reward = r - pessimism * disagreement, and `done_ensemble="max"` ends a dream when ANY member
  predicts death, so a controller cannot farm the places the model does not know;
- curiosity: reward += curiosity * bonus, with bonus "disagreement" (Plan2Explore), "novelty" (distance from the
  next latent to the nearest latent of real data seen recently) or "surprise" (M's NLL of its own sample, a
  prediction-error bonus: high wherever the world is noisy, which is the noisy-TV trap).
The reward parts of the last step are in `DreamSimulator.reward_parts` (extrinsic, intrinsic, penalty).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from rllib_worldmodel.losses import mdn_log_prob
from rllib_worldmodel.models.controller import ControllerInput
from rllib_worldmodel.models.mdn_rnn import MDNOutput, sample_mixture
from rllib_worldmodel.models.world_model import WorldModel

OBS_MODES = ("latent", "pixels")
DONE_MODES = ("threshold", "sample", "expected")
DONE_ENSEMBLE = ("mean", "max")
STARTS = ("episode", "branch")
EXPECTED_DEAD = 1e-4  # done_mode="expected": a dream less likely alive than this is over
CURIOSITY_BONUSES = ("disagreement", "novelty", "surprise")


@dataclass
class DreamSettings:
    """How the dream behaves. Every field can come from an env_config dict (see `from_dict`).

    Args:
        temperature: tau > 0 (paper's best TakeCover agent: 1.15).
        done_mode: "threshold" (terminate where M's done logit > 0, paper), "sample" (Bernoulli(p(done)) with
            p(done) calibrated: the logit minus log(done_pos_weight), undoing the BCE's class weighting, which
            otherwise makes every step ~pos_weight times too deadly) or "expected": no sampled deaths at all; each
            dream carries the probability that it is still alive (the product of 1 - p(done) so far, p as in
            "sample") and every reward is paid times that probability, so a dream's return is the expected return
            over the deaths M predicts (the same mean as "sample", without the variance of the death draws: a
            survival score that varies smoothly with the controller, what CMA-ES needs). A dream ends when it is
            dead for sure (probability alive < 1e-4) or at the cap. `DreamSimulator.alive` holds the probabilities.
        max_episode_steps: Truncation cap (paper TakeCover: 2100).
        obs_mode: "latent" ([z, h] or [z, h, c], the paper's controller input) or "pixels" (decoded uint8 frames,
            the real env's own observation space).
        include_cell: Add the LSTM cell state c to latent observations (paper's Doom controller input).
        include_hidden: Keep M's hidden state h in latent observations (paper). False: [z] alone (plus c or the
            previous action when those are on) — the paper's "V only" controller, which reacts to what V sees and
            cannot read (or steer by) M's memory.
        include_prev_action: Append the action each dream took last, encoded as M reads it (one-hot for discrete
            actions; zeros at a dream's start, branch starts included), to latent observations. A linear controller
            can then keep a course until [z, h] says turn (hysteresis, e.g. sweeping from wall to wall), which a
            linear map of [z, h] alone cannot express. The real-env agent appends the same.
        device: "cpu", "cuda", "cuda:1", ... or "auto" (CUDA when available).
        seed: Seed of the dream's random numbers (re-seeded by `reset(seed=...)`).
        deterministic: No randomness: dreams start at the stored start means and follow M's mode (each member's most
            probable component mean, averaged over members) instead of sampling; deaths by threshold.
        initial_noise: Std of Gaussian noise added to each dream's initial latent (more varied starts).
        done_ensemble: How an ensemble's members' done probabilities combine: "mean" or "max" (pessimistic).
        report_disagreement: Compute the ensemble members' disagreement at every step and keep it in
            `reward_parts["disagreement"]` even where nothing pays it (a diagnostic the controller search logs).
            False skips it unless pessimism or the disagreement bonus needs it, and a step then computes the mixture
            of only the member each dream samples from (`MDNRNN.member_mixture`): the same dreams, the mixture head
            being the bulk of a step's work with an ensemble (the planner's look-ahead sets it False).
        pessimism: Reward penalty per unit of ensemble disagreement (needs num_heads >= 2).
        curiosity: Weight of the intrinsic bonus added to the reward.
        curiosity_bonus: "disagreement" (needs num_heads >= 2), "novelty" or "surprise".
        done_logit_offset: Added to M's done logits (see `calibrate_done_offset`): > 0 makes dreams deadlier.
        done_logit_scale: M's done logits are multiplied by this before the offset is added. > 1 widens the gap
            between the death probabilities of safe and dangerous states: a done head fitted by logistic
            regression on rare deaths is under-confident (TakeCover: reading real frames it rates sweeping 2x safer
            than standing still where reality says 6x), and an offset alone cannot widen that gap. Calibrate the
            offset after choosing the scale.
        reward_range: (low, high) to clip M's predicted reward to, e.g. the range real rewards ever had; None: no
            clipping. A reward head regressing rare large penalties drifts above the real maximum in places, and a
            controller trained in the dream finds those places.
        start: Where dreams begin. "episode" (paper): at real episode starts, LSTM state zero. "branch": at real
            mid-episode states, the world model's branch points (V's posterior of a visited frame and M's LSTM
            state after the real history up to it), so dreams begin where real episodes really were and only
            `max_episode_steps` are dreamed from there (short branched rollouts, as MBPO does against compounding
            model error). Needs a world model with branch points (`WorldModelTrainer.fit` stores them).
        branch_focus: With start="branch": the share of dreams that start at a "doomed" branch point (one whose
            real episode terminated within `max_episode_steps` steps), the rest at uniformly drawn points. Where
            deaths are rare (TakeCover: ~9% of points are doomed within 30 steps), most uniform starts cannot tell
            controllers apart; focused starts put the dreams where actions decide survival.
    """

    temperature: float = 1.0
    done_mode: str = "threshold"
    max_episode_steps: int = 1000
    obs_mode: str = "latent"
    include_cell: bool = False
    include_prev_action: bool = False
    include_hidden: bool = True
    device: str = "cpu"
    seed: int | None = None
    deterministic: bool = False
    initial_noise: float = 0.0
    done_ensemble: str = "mean"
    report_disagreement: bool = True
    pessimism: float = 0.0
    curiosity: float = 0.0
    curiosity_bonus: str = "disagreement"
    done_logit_offset: float = 0.0
    done_logit_scale: float = 1.0
    reward_range: tuple[float, float] | None = None
    start: str = "episode"
    branch_focus: float = 0.0

    def __post_init__(self) -> None:
        validate_temperature(self.temperature)
        for name in ("initial_noise", "pessimism", "curiosity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}={v!r} must be a finite number >= 0 (0 switches it off).")
        s = self.done_logit_scale
        if not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            raise ValueError(f"done_logit_scale={s!r} must be a finite number > 0 (1: M's done logits as fitted).")
        if self.reward_range is not None:
            rr = self.reward_range
            finite = isinstance(rr, (tuple, list)) and len(rr) == 2
            finite = finite and all(isinstance(v, (int, float)) and math.isfinite(v) for v in rr)
            if not (finite and rr[0] < rr[1]):
                raise ValueError(
                    f"reward_range={self.reward_range!r} must be (low, high) finite numbers with low < high, e.g. "
                    "the smallest and largest real reward (None: no clipping)."
                )
            self.reward_range = (float(rr[0]), float(rr[1]))
        if self.start not in STARTS:
            raise ValueError(f"start={self.start!r}: use one of {STARTS}.")
        if not isinstance(self.branch_focus, (int, float)) or not 0.0 <= self.branch_focus <= 1.0:
            raise ValueError(f"branch_focus={self.branch_focus!r} must be a share in [0, 1] (0: uniform starts).")
        if self.branch_focus > 0 and self.start != "branch":
            raise ValueError(f"branch_focus={self.branch_focus} needs start='branch' (it picks branch points).")
        if self.done_ensemble not in DONE_ENSEMBLE:
            raise ValueError(f"done_ensemble={self.done_ensemble!r}: use one of {DONE_ENSEMBLE}.")
        if self.curiosity_bonus not in CURIOSITY_BONUSES:
            raise ValueError(f"curiosity_bonus={self.curiosity_bonus!r}: use one of {CURIOSITY_BONUSES}.")
        if self.done_mode not in DONE_MODES:
            raise ValueError(f"done_mode={self.done_mode!r}: use one of {DONE_MODES}.")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode={self.obs_mode!r}: use one of {OBS_MODES}.")
        if self.obs_mode == "pixels" and self.controller_input != ControllerInput():
            raise ValueError(
                "include_cell / include_prev_action / include_hidden shape latent observations; with "
                "obs_mode='pixels' the dream returns frames only. Use obs_mode='latent' or leave them at their "
                "defaults (False / False / True)."
            )
        if int(self.max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps={self.max_episode_steps} must be >= 1 (paper TakeCover: 2100).")
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def controller_input(self) -> ControllerInput:
        """What a latent observation holds (`include_hidden`, `include_cell`, `include_prev_action`)."""
        return ControllerInput.from_flags(self)

    @property
    def pays_disagreement(self) -> bool:
        """Whether the reward uses the ensemble's disagreement (pessimism, or the disagreement bonus)."""
        return self.pessimism > 0 or (self.curiosity > 0 and self.curiosity_bonus == "disagreement")

    @property
    def threshold_deaths(self) -> bool:
        """Whether deaths are decided by p(done) > 0.5 (done_mode "threshold", and every deterministic dream)."""
        return self.done_mode == "threshold" or self.deterministic

    def death_probability(self, world_model: WorldModel, done_logit_E_B: torch.Tensor) -> torch.Tensor:
        """The per-step death probability this dream applies to M's done logits: scaled, offset, through the done
        mode's link (the raw sigmoid for threshold deaths, `WorldModel.death_probability` otherwise), then combined
        over the ensemble members by `done_ensemble`.

        Args:
            world_model: The world model whose done head produced the logits.
            done_logit_E_B: Done logits, (ensemble members, ...).

        Returns:
            Death probabilities with the member dimension reduced, (...).
        """
        logit = self.done_logit_scale * done_logit_E_B + self.done_logit_offset
        p = torch.sigmoid(logit) if self.threshold_deaths else world_model.death_probability(logit)
        return p.max(0).values if self.done_ensemble == "max" else p.mean(0)

    @classmethod
    def exported(cls, metadata: dict[str, Any], **overrides: Any) -> DreamSettings:
        """The dream a `WorldModels` run trained its controller in, as far as the exported world model records it:
        the done-logit offset and scale in its metadata (`read_checkpoint(path)["metadata"]`, written by
        `WorldModels.export_world_model`; 0 and 1 when absent), sampled deaths, and `overrides`."""
        settings = {
            "done_mode": "sample",
            "done_logit_offset": float(metadata.get("done_logit_offset", 0.0)),
            "done_logit_scale": float(metadata.get("done_logit_scale", 1.0)),
        }
        return cls.from_dict({**settings, **overrides})

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> DreamSettings:
        """Build from a dict, rejecting unknown keys by name."""
        known = set(cls.__dataclass_fields__)
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown dream setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**config)


def validate_temperature(temperature: float) -> float:
    """Return tau if it is a finite number > 0, else raise ValueError saying so."""
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(
            f"temperature={temperature!r}: tau must be a finite number > 0 (paper: 1.15 for TakeCover; "
            "use a small value such as 1e-3 for a near-deterministic dream)."
        )
    return float(temperature)


def load_world_model(world_model: WorldModel | str | os.PathLike, device: str | torch.device) -> WorldModel:
    """Accept a WorldModel or a checkpoint path; return the model on `device` in eval mode."""
    if isinstance(world_model, WorldModel):
        return world_model.to(device).eval()
    if world_model is None:
        raise ValueError("world_model is required: pass a WorldModel or the path of a world-model checkpoint.")
    return WorldModel.load(world_model, device=device).eval()


def doomed_branch_points(world_model: WorldModel, horizon: int) -> torch.Tensor:
    """Indices of the world model's branch points whose real episode terminated within `horizon` steps."""
    out = world_model.branch_outcomes
    return ((out[:, 0] <= horizon) & (out[:, 1] > 0)).nonzero().squeeze(1)


class DreamSimulator:
    """B dreams stepped together with one forward pass of M.

    Args:
        world_model: A fitted WorldModel (with initial states) or a checkpoint path.
        settings: DreamSettings (defaults if None).
    """

    def __init__(self, world_model: WorldModel | str | os.PathLike, settings: DreamSettings | None = None):
        self.settings = settings or DreamSettings()
        self.device = torch.device(self.settings.device)
        self.world_model = load_world_model(world_model, self.device)
        cfg = self.world_model.config
        self.generator = torch.Generator(device=self.device)
        self.seed(self.settings.seed)
        self.batch_size = 0
        self.temperature = self.settings.temperature
        if cfg.action_kind == "continuous":
            self._act_low = torch.tensor(cfg.action_low, device=self.device)
            self._act_high = torch.tensor(cfg.action_high, device=self.device)
        if self.settings.start == "branch" and self.world_model.branch_states.shape[0] == 0:
            raise ValueError(
                "start='branch' needs a world model with branch points (real visited states); this one has none. "
                "Fit it with WorldModelTrainer.fit / `rllib-worldmodel fit` / WorldModelsConfig.dream(start='branch'), "
                "or call WorldModel.store_branch_points(...) and save it again."
            )
        self._doomed = self._doomed_points()
        # built once: observe() runs every dream step, and set_world_model_state refuses to change what it holds
        self.controller_input = self.settings.controller_input
        self.latent_size = self.controller_input.size(cfg)
        st = self.settings
        if st.pays_disagreement and self.world_model.mdn_rnn.num_heads < 2:
            raise ValueError(
                "pessimism and the disagreement bonus need an ensemble M: set num_heads >= 2 in the world model "
                f"(WorldModelsConfig.world_model(num_heads=5)); this one has {self.world_model.mdn_rnn.num_heads}."
            )
        self.novelty_reference: torch.Tensor | None = None
        self.reward_parts: dict[str, torch.Tensor] = {}
        # Common random numbers: each dream's noise stream (B,); dreams of one stream share every random draw.
        self.stream: torch.Tensor | None = None
        self.num_streams = 0

    # ---------------------------------------------------------------------------------------------- control
    def seed(self, seed: int | None) -> None:
        """Re-seed the dream's RNG (a random seed when None)."""
        self.generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**63))

    def set_temperature(self, temperature: float) -> None:
        """Change tau for the following steps."""
        self.temperature = validate_temperature(temperature)

    def set_world_model_state(
        self,
        state_dict: dict[str, torch.Tensor],
        initial_states: torch.Tensor | None = None,
        settings: DreamSettings | None = None,
    ) -> None:
        """Load new world-model weights (e.g. synced from a learner) without rebuilding the simulator.

        Args:
            state_dict: `WorldModel.state_dict()` of the same architecture.
            initial_states: New dream start states (N, 2, Z), e.g. from newly collected real episodes.
            settings: New dream settings (a new tau, pessimism, calibrated done-logit offset, ...); what shapes the
                spaces (`include_cell`, `include_prev_action`, `include_hidden`, `obs_mode`) and the device must
                stay as they are.
        """
        if settings is not None:
            fixed = [
                k
                for k in (*ControllerInput().flags(), "obs_mode", "device")
                if getattr(settings, k) != getattr(self.settings, k)
            ]
            if fixed:
                raise ValueError(f"set_world_model_state cannot change {fixed}: build a new simulator for those.")
        self.world_model.load_state_dict(state_dict)
        if initial_states is not None:
            self.world_model.initial_states = initial_states.to(self.device)
        if settings is not None:
            self.settings = settings
            self.temperature = settings.temperature
        self._doomed = self._doomed_points()

    def _doomed_points(self) -> torch.Tensor:
        """Indices of the branch points whose real episode terminated within the dream's horizon."""
        if self.settings.branch_focus == 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        doomed = doomed_branch_points(self.world_model, self.settings.max_episode_steps)
        if doomed.numel() == 0:
            raise ValueError(
                f"branch_focus={self.settings.branch_focus}: no branch point's real episode terminated within "
                f"max_episode_steps={self.settings.max_episode_steps} steps; use a longer horizon or branch_focus=0."
            )
        return doomed.to(self.device)

    def set_novelty_reference(self, latents_N_Z: torch.Tensor) -> None:
        """Latents of recently visited real states, for the "novelty" bonus (default: the dream start latents)."""
        self.novelty_reference = latents_N_Z.to(self.device, torch.float32)

    @property
    def observation_space(self) -> gym.spaces.Box:
        """Observation space of one dream."""
        if self.settings.obs_mode == "pixels":
            return self.world_model.config.observation_space()
        return gym.spaces.Box(-np.inf, np.inf, (self.latent_size,), np.float32)

    @property
    def action_space(self) -> gym.Space:
        """Action space of one dream: the real env's."""
        return self.world_model.config.action_space()

    # ---------------------------------------------------------------------------------------------- dreaming
    def _draw(self, normal: bool, n: int, *shape: int) -> torch.Tensor:
        """(n, *shape) U(0, 1) or N(0, 1) draws; with noise streams, one draw per stream, shared by its dreams."""
        fn = torch.randn if normal else torch.rand
        if self.stream is None:
            return fn((n, *shape), device=self.device, generator=self.generator)
        return fn((self.num_streams, *shape), device=self.device, generator=self.generator)[self.stream]

    def _initial_state(
        self, n: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, h, c) of n new dreams: a real episode start (h = c = 0) or, with start="branch", a branch point;
        `index` picks the starts (rows of the bank), else they are drawn uniformly."""
        branch = self.settings.start == "branch"
        bank = self.world_model.branch_states if branch else self.world_model.initial_states
        if bank.shape[0] == 0:  # (branch points are checked at construction)
            raise ValueError(
                "the world model has no initial states to start dreams from; fit it with WorldModelTrainer "
                "(encode_episodes stores the latents of real episode starts), or start dreams at given states "
                "with initial_z= or start_at()."
            )
        if index is None:
            u = self._draw(False, n)
            idx = (u * bank.shape[0]).long().clamp_(max=bank.shape[0] - 1)
            if branch and self.settings.branch_focus > 0:
                focused = self._draw(False, n) < self.settings.branch_focus
                doomed = self._doomed[(u * self._doomed.numel()).long().clamp_(max=self._doomed.numel() - 1)]
                idx = torch.where(focused, doomed, idx)
        else:
            idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
            if tuple(idx.shape) != (n,) or int(idx.min()) < 0 or int(idx.max()) >= bank.shape[0]:
                raise ValueError(f"start_index must be ({n},) ints in [0, {bank.shape[0]}), the rows of the start bank")
        if branch:
            mu, logvar, h, c = self.world_model.split_branch_states(bank[idx])
        else:
            mu, logvar = bank[idx, 0], bank[idx, 1]
            h, c = self.world_model.mdn_rnn.initial_state(n, self.device)
        std = torch.zeros_like(logvar) if self.settings.deterministic else (0.5 * logvar).exp()
        if self.settings.initial_noise > 0:  # extra spread of the starts (AdeelMufti's reimplementation used 0.5)
            std = (std.pow(2) + self.settings.initial_noise**2).sqrt()
        return mu + std * self._draw(True, n, mu.shape[-1]), h.clone(), c.clone()

    @torch.no_grad()
    def reset(
        self,
        batch_size: int,
        seed: int | None = None,
        initial_z: torch.Tensor | None = None,
        streams: torch.Tensor | None = None,
        start_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Start `batch_size` new dreams; returns their first observations, (B, D) or (B, 64, 64, C).

        Args:
            batch_size: Number of dreams B.
            seed: Re-seed the dream RNG first (reproducible dreams).
            initial_z: Start latents (B, Z), e.g. V's encoding of real frames (LSTM state zero: an episode start);
                by default dreams start as `settings.start` says (real episode starts, as in the paper, or branch
                points).
            streams: Noise stream of each dream, (B,) ints in [0, S): dreams of one stream get the same start and
                the same random draws at every step (common random numbers), so they differ only where their
                actions make them differ. None: every dream has its own noise.
            start_index: (B,) rows of the start bank (episode starts, or branch points with start="branch") to
                begin at, instead of drawing them.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if seed is not None:
            self.seed(seed)
        self._set_streams(streams, batch_size)
        if initial_z is not None:
            if tuple(initial_z.shape) != (batch_size, self.world_model.config.z_size):
                raise ValueError(
                    f"initial_z must be ({batch_size}, {self.world_model.config.z_size}), got {tuple(initial_z.shape)}"
                )
            z = initial_z.to(self.device, torch.float32).clone()
            h, c = self.world_model.mdn_rnn.initial_state(batch_size, self.device)
        else:
            z, h, c = self._initial_state(batch_size, start_index)
        self._begin(z, h, c, None)
        return self.observe()

    def _set_streams(self, streams: torch.Tensor | None, batch_size: int) -> None:
        """Give the next `batch_size` dreams these noise streams ((B,) ints >= 0, or None: each its own noise)."""
        if streams is not None:
            streams = torch.as_tensor(streams, dtype=torch.long, device=self.device)
            if tuple(streams.shape) != (batch_size,) or int(streams.min()) < 0:
                raise ValueError(f"streams must be ({batch_size},) non-negative ints, got {tuple(streams.shape)}")
            self.num_streams = int(streams.max()) + 1
        self.stream = streams
        self.batch_size = batch_size

    def _begin(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor, prev_action: torch.Tensor | None) -> None:
        """Hold these dreams' states (B first, on the device): alive, at step 0, after `prev_action` (zeros: none)."""
        b = z.shape[0]
        self.z, self.h, self.c = z, h, c
        self.alive = torch.ones(b, device=self.device)
        self.t = torch.zeros(b, dtype=torch.long, device=self.device)
        self.prev_action = (
            torch.zeros(b, self.world_model.config.action_dim, device=self.device)
            if prev_action is None
            else prev_action.to(self.device, torch.float32).clone()
        )

    @torch.no_grad()
    def start_at(
        self,
        z_B_Z: torch.Tensor,
        h_B_H: torch.Tensor,
        c_B_H: torch.Tensor,
        prev_action_B_A: torch.Tensor | None = None,
        streams: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Start B dreams at given model states instead of the start bank: z of the current frame, M's LSTM state
        (h, c) and the last action as M encodes it (zeros if None) — e.g. where a real agent is now, to dream ahead
        from there (`planning.DreamPlanner`). `streams` as in `reset` (None: every dream has its own noise); returns
        their first observations."""
        b = z_B_Z.shape[0]
        wm = self.world_model
        want = {"z": (b, wm.config.z_size), "h": (b, wm.config.rnn_size), "c": (b, wm.config.rnn_size)}
        for name, x in (("z", z_B_Z), ("h", h_B_H), ("c", c_B_H)):
            if tuple(x.shape) != want[name]:
                raise ValueError(f"start_at: {name} must be {want[name]}, got {tuple(x.shape)}")
        self._set_streams(streams, b)
        self._begin(*(x.to(self.device, torch.float32).clone() for x in (z_B_Z, h_B_H, c_B_H)), prev_action_B_A)
        return self.observe()

    @torch.no_grad()
    def reset_where(self, mask_B: torch.Tensor) -> None:
        """Restart only the dreams where `mask_B` is True (state only; call `observe()` for observations)."""
        n = int(mask_B.sum())
        if n == 0:
            return
        if self.stream is not None:
            raise RuntimeError("reset_where restarts single dreams: it does not apply to dreams with noise streams")
        self.z[mask_B], self.h[mask_B], self.c[mask_B] = self._initial_state(n)
        self.alive[mask_B] = 1.0
        self.t[mask_B] = 0
        self.prev_action[mask_B] = 0.0

    @torch.no_grad()
    def select(self, index_N: torch.Tensor) -> None:
        """Keep only the dreams at `index_N` (in that order); used to drop finished dreams from a batched run."""
        index_N = index_N.to(self.device)
        self.z, self.h, self.c, self.t = self.z[index_N], self.h[index_N], self.c[index_N], self.t[index_N]
        self.alive, self.prev_action = self.alive[index_N], self.prev_action[index_N]
        if self.stream is not None:
            self.stream = self.stream[index_N]
        self.batch_size = int(index_N.numel())

    @torch.no_grad()
    def observe(self) -> torch.Tensor:
        """Current observations: [z, h(, c)(, previous action)] float32 (B, D), or decoded uint8 frames in pixel
        mode."""
        if self.settings.obs_mode == "pixels":
            vae = self.world_model.vae
            return vae.to_observation(vae.decode(self.z))
        return self.controller_input.build(self.z, self.h, self.c, self.prev_action)

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every dream by one step.

        Args:
            actions: (B,) ints for discrete actions, (B, A) floats for continuous ones (clipped to the bounds).

        Returns:
            (obs, reward (B,), terminated (B,) bool, truncated (B,) bool), all on the simulator's device.
        """
        if self.batch_size == 0:
            raise RuntimeError("call reset(batch_size) before step()")
        actions = torch.as_tensor(actions, device=self.device)
        if actions.shape[0] != self.batch_size:
            raise ValueError(f"expected {self.batch_size} actions, got shape {tuple(actions.shape)}")
        wm = self.world_model
        if wm.config.action_kind == "continuous":
            actions = torch.max(torch.min(actions.float(), self._act_high), self._act_low)
        self.prev_action = wm.encode_action(actions)
        m = wm.mdn_rnn
        st, e, b = self.settings, m.num_heads, self.batch_size
        member = (
            (self._draw(False, b) * e).long().clamp_(max=e - 1)
            if e > 1
            else torch.zeros(b, dtype=torch.long, device=self.device)
        )
        every_member = st.deterministic or (e > 1 and (st.report_disagreement or st.pays_disagreement))
        out = None
        with wm.compute():  # M's matrix multiplies at the world model's precision; all that leaves is float32
            h, c = m.step(self.z, self.prev_action, (self.h, self.c))
            if every_member:
                out = MDNOutput(*(x.float() for x in m.heads(h)))  # fields lead with the ensemble axis E
            else:  # only the sampled member's mixture: the same draws, a fraction of the work
                mixture = m.member_mixture(h, member)
                reward_E_B, done_logit_E_B = m.reward_head(h).movedim(-1, 0), m.done_head(h).movedim(-1, 0)
        self.h, self.c = h.float(), c.float()
        if out is not None:
            rows = torch.arange(b, device=self.device)
            logpi, mu, logsigma = out.logpi[member, rows], out.mu[member, rows], out.logsigma[member, rows]
            reward_E_B, done_logit_E_B = out.reward, out.done_logit
        else:
            logpi, mu, logsigma = (x.float() for x in mixture)
            reward_E_B, done_logit_E_B = reward_E_B.float(), done_logit_E_B.float()
        if st.deterministic:  # the members' average mode: no randomness anywhere
            z_next = out.mu.gather(-1, out.logpi.argmax(-1, keepdim=True)).squeeze(-1).mean(0)
        else:
            z_next = sample_mixture(
                logpi,
                mu,
                logsigma,
                self.temperature,
                uniform_B_Z_K=self._draw(False, b, *logpi.shape[1:]),
                normal_B_Z=self._draw(True, b, mu.shape[1]),
            )
        p_done = st.death_probability(wm, done_logit_E_B)
        alive = self.alive  # probability of being alive at this step (1 unless deaths are "expected")
        if st.threshold_deaths:  # paper: logit > 0
            terminated = p_done > 0.5
        elif st.done_mode == "expected":
            self.alive = alive * (1.0 - p_done)
            terminated = self.alive < EXPECTED_DEAD
        else:
            terminated = self._draw(False, b) < p_done
        reward = reward_E_B.mean(0)
        if st.reward_range is not None:
            reward = reward.clamp(*st.reward_range)
        parts = {"extrinsic": reward}
        if e > 1 and every_member:
            means = (out.logpi.exp() * out.mu).sum(-1)  # each member's expected next latent, (E, B, Z)
            parts["disagreement"] = means.var(0, unbiased=False).mean(-1)
        if st.pessimism > 0:
            parts["penalty"] = st.pessimism * parts["disagreement"]
            reward = reward - parts["penalty"]
        if st.curiosity > 0:
            parts["intrinsic"] = st.curiosity * self._bonus(parts, z_next, logpi, mu, logsigma)
            reward = reward + parts["intrinsic"]
        if st.done_mode == "expected":  # every part is paid only as far as the dream is still alive
            parts = {k: v * alive for k, v in parts.items()}
            reward = reward * alive
        self.reward_parts = parts
        self.z = z_next
        self.t += 1
        truncated = (self.t >= st.max_episode_steps) & ~terminated
        return self.observe(), reward, terminated, truncated

    def _bonus(self, parts, z_next, logpi, mu, logsigma) -> torch.Tensor:
        kind = self.settings.curiosity_bonus
        if kind == "disagreement":
            return parts["disagreement"]
        if kind == "surprise":  # M's NLL (nats per dimension) of the latent it just produced
            return -mdn_log_prob(logpi, mu, logsigma, z_next).mean(-1)
        ref = self.novelty_reference if self.novelty_reference is not None else self.world_model.initial_states[:, 0]
        return torch.cdist(z_next, ref).min(-1).values / math.sqrt(z_next.shape[-1])

    @torch.no_grad()
    def render(self) -> np.ndarray:
        """Decode the current latents through V: uint8 frames (B, 64, 64, C) (or vectors for vector models)."""
        if self.batch_size == 0:
            raise RuntimeError("call reset(batch_size) before render()")
        vae = self.world_model.vae
        return vae.to_observation(vae.decode(self.z)).cpu().numpy()


def _to_numpy_actions(actions: Any, space: gym.Space) -> np.ndarray:
    arr = np.asarray(actions)
    return arr.astype(np.int64) if isinstance(space, gym.spaces.Discrete) else arr.astype(np.float32)


class DreamVectorEnv(gym.vector.VectorEnv):
    """The dream as a gymnasium VectorEnv with NEXT_STEP autoreset (RLlib EnvRunners' convention).

    A sub-env that terminated or truncated at step t is reset by the call to `step` at t+1, which ignores its action
    and returns its first observation with reward 0 and both flags False.

    Args:
        num_envs: Number of parallel dreams.
        world_model: A fitted WorldModel or a checkpoint path.
        render_mode: "rgb_array" or None.
        **settings: DreamSettings fields (temperature, done_mode, max_episode_steps, obs_mode, ...).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(
        self,
        num_envs: int = 1,
        world_model: WorldModel | str | os.PathLike | None = None,
        render_mode: str | None = None,
        **settings: Any,
    ):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs={num_envs} must be >= 1")
        self.sim = DreamSimulator(world_model, DreamSettings.from_dict(settings))
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.single_observation_space = self.sim.observation_space
        self.single_action_space = self.sim.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    def set_world_model_state(self, state_dict: dict[str, torch.Tensor], initial_states=None, settings=None) -> None:
        """New world-model weights, start states and settings; see DreamSimulator.set_world_model_state."""
        self.sim.set_world_model_state(state_dict, initial_states, settings)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        obs = self.sim.reset(self.num_envs, seed=seed)
        self._autoreset[:] = False
        return obs.cpu().numpy(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = _to_numpy_actions(actions, self.single_action_space)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"DreamVectorEnv.step expects {self.num_envs} actions, got shape {actions.shape}")
        prev_done = self._autoreset.copy()
        obs, reward, terminated, truncated = self.sim.step(torch.as_tensor(actions))
        reward = reward.cpu().numpy().astype(np.float32)
        terminated, truncated = terminated.cpu().numpy(), truncated.cpu().numpy()
        if prev_done.any():
            self.sim.reset_where(torch.as_tensor(prev_done, device=self.sim.device))
            obs = self.sim.observe()
            reward[prev_done] = 0.0
            terminated[prev_done] = False
            truncated[prev_done] = False
        self._autoreset = terminated | truncated
        return obs.cpu().numpy(), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        """Decoded frames of every sub-env, (num_envs, 64, 64, C), in "rgb_array" mode."""
        return self.sim.render() if self.render_mode == "rgb_array" else None


class DreamEnv(gym.Env):
    """Single-env view of the dream (one dream, gymnasium.Env API).

    Args:
        world_model: A fitted WorldModel or a checkpoint path.
        render_mode: "rgb_array" or None.
        **settings: DreamSettings fields.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(
        self, world_model: WorldModel | str | os.PathLike | None = None, render_mode: str | None = None, **settings
    ):
        self.sim = DreamSimulator(world_model, DreamSettings.from_dict(settings))
        self.observation_space = self.sim.observation_space
        self.action_space = self.sim.action_space
        self.render_mode = render_mode

    def set_world_model_state(self, state_dict: dict[str, torch.Tensor], initial_states=None, settings=None) -> None:
        """New world-model weights, start states and settings; see DreamSimulator.set_world_model_state."""
        self.sim.set_world_model_state(state_dict, initial_states, settings)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self.sim.reset(1, seed=seed)[0].cpu().numpy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.sim.batch_size == 0:
            raise RuntimeError("call reset() before step()")
        a = torch.as_tensor(_to_numpy_actions(action, self.action_space)[None])
        obs, reward, terminated, truncated = self.sim.step(a)
        return obs[0].cpu().numpy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self) -> np.ndarray | None:
        """Decoded current frame (64, 64, C) in "rgb_array" mode."""
        return self.sim.render()[0] if self.render_mode == "rgb_array" else None
