"""Refit M's done head on DREAMED states, labelled with what really happened next.

M's done head is fitted on LSTM states that read real latents (teacher forcing). In a dream the LSTM reads its own
samples, and a few dozen steps in its states no longer look like the ones the head was fitted on: on TakeCover the
head ranks policies right while it reads real frames and almost arbitrarily in the dream (RESULTS.md). This module
closes that train/test mismatch for the head that decides the dream's deaths. From every `every`-th real state of
recorded episodes (M's LSTM state after the real history, a latent drawn from V's posterior) M dreams `horizon`
steps with the actions the real episode then took (temperature τ, a random ensemble member per step, as
`DreamSimulator` does), and each dreamed step is labelled 1 where the real episode died at that step. The done
head is refitted on those pairs by logistic regression with the BCE's `done_pos_weight`, so
`WorldModel.death_probability` keeps its meaning. Each ensemble member gets its own online-bootstrap weights
(Poisson(1) per pair), so the members' disagreement on deaths still measures how sure the data makes them.

Fed with real episodes played by dream-trained controllers, this is a DAgger-style correction: the states a
controller reaches by exploiting the dream are dreamed again and labelled with how that controller really fared
(`benchmarks/dream_dagger.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from rllib_worldmodel.fidelity import roc_auc
from rllib_worldmodel.models.world_model import WorldModel

logger = logging.getLogger(__name__)

# One encoded episode, as `WorldModel.branch_point_states` takes it: V's posterior means (T', Z) and log-variances
# (T', Z) of its frames (T' >= T), its actions encoded for M (T, action_dim), and whether it ended by termination.
EncodedEpisode = tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]


def validate_refit_settings(horizon: int, every: int, steps: int, max_starts: int | None = None) -> None:
    """Raise a ValueError naming the field when a refit setting cannot work."""
    if horizon < 1:
        raise ValueError(f"done_refit_horizon={horizon} must be >= 1 (dreamed steps per real start).")
    if every < 1:
        raise ValueError(f"done_refit_every={every} must be >= 1 (a dream starts at every n-th real state).")
    if steps < 1:
        raise ValueError(f"done_refit_steps={steps} must be >= 1 (Adam steps of the refit).")
    if max_starts is not None and max_starts < 1:
        raise ValueError(f"done_refit_max_starts={max_starts} must be >= 1, or None for every start.")


def check_events(episodes: Sequence[EncodedEpisode], events: Sequence[torch.Tensor] | None) -> None:
    """Raise a ValueError unless `events` is None or one (T,) label vector per episode, T its number of actions."""
    if events is None:
        return
    if len(events) != len(episodes):
        raise ValueError(f"events: {len(events)} label vectors for {len(episodes)} episodes (one per episode).")
    for i, (ev, (_, _, actions, _)) in enumerate(zip(events, episodes)):
        if ev.shape != (len(actions),):
            raise ValueError(
                f"events[{i}] has shape {tuple(ev.shape)}; episode {i} took {len(actions)} actions: one label per "
                "action, 1 where the step that consumed it ended in the event."
            )


def hit_events(health: torch.Tensor, terminated: bool) -> torch.Tensor:
    """The steps of one TakeCover episode that lost health: the labels `refit_done_on_dreams(events=...)` takes.

    Args:
        health: (T,) the player's health before each of the episode's T steps (`envs.vizdoom.health`).
        terminated: Whether the episode ended by death: its last step was then a hit too (the lethal one, whose
            health after is not observed).

    Returns:
        (T,) float 0/1: 1 at step t when health after it is below health before it.

    Measured on the best TakeCover agent (RESULTS.md, "M's done head refitted on the agent's own real episodes"):
    refitted on its own 400 episodes with these labels, its planner played no better than with the deaths as labels
    (−58 ± 49 frames over 200 paired episodes), and both below the loop's head refitted on the whole replay.
    """
    health = torch.as_tensor(health, dtype=torch.float32)
    hit = torch.zeros(len(health))
    hit[:-1] = (health[1:] < health[:-1]).float()  # empty for a one-step episode
    if terminated and len(health):
        hit[-1] = 1.0
    return hit


@torch.no_grad()
def dreamed_death_pairs(
    world_model: WorldModel,
    episodes: Sequence[EncodedEpisode],
    horizon: int,
    every: int = 10,
    temperature: float = 1.15,
    max_starts: int | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
    events: Sequence[torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Dreams from real states with the real actions, and the real deaths (or other events) they lead to.

    Args:
        world_model: V + M; M's weights are only read.
        episodes: Whole recorded episodes, encoded (see `EncodedEpisode`).
        horizon: Dreamed steps per start (shorter where the real episode ended sooner).
        every: A dream starts at every n-th real state of each episode.
        temperature: The dream's τ.
        max_starts: At most this many starts, drawn uniformly without replacement (memory: starts x horizon x H
            floats are held at once).
        generator: Torch RNG for latents, members and the start subsample.
        batch_size: Starts dreamed at once.
        events: Per episode, (T,) 0/1 labels of its steps (1: the step that consumed that action ended in the event),
            in place of its death; None: the real deaths (the last step of an episode that terminated). On TakeCover
            `hit_events` labels every step that lost health, so the head learns where hits happen, not only the
            deaths among them.

    Returns:
        "h" (P, H): M's LSTM output at each real dreamed step; "y" (P,): 1 where the real episode died (or had
        the event) at that step; "start" (P,): which start each pair came from (pairs of one start share a history:
        hold out whole starts); "starts": number of starts.
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    check_events(episodes, events)
    drawn = []
    for mu, logvar, actions, terminated in episodes:
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)  # M was trained on posterior samples
        drawn.append((z, logvar, actions, terminated))
    states, outcomes, where = world_model.branch_point_states(drawn, every=every)
    if max_starts is not None and len(states) > max_starts:
        keep = torch.randperm(len(states), generator=gen)[:max_starts].sort().values
        states, outcomes, where = states[keep], outcomes[keep], where[keep]
    z0, _, h0, c0 = world_model.split_branch_states(states)
    m, dev = world_model.mdn_rnn, world_model.device
    # the dream's draws happen where M runs: a generator on that device, seeded from `gen` (on the CPU, `gen` itself)
    dream_gen = (
        gen if dev.type == "cpu" else torch.Generator(dev).manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
    )
    feats, labels, start_ids = [], [], []
    for s in range(0, len(states), batch_size):
        n = min(batch_size, len(states) - s)
        acts = torch.zeros(n, horizon, world_model.config.action_dim)
        y = torch.zeros(n, horizon)
        mask = torch.zeros(n, horizon, dtype=torch.bool)
        for i in range(n):
            (e, t), (left, ended) = where[s + i].tolist(), outcomes[s + i].tolist()
            k = min(horizon, int(left))
            acts[i, :k], mask[i, :k] = drawn[e][2][t : t + k], True
            if events is not None:
                y[i, :k] = events[e][t : t + k].float()
            elif ended and left <= horizon:
                y[i, int(left) - 1] = 1.0  # the done target sits on the step that consumed the last action
        h, c, z = h0[s : s + n].to(dev), c0[s : s + n].to(dev), z0[s : s + n].to(dev)
        out = []
        for j in range(horizon):
            h, c = m.step(z, acts[:, j].to(dev), (h, c))
            out.append(h.cpu())
            z = m.sample_next(h, temperature, dream_gen)
        feats.append(torch.stack(out, 1)[mask])
        labels.append(y[mask])
        start_ids.append((torch.arange(n)[:, None].expand(n, horizon) + s)[mask])
    return {"h": torch.cat(feats), "y": torch.cat(labels), "start": torch.cat(start_ids), "starts": len(states)}


def refit_done_head(
    world_model: WorldModel,
    pairs: dict[str, torch.Tensor],
    steps: int = 300,
    lr: float = 1e-2,
    l2: float = 1e-4,
    batch_size: int = 8192,
    held_out: int = 10,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Refit every ensemble member's done head on `pairs` (`dreamed_death_pairs`), in place.

    Starts from the members' average head. One start in `held_out` is kept out of the fit; the loss and ROC AUC of
    the members' mean logit on it are reported before and after (names `world_model/done_refit_*`).
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    head, dev = world_model.mdn_rnn.done_head, world_model.device
    x, y = pairs["h"].to(dev), pairs["y"].to(dev)
    val = (pairs["start"] % held_out == 0).to(dev)
    train_idx, val_idx = (~val).nonzero().squeeze(1), val.nonzero().squeeze(1)
    if len(train_idx) == 0:
        raise ValueError("the done refit needs more than one start: every start was held out.")
    k = head.weight.shape[0]
    w = torch.nn.Parameter(head.weight.detach().mean(0, keepdim=True).repeat(k, 1))
    b = torch.nn.Parameter(head.bias.detach().mean().repeat(k))
    # online bootstrap: each member sees each pair a Poisson(1) number of times
    boot = torch.poisson(torch.ones(k, len(x)), generator=gen).to(dev)
    pos_weight = torch.tensor(float(world_model.config.done_pos_weight), device=dev)

    def member_logits(idx: torch.Tensor) -> torch.Tensor:
        return x[idx] @ w.T + b  # (B, K)

    def report(tag: str) -> dict[str, float]:
        with torch.no_grad():
            if len(val_idx) == 0:
                return {f"world_model/done_refit_val_loss_{tag}": float("nan")}
            logit = member_logits(val_idx).mean(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y[val_idx], pos_weight=pos_weight)
            positive = y[val_idx].cpu().numpy() > 0
            return {
                f"world_model/done_refit_val_loss_{tag}": float(loss),
                f"world_model/done_refit_val_auc_{tag}": roc_auc(logit.cpu().numpy(), positive),
            }

    metrics = report("before")
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        idx = train_idx[torch.randint(0, len(train_idx), (batch_size,), generator=gen).to(dev)]
        per_pair = torch.nn.functional.binary_cross_entropy_with_logits(
            member_logits(idx), y[idx, None].expand(-1, k), pos_weight=pos_weight, reduction="none"
        )
        weight = boot[:, idx].T
        loss = (per_pair * weight).sum(0) / weight.sum(0).clamp(min=1.0)
        opt.zero_grad()
        (loss.sum() + l2 * (w**2).sum()).backward()
        opt.step()
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    metrics.update(report("after"))
    metrics.update(
        {
            "world_model/done_refit_pairs": float(len(x)),
            "world_model/done_refit_deaths": float(y.sum()),
            "world_model/done_refit_starts": float(pairs["starts"]),
        }
    )
    return metrics


def refit_done_on_dreams(
    world_model: WorldModel,
    episodes: Sequence[EncodedEpisode],
    horizon: int = 100,
    every: int = 10,
    temperature: float = 1.15,
    steps: int = 300,
    max_starts: int | None = 8000,
    seed: int = 0,
    events: Sequence[torch.Tensor] | None = None,
) -> dict[str, float]:
    """Dream from real states with the real actions and refit the done head on the real deaths, in place.

    Args:
        world_model: The world model whose done head is refitted (nothing else changes).
        episodes: Whole recorded episodes, encoded (`EncodedEpisode`); more and more varied behaviour is better:
            add the real episodes of the controllers trained in the dream.
        horizon: Dreamed steps per real start (TakeCover: 100 ranked the reference policies with Spearman
            +0.89 to +0.96; 30 is cheaper).
        every: A dream starts at every n-th real state.
        temperature: The dream's τ (use the controller's).
        steps: Adam steps of 8192 pairs.
        max_starts: Cap on dreamed starts (memory: starts x horizon x LSTM size floats), None for all.
        seed: Seeds latents, members, the subsample and minibatches.
        events: Per episode, 0/1 labels of its steps in place of its death (`dreamed_death_pairs`; `hit_events`:
            the head then predicts hits, and a dream of it ends at the first hit).

    Returns:
        Metrics `world_model/done_refit_*`: held-out loss and AUC before/after, pairs, deaths, starts, and
        `skipped` (1.0 when no start has a real death within `horizon`: the head is left as it was).
    """
    validate_refit_settings(horizon, every, steps, max_starts)
    if not episodes:
        raise ValueError("refit_done_on_dreams needs at least one episode.")
    gen = torch.Generator().manual_seed(seed)
    was_training = world_model.training
    world_model.eval()
    pairs = dreamed_death_pairs(world_model, episodes, horizon, every, temperature, max_starts, gen, events=events)
    if pairs["y"].sum() == 0:
        # Nothing to learn deaths from (e.g. early data that only ended by the time limit): keep the head.
        logger.warning(
            "done refit skipped: no real death (or event) within %d steps of any of %d starts", horizon, pairs["starts"]
        )
        metrics = {"world_model/done_refit_deaths": 0.0, "world_model/done_refit_starts": float(pairs["starts"])}
    else:
        metrics = refit_done_head(world_model, pairs, steps=steps, generator=gen)
    world_model.train(was_training)
    return {**metrics, "world_model/done_refit_skipped": float(pairs["y"].sum() == 0)}
