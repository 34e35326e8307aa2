"""Decision-time planning in the dream: at each decision the agent dreams ahead from where it really is.

The controller C is trained only in whole dreams that start at real episode starts, and those dreams forget within
10-25 steps which situations are dangerous (RESULTS.md, "M's state knows the danger"). Yet M's state, while it reads
real frames, does know the danger (a probe on [z, h] picks out a fireball on course with AUC 0.90-0.98). A planner
uses the world model exactly where it is good: from the agent's current real state (V's z of this frame, M's
(h, c) after the real history), it dreams `horizon` steps ahead for every possible first action, held for one
decision interval, and C's own actions after that, `samples` dreams per first action with deaths as probabilities
(`done_mode="expected"`: no sampling noise in the score), and takes the first action with the highest expected
dreamed return. The j-th dream of every candidate shares its random draws (common random numbers), so candidates are
compared on the same dreamed futures. That is a one-step policy improvement over C (a rollout algorithm), done in
the dream only: no real reward is ever used to choose an action, and C is unchanged. Discrete actions only.

With `rollouts="parallel"` every first action is followed, in separate dreams, by C and by each action held to the
horizon, and an action scores the best of those base policies' expected returns (parallel rollout, Chang, Givan &
Chong 2004: the improved policy is at least as good as the best of its base policies, in the dream). A held action
is a sustained escape that a C trained in whole dreams may not take (on TakeCover a fixed sweep outplays C alone);
parallel rollouts cost (1 + actions) times the dreams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np
import torch

from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.models.controller import Controller, ControllerInput
from rllib_worldmodel.models.world_model import WorldModel

# What follows the first decision in the look-ahead dreams: C alone, or C and every action held (parallel rollout).
PLAN_ROLLOUTS = ("controller", "parallel")


@dataclass(frozen=True)
class PlanSettings:
    """How far and how often the planner dreams ahead, and the dream it dreams in.

    Args:
        horizon: Dream steps looked ahead from the real state (0: no planning, C acts alone). Must cover at least
            one decision interval (`action_repeat`). TakeCover at 4 tics a step: 12 (48 frames, about one
            fireball flight) planned best of 6-48 (RESULTS.md).
        samples: Dreams per candidate first action (their mean expected return is the action's score).
        every: The planning agent's decision interval in steps (0: C's own action repeat). Each candidate first
            action is held this long, and C decides at this interval in the look-ahead too.
        temperature: The dream's tau (the run's dream temperature by default).
        done_logit_offset: Added to M's done logits (the run's calibrated deaths).
        done_logit_scale: Multiplies M's done logits before the offset.
        collect: A planning agent also acts in real collection (exploration on top); needs horizon > 0 or
            collect_horizon > 0.
        rollouts: The policies followed after the first decision: "controller" (C) or "parallel" (C and each
            action held to the horizon, in separate dreams; an action scores its best policy's expected return;
            costs 1 + actions times the dreams).
        collect_horizon: The collecting planner's horizon (0: `horizon`'s). With `collect_every`, real collection
            can plan finer than the deployed agent: a fine planner goes where M is wrong at close range, so its
            episodes are the data that would fix it, while another planner (or C alone) is deployed (TakeCover:
            RESULTS.md, "Two more rounds, the second collecting with the fine planner"). Needs collect.
        collect_every: The collecting planner's decision interval (0: `every`'s). Needs collect.
        terminal_value: Steps of return credited to a look-ahead dream for each unit of its chance of being alive
            at the horizon's end (0: the dreamed steps only). A horizon cut short counts a death at its last step
            as one step lost, where in the game it costs the rest of the episode; a value of the order of the
            remaining episode ranks the first actions by their chance of surviving the horizon, with the dreamed
            steps breaking ties. TakeCover: RESULTS.md, "Crediting the look-ahead for surviving its horizon".
    """

    horizon: int = 0
    samples: int = 16
    every: int = 0
    temperature: float = 1.15
    done_logit_offset: float = 0.0
    done_logit_scale: float = 1.0
    collect: bool = False
    rollouts: str = "controller"
    collect_horizon: int = 0
    collect_every: int = 0
    terminal_value: float = 0.0

    def __post_init__(self) -> None:
        check_count("plan_horizon", self.horizon, 0, "dream steps; 0 turns planning off")
        check_count("plan_samples", self.samples, 1, "dreams per candidate action")
        check_count("plan_every", self.every, 0, "steps; 0: C's own action repeat")
        check_count("plan_collect_horizon", self.collect_horizon, 0, "dream steps; 0: plan_horizon's")
        check_count("plan_collect_every", self.collect_every, 0, "steps; 0: plan_every's")
        if not isinstance(self.collect, bool) or (self.collect and not (self.horizon or self.collect_horizon)):
            raise ValueError(
                f"plan_collect={self.collect!r}: collection by the planning agent needs a bool and plan_horizon > 0 "
                "(or plan_collect_horizon > 0); set plan_horizon (e.g. 12) or plan_collect=False."
            )
        for name, value in (("plan_collect_horizon", self.collect_horizon), ("plan_collect_every", self.collect_every)):
            if value and not self.collect:
                raise ValueError(
                    f"{name}={value} sets the collecting planner, and plan_collect is off (C collects): set "
                    f"plan_collect=True or {name}=0."
                )
        rollouts_index(self.rollouts)  # a clear error naming plan_rollouts
        check_terminal_value(self.terminal_value)

    def collection(self) -> PlanSettings:
        """The look-ahead of the planner that acts in real collection: `collect_horizon` and `collect_every` where
        set, the deployed planner's otherwise (then equal to `deployed()`, so one planner serves both)."""
        return replace(
            self.deployed(), horizon=self.collect_horizon or self.horizon, every=self.collect_every or self.every
        )

    def deployed(self) -> PlanSettings:
        """The look-ahead of the planner that acts without exploration (evaluation, deployment): these settings
        without who collects (no field of the look-ahead), so two planners that plan alike compare equal."""
        return replace(self, collect=False, collect_horizon=0, collect_every=0)

    def check_plannable(self, action_space: gym.Space | None, action_repeat: int) -> None:
        """Raise a clear error if the deployed or the collecting planner cannot work for this action space (None:
        not known yet) and C's action repeat (`check_plannable`)."""
        check_plannable(action_space, self.horizon, self.interval(action_repeat))
        if self.collect_horizon or self.collect_every:  # a collecting planner of its own
            look = self.collection()
            names = ("plan_collect_horizon (or plan_horizon)", "plan_collect_every (or plan_every)")
            check_plannable(action_space, look.horizon, look.interval(action_repeat), names)

    def interval(self, action_repeat: int) -> int:
        """The planning agent's decision interval: `every`, or C's `action_repeat` when `every` is 0."""
        return int(self.every) or int(action_repeat)

    @property
    def enabled(self) -> bool:
        """Whether the agent plans (horizon > 0)."""
        return self.horizon > 0

    def dream_settings(
        self, controller_input: ControllerInput | None = None, device: str | torch.device = "cpu"
    ) -> DreamSettings:
        """The look-ahead dream: expected deaths (a smooth, noise-free score), the extrinsic reward only (no
        pessimism, no curiosity, so no disagreement to compute), members' done probabilities averaged; C reads
        `controller_input` in it."""
        return DreamSettings(
            **(controller_input or ControllerInput()).flags(),
            temperature=self.temperature,
            done_mode="expected",
            report_disagreement=False,  # nothing reads it here: each step computes only the sampled member's mixture
            done_logit_offset=self.done_logit_offset,
            done_logit_scale=self.done_logit_scale,
            max_episode_steps=self.horizon + 1,
            device=str(device),
        )


def rollouts_index(rollouts: str) -> int:
    """`rollouts`' index in PLAN_ROLLOUTS (how the acting module's buffer holds it), or a ValueError naming
    `plan_rollouts`."""
    if rollouts not in PLAN_ROLLOUTS:
        raise ValueError(
            f"plan_rollouts={rollouts!r}: use one of {PLAN_ROLLOUTS} (what follows the first decision in the "
            "look-ahead: C, or C and every action held)."
        )
    return PLAN_ROLLOUTS.index(rollouts)


def check_terminal_value(value, field: str = "plan_terminal_value") -> float:
    """`value` as a finite float >= 0 (steps credited for surviving the look-ahead), else a clear error naming
    `field`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{field}={value!r} must be a finite number >= 0: the steps credited to a look-ahead dream for being "
            "alive at its end (0: the dreamed steps only; e.g. 100 ranks actions by their chance of surviving)."
        )
    return float(value)


def check_count(name: str, value, minimum: int, meaning: str) -> None:
    """Raise a ValueError naming `name` unless `value` is an int (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum} ({meaning})")


def check_plannable(
    action_space: gym.Space | None, horizon: int, interval: int, names: tuple[str, str] = ("plan_horizon", "plan_every")
) -> None:
    """Raise a clear error if planning with `horizon` cannot work for this action space and decision interval
    (`PlanSettings.interval`). `action_space` None: not known yet (config time); only the interval is checked.
    `names`: the settings the error names (the horizon's and the interval's)."""
    if horizon > 0 and action_space is not None and not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"{names[0]}={horizon}: the planner tries every first action, so it needs a Discrete action space; "
            f"this env has {action_space}. Set {names[0]}=0."
        )
    if 0 < horizon < interval:
        raise ValueError(
            f"{names[0]}={horizon} is shorter than one decision ({interval} steps: {names[1]}, or C's "
            f"action_repeat): set {names[0]} >= {interval}."
        )


class DreamPlanner:
    """Chooses C's next decision by dreaming ahead from the agent's real model state.

    Args:
        world_model: The fitted V + M (no initial states needed: dreams start where the agent is).
        controller: C, which acts in the look-ahead dreams after the first decision.
        controller_input: What C reads ([z, h], optionally c and the previous action).
        settings: PlanSettings (horizon > 0).
        interval: The planning agent's decision interval in steps (`PlanSettings.interval`); each candidate first
            action is held this long, and C decides at this interval after it.
        seed: Seed of the look-ahead dreams' noise.
    """

    def __init__(
        self,
        world_model: WorldModel,
        controller: Controller,
        controller_input: ControllerInput,
        settings: PlanSettings,
        interval: int = 1,
        seed: int | None = 0,
    ):
        check_plannable(world_model.config.action_space(), settings.horizon, interval)
        if not settings.enabled:
            raise ValueError("DreamPlanner needs PlanSettings(horizon > 0)")
        self.settings = settings
        self.controller = controller
        self.controller_input = controller_input
        self.interval = int(interval)
        self.num_actions = int(world_model.config.action_space().n)
        # base policies after the first decision: C, then (parallel rollout) action i held, i = 0 .. num_actions - 1
        self.num_policies = 1 + (self.num_actions if settings.rollouts == "parallel" else 0)
        self.sim = DreamSimulator(world_model, settings.dream_settings(controller_input, world_model.device))
        self.sim.seed(seed)

    @property
    def dreams_per_state(self) -> int:
        """Look-ahead dreams behind one decision: first actions x base policies x samples."""
        return self.num_actions * self.num_policies * self.settings.samples

    @torch.no_grad()
    def scores(
        self, z_B_Z: torch.Tensor, h_B_H: torch.Tensor, c_B_H: torch.Tensor, prev_action_B_A: torch.Tensor
    ) -> torch.Tensor:
        """Expected dreamed return over the horizon of each first action, (B, num_actions), from B model states:
        z of the current real frame and M's (h, c) and last encoded action before it. With parallel rollouts, the
        best over the base policies that follow the first decision."""
        n, k, a, p = self.settings.samples, self.interval, self.num_actions, self.num_policies
        sim = self.sim
        dev = sim.device
        rep = a * p * n  # every state is dreamed from a x p x n times: first action, then policy, then sample
        b = z_B_Z.shape[0]
        # Common random numbers: the j-th dream of every candidate from one state shares all its random draws
        # (latents, ensemble member), so candidates are compared on the same dreamed futures and differ only where
        # their actions make them differ: the same expected scores, a less noisy choice between them.
        streams = (torch.arange(b, device=dev)[:, None] * n + torch.arange(n, device=dev).repeat(a * p)[None]).flatten()
        sim.start_at(
            z_B_Z.to(dev).repeat_interleave(rep, 0),
            h_B_H.to(dev).repeat_interleave(rep, 0),
            c_B_H.to(dev).repeat_interleave(rep, 0),
            prev_action_B_A.to(dev).repeat_interleave(rep, 0),
            streams=streams,
        )
        first = torch.arange(a, device=dev).repeat_interleave(p * n).repeat(b)
        held = None
        if p > 1:  # parallel rollout: after the first decision base policy i >= 1 holds action i - 1 (-1: C's)
            held = torch.arange(p, device=dev).repeat_interleave(n).repeat(a * b) - 1
            holds = held >= 0  # built once per call, not per step
        action, total = first, torch.zeros(b * rep, device=dev)
        for t in range(self.settings.horizon):
            if t >= k and t % k == 0:  # after the first decision C decides every k steps, as it does for real
                action = self.controller.act(sim.observe()).to(dev)
                if held is not None:
                    action = torch.where(holds, held, action)
            _, reward, _, _ = sim.step(action)
            total += reward  # expected deaths: already weighted by the chance of being alive
        if self.settings.terminal_value:  # the episode goes on past the horizon only as far as the dream is alive
            total += self.settings.terminal_value * sim.alive
        return total.view(b, a, p, n).mean(-1).max(-1).values

    def act(
        self, z_B_Z: torch.Tensor, h_B_H: torch.Tensor, c_B_H: torch.Tensor, prev_action_B_A: torch.Tensor
    ) -> torch.Tensor:
        """The first action with the best expected dreamed return, (B,) longs."""
        return self.scores(z_B_Z, h_B_H, c_B_H, prev_action_B_A).argmax(-1)


@torch.no_grad()
def planner_dream_returns(
    world_model: WorldModel,
    settings: DreamSettings,
    controller: Controller,
    plan: PlanSettings,
    num_dreams: int,
    seed: int = 0,
    action_repeat: int = 1,
) -> np.ndarray:
    """Returns of the planning agent in `num_dreams` whole dreams of `settings` (the dream its controller was trained
    in): at every decision the agent plans from the dream's current state, as it does from the real one. The dream
    score of a planning agent, reported beside its real score."""
    sim = DreamSimulator(world_model, settings)
    sim.reset(num_dreams, seed=seed)
    interval = plan.interval(action_repeat)
    planner = DreamPlanner(world_model, controller, settings.controller_input, plan, interval, seed=seed + 1)
    returns = torch.zeros(num_dreams, device=sim.device)
    alive = torch.ones(num_dreams, dtype=torch.bool, device=sim.device)
    action = torch.zeros(num_dreams, dtype=torch.long, device=sim.device)
    t = 0
    while alive.any():
        if t % interval == 0:
            idx = torch.nonzero(alive).squeeze(1)
            action[idx] = planner.act(sim.z[idx], sim.h[idx], sim.c[idx], sim.prev_action[idx]).to(sim.device)
        _, reward, terminated, truncated = sim.step(action)
        returns += reward * alive
        alive &= ~(terminated | truncated)
        t += 1
    return returns.cpu().numpy()
