"""C distilled from the planner: the planner's dreamed choices at real states, amortized into C's own weights.

The planner (`planning.DreamPlanner`) improves on C by dreaming ahead from where the agent really is, at the price
of (actions x samples) look-ahead dreams per decision. Its choices are a function of the state C reads, so C can
learn them: at real states of the replay, as the acting agent had them (V's posterior of the frame drawn, M's LSTM
state after reading those draws and the actions really taken), the planner scores every first action in the
dream, and C, with its shape unchanged (the paper's linear map for TakeCover), is fitted to minimise the planner's
regret of its choice: sum_a softmax(C(x))_a * (max_b score_b - score_a), the expected return the dream says C loses
against the planner's pick. No real reward or real outcome reaches C: the states are real, as every dream's start
is, and every label is dreamed.

Measured on TakeCover (RESULTS.md, "C learns the planner's choices"): the fitted C alone recovers half (the best agent)
to all (the main job's agent) of the planner's gain over C at C's cost per decision, and planning on top of it scores
within noise of planning on top of C (+85 ± 45 over 200 episodes): the planner is limited by M's foresight more
than by the policy it rolls out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rllib_worldmodel.done_refit import EncodedEpisode
from rllib_worldmodel.models.controller import Controller
from rllib_worldmodel.planning import check_count, DreamPlanner
from rllib_worldmodel.rl_module import check_real_z

# What the agent deploys after C is fitted: the planner rolling out the fitted C, or the fitted C alone.
DISTILL_DEPLOY = ("planner", "alone")


@dataclass(frozen=True)
class DistillSettings:
    """How many real states the planner labels and how C is fitted to them.

    Args:
        states: Real states labelled by the planner (0: no distillation). The newest stored episodes first: the
            states where the current agent goes.
        every: Take every n-th state of an episode (0: the planner's decision interval).
        epochs: Passes of Adam over the labelled states.
        lr: Adam's learning rate.
        batch_size: States per Adam step.
        val_fraction: Share of the states held out to report the fitted C's regret on states it was not fitted on:
            the newest ones (states arrive oldest first), so mostly whole episodes apart from the fitted ones;
            the planner labels them a second time to report how far its labels repeat (`label_noise`).
        deploy: What the agent deploys after the fit: "planner" (the planner it learned from, now rolling out the
            fitted C) or "alone" (the fitted C without planning, at the planner's decision interval: C's cost per
            decision; planning is switched off, and the next fit labels with the config's planner).
        check_episodes: After the fit, play the fitted C and CMA-ES's searched C (each deployed as `deploy` says)
            on this many real episodes each, without exploration, and keep the one with the higher real mean: a
            guard against a planner the dream exploits, whose fitted C copies the exploit where the dream cannot
            tell (0: off; the fitted C is deployed unchecked). Costs 2 x check_episodes real episodes per fit,
            counted in the real steps sampled; they are not added to the replay (an evaluation's data).
    """

    states: int = 0
    every: int = 0
    epochs: int = 200
    lr: float = 1e-3
    batch_size: int = 1024
    val_fraction: float = 0.1
    deploy: str = "planner"
    check_episodes: int = 0

    def __post_init__(self) -> None:
        check_count("distill_states", self.states, 0, "real states the planner labels; 0 turns distillation off")
        check_count("distill_every", self.every, 0, "steps between labelled states; 0: the planner's interval")
        check_count("distill_epochs", self.epochs, 1, "passes over the labelled states")
        check_count("distill_batch_size", self.batch_size, 1, "states per Adam step")
        check_count(
            "distill_check_episodes",
            self.check_episodes,
            0,
            "real episodes each of the fitted and the searched C play after the fit (0: no check)",
        )
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < 1:
            raise ValueError(f"distill_lr={self.lr!r} must be a number in (0, 1), e.g. 1e-3 (Adam's learning rate).")
        if not isinstance(self.val_fraction, (int, float)) or not 0 <= self.val_fraction < 0.5:
            raise ValueError(
                f"distill_val_fraction={self.val_fraction!r} must be in [0, 0.5): the held-out share of the states."
            )
        if self.deploy not in DISTILL_DEPLOY:
            raise ValueError(
                f"distill_deploy={self.deploy!r} must be one of {DISTILL_DEPLOY}: 'planner' (the agent plans on the "
                "fitted C) or 'alone' (the fitted C acts alone, at the planner's interval)."
            )

    @property
    def enabled(self) -> bool:
        """Whether C is distilled (states > 0)."""
        return self.states > 0


def _held_out(n: int, settings: DistillSettings) -> int:
    """How many of n labelled states, the newest, are held out from the fit (`DistillSettings.val_fraction`)."""
    return int(n * settings.val_fraction)


@torch.no_grad()
def real_states(
    world_model,
    episodes: Sequence[EncodedEpisode],
    every: int,
    max_states: int,
    generator: torch.Generator | None = None,
    real_z: str = "sample",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every `every`-th real state of the newest `episodes` (the list's end), up to `max_states`, as the acting agent
    had it (`WorldModelsRLModule`): z of each frame drawn from V's posterior (or its mean, `real_z="mean"`), M's
    (h, c) after reading those same z and the actions really taken, and the action taken just before, encoded as M
    reads it (zeros at an episode start). M's branch points (`WorldModel.branch_point_states`), but with M reading the
    drawn z rather than V's means: a C fitted on states of one kind would act on states of the other.

    Returns:
        (z, h, c, prev_action), each (N, ...) on the CPU, N <= max_states, oldest first.
    """
    check_real_z(real_z)
    chosen, count = [], 0
    for ep in reversed(episodes):
        if count >= max_states:
            break
        chosen.append(ep)
        count += (len(ep[2]) + every - 1) // every
    chosen.reverse()
    # M's branch points read the first latent of each episode tuple: hand it the z the agent would have drawn
    drawn = []
    for mu, logvar, actions, ended in chosen:
        mu, logvar = mu.cpu(), logvar.cpu()
        if real_z == "sample":
            mu = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)
        drawn.append((mu, logvar, actions, ended))
    rows, _, where = world_model.branch_point_states(drawn, every=every)
    # rows come time-major within batches of episodes: order them by (episode, step) and keep the newest
    order = torch.argsort(where[:, 0] * (int(where[:, 1].max()) + 1) + where[:, 1])[-max_states:]
    z, _, h, c = world_model.split_branch_states(rows[order])
    prev = torch.zeros(len(order), world_model.config.action_dim)
    for n, (i, t) in enumerate(where[order].tolist()):
        if t > 0:
            prev[n] = chosen[i][2][t - 1].cpu()
    return z, h, c, prev


@torch.no_grad()
def planner_scores(
    planner: DreamPlanner,
    z: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    prev_action: torch.Tensor,
    dreams_per_call: int = 4096,
) -> torch.Tensor:
    """The planner's expected dreamed return of every first action at each state, (N, num_actions), computed in
    batches of about `dreams_per_call` look-ahead dreams."""
    step = max(1, dreams_per_call // planner.dreams_per_state)
    out = [
        planner.scores(z[i : i + step], h[i : i + step], c[i : i + step], prev_action[i : i + step]).cpu()
        for i in range(0, len(z), step)
    ]
    return torch.cat(out)


def regret(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The planner's regret of acting by `logits`, per state: max_a score_a - score of the argmax of the logits."""
    pick = logits.argmax(-1, keepdim=True)
    return scores.max(-1).values - scores.gather(-1, pick).squeeze(-1)


def fit_to_scores(
    controller: Controller,
    inputs: torch.Tensor,
    scores: torch.Tensor,
    settings: DistillSettings,
    seed: int = 0,
) -> dict[str, float]:
    """Fit a discrete-action C in place to minimise the expected regret of its softmax against `scores`.

    Args:
        controller: C (Discrete actions); its weights are the starting point and are overwritten.
        inputs: C's inputs at the labelled states, (N, D), oldest first (the newest `val_fraction` are held out).
        scores: The planner's score of every action there, (N, num_actions).
        settings: Epochs, learning rate, batch size and held-out share.
        seed: Seed of the held-out split and the batch order.

    Returns:
        `dream/distill_*` metrics: states, the held-out regret and agreement with the planner's pick before and
        after, and the regret of a uniformly random choice (the scale the regrets read on).
    """
    if not controller.discrete:
        raise ValueError("distillation fits C to the planner's choice among discrete actions; this C is continuous.")
    if inputs.shape[0] != scores.shape[0] or scores.shape[-1] != controller.output_size:
        raise ValueError(
            f"inputs {tuple(inputs.shape)} and scores {tuple(scores.shape)} must be (N, D) and (N, "
            f"{controller.output_size})"
        )
    gen = torch.Generator().manual_seed(seed)
    n = inputs.shape[0]
    n_val = _held_out(n, settings)
    # the last rows held out, not random ones: neighbouring states of one episode are near-copies of each other
    train, val = torch.arange(n - n_val), torch.arange(n - n_val, n)
    dev = next(controller.parameters()).device
    x, s = inputs.to(dev, torch.float32), scores.to(dev, torch.float32)
    check = val if n_val else train  # no held-out share: report on the fitted states

    def measure(tag: str) -> dict[str, float]:
        with torch.no_grad():
            logits = controller(x[check])
            agree = (logits.argmax(-1) == s[check].argmax(-1)).float().mean()
            return {
                f"dream/distill_regret_{tag}": float(regret(logits, s[check]).mean()),
                f"dream/distill_agreement_{tag}": float(agree),
            }

    metrics = {"dream/distill_states": float(n), **measure("before")}
    metrics["dream/distill_regret_random"] = float((s[check].max(-1).values - s[check].mean(-1)).mean())
    loss_of_action = s.max(-1, keepdim=True).values - s  # what each action loses against the planner's pick
    opt = torch.optim.Adam(controller.parameters(), lr=settings.lr)
    for _ in range(settings.epochs):
        for batch in train[torch.randperm(len(train), generator=gen)].split(settings.batch_size):
            loss = (controller(x[batch]).softmax(-1) * loss_of_action[batch]).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    metrics.update(measure("after"))
    return metrics


@torch.no_grad()
def label_noise(
    planner: DreamPlanner,
    z: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    prev_action: torch.Tensor,
    scores: torch.Tensor,
    seed: int,
) -> dict[str, float]:
    """How far the planner's labels repeat: the same states scored again by a twin planner whose look-ahead dreams
    draw other noise (same world model, C and settings). Its agreement with the first scores' pick is the ceiling a
    fitted C's agreement can read against one draw of labels, and the regret of the first pick under the second
    scores is the regret a C that took every first pick would read there: the floor of `distill_regret_after` set
    by the labels' own noise.

    Args:
        planner: The planner that made `scores` (its C still the one it rolled out then: call before the fit).
        z, h, c, prev_action: The states it scored, (N, ...).
        scores: Its scores there, (N, num_actions).
        seed: Seed of the twin's dreams (give one the labelling planner was not seeded with).

    Returns:
        `dream/distill_label_agreement` and `dream/distill_label_regret`.
    """
    twin = DreamPlanner(
        planner.sim.world_model, planner.controller, planner.controller_input, planner.settings, planner.interval, seed
    )
    again = planner_scores(twin, z, h, c, prev_action)
    return {
        "dream/distill_label_agreement": float((scores.argmax(-1) == again.argmax(-1)).float().mean()),
        "dream/distill_label_regret": float(regret(scores, again).mean()),
    }


def distill_planner(
    planner: DreamPlanner,
    episodes: Sequence[EncodedEpisode],
    settings: DistillSettings,
    seed: int = 0,
    real_z: str = "sample",
) -> dict[str, float]:
    """Label real states of `episodes` with the planner's dreamed scores and fit the planner's own C to them, in
    place (the planner then rolls out the fitted C).

    Args:
        planner: The planner (its world model, C and look-ahead settings).
        episodes: Encoded real episodes, oldest first (`WorldModels._whole_episodes`).
        settings: DistillSettings with states > 0.
        seed: Seed of the state draws, the held-out split and the batch order.
        real_z: How the agent reads real frames ("sample": V's posterior drawn, "mean"), so the states are those
            it acts in.

    Returns:
        `fit_to_scores`'s metrics and, when states are held out, `label_noise`'s on them: what agreement and
        regret the labels' own noise allows.
    """
    if not settings.enabled:
        raise ValueError("distillation needs distill_states > 0 (real states the planner labels).")
    if not episodes:
        raise ValueError("distill_planner needs real episodes to take states from; the replay is empty.")
    gen = torch.Generator().manual_seed(seed)
    wm = planner.sim.world_model
    z, h, c, prev = real_states(wm, episodes, settings.every or planner.interval, settings.states, gen, real_z)
    scores = planner_scores(planner, z, h, c, prev)
    noise, n_val = {}, _held_out(len(z), settings)
    if n_val:  # before the fit: the twin rolls out the C that the labelling planner rolled out
        held = slice(len(z) - n_val, None)
        noise = label_noise(planner, z[held], h[held], c[held], prev[held], scores[held], seed + 1)
    inputs = planner.controller_input.build(z, h, c, prev)
    return {**fit_to_scores(planner.controller, inputs, scores, settings, seed=seed), **noise}
