"""Fitting a world model on a real (tiny) env reaches stated losses; progress reporting works."""

import copy
import math

import numpy as np
import pytest
import torch

import rllib_worldmodel as rw
from rllib_worldmodel.envs import make_real_env


def test_cartpole_world_model_reaches_stated_losses(cartpole_fit):
    model, history, _ = cartpole_fit
    vae, mdn = history["vae"], history["mdn"]
    # Losses fall: V's reconstruction and M's held-out NLL both improve by a wide margin.
    assert vae[-1]["world_model/vae_recon"] < 0.25 * vae[0]["world_model/vae_recon"]
    assert vae[-1]["world_model/vae_recon"] < 0.3
    assert mdn[-1]["world_model/val_mdn_nll"] < mdn[0]["world_model/val_mdn_nll"] - 0.2
    assert mdn[-1]["world_model/val_mdn_nll"] < 1.15
    assert mdn[-1]["world_model/val_reward_mse"] < 0.1
    assert model.initial_states.shape == (60, 2, model.config.z_size)


def test_fitted_dream_terminates_like_cartpole(cartpole_fit):
    """Random play in real CartPole ends after ~20 steps; a fitted dream should end too, not run to the cap."""
    _, _, path = cartpole_fit
    env = rw.DreamVectorEnv(64, path, max_episode_steps=500, seed=0)
    env.reset(seed=0)
    done_at = np.full(64, -1)
    for t in range(200):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        done_at[(done_at < 0) & (term | trunc)] = t + 1
    assert (done_at > 0).mean() > 0.9
    assert 5 < np.median(done_at[done_at > 0]) < 80


def test_progress_callback_and_tensorboard(tmp_path, cartpole_episodes):
    from tensorboardX import SummaryWriter

    env = make_real_env("CartPole-v1")
    cfg = rw.WorldModelConfig.from_spaces(env.observation_space, env.action_space, z_size=2, rnn_size=8)
    seen = []
    with SummaryWriter(str(tmp_path)) as writer:
        trainer = rw.WorldModelTrainer(rw.WorldModel(cfg), on_metrics=lambda *a: seen.append(a), writer=writer)
        trainer.fit(cartpole_episodes[:10], vae_epochs=1.5, mdn_epochs=2, seq_len=20)
    phases = [p for p, _, _ in seen]
    assert phases == ["vae", "vae", "mdn", "mdn"]  # 1.5 epochs = one full and one half epoch
    assert all(math.isfinite(m["world_model/vae_loss"]) for p, _, m in seen if p == "vae")
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_training_is_deterministic_under_a_seed(cartpole_episodes):
    env = make_real_env("CartPole-v1")

    def run():
        torch.manual_seed(0)
        cfg = rw.WorldModelConfig.from_spaces(env.observation_space, env.action_space, z_size=2, rnn_size=8)
        model = rw.WorldModel(cfg)
        rw.WorldModelTrainer(model, seed=1).fit(cartpole_episodes[:6], vae_epochs=1, mdn_epochs=1, seq_len=20)
        return model.state_dict()

    a, b = run(), run()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_truncated_bptt_carries_state_across_chunks(cartpole_fit, cartpole_episodes):
    """Held-out metrics are the same whether M sees an episode in one piece or in chunks of 7 steps."""
    model = copy.deepcopy(cartpole_fit[0])  # encode_episodes rewrites initial states: keep the fixture intact
    trainer = rw.WorldModelTrainer(model, seed=0)
    eps = cartpole_episodes[:8]
    latents = trainer.encode_episodes(eps)
    trainer._cpu_gen = torch.Generator().manual_seed(0)
    whole = trainer.evaluate_mdn(eps, latents, seq_len=1000)
    trainer._cpu_gen = torch.Generator().manual_seed(0)
    chunked = trainer.evaluate_mdn(eps, latents, seq_len=7)
    for k in ("world_model/val_mdn_nll", "world_model/val_reward_mse", "world_model/val_done_loss"):
        assert chunked[k] == pytest.approx(whole[k], rel=1e-4), k


def test_a_bf16_fit_trains_float32_weights_to_finite_losses(cartpole_episodes):
    """`WorldModel.set_precision("bf16")` before `WorldModelTrainer.fit`: V and M compute in bfloat16, the weights
    and the losses stay float32, and the fit lowers M's loss as the float32 fit does."""
    env = make_real_env("CartPole-v1")
    torch.manual_seed(0)
    cfg = rw.WorldModelConfig.from_spaces(env.observation_space, env.action_space, z_size=2, rnn_size=8)
    model = rw.WorldModel(cfg)
    model.set_precision("bf16")
    history = rw.WorldModelTrainer(model, seed=1).fit(cartpole_episodes[:10], vae_epochs=2, mdn_epochs=3, seq_len=20)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    mdn = [h["world_model/mdn_nll"] for h in history["mdn"]]
    assert all(math.isfinite(v) for v in mdn) and mdn[-1] < mdn[0]
    assert all(math.isfinite(h["world_model/vae_loss"]) for h in history["vae"])
