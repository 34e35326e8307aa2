"""Death calibration: make the dream as deadly as the real env for the policy that collected the data.

Measured on TakeCover (100 random-hold episodes, M with 5 heads): the real random-hold policy survives 316 ± 159
steps, but in the dream the same policy survives 1561 ± 723 (threshold deaths) or 786 ± 647 (sampled, calibrated
for the BCE weighting): M's done head fires too rarely in closed loop, so every controller looks good and CMA-ES
has nothing to rank. `calibrate_done_offset` finds the one logit offset b for which the dream's mean survival of
the behaviour policy (random actions held 1-10 steps, the paper's collection policy) equals the real one; the
controller is then trained in a dream whose death rate is anchored to reality, while which states are dangerous
is still M's to say.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import gymnasium as gym
import torch

from rllib_worldmodel.cma_es import evaluate_population
from rllib_worldmodel.dream import doomed_branch_points, DreamSettings, DreamSimulator
from rllib_worldmodel.models.world_model import WorldModel

if TYPE_CHECKING:
    import numpy as np

    from rllib_worldmodel.done_refit import EncodedEpisode
    from rllib_worldmodel.models.controller import Controller

# The policies a dream's deaths can be anchored to (`WorldModelsConfig.dream(calibrate_deaths=...)`).
CALIBRATION_ANCHORS = ("behaviour", "policy")


@torch.no_grad()
def random_hold_survival(
    world_model: WorldModel,
    settings: DreamSettings,
    num_dreams: int = 256,
    hold: tuple[int, int] = (1, 10),
    seed: int = 0,
    fixed_action: int | None = None,
    start_index: torch.Tensor | None = None,
    cycle: Sequence[int] | None = None,
) -> torch.Tensor:
    """Dream episode lengths of the random-hold policy (uniform actions held `hold` steps), (num_dreams,).
    With done_mode="expected" a length is the expected one (the sum of the probabilities of being alive).

    `fixed_action` (Discrete only) plays that one action throughout instead: a constant reference policy.
    `cycle` (Discrete only) plays these actions in turn, each held `hold` steps, from a random place in the cycle
    (e.g. (1, 2) with hold (100, 100): TakeCover's sweep right 100 steps, left 100 steps).
    `start_index` (num_dreams,): the rows of the start bank each dream begins at (see `DreamSimulator.reset`).
    """
    sim = DreamSimulator(world_model, dataclasses.replace(settings, seed=seed))
    sim.reset(num_dreams, start_index=start_index)
    policy = DreamReferenceActions(sim, num_dreams, hold, seed, fixed_action, cycle)
    lengths = torch.zeros(num_dreams)
    slot = torch.arange(num_dreams)
    while slot.numel():
        action = policy()
        alive = sim.alive.cpu()  # with done_mode="expected" the probability of still being alive, else 1
        _, _, term, trunc = sim.step(action)
        lengths[slot] += alive
        keep = ~(term | trunc).cpu()
        if not keep.all():
            idx = keep.nonzero().squeeze(1)
            sim.select(idx.to(sim.device))
            policy.select(idx)
            slot = slot[idx]
    return lengths


class DreamReferenceActions:
    """A reference policy acting for a batch of dreams at once: uniform random actions each held a random
    `hold` (min, max) steps, one `fixed_action` throughout, or a `cycle` of actions played in turn, each held `hold`
    steps, from a random place in the cycle per dream (so the dreams do not all turn at once). The dream-side twin of
    `fidelity.ReferencePolicy` (which acts in one real env).

    Args:
        sim: The (reset) dream whose action space and device the actions use.
        num_dreams: Dreams acted for.
        hold: (min, max) steps each action is held.
        seed: Seeds the policy's own draws (seed + 1: separate from the dream's stream).
        fixed_action: Discrete only: play this action throughout.
        cycle: Discrete only: play these actions in turn.
    """

    def __init__(
        self,
        sim: DreamSimulator,
        num_dreams: int,
        hold: tuple[int, int],
        seed: int = 0,
        fixed_action: int | None = None,
        cycle: Sequence[int] | None = None,
    ):
        self.space, self.device, self.hold = sim.action_space, sim.device, hold
        self.gen = torch.Generator(device=sim.device).manual_seed(seed + 1)
        if fixed_action is not None:
            cycle = (int(fixed_action),)
        self.order = (
            None if cycle is None else torch.as_tensor([int(a) for a in cycle], dtype=torch.long, device=sim.device)
        )
        # each dream's place in the cycle; drawn only for a cycle, so the random-hold policy's draws (and every
        # calibration made with them) stay as they were before cycles existed
        turn = torch.zeros(num_dreams, dtype=torch.long)
        if self.order is not None and len(self.order) > 1:
            turn = torch.randint(0, len(self.order), (num_dreams,), generator=self.gen)
        self.turn = turn.to(sim.device)
        self.action = self._draw(torch.arange(num_dreams, device=sim.device))
        self.left = torch.randint(hold[0], hold[1] + 1, (num_dreams,), generator=self.gen)

    def _draw(self, rows: torch.Tensor) -> torch.Tensor:
        n = int(rows.numel())
        if self.order is not None:
            return self.order[self.turn[rows] % len(self.order)]
        if isinstance(self.space, gym.spaces.Discrete):
            return torch.randint(0, int(self.space.n), (n,), device=self.device, generator=self.gen)
        low = torch.as_tensor(self.space.low, device=self.device)
        high = torch.as_tensor(self.space.high, device=self.device)
        return low + torch.rand((n, *self.space.shape), device=self.device, generator=self.gen) * (high - low)

    def __call__(self) -> torch.Tensor:
        """The actions of this step, (B,) or (B, A): a dream whose hold has run out draws its next action first."""
        new = self.left <= 0
        if new.any():
            rows = new.nonzero().squeeze(1).to(self.device)
            self.turn[rows] += 1
            self.action[rows] = self._draw(rows)
            self.left[new] = torch.randint(self.hold[0], self.hold[1] + 1, (int(new.sum()),), generator=self.gen)
        self.left -= 1
        return self.action

    def select(self, index_N: torch.Tensor) -> None:
        """Keep only these dreams (CPU indices), as `DreamSimulator.select` does."""
        dev = index_N.to(self.device)
        self.action, self.turn, self.left = self.action[dev], self.turn[dev], self.left[index_N]


def real_branch_survival(world_model: WorldModel, horizon: int, focus: float = 0.0) -> float:
    """Mean real survival, capped at `horizon` steps, of the behaviour policy from the world model's branch points.

    The real counterpart of `random_hold_survival` for `DreamSettings(start="branch", max_episode_steps=horizon,
    branch_focus=focus)` when the data was collected by the random-hold policy: each branch point stores how many
    steps its real episode still lasted. `focus` weighs the doomed points (real termination within `horizon`) as the
    dream's starts do. Use it as `calibrate_done_offset`'s target for branched dreams.
    """
    if world_model.branch_outcomes.shape[0] == 0:
        raise ValueError("the world model has no branch points; see WorldModel.store_branch_points.")
    if horizon < 1:
        raise ValueError(f"horizon={horizon} must be >= 1.")
    capped = world_model.branch_outcomes[:, 0].clamp(max=horizon)
    doomed = capped[doomed_branch_points(world_model, horizon)]
    if focus == 0 or doomed.numel() == 0:
        return float(capped.mean())
    return float((1 - focus) * capped.mean() + focus * doomed.mean())


def controller_dream_return(
    world_model: WorldModel,
    settings: DreamSettings,
    controller: Controller,
    params: np.ndarray,
    num_dreams: int = 256,
    seed: int = 0,
    action_repeat: int = 1,
) -> float:
    """Mean dream return of one controller (flat parameters `params`, laid out as `controller`'s) over
    `num_dreams` dreams: the dream side of a controller's dream-real gap, and `calibrate_done_offset`'s
    `dream_score` when a dream's deaths are anchored to that controller's real return.

    The dreams share their noise across calls with the same seed (the same starts and draws), so as the done-logit
    offset rises a dream's deaths only come sooner: the score falls monotonically and bisection converges.
    """
    sim = DreamSimulator(world_model, settings)
    result = evaluate_population(sim, controller, params[None], num_dreams, seed=seed, action_repeat=action_repeat)
    return float(result.returns.mean())


def calibrate_done_offset(
    world_model: WorldModel,
    settings: DreamSettings,
    real_mean_length: float,
    num_dreams: int = 256,
    steps: int = 8,
    bounds: tuple[float, float] = (-4.0, 8.0),
    seed: int = 0,
    hold: tuple[int, int] = (1, 10),
    widenings: int = 3,
    dream_score: Callable[[DreamSettings], float] | None = None,
) -> tuple[float, float]:
    """Bisect the done-logit offset so the dream's mean random-hold survival matches `real_mean_length`.

    Survival falls as the offset rises, so bisection converges. When every bisection step went the same way, the
    match lies beyond `bounds` (a `done_logit_scale` > 1 multiplies M's logits, and the offset that undoes the
    shift grows with it): the search moves to the next window on that side, twice as wide, at most `widenings`
    times; past that the offset is clipped to the last window.

    Args:
        world_model: The fitted world model.
        settings: The dream's settings (temperature, done mode, logit scale, cap, ensemble rule); its own offset
            is ignored.
        real_mean_length: Mean real episode length of the random-hold policy.
        num_dreams: Dreams per survival estimate.
        steps: Bisection steps per window.
        bounds: First search interval for the offset.
        seed: Seed of the dreams (the same for every candidate offset: a smooth objective).
        hold: (min, max) steps each random action is held: those of the policy whose real survival is the target.
        widenings: How many times the search may move past `bounds`.
        dream_score: Another anchor policy: its mean dream score under the given settings (e.g.
            `controller_dream_return`, with `real_mean_length` that controller's real mean return); it must fall as
            deaths come sooner. Default: the random-hold policy's mean survival (`hold`, `num_dreams`, `seed`).

    Returns:
        (offset, the dream's mean survival (or `dream_score`) at that offset).
    """
    if real_mean_length <= 0:
        raise ValueError(f"real_mean_length={real_mean_length} must be > 0.")
    if not bounds[0] < bounds[1]:
        raise ValueError(f"bounds={bounds} must be (low, high) with low < high.")

    def survival(offset: float) -> float:
        s = dataclasses.replace(settings, done_logit_offset=offset)
        if dream_score is not None:
            return float(dream_score(s))
        return float(random_hold_survival(world_model, s, num_dreams, hold, seed=seed).mean())

    best = (0.0, survival(0.0))
    lo, hi = bounds
    for window in range(widenings + 1):
        width, safer, deadlier = hi - lo, False, False
        edge_lo, edge_hi = lo, hi
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            length = survival(mid)
            if abs(length - real_mean_length) < abs(best[1] - real_mean_length):
                best = (mid, length)
            if length > real_mean_length:
                lo, safer = mid, True  # too safe: more offset
            else:
                hi, deadlier = mid, True
        if (safer and deadlier) or window == widenings:
            break
        # one-sided: the match is past this window's edge; search the next window there, twice as wide
        lo, hi = (edge_hi, edge_hi + 2 * width) if safer else (edge_lo - 2 * width, edge_lo)
    return best


def fit_done_logit_scale(
    world_model: WorldModel,
    episodes: Sequence[EncodedEpisode],
    settings: DreamSettings | None = None,
    bounds: tuple[float, float] = (0.25, 8.0),
) -> dict[str, float]:
    """The done-logit scale (and offset) under which M's deaths, read on REAL states, are most likely: Platt
    scaling of the dream's death probability (`DreamSettings.death_probability`, sampled deaths) on the real
    episodes' steps, labelled 1 where an episode terminated.

    A done head refitted on dreamed states (`done_refit`) is fitted to states whose information the dream has
    partly forgotten, so on real states it is under-confident (TakeCover: it rates sweeping 2x safer than standing
    still, reality 6x). The scale that makes it calibrated on real states is a data-driven choice of
    `done_logit_scale`: the dream is then as decisive about danger as M is when it sees reality. The offset is
    reported, but a dream's offset should still be calibrated in the dream (`calibrate_done_offset`), where M's
    states drift.

    Args:
        world_model: The fitted world model.
        episodes: Real episodes, encoded (`done_refit.EncodedEpisode`; V's posterior means are read).
        settings: The dream whose death rule is fitted (ensemble rule, done mode); its scale and offset are
            ignored. Default: sampled deaths, members' probabilities averaged.
        bounds: The scale is kept in this range.

    Returns:
        {"scale", "offset", "nll_as_fitted" (scale 1, offset 0), "nll_offset_only" (scale 1, best offset),
        "nll" (best scale and offset): mean negative log-likelihood per step, "steps", "deaths"}.
    """
    settings = settings if settings is not None else DreamSettings(done_mode="sample")
    if settings.threshold_deaths:
        raise ValueError("fit_done_logit_scale fits probabilities: use a dream with done_mode 'sample' or 'expected'.")
    if not 0 < bounds[0] < bounds[1]:
        raise ValueError(f"bounds={bounds} must be (low, high) with 0 < low < high.")
    per_episode = world_model.teacher_forced_done_logits_of([(mu, actions) for mu, _, actions, _ in episodes])
    logits = torch.cat([lg.cpu() for lg in per_episode], 1)
    y = torch.cat(
        [
            torch.nn.functional.one_hot(torch.tensor(len(actions) - 1), len(actions)) * float(terminated)
            for _, _, actions, terminated in episodes
        ]
    )
    if y.sum() == 0:
        raise ValueError("fit_done_logit_scale needs episodes that terminated (no real death to fit to).")
    logits = logits.to(torch.float64)
    y = y.to(torch.float64)

    rule = dataclasses.replace(settings, done_logit_scale=1.0, done_logit_offset=0.0)  # scale and offset: free

    def nll(scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        p = rule.death_probability(world_model, scale * logits + offset).clamp(1e-12, 1 - 1e-12)
        return -(y * p.log() + (1 - y) * (1 - p).log()).mean()

    def fit(free_scale: bool) -> tuple[float, float, float]:
        log_scale = torch.zeros((), dtype=torch.float64, requires_grad=free_scale)
        offset = torch.zeros((), dtype=torch.float64, requires_grad=True)
        params = [log_scale, offset] if free_scale else [offset]
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=200, line_search_fn="strong_wolfe")
        lo, hi = torch.log(torch.tensor(bounds, dtype=torch.float64))

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nll(log_scale.clamp(lo, hi).exp(), offset)
            loss.backward()
            return loss

        opt.step(closure)
        scale = float(log_scale.detach().clamp(lo, hi).exp())
        with torch.no_grad():
            return scale, float(offset), float(nll(torch.tensor(scale, dtype=torch.float64), offset))

    with torch.no_grad():
        as_fitted = float(nll(torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)))
    _, _, offset_only = fit(free_scale=False)
    scale, offset, best = fit(free_scale=True)
    return {
        "scale": scale,
        "offset": offset,
        "nll_as_fitted": as_fitted,
        "nll_offset_only": offset_only,
        "nll": best,
        "steps": float(len(y)),
        "deaths": float(y.sum()),
    }


def add_calibration_args(parser: argparse.ArgumentParser) -> None:
    """Add --calibrate-to and --calibrate-hold, the benchmarks' way to anchor a dream's deaths to a real random-hold
    survival (`calibrate_done_offset`).

    Args:
        parser: The benchmark's argument parser.
    """
    parser.add_argument(
        "--calibrate-to",
        type=float,
        help="real random-hold mean length in env steps: calibrate the dream's deaths to it",
    )
    parser.add_argument(
        "--calibrate-hold",
        type=int,
        nargs=2,
        default=(1, 10),
        metavar=("MIN", "MAX"),
        help="--calibrate-to is the real survival of random actions held MIN-MAX steps (the collection's --hold)",
    )
