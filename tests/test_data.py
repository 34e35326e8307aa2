import itertools

import gymnasium as gym
import numpy as np
import pytest

import rllib_worldmodel as rw
from rllib_worldmodel.envs import make_real_env


def test_random_hold_policy_holds_1_to_10_steps():
    policy = rw.RandomHoldPolicy(gym.spaces.Discrete(3), hold=(1, 10), seed=0)
    draws = itertools.count()
    policy.action_space.sample = lambda: next(draws)  # every draw distinct, so runs are exactly the holds
    actions = [policy() for _ in range(5000)]
    runs = [len(list(g)) for _, g in itertools.groupby(actions)][:-1]
    assert min(runs) == 1 and max(runs) == 10
    assert np.mean(runs) == pytest.approx(5.5, abs=0.3)
    with pytest.raises(ValueError, match="hold"):
        rw.RandomHoldPolicy(gym.spaces.Discrete(3), hold=(0, 10))


def test_collect_is_reproducible_and_well_formed():
    env = make_real_env("CartPole-v1")
    a = rw.collect_random_episodes(env, 5, seed=7, min_length=10)
    b = rw.collect_random_episodes(env, 5, seed=7, min_length=10)
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea.obs, eb.obs)
        np.testing.assert_array_equal(ea.actions, eb.actions)
    for ep in a:
        assert len(ep) >= 10 and ep.obs.shape == (len(ep) + 1, 4)
        assert ep.terminated != ep.truncated or not ep.truncated
        assert ep.episode_return == pytest.approx(len(ep))


def test_save_and_load_round_trip(tmp_path):
    eps = rw.collect_random_episodes(make_real_env("CartPole-v1"), 3, seed=1)
    rw.save_episodes(eps, tmp_path)
    back = rw.load_episodes(tmp_path)
    assert len(back) == 3
    for a, b in zip(eps, back):
        np.testing.assert_array_equal(a.obs, b.obs)
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)
    with pytest.raises(FileNotFoundError):
        rw.load_episodes(tmp_path / "empty")


def test_episode_validates_lengths():
    with pytest.raises(ValueError, match="T\\+1 observations"):
        rw.Episode(np.zeros((3, 2)), np.zeros(3), np.zeros(3), True, False)


def test_load_episodes_slices_in_index_order(tmp_path, cartpole_episodes):
    rw.save_episodes(cartpole_episodes[:5], tmp_path)
    part = rw.load_episodes(tmp_path, 2, 4)
    assert [len(e) for e in part] == [len(e) for e in cartpole_episodes[2:4]]
    with pytest.raises(ValueError, match="start=7"):
        rw.load_episodes(tmp_path, 7)
