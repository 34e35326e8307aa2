"""CMA-ES in the dream: batched controllers, population evaluation, resumable state."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from rllib_worldmodel.cma_es import CMAESTrainer, evaluate_population
from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.models.controller import Controller
from tests.conftest import make_image_world_model


def test_batched_forward_matches_each_controller():
    torch.manual_seed(0)
    for hidden in (0, 5):
        c = Controller(6, gym.spaces.Discrete(3), hidden=hidden)
        flats = np.random.default_rng(0).normal(size=(4, c.num_params))
        x = torch.randn(4, 7, 6)
        batched = c.batched_forward(torch.as_tensor(flats, dtype=torch.float32), x)
        for i in range(4):
            c.set_flat(flats[i])
            torch.testing.assert_close(batched[i], c(x[i]), rtol=1e-5, atol=1e-5)


def _deathless_dream(cap: int) -> tuple[DreamSimulator, Controller]:
    """A dream in which nobody dies (every dream runs to `cap`) and a controller template for it."""
    wm = make_image_world_model()
    with torch.no_grad():
        wm.mdn_rnn.done_head.bias.fill_(-50.0)
    sim = DreamSimulator(wm, DreamSettings(max_episode_steps=cap))
    return sim, Controller(wm.config.z_size + wm.config.rnn_size, gym.spaces.Discrete(3))


def test_population_runs_as_one_batch_and_counts_dream_steps():
    sim, c = _deathless_dream(5)
    res = evaluate_population(sim, c, np.zeros((3, c.num_params)), rollouts=4, seed=0)
    assert res.returns.shape == res.lengths.shape == (3, 4)
    assert (res.lengths == 5).all() and res.dream_steps == 3 * 4 * 5


def test_cma_state_round_trip_continues_identically():
    wm = make_image_world_model()
    c = Controller(wm.config.z_size + wm.config.rnn_size, gym.spaces.Discrete(3))
    sim = DreamSimulator(wm, DreamSettings(max_episode_steps=10))
    a = CMAESTrainer(c, popsize=4, rollouts=2, seed=1)
    a.step(sim)
    b = CMAESTrainer(c, popsize=4, rollouts=2, seed=1)
    b.set_state(a.get_state())
    np.testing.assert_allclose(np.asarray(a.es.ask()), np.asarray(b.es.ask()))
    assert b.generation == 1 and b.best_fitness == a.best_fitness


def test_common_noise_scores_every_candidate_on_the_same_dreams():
    wm = make_image_world_model()
    with torch.no_grad():
        wm.mdn_rnn.done_head.bias.fill_(2.0)  # deadly enough that sampled deaths end dreams at varied lengths
    sim = DreamSimulator(wm, DreamSettings(max_episode_steps=200, done_mode="sample"))
    c = Controller(wm.config.z_size + wm.config.rnn_size, gym.spaces.Discrete(3))
    same = np.zeros((3, c.num_params))  # three identical candidates
    shared = evaluate_population(sim, c, same, rollouts=6, seed=0, common_noise=True)
    # the same dream r for every candidate: identical lengths per rollout, different ones across rollouts
    assert (shared.lengths == shared.lengths[0]).all() and len(np.unique(shared.lengths[0])) > 1
    independent = evaluate_population(sim, c, same, rollouts=6, seed=0, common_noise=False)
    assert not (independent.lengths == independent.lengths[0]).all()


def test_noise_streams_are_checked():
    sim = DreamSimulator(make_image_world_model(), DreamSettings(max_episode_steps=5))
    with pytest.raises(ValueError, match="streams"):
        sim.reset(4, streams=torch.zeros(3, dtype=torch.long))
    sim.reset(4, streams=torch.tensor([0, 1, 0, 1]))
    with pytest.raises(RuntimeError, match="noise streams"):
        sim.reset_where(torch.tensor([True, False, False, False]))


def test_action_repeat_holds_each_decision_for_k_steps_in_the_dream():
    sim, c = _deathless_dream(12)
    flats = np.random.default_rng(0).normal(scale=3.0, size=(4, c.num_params))  # controllers that switch a lot
    taken, step = [], sim.step
    sim.step = lambda a: (taken.append(a.clone()), step(a))[1]
    evaluate_population(sim, c, flats, rollouts=2, seed=0)
    free = torch.stack(taken, 1)
    assert (free[:, 1:] != free[:, :-1]).any()  # without a repeat the decisions change within 4 steps
    taken.clear()
    res = evaluate_population(sim, c, flats, rollouts=2, seed=0, action_repeat=4)
    held = torch.stack(taken, 1)  # (dreams, 12)
    assert (res.lengths == 12).all()
    for start in (0, 4, 8):
        assert (held[:, start : start + 4] == held[:, start : start + 1]).all()
    torch.testing.assert_close(held[:, ::4], free[:, ::4])  # same dreams: the decisions are the free ones
    with pytest.raises(ValueError, match="action_repeat"):
        CMAESTrainer(c, popsize=4, rollouts=1, action_repeat=0)


def test_held_actions_keeps_continuous_actions_whole():
    from rllib_worldmodel.models.controller import held_actions

    new, old = torch.ones(3, 2), torch.zeros(3, 2)
    out = held_actions(new, old, torch.tensor([0, 1, 4]), 2)
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))
    assert held_actions(new, None, torch.tensor([3, 3, 3]), 2) is new


def test_importing_it_does_not_warn_about_cma_plotting():
    # `cma` warns at import when matplotlib is missing (it is not a dependency); every CLI command and Ray worker
    # loads this module, so the warning would reach every user's console for a feature nothing here uses.
    code = "import warnings; warnings.simplefilter('always'); import rllib_worldmodel.cma_es"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert "matplotlib" not in out.stderr
