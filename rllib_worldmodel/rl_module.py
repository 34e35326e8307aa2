"""The acting agent V + M + C as one stateful RLlib RLModule (and the world model the Learner fits).

Acting on a real frame o_t (paper §3): z_t ~ V(o_t), a_t = C([z_t, h_t]), then h_{t+1} = M.step(z_t, a_t, h_t).
The module's RNN state carries (h, c) across steps, so EnvRunners act exactly as the controller does in the dream.
Exploration for real-data collection lives in the same state: with `random_hold_prob` per step the agent starts a
random action held for 1-10 steps (paper's collection policy), and `epsilon` replaces single actions at random. With
`surprise_exploration` > 0 that chance grows with M's surprise at what really happened (its NLL of z_t, per latent
dimension, above the buffer `surprise_baseline`, M's training NLL set after every fit): the agent explores more
where the model is wrong. While
the buffer `random_only` is 1 (the first iterations) the agent acts with random holds only. Weights (including that
flag) reach EnvRunners through RLlib's normal weight sync.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule

from rllib_worldmodel.models.controller import Controller, ControllerInput, held_actions
from rllib_worldmodel.models.world_model import WorldModel, WorldModelConfig
from rllib_worldmodel.planning import (
    check_terminal_value,
    DreamPlanner,
    PLAN_ROLLOUTS,
    PlanSettings,
    rollouts_index,
)

# How the agent turns a real frame into z: a draw from V's posterior (the paper) or its mean.
REAL_Z = ("sample", "mean")


def check_real_z(real_z: str, field: str = "real_z") -> str:
    """`real_z` if it is one of REAL_Z, else a ValueError naming `field` and the choices."""
    if real_z not in REAL_Z:
        raise ValueError(f"{field}={real_z!r}: use one of {REAL_Z} ('sample': the paper).")
    return real_z


ARCH_KEYS = (
    "z_size",
    "rnn_size",
    "num_mixtures",
    "vae_hidden",
    "kl_tolerance",
    "done_pos_weight",
    "logsigma_min",
    "logsigma_max",
    "loss_weights",
    "num_heads",
    "done_bias_init",
    "vae_focus_fraction",
    "vae_focus_weight",
)


class WorldModelsRLModule(TorchRLModule):
    """V + M + C. model_config keys: the WorldModelConfig architecture fields (z_size, rnn_size, ...), plus
    `controller_hidden`, `include_cell`, `include_prev_action` (C also reads the last action taken),
    `include_hidden` (False: C reads z without h), `real_z`
    ("sample" as the paper, or "mean"), `random_hold_prob`, `epsilon`, `surprise_exploration`, `hold_min`,
    `hold_max`, `action_repeat` (C decides every k-th step; the `controller_every` buffer overrides it for a C
    fitted to the planner's choices), `plan_horizon`, `plan_samples` and `plan_every`
    (decision-time planning in the dream when acting without exploration; `planning.DreamPlanner`), `plan_collect`
    (a planner acts in real collection too, exploration on top), `plan_collect_horizon` and `plan_collect_every`
    (that collecting planner's own look-ahead; 0: the deployed planner's)."""

    def setup(self) -> None:
        mc = self.model_config
        arch = {k: mc[k] for k in ARCH_KEYS if k in mc}
        self.wm_config = WorldModelConfig.from_spaces(self.observation_space, self.action_space, **arch)
        self.world_model = WorldModel(self.wm_config)
        # fits and dreams (the planner's included) at this precision; real frames are read in float32 either way
        self.world_model.set_precision(mc.get("precision", "fp32"))
        self.controller_input = ControllerInput.from_flags(mc)
        self.controller = Controller(
            self.controller_input.size(self.wm_config),
            self.action_space,
            hidden=int(mc.get("controller_hidden", 0)),
        )
        real_z = check_real_z(mc.get("real_z", "sample"), "model_config real_z")
        # A buffer, so the reading travels with the weights and the checkpoint: a switch made after training
        # (`WorldModels.set_real_z`) reaches the EnvRunners and stays with the saved agent.
        self.register_buffer("real_z_mean", torch.tensor(float(real_z == "mean")))
        self.action_repeat = int(mc.get("action_repeat", 1))
        self.random_hold_prob = float(mc.get("random_hold_prob", 0.0))
        self.epsilon = float(mc.get("epsilon", 0.0))
        self.hold_range = (int(mc.get("hold_min", 1)), int(mc.get("hold_max", 10)))
        self.surprise_exploration = float(mc.get("surprise_exploration", 0.0))
        self.register_buffer("random_only", torch.ones(()))
        self.register_buffer("surprise_baseline", torch.zeros(()))
        # C's own decision interval when no planner decides (0: `action_repeat`). A buffer, so it travels with C's
        # weights: C fitted to the planner's choices (`distill`) decides at the planner's interval, where its labels
        # were chosen, and a C searched by CMA-ES at `action_repeat` again (`WorldModels._set_agent_state`).
        self.register_buffer("controller_every", torch.zeros(()))
        # Decision-time planning in the dream (`planning.DreamPlanner`), used when acting without exploration
        # (evaluation, deployment), and in collection with `plan_collect`. Buffers, so the algorithm's calibrated
        # dream and a switch made after training (`WorldModels.set_planning`) reach the EnvRunners with the
        # weights. horizon 0: C acts alone.
        self.register_buffer("plan_horizon", torch.tensor(float(mc.get("plan_horizon", 0))))
        self.register_buffer("plan_samples", torch.tensor(float(mc.get("plan_samples", 16))))
        self.register_buffer("plan_every", torch.tensor(float(mc.get("plan_every", 0))))
        # 1: the planning agent acts in real collection too (exploration on top); 0: C alone collects
        self.register_buffer("plan_collect", torch.tensor(float(bool(mc.get("plan_collect", False)))))
        # the collecting planner's horizon and interval (0: the deployed planner's)
        self.register_buffer("plan_collect_horizon", torch.tensor(float(mc.get("plan_collect_horizon", 0))))
        self.register_buffer("plan_collect_every", torch.tensor(float(mc.get("plan_collect_every", 0))))
        # index into PLAN_ROLLOUTS (0: C after the first decision; 1: parallel rollout, C and every action held)
        rollouts = rollouts_index(mc.get("plan_rollouts", "controller"))
        self.register_buffer("plan_rollouts", torch.tensor(float(rollouts)))
        terminal = check_terminal_value(mc.get("plan_terminal_value", 0.0))
        self.register_buffer("plan_terminal_value", torch.tensor(terminal))
        self.register_buffer("plan_temperature", torch.tensor(1.15))
        self.register_buffer("plan_done_offset", torch.zeros(()))
        self.register_buffer("plan_done_scale", torch.ones(()))
        # the deployed and the collecting planner, by their look-ahead settings (one entry when they plan alike)
        self._planners: dict[PlanSettings, DreamPlanner] = {}
        self.plan_settings().check_plannable(self.action_space, self.action_repeat)  # a clear error at build

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        h = self.wm_config.rnn_size
        act_shape = () if isinstance(self.action_space, gym.spaces.Discrete) else self.action_space.shape
        return {
            "h": torch.zeros(h),
            "c": torch.zeros(h),
            "hold_left": torch.zeros(()),
            "hold_action": torch.zeros(act_shape),
            # action repeat: steps taken this episode and C's last decision (`controller.held_actions`)
            "steps_taken": torch.zeros(()),
            "decided": torch.zeros(act_shape),
            # the action really taken last step, as M encodes it (the controller's `include_prev_action` input)
            "prev_action": torch.zeros(self.wm_config.action_dim),
        }

    # --------------------------------------------------------------------------------------------- acting
    def _random_actions(self, n: int, device: torch.device) -> torch.Tensor:
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return torch.randint(0, int(space.n), (n,), device=device).float()
        low = torch.as_tensor(space.low, device=device)
        high = torch.as_tensor(space.high, device=device)
        return low + torch.rand((n,) + space.shape, device=device) * (high - low)

    @torch.no_grad()
    def _act(self, batch: dict[str, Any], explore: bool) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        b, t = obs.shape[:2]
        state = batch[Columns.STATE_IN]
        if t != 1:
            raise ValueError(f"WorldModelsRLModule acts one step at a time; got a time dimension of {t}")
        if explore and self.random_only > 0.5:
            # Pure random-hold collection (first iterations): the controller's input is not needed, so skip V and M
            # (V's per-frame encoding is most of the cost of acting).
            discrete = isinstance(self.action_space, gym.spaces.Discrete)
            action = torch.zeros(b, dtype=torch.long) if discrete else torch.zeros(b, *self.action_space.shape)
            action, hold_left, hold_action = self._explore(
                action.to(obs.device), state["hold_left"], state["hold_action"]
            )
            return {
                Columns.ACTIONS: action.unsqueeze(1),
                Columns.STATE_OUT: {
                    **state,
                    "hold_left": hold_left,
                    "hold_action": hold_action,
                },
            }
        z = self.real_latent(obs[:, 0])
        h, c = state["h"], state["c"]
        ctrl_in = self.controller_input.build(z, h, c, state["prev_action"])
        steps_taken = state["steps_taken"]
        choice, interval = self.controller.act(ctrl_in), self.controller_interval()
        collecting = explore and self.plan_collect > 0.5  # a planner collects too (exploration on top)
        plans = self.plan_horizon > 0 or (collecting and self.plan_collect_horizon > 0)
        if plans and (collecting or not explore):  # the planner decides, at its interval
            planner = self.planner(collect=collecting)
            interval = planner.interval
            due = torch.nonzero(steps_taken.long() % interval == 0).squeeze(1)
            if due.numel():
                choice[due] = planner.act(z[due], h[due], c[due], state["prev_action"][due]).to(choice.device)
        decided = held_actions(choice.to(state["decided"].dtype), state["decided"], steps_taken.long(), interval)
        action = decided.long() if isinstance(self.action_space, gym.spaces.Discrete) else decided
        hold_left, hold_action = state["hold_left"], state["hold_action"]
        if explore:
            extra = self._surprise_hold_prob(z, h) if self.surprise_exploration > 0 else None
            action, hold_left, hold_action = self._explore(action, hold_left, hold_action, extra)
        h_next, c_next, a_enc = self.remember(z, action, h, c)
        return {
            Columns.ACTIONS: action.unsqueeze(1),
            Columns.STATE_OUT: {
                "h": h_next,
                "c": c_next,
                "hold_left": hold_left,
                "hold_action": hold_action,
                "steps_taken": steps_taken + 1,
                "decided": decided,
                "prev_action": a_enc,
            },
        }

    def real_latent(self, obs_B: torch.Tensor) -> torch.Tensor:
        """V's latent of real frames as C and M read it: the posterior mean (`real_z="mean"`) or a draw from it."""
        mu, logvar = self.world_model.vae.encode(obs_B)
        return mu if self.real_z_mean > 0.5 else mu + (0.5 * logvar).exp() * torch.randn_like(mu)

    def remember(
        self, z_B_Z: torch.Tensor, action_B: torch.Tensor, h_B_H: torch.Tensor, c_B_H: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """M's state after reading the real latent and the action played (h, c) and that action encoded, as the
        next step's `prev_action`."""
        a_enc = self.world_model.encode_action(action_B)
        return (*self.world_model.mdn_rnn.step(z_B_Z, a_enc, (h_B_H, c_B_H)), a_enc)

    def _surprise_hold_prob(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Extra chance of a random hold: surprise_exploration * max(0, NLL(z_t | h_t) - baseline), per dream."""
        from rllib_worldmodel.losses import mdn_log_prob

        out = self.world_model.mdn_rnn.heads(h)  # M's prediction of z_t from the history (members averaged)
        nll = -torch.stack(
            [mdn_log_prob(out.logpi[e], out.mu[e], out.logsigma[e], z).mean(-1) for e in range(out.mu.shape[0])]
        ).mean(0)
        fresh = (h == 0).all(-1)  # episode start: M has not predicted anything yet
        return torch.where(fresh, 0.0, self.surprise_exploration * (nll - self.surprise_baseline).clamp_min(0.0))

    def _explore(self, action, hold_left, hold_action, extra_prob=None):
        b, dev = action.shape[0], action.device
        holding = hold_left > 0
        p = self.random_hold_prob if extra_prob is None else self.random_hold_prob + extra_prob
        start = ~holding & ((torch.rand(b, device=dev) < p) | (self.random_only > 0.5))
        if start.any():
            n = int(start.sum())
            hold_action = hold_action.clone()
            hold_action[start] = self._random_actions(n, dev).to(hold_action.dtype)
            hold_left = hold_left.clone()
            hold_left[start] = torch.randint(self.hold_range[0], self.hold_range[1] + 1, (n,), device=dev).float()
        holding = hold_left > 0
        discrete = isinstance(self.action_space, gym.spaces.Discrete)
        out = action.clone()
        out[holding] = hold_action[holding].long() if discrete else hold_action[holding]
        if self.epsilon > 0:
            eps = (torch.rand(b, device=dev) < self.epsilon) & ~holding
            if eps.any():
                rnd = self._random_actions(int(eps.sum()), dev)
                out[eps] = rnd.long() if discrete else rnd
        return out, (hold_left - 1).clamp_min(0), hold_action

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch, explore=False)

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch, explore=True)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """V's and M's training outputs (losses are computed by the Learner, see learner.py).

        Runs inside RLlib's (possibly DDP-wrapped) forward so gradients are all-reduced across learners.
        V batch (`vae_obs`): target, reconstruction of a posterior sample, mu, logvar.
        M batch (`z_in`, ...): mixture/reward/done predictions at each window's valid (`mask`) steps, flattened in
        row-major order (`MDNRNN.forward_valid`), starting from the LSTM state of the window's episode prefix
        (computed without gradients).
        """
        wm, out = self.world_model, {}
        with wm.compute():  # the world model's precision; the Learner's losses then read float32 (below)
            if "vae_obs" in batch:
                target = wm.vae.preprocess(batch["vae_obs"])
                mu, logvar = wm.vae.encode_target(target)
                z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
                out.update(vae_target=target, vae_recon=wm.vae.decode(z), vae_mu=mu, vae_logvar=logvar)
            if "z_in" in batch:
                state = self._prefix_state(batch)
                # scheduled sampling (WorldModelsConfig.world_model(closed_loop=...)) arrives as a batch column
                closed_loop = float(batch["closed_loop"][0]) if "closed_loop" in batch else 0.0
                horizon = int(batch["closed_loop_horizon"][0]) if "closed_loop_horizon" in batch else 1
                valid = batch["mask"] > 0
                mdn, _ = wm.mdn_rnn.forward_valid(batch["z_in"], batch["a"], valid, state, closed_loop, None, horizon)
                out.update({f"mdn_{k}": v for k, v in mdn._asdict().items()})
        return {k: v.float() for k, v in out.items()}

    @torch.no_grad()
    def _prefix_state(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) after running M over each row's episode prefix (zeros for windows at an episode start)."""
        return self.world_model.mdn_rnn.state_after(batch["z_prefix"], batch["a_prefix"], batch["prefix_len"].long())

    def __getstate__(self) -> dict[str, Any]:
        # the cached planners hold a torch.Generator (not picklable) and are rebuilt on demand anyway
        return {**self.__dict__, "_planners": {}}

    # --------------------------------------------------------------------------------------------- helpers
    def plan_settings(self) -> PlanSettings:
        """The planning settings the module's buffers hold now (horizon 0: no planning)."""
        return PlanSettings(
            horizon=int(self.plan_horizon),
            samples=int(self.plan_samples),
            every=int(self.plan_every),
            temperature=float(self.plan_temperature),
            done_logit_offset=float(self.plan_done_offset),
            done_logit_scale=float(self.plan_done_scale),
            collect=bool(self.plan_collect > 0.5),
            rollouts=PLAN_ROLLOUTS[int(self.plan_rollouts)],
            collect_horizon=int(self.plan_collect_horizon),
            collect_every=int(self.plan_collect_every),
            terminal_value=float(self.plan_terminal_value),
        )

    def controller_interval(self) -> int:
        """C's decision interval when it acts alone: `controller_every` (the planner's interval, for a C fitted to
        the planner's choices), else `action_repeat`."""
        return int(self.controller_every) or self.action_repeat

    def deployed_interval(self) -> int:
        """The decision interval of the agent that acts without exploration (evaluation, deployment): the deployed
        planner's when the module plans (`plan_horizon` > 0), else C's (`controller_interval`). Evaluations report
        it; `_forward` reads the same value from `planner().interval` (both `PlanSettings.interval`), which keeps the
        per-step path free of rebuilding the settings."""
        if self.plan_horizon > 0:
            return self.plan_settings().deployed().interval(self.action_repeat)
        return self.controller_interval()

    def planner(self, collect: bool = False, look: PlanSettings | None = None) -> DreamPlanner:
        """The DreamPlanner for the current buffers: the deployed one, or (`collect`) the one that acts in real
        collection (`PlanSettings.collection`), or one of the given look-ahead settings `look` (on this module's V,
        M and C: e.g. the config's planner that labels a C deployed alone). Rebuilt only when its settings change;
        it reads this module's V, M and C, so weight updates reach it without a rebuild."""
        if look is None:
            settings = self.plan_settings()
            look = settings.collection() if collect else settings.deployed()
        if look not in self._planners:
            if len(self._planners) >= 2:  # settings changed (`set_planning`): drop the old planners
                self._planners.clear()
            interval = look.interval(self.action_repeat)
            self._planners[look] = DreamPlanner(
                self.world_model, self.controller, self.controller_input, look, interval, seed=0
            )
        return self._planners[look]

    @property
    def real_z(self) -> str:
        """How the agent reads real frames: "mean" (V's posterior mean) or "sample" (a draw from it)."""
        return REAL_Z[int(self.real_z_mean > 0.5)]

    @real_z.setter
    def real_z(self, real_z: str) -> None:
        self.real_z_mean.fill_(float(check_real_z(real_z) == "mean"))

    def set_random_only(self, value: bool) -> None:
        """Act only with random holds (True: the paper's data collection) or with the controller."""
        self.random_only.fill_(1.0 if value else 0.0)
