"""The done head refitted on dreamed states with real labels (`rllib_worldmodel.done_refit`)."""

import copy

import numpy as np
import pytest
import torch

import rllib_worldmodel as rw
from rllib_worldmodel.done_refit import (
    dreamed_death_pairs,
    hit_events,
    refit_done_head,
    validate_refit_settings,
)
from rllib_worldmodel.fidelity import roc_auc


def _tiny_world_model(num_heads=3, seed=0):
    torch.manual_seed(seed)
    import gymnasium as gym

    cfg = rw.WorldModelConfig.from_spaces(
        gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), z_size=3, rnn_size=8, num_mixtures=2, num_heads=num_heads
    )
    return rw.WorldModel(cfg).eval()


def _encoded(wm, lengths, terminated, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, term in zip(lengths, terminated):
        mu = torch.randn(n + 1, wm.config.z_size, generator=g)
        acts = wm.encode_action(torch.randint(0, 3, (n,), generator=g))
        out.append((mu, torch.full_like(mu, -4.0), acts, term))
    return out


def test_pairs_cover_each_start_up_to_its_real_end_and_label_the_death_step():
    wm = _tiny_world_model()
    # episode 0: 23 steps, died; episode 1: 12 steps, cut by a time limit
    eps = _encoded(wm, [23, 12], [True, False])
    pairs = dreamed_death_pairs(wm, eps, horizon=10, every=5, generator=torch.Generator().manual_seed(0))
    # starts at 0, 5, 10, 15, 20 (23 steps) and 0, 5, 10 (12 steps), in time order (episode 0 first at each
    # step): each dreams min(10, steps left)
    assert pairs["starts"] == 8
    per_start = [10, 10, 10, 7, 10, 2, 8, 3]
    assert len(pairs["y"]) == sum(per_start) == pairs["h"].shape[0]
    assert pairs["h"].shape[1] == wm.config.rnn_size
    np.testing.assert_array_equal(np.bincount(pairs["start"].numpy()), per_start)
    # the death (step 23) is within 10 steps of the starts at 15 and 20: it lands on their last dreamed step
    y = pairs["y"].numpy()
    starts = pairs["start"].numpy()
    assert y.sum() == 2
    assert [int(y[starts == s][-1]) for s in (6, 7)] == [1, 1]
    assert y[np.isin(starts, [1, 3, 5])].sum() == 0  # truncation is not a death
    capped = dreamed_death_pairs(wm, eps, horizon=10, every=5, max_starts=3)
    assert capped["starts"] == 3 and len(np.unique(capped["start"].numpy())) == 3


def test_hit_events_mark_every_step_that_lost_health_and_the_lethal_last_step():
    health = torch.tensor([100.0, 100.0, 58.0, 58.0, 58.0, 20.0, 20.0])
    np.testing.assert_array_equal(hit_events(health, terminated=True).numpy(), [0, 1, 0, 0, 1, 0, 1])
    # cut by the time limit: the last step lost nothing (its health after is not observed, and it did not die)
    np.testing.assert_array_equal(hit_events(health, terminated=False).numpy(), [0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(hit_events(torch.tensor([100.0]), terminated=True).numpy(), [1])
    # health regained (a medkit elsewhere) is not a hit
    np.testing.assert_array_equal(hit_events(torch.tensor([50.0, 80.0, 80.0]), False).numpy(), [0, 0, 0])


def test_events_label_the_dreamed_steps_in_place_of_the_death():
    wm = _tiny_world_model()
    eps = _encoded(wm, [23, 12], [True, False])
    events = [torch.zeros(23), torch.zeros(12)]
    events[0][[3, 17]] = 1.0  # two hits in the first episode (its death at step 22 is not an event here)
    events[1][11] = 1.0  # a hit on the last step of the episode cut by the time limit
    gen = torch.Generator().manual_seed(0)
    pairs = dreamed_death_pairs(wm, eps, horizon=10, every=5, generator=gen, events=events)
    same = dreamed_death_pairs(wm, eps, horizon=10, every=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pairs["h"], same["h"])  # the same dreams, only the labels differ
    y, start = pairs["y"].numpy(), pairs["start"].numpy()
    # starts in time order: (ep0, 0), (ep1, 0), (ep0, 5), (ep1, 5), (ep0, 10), (ep1, 10), (ep0, 15), (ep0, 20)
    assert y.sum() == 1 + 1 + 1 + 1 + 1  # step 3 from start 0; 17 from 10 and 15; ep1's 11 from 5 and 10
    assert y[start == 0][3] == 1 and y[start == 4][7] == 1 and y[start == 6][2] == 1
    assert y[start == 3][6] == 1 and y[start == 5][1] == 1
    assert y[start == 7].sum() == 0  # the death is not labelled when events are given
    with pytest.raises(ValueError, match=r"events\[1\] has shape \(11,\); episode 1 took 12 actions"):
        dreamed_death_pairs(wm, eps, horizon=10, events=[torch.zeros(23), torch.zeros(11)])
    with pytest.raises(ValueError, match="1 label vectors for 2 episodes"):
        rw.refit_done_on_dreams(wm, eps, horizon=10, events=[torch.zeros(23)])


def test_refit_learns_constructed_deaths_and_keeps_members_apart():
    wm = _tiny_world_model()
    before = {k: v.clone() for k, v in wm.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6000, wm.config.rnn_size, generator=g)
    y = (h[:, 0] + 0.3 * torch.randn(6000, generator=g) > 1.8).float()  # deaths where the first unit is high
    pairs = {"h": h, "y": y, "start": torch.arange(6000) // 20, "starts": 300}
    m = refit_done_head(wm, pairs, steps=200, generator=torch.Generator().manual_seed(2))
    assert m["world_model/done_refit_val_auc_after"] > 0.95 > m["world_model/done_refit_val_auc_before"] + 0.2
    assert m["world_model/done_refit_val_loss_after"] < m["world_model/done_refit_val_loss_before"]
    assert m["world_model/done_refit_deaths"] == y.sum() and m["world_model/done_refit_pairs"] == 6000
    w = wm.mdn_rnn.done_head.weight.detach()
    assert (w[:, 0] > 0.5).all()  # every member learned the constructed cause
    assert not torch.allclose(w[0], w[1])  # bootstrap weights: members fitted on different resamples
    probs = wm.death_probability(wm.mdn_rnn.heads(h[:500]).done_logit.mean(0)).detach().numpy()
    assert roc_auc(probs, y[:500].numpy() > 0) > 0.95
    for k, v in wm.state_dict().items():  # nothing but the done head changed
        if not k.startswith("mdn_rnn.done_head"):
            torch.testing.assert_close(v, before[k], msg=k)


def test_refit_on_dreams_runs_end_to_end_and_skips_without_deaths():
    wm = _tiny_world_model()
    eps = _encoded(wm, [30, 25, 40, 18] * 5, [True] * 20)
    m = rw.refit_done_on_dreams(wm, eps, horizon=15, every=3, steps=20, seed=0)
    assert m["world_model/done_refit_skipped"] == 0.0 and m["world_model/done_refit_deaths"] > 0
    assert np.isfinite(m["world_model/done_refit_val_loss_after"])
    alive = _encoded(wm, [30, 25], [False, False])
    head = copy.deepcopy(wm.mdn_rnn.done_head.state_dict())
    m = rw.refit_done_on_dreams(wm, alive, horizon=10, steps=5)
    assert m["world_model/done_refit_skipped"] == 1.0 and m["world_model/done_refit_deaths"] == 0.0
    for k, v in wm.mdn_rnn.done_head.state_dict().items():
        torch.testing.assert_close(v, head[k])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"horizon": 0}, "done_refit_horizon"),
        ({"every": 0}, "done_refit_every"),
        ({"steps": 0}, "done_refit_steps"),
        ({"max_starts": 0}, "done_refit_max_starts"),
    ],
)
def test_bad_refit_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        validate_refit_settings(**{"horizon": 10, "every": 10, "steps": 10, **kwargs})
    wm = _tiny_world_model()
    with pytest.raises(ValueError, match=match):
        rw.refit_done_on_dreams(wm, _encoded(wm, [20], [True]), **kwargs)


def test_trainer_fit_reports_the_refit(cartpole_episodes):
    env_wm = rw.WorldModel(
        rw.WorldModelConfig.from_spaces(
            *_cartpole_spaces(), z_size=4, rnn_size=16, num_mixtures=2, vae_hidden=16, num_heads=2
        )
    )
    seen = []
    trainer = rw.WorldModelTrainer(env_wm, seed=0, on_metrics=lambda phase, epoch, m: seen.append(m))
    hist = trainer.fit(cartpole_episodes[:20], vae_epochs=1, mdn_epochs=1, seq_len=50, done_refit_horizon=8)
    (refit,) = hist["done_refit"]
    assert refit["world_model/done_refit_skipped"] == 0.0 and refit["world_model/done_refit_deaths"] > 0
    assert refit in seen
    assert trainer.fit(cartpole_episodes[:5], vae_epochs=0, mdn_epochs=0)["done_refit"] == []


def _cartpole_spaces():
    from rllib_worldmodel.envs import make_real_env

    env = make_real_env("CartPole-v1")
    return env.observation_space, env.action_space
