"""Does the dream rank policies the way the real env does? Survival of simple reference policies, dream vs real.
And does a short dream from a real state foresee what really happened next (`branch_fidelity`)?

A controller trained in the dream can only be as good as the dream's ORDER of policies: if the dream thinks that
holding one button is safer than dodging, CMA-ES will find that button. Before spending any training on it, play a
few reference policies (random actions held 1-10 steps, uniform random actions, each constant action) in both
worlds and compare their mean episode lengths (survival, which is the score of survival games such as TakeCover).
`spearman_rho` near 1 says the dream ranks them as reality does; near 0 or below says a controller trained there
will optimise the wrong thing, however small the dream-real gap of the collection policy is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy.stats import mannwhitneyu, spearmanr

from rllib_worldmodel.calibration import random_hold_survival
from rllib_worldmodel.dream import DreamSettings
from rllib_worldmodel.models.world_model import WorldModel


def reference_policies(action_space: gym.Space) -> dict[str, dict[str, Any]]:
    """Name -> {"hold": (min, max) steps an action is held, "fixed_action": action or None} for `action_space`.

    Random holds 1-10 (the paper's collection policy) and uniform random actions for any space; one constant
    policy per action for Discrete spaces.
    """
    policies: dict[str, dict[str, Any]] = {
        "random hold 1-10": {"hold": (1, 10), "fixed_action": None},
        "uniform random": {"hold": (1, 1), "fixed_action": None},
    }
    if isinstance(action_space, gym.spaces.Discrete):
        for a in range(int(action_space.n)):
            policies[f"always {a}"] = {"hold": (1, 1), "fixed_action": a}
    return policies


def real_lengths(
    env: gym.Env, hold: tuple[int, int], fixed_action: int | None, episodes: int, seed: int = 0
) -> np.ndarray:
    """Episode lengths of a reference policy in the real env, (episodes,)."""
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    lengths = []
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done, steps, left, action = False, 0, 0, None
        while not done:
            if fixed_action is not None:
                action = fixed_action
            elif left <= 0:
                action, left = env.action_space.sample(), int(rng.integers(hold[0], hold[1] + 1))
            left -= 1
            _, _, terminated, truncated, _ = env.step(action)
            steps += 1
            done = terminated or truncated
        lengths.append(steps)
    return np.asarray(lengths)


def ranking_fidelity(
    world_model: WorldModel,
    settings: DreamSettings,
    env: gym.Env,
    episodes: int = 30,
    num_dreams: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean survival of every reference policy in the dream (`settings`) and in `env`, and their rank correlation.

    Args:
        world_model: The fitted world model.
        settings: The dream to judge (temperature, done mode, done-logit offset, cap).
        env: The real env, with the world model's observation and action spaces.
        episodes: Real episodes per policy.
        num_dreams: Dreams per policy.
        seed: Seeds the dreams and the real episodes.

    Returns:
        {"rows": [{"policy", "dream_mean", "dream_std", "real_mean", "real_std"}, ...], "spearman_rho": float}
    """
    rows = []
    for name, p in reference_policies(env.action_space).items():
        dream = random_hold_survival(world_model, settings, num_dreams, p["hold"], seed, p["fixed_action"]).numpy()
        real = real_lengths(env, p["hold"], p["fixed_action"], episodes, seed)
        rows.append(
            {
                "policy": name,
                "dream_mean": float(dream.mean()),
                "dream_std": float(dream.std()),
                "real_mean": float(real.mean()),
                "real_std": float(real.std()),
                "real_episodes": int(episodes),
            }
        )
    rho = spearmanr([r["dream_mean"] for r in rows], [r["real_mean"] for r in rows]).statistic
    return {"rows": rows, "spearman_rho": float(rho)}


def branch_fidelity(
    world_model: WorldModel, settings: DreamSettings, max_points: int = 1024, reps: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Do short dreams from real states foresee the real deaths that followed? One number for a world model.

    From each of up to `max_points` branch points (real visited states with their real outcome), `reps` dreams of
    `settings.max_episode_steps` = H steps play the behaviour policy (random actions held 1-10 steps). A point is
    "doomed" if its real episode terminated within H steps. `auc` is the probability that a doomed point gets a
    higher dream death rate than a safe one (0.5: the dream does not know which states are dangerous; 1: it always
    does). Measured on TakeCover with a teacher-forced M: M's done head alone separates "dies within 15 steps"
    with AUC 0.85, but dreams of 15-30 steps from the same states only 0.59-0.65: the danger is forgotten while
    dreaming. Every constant action is dreamed from the same points too: `action_spread` (the mean over points of
    the std of the death rate across actions) says how much the dream lets an action change the outcome.

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
    doomed = ((outcomes[points, 0] <= horizon) & (outcomes[points, 1] > 0)).numpy()
    index = torch.as_tensor(points).repeat_interleave(reps)
    rates = {}
    for name, p in reference_policies(world_model.config.action_space()).items():
        lengths = random_hold_survival(
            world_model, settings, len(index), p["hold"], seed, p["fixed_action"], start_index=index
        )
        rates[name] = (lengths <= horizon).float().view(len(points), reps).mean(1).numpy()
    behaviour = rates["random hold 1-10"]
    auc = float("nan")
    if 0 < doomed.sum() < len(doomed):
        auc = float(mannwhitneyu(behaviour[doomed], behaviour[~doomed]).statistic / (doomed.sum() * (~doomed).sum()))
    constant = [v for k, v in rates.items() if k.startswith("always ")]
    return {
        "horizon": horizon,
        "points": len(points),
        "auc": auc,
        "dream_death_rate_doomed": float(behaviour[doomed].mean()) if doomed.any() else float("nan"),
        "dream_death_rate_safe": float(behaviour[~doomed].mean()) if (~doomed).any() else float("nan"),
        "real_doomed_share": float(doomed.mean()),
        "action_spread": float(np.std(constant, axis=0).mean()) if len(constant) > 1 else float("nan"),
        "death_rate": {k: float(v.mean()) for k, v in rates.items()},
    }
