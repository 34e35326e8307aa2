"""Does the dream rank policies the way the real env does? Survival of simple reference policies, dream vs real.
And does a short dream from a real state foresee what really happened next (`branch_fidelity`)? And where a
ranking breaks, is it in what M's state knows on real frames or in where the dream leads (`danger_fidelity`)?

A controller trained in the dream can only be as good as the dream's ORDER of policies: if the dream thinks that
holding one button is safer than dodging, CMA-ES will find that button. Before spending any training on it, play a
few reference policies (random actions held 1-10 steps, uniform random actions, each constant action) in both
worlds and compare their mean episode lengths (survival, which is the score of survival games such as TakeCover).
`spearman_rho` near 1 says the dream ranks them as reality does; near 0 or below says a controller trained there
will optimise the wrong thing, however small the dream-real gap of the collection policy is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from scipy.stats import mannwhitneyu, spearmanr
from torch import nn

from rllib_worldmodel.calibration import DreamReferenceActions, random_hold_survival
from rllib_worldmodel.data import Episode, rollout
from rllib_worldmodel.dream import doomed_branch_points, DreamSettings, DreamSimulator
from rllib_worldmodel.losses import mdn_log_prob
from rllib_worldmodel.models.world_model import WorldModel


def reference_policies(
    action_space: gym.Space, sweeps: Sequence[int] = (), sweep_actions: Sequence[int] = (1, 2)
) -> dict[str, dict[str, Any]]:
    """Name -> {"hold": (min, max) steps an action is held, "fixed_action": action or None, "cycle": actions played
    in turn or None} for `action_space`.

    Random holds 1-10 (the paper's collection policy) and uniform random actions for any space; one constant
    policy per action for Discrete spaces; and for each N in `sweeps` (Discrete only) a sweep: the `sweep_actions`
    in turn, each held N steps. On TakeCover (actions no-op, right, left) `sweeps=(100,)` is "right 100 steps, left
    100 steps, ...", which survives 861 ± 543 frames against random holds' 313 ± 170 (40 real episodes each): the
    one reference policy whose real survival depends on moving, so the one that tells whether the dream knows it.
    """
    policies: dict[str, dict[str, Any]] = {
        "random hold 1-10": {"hold": (1, 10), "fixed_action": None, "cycle": None},
        "uniform random": {"hold": (1, 1), "fixed_action": None, "cycle": None},
    }
    if isinstance(action_space, gym.spaces.Discrete):
        n = int(action_space.n)
        for a in range(n):
            policies[f"always {a}"] = {"hold": (1, 1), "fixed_action": a, "cycle": None}
        for steps in sweeps:
            if steps < 1 or not all(0 <= int(a) < n for a in sweep_actions) or len(sweep_actions) < 2:
                raise ValueError(
                    f"sweeps={tuple(sweeps)}, sweep_actions={tuple(sweep_actions)}: need steps >= 1 and at least two "
                    f"actions of Discrete({n})."
                )
            name = f"sweep {'/'.join(str(int(a)) for a in sweep_actions)} every {steps}"
            policies[name] = {
                "hold": (steps, steps),
                "fixed_action": None,
                "cycle": tuple(int(a) for a in sweep_actions),
            }
    return policies


class ReferencePolicy:
    """One of `reference_policies` as a policy for `data.rollout`: a fixed action, a cycle of actions each held
    `hold` steps from a random place in the cycle (or from `start_turn`), or uniformly random actions held `hold`
    steps.

    Args:
        action_space: The env's action space (random actions are drawn from it).
        hold: (min, max) steps each action is held.
        fixed_action: Play this action throughout.
        cycle: Play these actions in turn.
        rng: Draws hold lengths and the starting place in the cycle.
        start_turn: Every episode starts the cycle at this place (None: a random one per episode).
    """

    def __init__(
        self,
        action_space: gym.Space,
        hold: tuple[int, int],
        fixed_action: int | None = None,
        cycle: Sequence[int] | None = None,
        rng: np.random.Generator | None = None,
        start_turn: int | None = None,
    ):
        self.action_space, self.hold, self.fixed_action, self.cycle = action_space, hold, fixed_action, cycle
        self.start_turn = start_turn
        self.rng = rng if rng is not None else np.random.default_rng()
        self.reset()

    def reset(self) -> None:
        self.left, self.action = 0, None
        random_turn = self.start_turn is None and self.cycle
        self.turn = int(self.rng.integers(len(self.cycle))) if random_turn else int(self.start_turn or 0)

    def __call__(self, obs: np.ndarray | None = None):
        if self.fixed_action is not None:
            return self.fixed_action
        if self.left <= 0:
            if self.cycle:
                self.action, self.turn = self.cycle[self.turn % len(self.cycle)], self.turn + 1
            else:
                self.action = self.action_space.sample()
            self.left = int(self.rng.integers(self.hold[0], self.hold[1] + 1))
        self.left -= 1
        return self.action


def real_episodes(
    env: gym.Env,
    hold: tuple[int, int],
    fixed_action: int | None,
    episodes: int,
    seed: int = 0,
    cycle: Sequence[int] | None = None,
    start_turn: int | None = None,
) -> list[Episode]:
    """Recorded real episodes of a reference policy (`ReferencePolicy`; `start_turn`: every episode starts its cycle
    there, None: at random); episode i is reset with seed + i. Their lengths are the real counterpart of
    `random_hold_survival`'s."""
    env.action_space.seed(seed)
    policy = ReferencePolicy(env.action_space, hold, fixed_action, cycle, np.random.default_rng(seed), start_turn)
    return [rollout(env, policy, seed=seed + ep) for ep in range(episodes)]


def death_probability_of_logits(
    world_model: WorldModel, logits_E_T: torch.Tensor, settings: DreamSettings | None = None
) -> torch.Tensor:
    """Per-step death probabilities (T,) from every member's done logits (E, T). Without `settings`: the done
    head as fitted (members' logits averaged; `WorldModel.death_probability`). With `settings`: what that dream
    would apply at those states (`DreamSettings.death_probability`: its logit scale and offset and ensemble rule;
    with threshold deaths, 1 where it would end the dream and 0 elsewhere)."""
    if settings is None:
        return world_model.death_probability(logits_E_T.mean(0))
    p = settings.death_probability(world_model, logits_E_T)
    return (p > 0.5).float() if settings.threshold_deaths else p


@torch.no_grad()
def teacher_forced_death_probability(
    world_model: WorldModel, z_T_Z: torch.Tensor, actions_T: torch.Tensor, settings: DreamSettings | None = None
) -> torch.Tensor:
    """M's death probability at each step (T,) while it reads real latents z_0..z_{T-1} and the real actions
    (teacher forcing; `death_probability_of_logits` for `settings`)."""
    logits = world_model.teacher_forced_done_logits(z_T_Z, world_model.encode_action(actions_T))
    return death_probability_of_logits(world_model, logits, settings)


def model_hazard_on_real(
    world_model: WorldModel,
    episodes: Sequence[Episode],
    batch_size: int = 512,
    settings: DreamSettings | None = None,
) -> float:
    """M's mean per-step death probability while it reads the REAL frames and actions of `episodes` (teacher
    forcing with V's posterior means). Its real counterpart is deaths / steps. Beside the dream's survival of the
    same policy it says where a ranking failure lives: a done head that cannot tell the policies apart even on real
    frames, or a dream whose frames do not follow the policy's actions (measured on TakeCover: the latter, see the
    RESULTS.md). Without `settings` the done head is read as fitted; with a dream's settings the hazard is the one that
    dream applies (its done-logit scale and calibrated offset included), so it compares directly with the real
    hazard. Encodes on its own rather than with `WorldModelTrainer.encode_episodes`, which would also replace the
    model's dream start states."""
    return model_hazards_on_real(world_model, episodes, [settings], batch_size)[0]


def model_hazards_on_real(
    world_model: WorldModel,
    episodes: Sequence[Episode],
    settings: Sequence[DreamSettings | None],
    batch_size: int = 512,
) -> list[float]:
    """`model_hazard_on_real` for several readings of the done head (None: as fitted; a dream's settings: as that
    dream applies it), encoding the frames once."""
    encoded = [
        (world_model.encode_frames(ep.obs[:-1], batch_size)[0], world_model.encode_action(torch.as_tensor(ep.actions)))
        for ep in episodes
    ]
    return hazards_on_encoded(world_model, encoded, settings)


@torch.no_grad()
def hazards_on_encoded(
    world_model: WorldModel,
    episodes: Sequence[tuple[torch.Tensor, torch.Tensor]],
    settings: Sequence[DreamSettings | None],
) -> list[float]:
    """`model_hazards_on_real` of episodes already encoded: (V's posterior means (T' >= T, Z), actions encoded
    for M (T, A)) each; M reads them in padded batches (`WorldModel.teacher_forced_done_logits_of`)."""
    logits = world_model.teacher_forced_done_logits_of(episodes)
    steps = sum(lg.shape[1] for lg in logits)
    return [
        sum(float(death_probability_of_logits(world_model, lg, st).sum()) for lg in logits) / max(steps, 1)
        for st in settings
    ]


def ranking_fidelity(
    world_model: WorldModel,
    settings: DreamSettings,
    env: gym.Env,
    episodes: int = 30,
    num_dreams: int = 256,
    seed: int = 0,
    sweeps: Sequence[int] = (),
) -> dict[str, Any]:
    """Mean survival of every reference policy in the dream (`settings`) and in `env`, and their rank correlation.

    Args:
        world_model: The fitted world model.
        settings: The dream to judge (temperature, done mode, done-logit offset, cap).
        env: The real env, with the world model's observation and action spaces.
        episodes: Real episodes per policy.
        num_dreams: Dreams per policy.
        seed: Seeds the dreams and the real episodes.
        sweeps: Add a sweep reference policy per entry (steps each direction is held; see `reference_policies`).

    Returns:
        {"rows": [{"policy", "dream_mean", "dream_std", "real_mean", "real_std", "real_episodes", "real_hazard",
        "model_hazard_on_real", "dream_hazard_on_real"}, ...], "spearman_rho": float}; the hazards are deaths per
        step (see `model_hazard_on_real`: the done head as fitted, and as this dream applies it).
    """
    rows = []
    for name, p in reference_policies(env.action_space, sweeps).items():
        dream = random_hold_survival(
            world_model, settings, num_dreams, p["hold"], seed, p["fixed_action"], cycle=p["cycle"]
        ).numpy()
        recorded = real_episodes(env, p["hold"], p["fixed_action"], episodes, seed, cycle=p["cycle"])
        real = np.asarray([len(ep) for ep in recorded])
        fitted, dreamed = model_hazards_on_real(world_model, recorded, [None, settings])
        rows.append(
            {
                "policy": name,
                "dream_mean": float(dream.mean()),
                "dream_std": float(dream.std()),
                "real_mean": float(real.mean()),
                "real_std": float(real.std()),
                "real_episodes": int(episodes),
                # deaths per step: what really happened, and what M's done head says while reading those frames
                "real_hazard": sum(ep.terminated for ep in recorded) / max(int(real.sum()), 1),
                "model_hazard_on_real": fitted,
                "dream_hazard_on_real": dreamed,
            }
        )
        del recorded  # frames of long episodes: do not keep them across policies
    rho = rank_correlation([r["dream_mean"] for r in rows], [r["real_mean"] for r in rows])
    return {"rows": rows, "spearman_rho": rho}


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho of two columns; NaN (without scipy's warning) when either is constant, as an untrained head's
    probabilities can be."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties count half (Mann-Whitney U / n1 n0); NaN without both."""
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float(mannwhitneyu(score[positive], score[~positive]).statistic / (n1 * n0))


def branch_fidelity(
    world_model: WorldModel, settings: DreamSettings, max_points: int = 1024, reps: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Do short dreams from real states foresee the real deaths that followed? One number for a world model.

    From each of up to `max_points` branch points (real visited states with their real outcome), `reps` dreams of
    `settings.max_episode_steps` = H steps play the behaviour policy (random actions held 1-10 steps). A point is
    "doomed" if its real episode terminated within H steps. `auc` is the probability that a doomed point gets a
    higher dream death rate than a safe one (0.5: the dream does not know which states are dangerous; 1: it always
    does). Measured on TakeCover (benchmarks/branch_fidelity.py): M's done head alone separates "dies within 15
    steps" with AUC 0.85-0.87, but dreams of 15-30 steps from the same states only 0.58-0.69: the danger is
    forgotten while dreaming. Every constant action is dreamed from the same points too: `action_spread` (the mean
    over points of the std of the death rate across actions) says how much the dream lets an action change the
    outcome.

    Args:
        world_model: A world model with branch points (`WorldModel.store_branch_points`).
        settings: The dream (temperature, done mode and offset); `start` is set to "branch" here, and "expected"
            deaths are drawn as in "sample".
        max_points: Branch points used (a seeded uniform subset when there are more).
        reps: Dreams per point and policy.
        seed: Seeds the subset and the dreams.

    Returns:
        {"horizon", "points", "auc", "dream_death_rate_doomed", "dream_death_rate_safe", "real_doomed_share",
        "action_spread", "death_rate": {policy: dream death rate}}. `auc` is NaN when all points or none are
        doomed within H (e.g. CartPole's random episodes all end within 30 steps): choose another horizon.
    """
    outcomes = world_model.branch_outcomes.cpu()
    if outcomes.shape[0] == 0:
        raise ValueError("the world model has no branch points; see WorldModel.store_branch_points.")
    horizon = int(settings.max_episode_steps)
    # One step more than the horizon, so a dream that dies ON step H is told apart from one truncated there.
    # Deaths are drawn here ("expected" has the same death probabilities but never draws one).
    done_mode = "sample" if settings.done_mode == "expected" else settings.done_mode
    settings = dataclasses.replace(settings, start="branch", max_episode_steps=horizon + 1, done_mode=done_mode)
    rng = np.random.default_rng(seed)
    n = outcomes.shape[0]
    points = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
    doomed = np.isin(points, doomed_branch_points(world_model, horizon).cpu().numpy())
    index = torch.as_tensor(points).repeat_interleave(reps)
    rates = {}
    for name, p in reference_policies(world_model.config.action_space()).items():
        lengths = random_hold_survival(
            world_model, settings, len(index), p["hold"], seed, p["fixed_action"], start_index=index
        )
        rates[name] = (lengths <= horizon).float().view(len(points), reps).mean(1).numpy()
    behaviour = rates["random hold 1-10"]
    constant = [v for k, v in rates.items() if k.startswith("always ")]
    return {
        "horizon": horizon,
        "points": len(points),
        "auc": roc_auc(behaviour, doomed),
        "dream_death_rate_doomed": float(behaviour[doomed].mean()) if doomed.any() else float("nan"),
        "dream_death_rate_safe": float(behaviour[~doomed].mean()) if (~doomed).any() else float("nan"),
        "real_doomed_share": float(doomed.mean()),
        "action_spread": float(np.std(constant, axis=0).mean()) if len(constant) > 1 else float("nan"),
        "death_rate": {k: float(v.mean()) for k, v in rates.items()},
    }


@torch.no_grad()
def action_effect(
    world_model: WorldModel,
    episodes: Sequence[tuple[torch.Tensor, torch.Tensor]],
    steps: int = 10,
    max_points: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Does M know what the actions do? Measured from real states (Discrete actions).

    A controller can only learn in the dream what the dream lets its actions change. On TakeCover a move shifts the
    view by less than a pixel per step, so its effect on one next latent is small and easily drowned: M trained on
    random-hold data may predict the next frame equally well whatever the action was.

    Teacher-forced on the real history (V's posterior means), at every real step and for every action a:
    - `action_identification`: the share of steps at which the action really taken gives the real next latent the
      highest likelihood under M (chance: 1 / number of actions); `loglik_margin`: the mean log-likelihood margin
      of the real action over the best other one (nats per step, summed over latent dimensions; > 0 when M uses it).
    - `step_signal_to_noise`: the distance between M's expected next latents under two different actions, divided
      by the spread (root of the summed variance, tau = 1) of M's next-latent distribution: below 1, one step of
      sampling hides what the action did.
    From up to `max_points` of the world model's branch points, `steps` deterministic dream steps under each constant
    action: `dream_action_distance`, the mean latent distance between the endpoints of different actions, beside
    `real_step_distance`, the mean distance between consecutive real latents (for scale).

    Args:
        world_model: A world model with branch points (`WorldModel.store_branch_points`).
        episodes: Real episodes as (V's posterior means (T+1, Z), actions (T,) ints).
        steps: Deterministic dream steps for `dream_action_distance`.
        max_points: Branch points used (a seeded subset when there are more).
        seed: Seeds the subset.
    """
    space = world_model.config.action_space()
    if not isinstance(space, gym.spaces.Discrete):
        raise ValueError(f"action_effect compares discrete actions; this world model acts in {space}.")
    if world_model.branch_states.shape[0] == 0:
        raise ValueError("the world model has no branch points; see WorldModel.store_branch_points.")
    n_act, m_rnn, dev = int(space.n), world_model.mdn_rnn, world_model.device
    hits, margins, snr, real_step = [], [], [], []
    for mu, actions in episodes:
        t_len = len(actions)
        z, acts = mu[: t_len + 1].to(dev), torch.as_tensor(actions, device=dev).long()
        enc = world_model.encode_action(acts)
        h, c = m_rnn.initial_state(1, dev)
        hs, cs = [], []
        for t in range(t_len):  # the LSTM state before each step, on the real history
            hs.append(h)
            cs.append(c)
            h, c = m_rnn.step(z[t : t + 1], enc[t : t + 1], (h, c))
        h0, c0 = torch.cat(hs), torch.cat(cs)
        loglik, means, variances = [], [], []
        for a in range(n_act):
            h1, _ = m_rnn.step(z[:t_len], world_model.encode_action(torch.full_like(acts, a)), (h0, c0))
            out = m_rnn.heads(h1)  # fields (E, T, Z, K): averaged over ensemble members
            target = z[1:].expand(out.mu.shape[0], -1, -1)
            loglik.append(mdn_log_prob(out.logpi, out.mu, out.logsigma, target).sum(-1).mean(0))
            pi = out.logpi.exp()
            mean = (pi * out.mu).sum(-1)
            var = (pi * ((2 * out.logsigma).exp() + out.mu.pow(2))).sum(-1) - mean.pow(2)
            means.append(mean.mean(0))
            variances.append(var.mean(0))
        loglik = torch.stack(loglik, 1)
        rows = torch.arange(t_len, device=dev)
        hits.append((loglik.argmax(1) == acts).float().cpu())
        others = loglik.clone()
        others[rows, acts] = -float("inf")
        margins.append((loglik[rows, acts] - others.max(1).values).cpu())
        spread = torch.stack(variances).mean(0).sum(-1).sqrt()  # (T,)
        for i in range(n_act):
            for j in range(i + 1, n_act):
                snr.append(((means[i] - means[j]).norm(dim=-1) / spread).cpu())
        real_step.append((z[1:] - z[:-1]).norm(dim=-1).cpu())
    n = world_model.branch_states.shape[0]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(n, max_points)]
    settings = DreamSettings(deterministic=True, start="branch", max_episode_steps=steps, done_mode="expected")
    ends = []
    for a in range(n_act):
        sim = DreamSimulator(world_model, settings)
        sim.reset(len(idx), start_index=idx)
        for _ in range(steps):
            sim.step(torch.full((len(idx),), a, device=sim.device))
        ends.append(sim.z.cpu())
    distance = torch.stack([(ends[i] - ends[j]).norm(dim=-1).mean() for i in range(n_act) for j in range(i + 1, n_act)])
    return {
        "action_identification": float(torch.cat(hits).mean()),
        "chance": 1.0 / n_act,
        "loglik_margin": float(torch.cat(margins).mean()),
        "step_signal_to_noise": float(torch.cat(snr).mean()),
        "dream_action_distance": float(distance.mean()),
        "real_step_distance": float(torch.cat(real_step).mean()),
        "steps": steps,
        "points": len(idx),
    }


@torch.no_grad()
def dreamed_states(
    world_model: WorldModel,
    settings: DreamSettings,
    num_dreams: int,
    steps: int,
    hold: tuple[int, int],
    fixed_action: int | None = None,
    cycle: Sequence[int] | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """M's LSTM outputs (steps, num_dreams, H) along dreams of a reference policy (`reference_policies`' hold,
    fixed action, cycle), the states its output heads read in the dream. Every dream runs all `steps`: dreamed
    deaths are ignored here, so the states are where the policy leads the dream, not where it survives."""
    sim = DreamSimulator(world_model, dataclasses.replace(settings, seed=seed, max_episode_steps=steps))
    sim.reset(num_dreams)
    policy = DreamReferenceActions(sim, num_dreams, hold, seed, fixed_action, cycle)
    states = []
    for _ in range(steps):
        sim.step(policy())
        states.append(sim.h.cpu())
    return torch.stack(states)


class StateProbe:
    """A logistic probe (one hidden ReLU layer, or linear with hidden=0) fitted on M's states: p(event | state).

    It answers what a done head COULD read from M's state, independent of the done head M has: fitted on M's states
    while it reads real frames, labelled with what really happened next, it measures whether the danger is in the
    state at all; applied to dreamed states, whether the dream leads a policy into danger where reality does.

    Args:
        states_N_H: Training states.
        labels_N: 1 where the event (a death, a hit) happened at that step, else 0.
        hidden: Hidden units (0: logistic regression).
        epochs: Passes over the states (Adam, batches of 512).
        lr: Adam learning rate.
        seed: Seeds the initial weights and the batch order.
    """

    def __init__(
        self,
        states_N_H: torch.Tensor,
        labels_N: np.ndarray | torch.Tensor,
        hidden: int = 256,
        epochs: int = 30,
        lr: float = 1e-3,
        seed: int = 0,
    ):
        y = torch.as_tensor(labels_N, dtype=torch.float32)
        if len(y) != len(states_N_H):
            raise ValueError(f"{len(states_N_H)} states but {len(y)} labels: one label per state.")
        base = float(y.mean())
        if not 0 < base < 1:
            raise ValueError(f"the probe needs both events and non-events among its {len(y)} states (rate {base}).")
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            size = states_N_H.shape[1]
            self.net = (
                nn.Linear(size, 1)
                if hidden == 0
                else nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            )
        last = self.net if hidden == 0 else self.net[-1]
        with torch.no_grad():  # start at the base rate: rare events would otherwise take most epochs to get there
            last.bias.fill_(math.log(base / (1 - base)))
        self.mean, self.std = states_N_H.mean(0), states_N_H.std(0) + 1e-6
        x = self.standardise(states_N_H)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=1e-4)
        for _ in range(epochs):
            for batch in torch.randperm(len(x), generator=gen).split(512):
                loss = nn.functional.binary_cross_entropy_with_logits(self.net(x[batch]).squeeze(-1), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()

    def standardise(self, states: torch.Tensor) -> torch.Tensor:
        return (states.float() - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        """p(event) for states of any leading shape (..., H) -> (...)."""
        return torch.sigmoid(self.net(self.standardise(states)).squeeze(-1))


class _HeldOut(NamedTuple):
    """One held-out real episode as `danger_fidelity` reads it."""

    posterior: tuple[torch.Tensor, torch.Tensor]  # V's (mu, logvar) of its frames, each (T, Z)
    encoded: torch.Tensor  # its actions as M reads them, (T, A)
    actions: torch.Tensor  # its actions as the env took them, (T,) or (T, A)
    states: torch.Tensor  # M's teacher-forced LSTM outputs, (T, H)
    events: np.ndarray  # (T,)


@dataclasses.dataclass
class RecordedPolicy:
    """Real episodes of one reference policy and the events to predict in them.

    Attributes:
        spec: The policy as `reference_policies` gives it ({"hold", "fixed_action", "cycle"}); the dream plays it.
        episodes: Its real episodes.
        events: Per episode, (T,) 1 where the event happened at that step (its action led to it). None: the
            episode's termination, at its last step.
    """

    spec: dict[str, Any]
    episodes: list[Episode]
    events: list[np.ndarray] | None = None

    def event_arrays(self) -> list[np.ndarray]:
        if self.events is not None:
            if len(self.events) != len(self.episodes) or any(
                len(e) != len(ep.actions) for e, ep in zip(self.events, self.episodes)
            ):
                raise ValueError("events: one (T,) array per episode, as long as its actions.")
            return [np.asarray(e, dtype=np.float32) for e in self.events]
        out = []
        for ep in self.episodes:
            e = np.zeros(len(ep.actions), np.float32)
            e[-1] = float(ep.terminated)
            out.append(e)
        return out


def danger_fidelity(
    world_model: WorldModel,
    settings: DreamSettings,
    policies: dict[str, RecordedPolicy],
    num_dreams: int = 128,
    steps: int = 200,
    hidden: int = 256,
    epochs: int = 30,
    seed: int = 0,
    horizons: Sequence[int] = (),
    start_every: int = 10,
) -> dict[str, Any]:
    """Where does the dream's ranking of policies break: in what M's state knows, or in where the dream goes?

    A `StateProbe` is fitted on M's LSTM states while it reads the even-numbered real episodes of every policy
    (teacher forcing), labelled with the events that really followed. Per policy it then reports the real event
    rate, the probe's mean on the odd-numbered (held-out) real episodes' states, and its mean on dreamed states of
    the same policy (`dreamed_states`); M's own done head is read on both as well (as `settings` applies it).
    Three rank correlations with the real rates follow:
    - `rho_probe_real` (perception): near 1 says M's state holds what separates the policies on real frames;
    - `rho_done_head_real`: whether M's done head reads it;
    - `rho_probe_dream` (dynamics): near 1 says the dream leads each policy into as much danger as reality does.
    Low perception is V's or M's encoding to fix; high perception with low dynamics is the dream's next-latent
    model. Measured on TakeCover (RESULTS.md, 2026-12-02): perception +0.90, dynamics -0.50.

    With `horizons`, it also measures how long a dream keeps the order when it starts from a REAL state: from every
    `start_every`-th state of the held-out episodes, M dreams k steps with the actions the real episode then took
    (the first step reads the real frame's latent, later ones M's own samples), and the probe on those dreamed
    states is compared with the probe on the real states of the same windows (`horizon_rows`).

    Args:
        world_model: The fitted world model.
        settings: The dream (temperature, done-head reading); its deaths are ignored while dreaming states.
        policies: Name -> the policy's recorded real episodes and events (at least two policies, each with at
            least two episodes).
        num_dreams: Dreams per policy.
        steps: Dreamed steps per dream.
        hidden: Probe hidden units (0: logistic regression).
        epochs: Probe training passes.
        seed: Seeds the probe and the dreams.
        horizons: Dream lengths k for the dreams from real states (empty: skip them).
        start_every: Their starts: every n-th state of each held-out episode that has k more real steps. Keep
            it short against the horizons and unlike the policies' periods: windows of k < n steps that start
            every n steps see only some phases of a periodic policy (a sweep that turns every 25 steps, read
            from every 25th state, is only ever seen just after its turns).

    Returns:
        {"rows": [{"policy", "real_event_rate", "probe_on_real", "probe_on_dream", "done_head_on_real",
        "done_head_on_dream", "real_steps"}], "probe_auc" (held-out real states), "rho_probe_real",
        "rho_done_head_real", "rho_probe_dream", "rho_done_head_dream", "events", "train_states", "horizon_rows":
        [{"steps", "rho_probe_real", "rho_probe_dream", "rho_dream_vs_real_states" (the probe's order on dreamed
        vs on the real states of the same windows: the less noisy check), "rows": [{"policy", "starts",
        "real_event_rate", "probe_on_real", "probe_on_dream"}]}]}; rates per step.
    """
    if len(policies) < 2 or any(len(p.episodes) < 2 for p in policies.values()):
        raise ValueError("danger_fidelity needs at least two policies with at least two real episodes each.")
    if any(k < 1 for k in horizons) or start_every < 1:
        raise ValueError(f"horizons={tuple(horizons)} and start_every={start_every} must be >= 1.")
    states, labels, held_out, policy_of = [], [], [], []
    tested: list[list[_HeldOut]] = []  # per policy: its held-out episodes
    for k, p in enumerate(policies.values()):
        posterior = [world_model.encode_frames(ep.obs[:-1]) for ep in p.episodes]
        actions = [world_model.encode_action(torch.as_tensor(ep.actions)) for ep in p.episodes]
        real_h = world_model.teacher_forced_states_of([(mu, a) for (mu, _), a in zip(posterior, actions)])
        tested.append([])
        for i, (h, e) in enumerate(zip(real_h, p.event_arrays())):
            states.append(h.cpu())
            labels.append(e)
            held_out.append(np.full(len(e), i % 2 == 1))
            policy_of.append(np.full(len(e), k))
            if i % 2 == 1:
                raw = torch.as_tensor(p.episodes[i].actions)
                tested[-1].append(_HeldOut(posterior[i], actions[i], raw, h.cpu(), e))
    h_N_H, y = torch.cat(states), np.concatenate(labels)
    test, which = np.concatenate(held_out), np.concatenate(policy_of)
    probe = StateProbe(h_N_H[torch.as_tensor(~test)], y[~test], hidden, epochs, seed=seed)
    p_real = probe(h_N_H).numpy()

    def done_head(h_N_H: torch.Tensor) -> np.ndarray:  # only the done head: the mixture heads are not needed
        logits_E_N = world_model.mdn_rnn.done_head(h_N_H.to(world_model.device)).movedim(-1, 0)
        return death_probability_of_logits(world_model, logits_E_N, settings).cpu().numpy()

    with torch.no_grad():
        d_real = done_head(h_N_H)
    rows = []
    for k, (name, p) in enumerate(policies.items()):
        rows_k = test & (which == k)
        dreamed = dreamed_states(
            world_model, settings, num_dreams, steps, p.spec["hold"], p.spec["fixed_action"], p.spec["cycle"], seed
        )
        with torch.no_grad():
            d_dream = done_head(dreamed.reshape(-1, dreamed.shape[-1]))
        rows.append(
            {
                "policy": name,
                "real_steps": int((which == k).sum()),
                "real_event_rate": float(y[which == k].mean()),
                "probe_on_real": float(p_real[rows_k].mean()),
                "probe_on_dream": float(probe(dreamed).mean()),
                "done_head_on_real": float(d_real[which == k].mean()),
                "done_head_on_dream": float(d_dream.mean()),
            }
        )
    real = [r["real_event_rate"] for r in rows]

    def rho(key: str) -> float:
        return rank_correlation([r[key] for r in rows], real)

    horizon_rows = [
        _dreams_from_real_states(world_model, settings, list(policies), tested, probe, k, start_every, seed)
        for k in horizons
    ]
    return {
        "rows": rows,
        "horizon_rows": horizon_rows,
        "probe_auc": roc_auc(p_real[test], y[test] > 0),
        "rho_probe_real": rho("probe_on_real"),
        "rho_done_head_real": rho("done_head_on_real"),
        "rho_probe_dream": rho("probe_on_dream"),
        "rho_done_head_dream": rho("done_head_on_dream"),
        "events": int(y.sum()),
        "train_states": int((~test).sum()),
    }


@torch.no_grad()
def _dreams_from_real_states(
    world_model: WorldModel,
    settings: DreamSettings,
    names: list[str],
    tested: list[list[_HeldOut]],
    probe: StateProbe,
    steps: int,
    every: int,
    seed: int,
) -> dict[str, Any]:
    """`danger_fidelity`'s horizon check for one dream length: dreams of `steps` steps from real states (branch
    points of the held-out episodes, the model's own bank left as it was) with the real actions that followed."""
    rows = []
    saved = world_model.branch_states, world_model.branch_outcomes
    try:
        for name, episodes in zip(names, tested):
            long_enough = [ep for ep in episodes if len(ep.actions) > steps]
            if not long_enough:
                raise ValueError(f"policy {name!r}: no held-out episode is longer than the horizon {steps}.")
            points, _, where = world_model.branch_point_states(
                [(*ep.posterior, ep.encoded, True) for ep in long_enough], every=every
            )
            keep = torch.as_tensor([int(t) + steps <= len(long_enough[int(i)].actions) for i, t in where])
            points, where = points[keep], where[keep]
            world_model.set_branch_points(points, torch.zeros(len(points), 2))
            sim = DreamSimulator(
                world_model, dataclasses.replace(settings, start="branch", seed=seed, max_episode_steps=steps + 1)
            )
            sim.reset(len(points), start_index=torch.arange(len(points)))
            windows = [(long_enough[int(i)], int(t)) for i, t in where]
            actions = torch.stack([ep.actions[t : t + steps] for ep, t in windows], 1)  # (steps, P[, A])
            real = probe(torch.stack([ep.states[t : t + steps] for ep, t in windows], 1))  # (steps, P)
            events = np.stack([ep.events[t : t + steps] for ep, t in windows], 1)
            dreamed = []
            for a in actions:  # the first step reads the real frame's latent, the later ones M's samples
                sim.step(a)
                dreamed.append(probe(sim.h.cpu()))
            rows.append(
                {
                    "policy": name,
                    "starts": len(points),
                    "real_event_rate": float(events.mean()),
                    "probe_on_real": float(real.mean()),
                    "probe_on_dream": float(torch.stack(dreamed).mean()),
                }
            )
    finally:
        world_model.branch_states, world_model.branch_outcomes = saved
    real_rates = [r["real_event_rate"] for r in rows]
    return {
        "steps": steps,
        "rho_probe_real": rank_correlation([r["probe_on_real"] for r in rows], real_rates),
        "rho_probe_dream": rank_correlation([r["probe_on_dream"] for r in rows], real_rates),
        "rho_dream_vs_real_states": rank_correlation(
            [r["probe_on_dream"] for r in rows], [r["probe_on_real"] for r in rows]
        ),
        "rows": rows,
    }
