"""CMA-ES in the dream: batched controllers, population evaluation, resumable state."""

import gymnasium as gym
import numpy as np
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


def test_population_runs_as_one_batch_and_counts_dream_steps():
    wm = make_image_world_model()
    with torch.no_grad():
        wm.mdn_rnn.done_head.bias.fill_(-50.0)  # no deaths: every dream runs to the cap
    sim = DreamSimulator(wm, DreamSettings(max_episode_steps=5))
    c = Controller(wm.config.z_size + wm.config.rnn_size, gym.spaces.Discrete(3))
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
