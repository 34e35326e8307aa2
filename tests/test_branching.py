"""Closed-loop M training (scheduled sampling) and dreams branched from real visited states."""

import copy
import math

import numpy as np
import pytest
import torch

import rllib_worldmodel as rw
from rllib_worldmodel.calibration import random_hold_survival, real_branch_survival
from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.fidelity import branch_fidelity
from rllib_worldmodel.models.mdn_rnn import MDNRNN


def _sequences(b=4, t=12, z=5, a=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, z, generator=g), torch.nn.functional.one_hot(torch.randint(0, a, (b, t), generator=g), a)


def test_closed_loop_zero_is_teacher_forcing_and_one_feeds_own_samples():
    torch.manual_seed(0)
    m = MDNRNN(5, 3, hidden_size=16, num_mixtures=2, num_heads=2).eval()
    z, a = _sequences()
    a = a.float()
    ref, h_ref, (hn, cn) = m(z, a)
    out, h, (h2, c2) = m.forward_closed_loop(z, a, closed_loop=0.0)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(out.mu, ref.mu)
    torch.testing.assert_close((h2, c2), (hn, cn))
    own, h_own, _ = m.forward_closed_loop(z, a, closed_loop=1.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(h_own[:, 0], h_ref[:, 0])  # the first input is always real
    assert not torch.allclose(h_own[:, 1:], h_ref[:, 1:])
    with pytest.raises(ValueError, match="closed_loop"):
        m.forward_closed_loop(z, a, closed_loop=1.5)


def test_closed_loop_horizon_reads_the_real_latent_only_at_segment_starts():
    torch.manual_seed(0)
    m = MDNRNN(5, 3, hidden_size=16, num_mixtures=2, num_heads=2).eval()
    z, a = _sequences(t=10)
    a = a.float()

    def run(z_in, closed_loop=1.0):
        gen = torch.Generator().manual_seed(1)
        return m.forward_closed_loop(z_in, a, closed_loop=closed_loop, generator=gen, horizon=4)[1]

    h = run(z)
    inside = z.clone()
    inside[:, [1, 2, 3, 5, 6, 7, 9]] += 10.0  # inside segments: M dreams these steps, so they must not matter
    torch.testing.assert_close(run(inside), h)
    start = z.clone()
    start[:, 4] += 10.0  # a segment start (step 4): re-read from reality, so it changes step 4 onwards only
    changed = (run(start) - h).abs().amax(dim=-1)
    assert (changed[:, :4] == 0).all() and (changed[:, 4:] > 0).all()
    # closed_loop = 0 with any horizon is teacher forcing
    torch.testing.assert_close(run(z, closed_loop=0.0), m(z, a)[1])
    # closed_loop in (0, 1): whole segments are dreamed or real, never single steps
    ref, half = m(z, a)[1], run(inside, closed_loop=0.5)
    for row in range(z.shape[0]):
        for seg in (range(1, 4), range(5, 8)):
            real = [torch.allclose(half[row, t], m(inside, a)[1][row, t]) for t in seg]
            assert all(real) or not any(real)
    assert not torch.allclose(ref, half)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="horizon"):
            m.forward_closed_loop(z, a, closed_loop=0.5, horizon=bad)


def test_closed_loop_training_keeps_gradients_through_time_and_validates(cartpole_fit, cartpole_episodes):
    model = copy.deepcopy(cartpole_fit[0])
    trainer = rw.WorldModelTrainer(model, seed=0)
    eps = cartpole_episodes[:10]
    latents = trainer.encode_episodes(eps)
    before = {k: v.clone() for k, v in model.mdn_rnn.state_dict().items()}
    hist = trainer.fit_mdn(eps, latents, epochs=1, batch_size=5, seq_len=20, closed_loop=0.5)
    assert math.isfinite(hist[-1]["world_model/mdn_nll"]) and math.isfinite(hist[-1]["world_model/val_mdn_nll"])
    assert not torch.equal(before["lstm.weight_hh_l0"], model.mdn_rnn.state_dict()["lstm.weight_hh_l0"])
    seg = trainer.fit_mdn(eps, latents, epochs=1, batch_size=5, seq_len=20, closed_loop=1.0, closed_loop_horizon=8)
    assert math.isfinite(seg[-1]["world_model/mdn_nll"])
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="closed_loop"):
            trainer.fit_mdn(eps, latents, epochs=1, closed_loop=bad)


def test_mean_latents_make_every_stored_posterior_a_point(cartpole_fit, cartpole_episodes):
    from rllib_worldmodel.trainer import POINT_LOGVAR

    model = copy.deepcopy(cartpole_fit[0])
    trainer = rw.WorldModelTrainer(model, seed=0, mdn_latents="mean")
    eps = cartpole_episodes[:4]
    latents = trainer.encode_episodes(eps)
    sampled = rw.WorldModelTrainer(copy.deepcopy(cartpole_fit[0]), seed=0).encode_episodes(eps)
    for lat, ref in zip(latents, sampled):
        torch.testing.assert_close(lat.mu, ref.mu)  # the same means; only the spread is gone
        assert (lat.logvar == POINT_LOGVAR).all() and (ref.logvar > POINT_LOGVAR).all()
    assert (model.initial_states[:, 1] == POINT_LOGVAR).all()  # dreams start at the means too
    batch = trainer._mdn_batch(eps, latents)
    t0 = len(eps[0])
    torch.testing.assert_close(batch["z_in"][0, :t0], latents[0].mu[:t0], atol=1e-5, rtol=0)
    hist = trainer.fit_mdn(eps, latents, epochs=1, batch_size=2, seq_len=20)
    assert math.isfinite(hist[-1]["world_model/mdn_nll"])
    with pytest.raises(ValueError, match="mdn_latents='median'"):
        rw.WorldModelTrainer(model, mdn_latents="median")


def test_branch_points_are_the_teacher_forced_states(cartpole_fit, cartpole_episodes):
    model = copy.deepcopy(cartpole_fit[0])
    trainer = rw.WorldModelTrainer(model, seed=0)
    ep = cartpole_episodes[0]
    (lat,) = trainer.encode_episodes([ep])
    n = trainer.store_branch_points([ep], [lat], every=5)
    assert n == math.ceil(len(ep) / 5) == model.branch_states.shape[0]
    zs = model.config.z_size
    h, c = model.mdn_rnn.initial_state(1)
    with torch.no_grad():
        for t in range(5):
            h, c = model.mdn_rnn.step(
                lat.mu[t : t + 1], model.encode_action(torch.as_tensor(ep.actions[t : t + 1])), (h, c)
            )
    row = model.branch_states[1]
    torch.testing.assert_close(row[:zs], lat.mu[5])
    torch.testing.assert_close(row[zs : 2 * zs], lat.logvar[5])
    torch.testing.assert_close(row[2 * zs :], torch.cat([h[0], c[0]]))
    assert model.branch_outcomes[1].tolist() == [len(ep) - 5, float(ep.terminated)]
    with pytest.raises(ValueError, match="every"):
        trainer.store_branch_points([ep], [lat], every=0)


def test_branch_point_states_say_where_each_point_was(cartpole_fit, cartpole_episodes):
    model = copy.deepcopy(cartpole_fit[0])
    trainer = rw.WorldModelTrainer(model, seed=0)
    eps = cartpole_episodes[:3]
    enc = [
        (lat.mu, lat.logvar, model.encode_action(torch.as_tensor(ep.actions)), bool(ep.terminated))
        for ep, lat in zip(eps, trainer.encode_episodes(eps))
    ]
    states, outcomes, where = model.branch_point_states(enc, every=4, batch_size=2)  # two chunks
    for row, (e, t), (left, _) in zip(states, where.tolist(), outcomes.tolist()):
        torch.testing.assert_close(model.split_branch_states(row)[0], enc[e][0][t])
        assert left == len(eps[e]) - t and t % 4 == 0
    assert sorted(map(tuple, where.tolist())) == [(e, t) for e in range(3) for t in range(0, len(eps[e]), 4)]


def test_fit_stores_branch_points_and_checkpoints_keep_them(cartpole_fit, tmp_path):
    model, _, path = cartpole_fit
    assert model.branch_states.shape[0] > 0
    loaded = rw.WorldModel.load(path)
    torch.testing.assert_close(loaded.branch_states, model.branch_states)
    torch.testing.assert_close(loaded.branch_outcomes, model.branch_outcomes)


def test_branched_dreams_start_at_branch_points(cartpole_fit):
    model = cartpole_fit[0]
    zs, hs = model.config.z_size, model.config.rnn_size
    sim = DreamSimulator(model, DreamSettings(start="branch", deterministic=True, include_cell=True))
    index = torch.tensor([0, 3, 3, 7])
    obs = sim.reset(4, start_index=index)
    bank = model.branch_states[index]
    torch.testing.assert_close(obs, torch.cat([bank[:, :zs], bank[:, 2 * zs :]], dim=-1))
    # restarts inside a running batch also land on branch points (LSTM state included)
    sim.step(torch.zeros(4, dtype=torch.long))
    sim.reset_where(torch.tensor([True, False, False, False]))
    assert any(torch.allclose(sim.h[0], row[2 * zs : 2 * zs + hs]) for row in model.branch_states)
    with pytest.raises(ValueError, match="start_index"):
        sim.reset(2, start_index=torch.tensor([0, model.branch_states.shape[0]]))


def test_branch_start_needs_branch_points_and_a_known_start(image_world_model):
    with pytest.raises(ValueError, match="branch points"):
        DreamSimulator(image_world_model, DreamSettings(start="branch"))
    with pytest.raises(ValueError, match="start="):
        DreamSettings(start="middle")


def test_real_branch_survival_caps_each_outcome_at_the_horizon(image_world_model):
    width = 2 * (image_world_model.config.z_size + image_world_model.config.rnn_size)
    image_world_model.set_branch_points(torch.zeros(3, width), torch.tensor([[5.0, 1], [50, 1], [500, 0]]))
    assert real_branch_survival(image_world_model, 20) == pytest.approx((5 + 20 + 20) / 3)
    with pytest.raises(ValueError, match="branch points must be"):
        image_world_model.set_branch_points(torch.zeros(3, width + 1), torch.zeros(3, 2))


def test_branch_fidelity_reports_auc_and_action_spread(cartpole_fit):
    model = cartpole_fit[0]
    settings = DreamSettings(done_mode="sample", max_episode_steps=10, seed=0)
    out = branch_fidelity(model, settings, max_points=64, reps=2)
    assert out["horizon"] == 10 and out["points"] == 64
    assert set(out["death_rate"]) == {"random hold 1-10", "uniform random", "always 0", "always 1"}
    assert 0.0 <= out["auc"] <= 1.0 and out["action_spread"] >= 0.0
    assert 0.0 < out["real_doomed_share"] < 1.0
    # CartPole random play dies within 10 steps from many states: a fitted dream must see some of that
    assert out["dream_death_rate_doomed"] > out["dream_death_rate_safe"]


def test_random_hold_survival_from_chosen_branch_points(cartpole_fit):
    model = cartpole_fit[0]
    settings = DreamSettings(start="branch", done_mode="sample", max_episode_steps=30)
    lengths = random_hold_survival(model, settings, 8, start_index=torch.arange(8), seed=0)
    assert lengths.shape == (8,) and bool((lengths >= 1).all() & (lengths <= 30).all())
    assert np.isfinite(lengths.numpy()).all()


def test_expected_deaths_pay_rewards_times_the_probability_of_being_alive(cartpole_fit):
    model = cartpole_fit[0]
    kwargs = dict(temperature=1.0, max_episode_steps=40, start="branch", seed=0)
    expected = DreamSimulator(model, DreamSettings(done_mode="expected", **kwargs))
    sampled = DreamSimulator(model, DreamSettings(done_mode="sample", **kwargs))
    index = torch.arange(16).repeat(4)
    expected.reset(64, start_index=index, seed=1)
    sampled.reset(64, start_index=index, seed=1)
    alive, ret = torch.ones(64), torch.zeros(64)
    for _ in range(3):
        a = torch.zeros(64, dtype=torch.long)
        # the same death probabilities as "sample": recompute them from M's state before stepping
        h, c = model.mdn_rnn.step(expected.z, model.encode_action(a), (expected.h, expected.c))
        out = model.mdn_rnn.heads(h)
        p = torch.sigmoid(out.done_logit - math.log(model.config.done_pos_weight)).mean(0)
        _, reward, term, _ = expected.step(a)
        ret += reward
        torch.testing.assert_close(reward, alive * out.reward.mean(0))
        alive = alive * (1 - p)
        torch.testing.assert_close(expected.alive, alive)
        assert not term.any() or bool((expected.alive[term] < 1e-4).all())
    # the expected survival over the dream equals the mean of sampled survival, up to sampling noise
    long_e = random_hold_survival(model, DreamSettings(done_mode="expected", **kwargs), 2048, seed=3)
    long_s = random_hold_survival(model, DreamSettings(done_mode="sample", **kwargs), 2048, seed=3)
    assert long_e.std() < long_s.std()
    assert long_e.mean() == pytest.approx(long_s.mean(), rel=0.1)


def test_branch_focus_starts_that_share_of_dreams_at_doomed_points(cartpole_fit):
    model = cartpole_fit[0]
    horizon = 10
    out = model.branch_outcomes
    doomed = set(((out[:, 0] <= horizon) & (out[:, 1] > 0)).nonzero().squeeze(1).tolist())
    zs = model.config.z_size
    mu_rows = {tuple(model.branch_states[i, :zs].tolist()): i for i in range(len(out))}

    def doomed_share(focus):
        sim = DreamSimulator(
            model, DreamSettings(start="branch", branch_focus=focus, deterministic=True, max_episode_steps=horizon)
        )
        sim.reset(4000, seed=0)
        picked = [mu_rows[tuple(z)] for z in sim.z.tolist()]
        return float(np.mean([i in doomed for i in picked]))

    base = len(doomed) / len(out)
    assert doomed_share(0.0) == pytest.approx(base, abs=0.03)
    assert doomed_share(0.5) == pytest.approx(0.5 + 0.5 * base, abs=0.03)
    assert real_branch_survival(model, horizon, focus=1.0) < real_branch_survival(model, horizon)
    with pytest.raises(ValueError, match="branch_focus"):
        DreamSettings(branch_focus=0.5)  # needs start="branch"
    with pytest.raises(ValueError, match="branch_focus"):
        DreamSettings(start="branch", branch_focus=1.5)


def test_action_effect_on_real_history_and_a_model_blind_to_actions(cartpole_fit, cartpole_episodes):
    from rllib_worldmodel.fidelity import action_effect

    model = copy.deepcopy(cartpole_fit[0])
    trainer = rw.WorldModelTrainer(model, seed=0)
    eps = cartpole_episodes[:6]
    latents = trainer.encode_episodes(eps)
    trainer.store_branch_points(eps, latents, every=2)
    episodes = [(lat.mu, ep.actions) for ep, lat in zip(eps, latents)]
    out = action_effect(model, episodes, steps=4, max_points=16)
    assert out["chance"] == 0.5 and out["points"] == 16 and 0.0 <= out["action_identification"] <= 1.0
    assert out["step_signal_to_noise"] > 0 and out["dream_action_distance"] > 0 and out["real_step_distance"] > 0
    # With the action's input weights zeroed, M cannot tell actions apart: identical predictions and dreams.
    blind = copy.deepcopy(model)
    with torch.no_grad():
        blind.mdn_rnn.lstm.weight_ih_l0[:, model.config.z_size :] = 0.0
    flat = action_effect(blind, episodes, steps=4, max_points=16)
    assert flat["step_signal_to_noise"] == 0.0 and flat["dream_action_distance"] == 0.0
    assert flat["loglik_margin"] == 0.0  # every action gives the real next latent the same likelihood
    blind.set_branch_points(torch.zeros(0, model.branch_states.shape[1]), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="no branch points"):
        action_effect(blind, episodes)
