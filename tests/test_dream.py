"""The learned simulator: determinism, temperature, done/truncation, autoreset, gymnasium conformance."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import rllib_worldmodel as rw
from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.registration import make_dream_from_config


def _rollout(sim, steps=20, seed=0):
    obs = [sim.reset(16, seed=seed)]
    for _ in range(steps):
        obs.append(sim.step(torch.zeros(16, dtype=torch.long))[0])
    return torch.stack(obs)


def test_same_seed_same_dream(image_world_model):
    sim = DreamSimulator(image_world_model, DreamSettings(temperature=1.0))
    torch.testing.assert_close(_rollout(sim, seed=3), _rollout(sim, seed=3))
    assert not torch.allclose(_rollout(sim, seed=3), _rollout(sim, seed=4))


def test_observation_is_z_h_and_optionally_c(image_world_model):
    z, h = image_world_model.config.z_size, image_world_model.config.rnn_size
    sim = DreamSimulator(image_world_model)
    assert sim.reset(4).shape == (4, z + h)
    assert sim.observation_space.shape == (z + h,)
    sim_c = DreamSimulator(image_world_model, DreamSettings(include_cell=True))
    obs = sim_c.reset(4)
    assert obs.shape == (4, z + 2 * h)
    obs, *_ = sim_c.step(torch.ones(4, dtype=torch.long))
    torch.testing.assert_close(obs[:, z : z + h], sim_c.h)
    torch.testing.assert_close(obs[:, z + h :], sim_c.c)


def test_previous_action_observation_is_what_the_dream_last_did(image_world_model):
    z, h = image_world_model.config.z_size, image_world_model.config.rnn_size
    n = image_world_model.config.action_dim
    sim = DreamSimulator(image_world_model, DreamSettings(include_prev_action=True, include_cell=True, seed=0))
    assert sim.observation_space.shape == (z + 2 * h + n,)
    obs = sim.reset(4)
    assert obs.shape == (4, z + 2 * h + n) and (obs[:, -n:] == 0).all()  # nothing done yet
    actions = torch.tensor([0, 1, 2, 1])
    obs, *_ = sim.step(actions)
    torch.testing.assert_close(obs[:, -n:], torch.nn.functional.one_hot(actions, n).float())
    torch.testing.assert_close(obs[:, z + h : z + 2 * h], sim.c)  # [z, h, c, previous action]
    sim.select(torch.tensor([3, 0]))  # the column follows its dream when finished dreams are dropped
    torch.testing.assert_close(sim.observe()[:, -n:], torch.nn.functional.one_hot(torch.tensor([1, 0]), n).float())
    sim.reset_where(torch.tensor([True, False]))  # a restarted dream has no previous action
    assert (sim.observe()[0, -n:] == 0).all() and sim.observe()[1, -n:].sum() == 1


def test_v_only_observation_is_z_alone(image_world_model):
    """include_hidden=False: C sees what V sees and nothing of M's memory (the paper's "V only" controller)."""
    z, n = image_world_model.config.z_size, image_world_model.config.action_dim
    sim = DreamSimulator(image_world_model, DreamSettings(include_hidden=False, seed=0))
    assert sim.observation_space.shape == (z,) and sim.reset(3).shape == (3, z)
    obs, *_ = sim.step(torch.ones(3, dtype=torch.long))
    torch.testing.assert_close(obs, sim.z)
    with_prev = DreamSimulator(image_world_model, DreamSettings(include_hidden=False, include_prev_action=True))
    assert with_prev.reset(2).shape == (2, z + n)
    with pytest.raises(ValueError, match="include_hidden"):
        DreamSettings(include_hidden=False, obs_mode="pixels")


def test_previous_action_needs_latent_observations(image_world_model):
    with pytest.raises(ValueError, match="obs_mode='latent'"):
        DreamSettings(obs_mode="pixels", include_prev_action=True)
    env = rw.DreamVectorEnv(2, image_world_model, max_episode_steps=5)
    state = image_world_model.state_dict()
    with pytest.raises(ValueError, match="include_prev_action"):  # RLlib's observation space would change
        env.set_world_model_state(state, settings=DreamSettings(include_prev_action=True))


def test_auto_device_resolves_when_the_settings_are_made(image_world_model):
    """device="auto" becomes a real device at once, so every simulator built from the settings can use it."""
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert DreamSettings(device="auto").device == want
    assert DreamSimulator(image_world_model, DreamSettings(device="auto")).device == torch.device(want)


def test_done_logit_scale_multiplies_the_logits_before_the_offset(image_world_model):
    wm, n = image_world_model, 6
    z0 = torch.randn(n, wm.config.z_size, generator=torch.Generator().manual_seed(0))
    actions = torch.arange(n) % wm.config.action_dim
    h1, _ = wm.mdn_rnn.step(z0, wm.encode_action(actions), wm.mdn_rnn.initial_state(n))
    logit = wm.mdn_rnn.heads(h1).done_logit  # (E, B)
    for scale, offset in ((1.0, 0.0), (3.0, 0.5)):
        sim = DreamSimulator(wm, DreamSettings(done_mode="expected", done_logit_scale=scale, done_logit_offset=offset))
        sim.reset(n, initial_z=z0)
        sim.step(actions)  # expected deaths: alive = 1 - p(death) after one step, deterministic given the start
        expected = 1.0 - wm.death_probability(scale * logit + offset).mean(0)
        torch.testing.assert_close(sim.alive, expected)
    with pytest.raises(ValueError, match="done_logit_scale"):
        DreamSettings(done_logit_scale=0.0)


def test_temperature_controls_spread(image_world_model):
    def spread(tau):
        sim = DreamSimulator(image_world_model, DreamSettings(temperature=tau, seed=0))
        sim.reset(2000)
        # Same start for every dream, so any spread after one step is M's sampling noise.
        sim.z[:] = sim.z[0]
        sim.step(torch.zeros(2000, dtype=torch.long))
        return sim.z.std(0).mean().item()

    spreads = [spread(t) for t in (1e-10, 0.25, 1.0, 2.0)]
    assert spreads[0] < 1e-3
    assert spreads == sorted(spreads) and spreads[3] > 1.2 * spreads[2]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "1.0"])
def test_bad_temperature_is_rejected(image_world_model, bad):
    with pytest.raises(ValueError, match="temperature"):
        DreamSimulator(image_world_model, DreamSettings(temperature=bad))
    sim = DreamSimulator(image_world_model)
    with pytest.raises(ValueError, match="tau must be"):
        sim.set_temperature(bad)


def test_bad_settings_are_rejected(image_world_model):
    with pytest.raises(ValueError, match="done_mode"):
        DreamSettings(done_mode="sometimes")
    with pytest.raises(ValueError, match="obs_mode"):
        DreamSettings(obs_mode="rgb")
    with pytest.raises(ValueError, match="max_episode_steps"):
        DreamSettings(max_episode_steps=0)
    with pytest.raises(ValueError, match="unknown dream setting"):
        DreamSettings.from_dict({"temprature": 1.0})
    empty = rw.WorldModel(image_world_model.config)
    with pytest.raises(ValueError, match="no initial states"):  # only where dreams start from the bank
        DreamSimulator(empty).reset(2)
    sim = DreamSimulator(image_world_model)
    with pytest.raises(RuntimeError, match="reset"):
        sim.step(torch.zeros(1, dtype=torch.long))
    sim.reset(3)
    with pytest.raises(ValueError, match="expected 3 actions"):
        sim.step(torch.zeros(2, dtype=torch.long))


def test_done_threshold_sample_and_truncation(image_world_model):
    with torch.no_grad():
        image_world_model.mdn_rnn.done_head.bias.fill_(-50.0)  # p(done) ~ 0
    sim = DreamSimulator(image_world_model, DreamSettings(max_episode_steps=5))
    sim.reset(8)
    for t in range(5):
        _, _, term, trunc = sim.step(torch.zeros(8, dtype=torch.long))
        assert not term.any()
        assert trunc.all() == (t == 4)
    with torch.no_grad():
        image_world_model.mdn_rnn.done_head.bias.fill_(50.0)  # p(done) ~ 1
    sim.reset(8)
    _, _, term, trunc = sim.step(torch.zeros(8, dtype=torch.long))
    assert term.all() and not trunc.any()
    with torch.no_grad():
        image_world_model.mdn_rnn.done_head.weight.zero_()
        # weighted-BCE logit of a calibrated p = 0.3: log-odds + log(pos_weight); "sample" undoes the weighting
        w = image_world_model.config.done_pos_weight
        image_world_model.mdn_rnn.done_head.bias.fill_(math.log(0.3 / 0.7) + math.log(w))
        assert math.log(0.3 / 0.7) + math.log(w) > 0  # with pos_weight 10 the threshold says "dead" ...
    thr = DreamSimulator(image_world_model, DreamSettings(done_mode="threshold"))
    thr.reset(4000)
    assert thr.step(torch.zeros(4000, dtype=torch.long))[2].all()  # ... every time (paper's rule)
    smp = DreamSimulator(image_world_model, DreamSettings(done_mode="sample", seed=0))
    smp.reset(4000)
    assert smp.step(torch.zeros(4000, dtype=torch.long))[2].float().mean().item() == pytest.approx(0.3, abs=0.03)


def test_vector_env_next_step_autoreset(image_world_model):
    with torch.no_grad():
        image_world_model.mdn_rnn.done_head.bias.fill_(-50.0)
    env = rw.DreamVectorEnv(3, image_world_model, max_episode_steps=2)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, env.single_observation_space.shape[0]) and obs.dtype == np.float32
    _, r1, te, tr, _ = env.step(np.zeros(3, dtype=np.int64))
    assert not (te.any() or tr.any())
    _, r2, te, tr, _ = env.step(np.zeros(3, dtype=np.int64))
    assert tr.all() and not te.any()
    obs3, r3, te, tr, _ = env.step(np.zeros(3, dtype=np.int64))  # this step resets
    assert (r3 == 0).all() and not (te.any() or tr.any())
    z = image_world_model.config.z_size
    assert np.allclose(obs3[:, z:], 0.0), "h starts at zero after the autoreset"
    _, _, te, tr, _ = env.step(np.zeros(3, dtype=np.int64))
    assert not (te.any() or tr.any())
    _, _, te, tr, _ = env.step(np.zeros(3, dtype=np.int64))
    assert tr.all()


def test_new_weights_and_settings_reach_a_running_dream(image_world_model):
    env = rw.DreamVectorEnv(2, image_world_model, max_episode_steps=5, temperature=1.2)
    state = {k: v.clone() for k, v in image_world_model.state_dict().items()}
    new = DreamSettings(temperature=0.7, max_episode_steps=9, done_mode="sample", done_logit_offset=1.5)
    env.set_world_model_state(state, settings=new)
    assert env.sim.temperature == 0.7 and env.sim.settings.done_logit_offset == 1.5
    env.reset(seed=0)
    for _ in range(8):
        env.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="include_cell"):  # the observation space would change under RLlib
        env.set_world_model_state(state, settings=DreamSettings(include_cell=True))


def test_single_env_passes_check_env(image_checkpoint):
    env = rw.DreamEnv(image_checkpoint, render_mode="rgb_array", max_episode_steps=50)
    check_env(env, skip_render_check=False)
    env.reset(seed=0)
    assert env.render().shape == (64, 64, 3)


def test_pixel_mode_matches_real_env_spaces(image_checkpoint):
    env = rw.DreamEnv(image_checkpoint, obs_mode="pixels", max_episode_steps=20)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(3)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=1)
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3)


def test_render_decodes_frames(image_world_model):
    env = rw.DreamVectorEnv(4, image_world_model, render_mode="rgb_array")
    env.reset(seed=0)
    frames = env.render()
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == np.uint8


def test_gymnasium_registration(image_checkpoint):
    env = gym.make(rw.DREAM_ENV, world_model=str(image_checkpoint), max_episode_steps=10)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    venv = gym.make_vec(
        rw.DREAM_ENV, num_envs=5, vectorization_mode="vector_entry_point", world_model=str(image_checkpoint)
    )
    assert isinstance(venv.unwrapped, rw.DreamVectorEnv) and venv.num_envs == 5
    obs, _ = venv.reset(seed=0)
    assert obs.shape[0] == 5


def test_ray_creator_reads_its_namespace(image_checkpoint):
    cfg = {"dream": {"world_model": str(image_checkpoint), "temperature": 1.15}, "real": {"skill": 5}}
    env = make_dream_from_config(cfg)
    assert isinstance(env, rw.DreamEnv) and env.sim.temperature == 1.15
    venv = make_dream_from_config({**cfg, "num_envs": 3})
    assert isinstance(venv, rw.DreamVectorEnv) and venv.num_envs == 3
    with pytest.raises(ValueError, match="world_model"):
        make_dream_from_config({"temperature": 1.0})
    with pytest.raises(rw.CheckpointError, match="does not exist"):
        make_dream_from_config({"world_model": "/nonexistent/wm.pt"})


def test_continuous_actions_are_clipped(tmp_path):
    cfg = rw.WorldModelConfig.from_spaces(
        gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)), z_size=3, rnn_size=8
    )
    model = rw.WorldModel(cfg)
    model.set_initial_states(torch.zeros(2, 3), torch.zeros(2, 3))
    env = rw.DreamVectorEnv(2, model)
    env.reset(seed=0)
    clipped = env.step(np.array([[5.0, -5.0], [0.1, 0.2]], dtype=np.float32))[0]
    env.reset(seed=0)
    bounded = env.step(np.array([[1.0, -1.0], [0.1, 0.2]], dtype=np.float32))[0]
    np.testing.assert_array_equal(clipped, bounded)
    check_env(rw.DreamEnv(model.save(tmp_path / "c.pt")), skip_render_check=True)


def test_a_step_without_the_disagreement_dreams_the_same_dreams():
    """report_disagreement=False computes only the sampled member's mixture; the dreams (latents, rewards, deaths)
    are those of the full step, drawn from the same random numbers."""
    torch.manual_seed(0)
    cfg = rw.WorldModelConfig(
        obs_kind="vector",
        obs_shape=(4,),
        action_kind="discrete",
        action_dim=3,
        z_size=6,
        rnn_size=16,
        num_mixtures=3,
        num_heads=4,
    )
    model = rw.WorldModel(cfg).eval()
    model.set_initial_states(torch.randn(10, 6), torch.full((10, 6), -2.0))
    runs = {}
    for report in (True, False):
        settings = DreamSettings(temperature=1.15, done_mode="expected", report_disagreement=report, seed=3)
        sim = DreamSimulator(model, settings)
        obs, rewards = [sim.reset(32, seed=3)], []
        for _ in range(12):
            o, r, _, _ = sim.step(torch.arange(32) % 3)
            obs.append(o)
            rewards.append(r)
        runs[report] = (torch.stack(obs), torch.stack(rewards), sim.alive.clone(), dict(sim.reward_parts))
    full, lean = runs[True], runs[False]
    for a, b in zip(full[:3], lean[:3]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert "disagreement" in full[3] and "disagreement" not in lean[3]
    with_penalty = DreamSimulator(model, DreamSettings(pessimism=0.5, report_disagreement=False, seed=3))
    with_penalty.reset(4)
    with_penalty.step(torch.zeros(4, dtype=torch.long))
    assert "penalty" in with_penalty.reward_parts  # pessimism still pays the disagreement it needs


@pytest.mark.parametrize("report", [True, False])
def test_a_bf16_dream_keeps_float32_state_and_follows_the_fp32_dream(report):
    """precision="bf16" runs M's matrix multiplies in bfloat16: what the dream hands out (observations, rewards,
    survival) and its LSTM state stay float32, and a few steps from the same random numbers stay near the float32
    dream's (bfloat16 keeps ~3 significant digits)."""
    torch.manual_seed(0)
    cfg = rw.WorldModelConfig(
        obs_kind="vector", obs_shape=(4,), action_kind="discrete", action_dim=3, z_size=6, rnn_size=32, num_heads=3
    )
    model = rw.WorldModel(cfg).eval()
    model.set_initial_states(torch.randn(10, 6), torch.full((10, 6), -2.0))
    runs = {}
    for precision in ("fp32", "bf16"):
        model.set_precision(precision)
        sim = DreamSimulator(model, DreamSettings(temperature=1.0, done_mode="expected", report_disagreement=report))
        obs, rewards = [sim.reset(64, seed=5)], []
        for _ in range(5):
            o, r, _, _ = sim.step(torch.arange(64) % 3)
            obs.append(o)
            rewards.append(r)
        assert sim.h.dtype == sim.c.dtype == torch.float32
        runs[precision] = (torch.stack(obs), torch.stack(rewards), sim.alive.clone())
    for a, b in zip(runs["fp32"], runs["bf16"]):
        assert b.dtype == torch.float32
        # on average within a few per mille; a dream whose mixture component flips on a rounded logit may differ more
        assert (b - a).abs().mean() < 0.02 * a.abs().mean() + 1e-3
    assert not torch.equal(runs["fp32"][0], runs["bf16"][0])  # it did compute in bfloat16


def test_a_world_model_refuses_an_unknown_precision_with_the_choices(image_world_model):
    with pytest.raises(ValueError, match=r"precision='fp16'.*'fp32', 'bf16'"):
        image_world_model.set_precision("fp16")
    assert image_world_model.precision == "fp32"  # unchanged, and the default
