"""The CUDA paths: the same numbers as on the CPU, a fit and a training iteration with the Learner and the dream on a
GPU, and what a GPU run writes restores on a machine without one.

These run only where torch sees a CUDA device: CI has none, so they are skipped there and run on a GPU machine
(`python -m pytest tests/test_cuda.py`). Everything they cover also runs on the CPU in the rest of the suite.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID

import rllib_worldmodel as rw
from rllib_worldmodel.cma_es import evaluate_population
from rllib_worldmodel.learner import window_batch_loss
from rllib_worldmodel.losses import vae_loss
from rllib_worldmodel.rl_module import WorldModelsRLModule

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tuned_examples"))
sys.path.append(str(REPO / "benchmarks"))  # after everything else: its scripts shadow nothing
from mdn_update import window_batch  # noqa: E402  (window batches laid out as `WorldModels._mdn_batch` does)
from tiny import tiny_config  # noqa: E402

from tests.conftest import run_in_fresh_process  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def full_fp32():
    """Compare in full float32: by default cuDNN's convolutions round their inputs to TF32 (10 mantissa bits)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _agent(seed: int = 0) -> WorldModelsRLModule:
    torch.manual_seed(seed)
    return WorldModelsRLModule(
        observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        action_space=gym.spaces.Discrete(3),
        model_config={"z_size": 8, "rnn_size": 32, "num_mixtures": 3, "num_heads": 3, "done_bias_init": -3.0},
    )


def _losses(module: WorldModelsRLModule, frames, eps, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """V's loss (its posterior sample drawn with the given noise) and M's on a window batch, as the Learner has them."""
    wm = module.world_model
    target = wm.vae.preprocess(frames)
    mu, logvar = wm.vae.encode_target(target)
    recon = wm.vae.decode(mu + (0.5 * logvar).exp() * eps)
    v, _ = vae_loss(recon, target, mu, logvar, focus_fraction=0.02, focus_weight=10.0)
    m, _ = window_batch_loss(module._forward_train(batch), batch, wm.config)
    return v, m


def test_losses_and_gradients_on_the_gpu_are_the_cpus():
    """The Learner's V and M losses (M's heads at the valid steps, its LSTM by length, the prefix pass, bootstrap
    weights, V's hard-pixel focus) and every gradient are the CPU's, to float32 rounding."""
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (6, 64, 64, 3), np.uint8))
    eps = torch.randn(6, 8)
    batch = window_batch(rng, np.array([9, 3, 7, 1, 12, 5]), 6, 8, 3, 3)  # windows with and without prefixes
    cpu = _agent()
    gpu = copy.deepcopy(cpu).to("cuda")
    results = {}
    for name, module, dev in (("cpu", cpu, "cpu"), ("cuda", gpu, "cuda")):
        v, m = _losses(module, frames.to(dev), eps.to(dev), {k: x.to(dev) for k, x in batch.items()})
        (v + m).backward()
        grads = {k: p.grad.detach().cpu() for k, p in module.world_model.named_parameters() if p.grad is not None}
        results[name] = (v.item(), m.item(), grads)
    (v_c, m_c, g_c), (v_g, m_g, g_g) = results["cpu"], results["cuda"]
    assert v_g == pytest.approx(v_c, rel=1e-4) and m_g == pytest.approx(m_c, rel=1e-4)
    assert g_c.keys() == g_g.keys() and any(k.startswith("vae.") for k in g_c) and any("lstm" in k for k in g_c)
    for k in g_c:
        scale = g_c[k].abs().max().item() + 1e-6
        torch.testing.assert_close(g_g[k], g_c[k], rtol=1e-3, atol=1e-4 * scale, msg=k)


def test_offline_fit_on_the_gpu_writes_a_world_model_a_cpu_loads(tmp_path):
    """`WorldModelTrainer` on CUDA: V, the replay's encoding, M and the done refit run there, and the checkpoint it
    writes loads on the CPU with the same weights."""
    rng = np.random.default_rng(1)
    episodes = []
    for i in range(8):
        t = 12 + 3 * i
        frames = rng.integers(0, 256, (t + 1, 64, 64, 3), np.uint8)
        episodes.append(rw.Episode(frames, rng.integers(0, 3, t), np.ones(t, np.float32), True, False))
    model = rw.WorldModel(_agent().wm_config)
    trainer = rw.WorldModelTrainer(model, device="cuda", seed=0)
    history = trainer.fit(
        episodes, vae_epochs=2, mdn_epochs=3, vae_batch_size=32, mdn_batch_size=4, seq_len=16, done_refit_horizon=4
    )
    assert next(model.parameters()).device.type == "cuda"
    assert all(np.isfinite(h["world_model/vae_loss"]) for h in history["vae"])
    assert all(np.isfinite(h["world_model/mdn_total_loss"]) for h in history["mdn"])
    assert history["done_refit"]
    path = model.save(tmp_path / "gpu.pt")
    loaded = rw.WorldModel.load(path)  # device="cpu": what a machine without a GPU does
    assert next(loaded.parameters()).device.type == "cpu"
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=0, msg=k)
    assert torch.equal(loaded.initial_states, model.initial_states.cpu())


def test_a_deterministic_dream_and_a_cma_es_generation_on_the_gpu_are_the_cpus():
    """With no randomness (`deterministic=True`: start means, each member's mode, threshold deaths) the batched dream
    and a CMA-ES population's scores do not depend on the device. One stored start state: which one a dream starts
    from is still drawn, by the device's own generator."""
    wm = _agent().world_model
    wm.set_initial_states(torch.randn(1, 8), torch.full((1, 8), -2.0))
    wm.eval()
    controller = rw.Controller(8 + 32, gym.spaces.Discrete(3))  # C on [z, h], the dream's default observation
    flats = np.random.default_rng(2).standard_normal((4, controller.num_params))
    out = {}
    for dev in ("cpu", "cuda"):
        settings = rw.DreamSettings(deterministic=True, max_episode_steps=30, device=dev, seed=0)
        sim = rw.DreamSimulator(copy.deepcopy(wm), settings)
        obs = [sim.reset(5, seed=0)]
        actions = torch.tensor([0, 1, 2, 1, 0], device=dev)
        for _ in range(10):
            obs.append(sim.step(actions)[0])
        population = evaluate_population(sim, controller.to(dev), flats, rollouts=2, seed=0, action_repeat=3)
        out[dev] = (torch.stack(obs).cpu(), population.returns, population.lengths)
    torch.testing.assert_close(out["cuda"][0], out["cpu"][0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["cuda"][1], out["cpu"][1], rtol=1e-5)
    np.testing.assert_array_equal(out["cuda"][2], out["cpu"][2])


@pytest.mark.parametrize("num_learners", [0, 1], ids=["local learner", "remote learner"])
def test_an_iteration_with_the_learner_and_the_dream_on_the_gpu_restores_on_a_cpu(ray_session, tmp_path, num_learners):
    """The algorithm with its Learner on the GPU (`num_gpus_per_learner=1`, in this process or a Ray actor) and its
    dreams there (CMA-ES, the planning agent's look-ahead, the done refit): one iteration collects, fits, searches and
    evaluates on the real env; the checkpoint it writes restores, weights and search state, into a CPU-only process."""
    config = (
        tiny_config()
        .learners(num_learners=num_learners, num_gpus_per_learner=1)
        .dream(device="cuda")
        .world_model(done_refit_horizon=4)
        .controller(plan_horizon=4)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        devices = [
            r.get()
            for r in algo.learner_group.foreach_learner(
                lambda learner: str(next(learner.module[DEFAULT_MODULE_ID].parameters()).device)
            )
        ]
        assert [d.split(":")[0] for d in devices] == ["cuda"] * max(1, num_learners)
        assert next(algo.local_module.parameters()).device.type == "cuda"
        learner = result["learners"][DEFAULT_MODULE_ID]
        assert np.isfinite(learner["world_model/vae_loss"]) and np.isfinite(learner["world_model/mdn_nll"])
        assert np.isfinite(result["evaluation"]["real/episode_return_mean"])
        ckpt = algo.save_to_path(str(tmp_path / "gpu_ckpt"))
        expected = {
            "controller": algo.local_module.controller.get_flat().tolist(),
            "world_model": float(sum(p.double().sum().item() for p in algo.local_module.world_model.parameters())),
            "generation": algo.cma.generation,
            "replay": algo.replay.get_num_timesteps(),
        }
    finally:
        algo.stop()
    out = run_in_fresh_process(
        f"""
        import sys
        import torch
        assert not torch.cuda.is_available()
        sys.path.insert(0, {str(REPO / "tuned_examples")!r})
        from tiny import tiny_config
        algo = tiny_config().world_model(done_refit_horizon=4).controller(plan_horizon=4).build_algo()
        algo.restore_from_path({str(ckpt)!r})
        wm = algo.local_module.world_model
        out = {{"controller": algo.local_module.controller.get_flat().tolist(),
               "world_model": float(sum(p.double().sum().item() for p in wm.parameters())),
               "generation": algo.cma.generation, "replay": algo.replay.get_num_timesteps(),
               "device": str(next(algo.local_module.parameters()).device)}}
        out["iteration"] = algo.train()["training_iteration"]
        algo.stop()
        """,
        cwd=tmp_path,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        num_gpus=0,
    )
    assert out["device"] == "cpu" and out["iteration"] == 2
    np.testing.assert_allclose(out["controller"], expected["controller"], rtol=1e-6)
    assert out["world_model"] == pytest.approx(expected["world_model"], rel=1e-9)
    assert (out["generation"], out["replay"]) == (expected["generation"], expected["replay"])
