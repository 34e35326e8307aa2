"""Paper mode for training C: CMA-ES (the `cma` package) with the whole population evaluated in ONE batched dream.

Each generation asks CMA-ES for P candidate parameter vectors, runs P x R dreams together in one DreamSimulator
(R rollouts per candidate, every step one batched forward pass of M and of all P controllers), and tells CMA-ES the
mean dream return of each candidate (paper §A.3: population 64, 16 rollouts, fitness = mean). Finished dreams are
dropped from the batch as they end, so a generation costs the steps that were really dreamed.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

with warnings.catch_warnings():
    # `cma` warns at import, in every process that loads this module (the CLI, each Ray worker), that matplotlib is
    # missing; only its `cma.plot()` needs it, and nothing here plots.
    warnings.filterwarnings("ignore", message="Could not import matplotlib", category=UserWarning)
    import cma

from rllib_worldmodel.dream import DreamSimulator
from rllib_worldmodel.models.controller import Controller, held_actions


@dataclass
class PopulationResult:
    """Dream returns of P candidates x R rollouts, and the number of dream steps taken."""

    returns: np.ndarray  # (P, R): the reward the controller was trained on (extrinsic - penalty + intrinsic)
    lengths: np.ndarray  # (P, R)
    dream_steps: int
    parts: dict[str, np.ndarray] = field(default_factory=dict)  # (P, R) sums of the dream's reward parts


@torch.no_grad()
def evaluate_population(
    sim: DreamSimulator,
    controller: Controller,
    flats: np.ndarray,
    rollouts: int,
    seed: int | None = None,
    common_noise: bool = True,
    action_repeat: int = 1,
) -> PopulationResult:
    """Run P controllers (rows of `flats`) for `rollouts` dreams each, all in one batched simulator run.

    Args:
        sim: The dream (its settings decide temperature, done mode and the step cap).
        controller: Template giving the parameter layout (its own weights are not used).
        flats: (P, N) parameter vectors in `Controller.get_flat` layout.
        rollouts: Dreams per candidate (R).
        seed: Seed for the dreams (same seed -> same dream noise for every call).
        common_noise: Common random numbers: every candidate's r-th dream gets noise stream r (the same start and
            the same draws), so candidates are compared on the same dreams and differ only by what their actions
            change. With sampled deaths a dream's length varies about as much as its mean, and without this
            CMA-ES ranks mostly noise.
        action_repeat: The controller decides every k-th step of a dream and its action is held in between.
    """
    p = flats.shape[0]
    b = p * rollouts
    w = torch.as_tensor(flats, dtype=torch.float32, device=sim.device)
    streams = torch.arange(b, device=sim.device) % rollouts if common_noise else None  # dream i = cand * R + r
    obs = sim.reset(b, seed=seed, streams=streams)
    # Each live dream's controller parameters, gathered once and shrunk with the batch (not re-gathered per step).
    w_live = w.repeat_interleave(rollouts, dim=0)
    slot = torch.arange(b, device=sim.device)  # each live dream's position in the (P*R) result arrays
    returns = torch.zeros(b, device=sim.device)
    lengths = torch.zeros(b, dtype=torch.long, device=sim.device)
    parts: dict[str, torch.Tensor] = {}
    steps = 0
    action = None
    while slot.numel():
        out = controller.batched_forward(w_live, obs.unsqueeze(1)).squeeze(1)  # one einsum per layer, all dreams
        action = held_actions(controller.to_action(out), action, lengths[slot], action_repeat)
        obs, reward, terminated, truncated = sim.step(action)
        returns[slot] += reward
        lengths[slot] += 1
        for k, v in sim.reward_parts.items():
            parts.setdefault(k, torch.zeros(b, device=sim.device))[slot] += v
        steps += slot.numel()
        alive = ~(terminated | truncated)
        if not alive.all():
            keep = alive.nonzero().squeeze(1)
            sim.select(keep)
            obs, w_live, slot, action = obs[keep], w_live[keep], slot[keep], action[keep]
    return PopulationResult(
        returns.view(p, rollouts).cpu().numpy(),
        lengths.view(p, rollouts).cpu().numpy(),
        steps,
        {k: v.view(p, rollouts).cpu().numpy() for k, v in parts.items()},
    )


class CMAESTrainer:
    """CMA-ES over a controller's parameters, fitness = mean dream return.

    Args:
        controller: The controller whose current parameters start the search.
        popsize: Candidates per generation (paper: 64).
        rollouts: Dreams per candidate (paper: 16).
        sigma_init: Initial step size (paper code: 0.1).
        seed: Seeds CMA-ES and the dreams.
        prefix: Metric-name prefix (the explorer reports under "dream/explorer_").
        common_noise: Evaluate every candidate on the same R noise streams (see `evaluate_population`).
    """

    def __init__(
        self,
        controller: Controller,
        popsize: int = 64,
        rollouts: int = 16,
        sigma_init: float = 0.1,
        seed: int = 0,
        prefix: str = "dream/cma_",
        common_noise: bool = True,
        action_repeat: int = 1,
    ):
        if action_repeat < 1:
            raise ValueError(f"action_repeat={action_repeat} must be >= 1 (1: the controller decides every step).")
        if popsize < 2 or rollouts < 1 or sigma_init <= 0:
            raise ValueError(
                f"need popsize >= 2, rollouts >= 1, sigma_init > 0; got {popsize}, {rollouts}, {sigma_init}"
            )
        self.controller = controller
        self.rollouts = rollouts
        self.seed = seed
        self.prefix = prefix
        self.common_noise = common_noise
        self.action_repeat = action_repeat
        self.es = cma.CMAEvolutionStrategy(
            controller.get_flat(), sigma_init, {"popsize": popsize, "seed": seed + 1, "verbose": -9}
        )
        self.best_params = controller.get_flat()
        self.best_fitness = -np.inf
        self.generation = 0

    def step(self, sim: DreamSimulator) -> dict[str, float]:
        """One generation: ask, evaluate all candidates in one batched dream, tell. Returns `<prefix>*` metrics
        (fitness, sigma, episode length, and the per-episode sums of the dream's reward parts: extrinsic,
        disagreement, penalty, intrinsic)."""
        solutions = np.asarray(self.es.ask())
        result = evaluate_population(
            sim,
            self.controller,
            solutions,
            self.rollouts,
            seed=self.seed * 100_003 + self.generation,
            common_noise=self.common_noise,
            action_repeat=self.action_repeat,
        )
        fitness = result.returns.mean(axis=1)
        self.es.tell(list(solutions), list(-fitness))  # cma minimises
        best = int(fitness.argmax())
        if fitness[best] > self.best_fitness:
            self.best_fitness, self.best_params = float(fitness[best]), solutions[best].copy()
        self.generation += 1
        p = self.prefix
        metrics = {
            f"{p}generation": self.generation,
            f"{p}fitness_mean": float(fitness.mean()),
            f"{p}fitness_max": float(fitness.max()),
            f"{p}fitness_best_ever": self.best_fitness,
            f"{p}sigma": float(self.es.sigma),
            f"{p}episode_len_mean": float(result.lengths.mean()),
            "dream/num_env_steps_sampled": result.dream_steps,
        }
        # extrinsic and intrinsic parts reported separately (per dream episode, population mean)
        metrics.update({f"{p}{k}_mean": float(v.mean()) for k, v in result.parts.items()})
        return metrics

    def mean_params(self) -> np.ndarray:
        """CMA-ES's current mean: the controller to deploy (less noisy than the best single sample)."""
        return np.asarray(self.es.mean).copy()

    def get_state(self) -> dict:
        """Picklable state for checkpoints (the CMA-ES object itself is pickled)."""
        return {
            "es": pickle.dumps(self.es),
            "best_params": self.best_params,
            "best_fitness": self.best_fitness,
            "generation": self.generation,
        }

    def set_state(self, state: dict) -> None:
        """Restore `get_state` output exactly."""
        self.es = pickle.loads(state["es"])
        self.best_params = np.asarray(state["best_params"])
        self.best_fitness = float(state["best_fitness"])
        self.generation = int(state["generation"])
