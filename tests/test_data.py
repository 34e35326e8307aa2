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


def _replay_of_frames(n_episodes: int, steps: int):
    """An EpisodeReplayBuffer of numpy'd SingleAgentEpisodes with frame-like uint8 observations (a flat background
    and a moving block, as a game's frames are mostly flat), the way EnvRunners hand them to the algorithm."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode
    from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

    rng = np.random.default_rng(0)
    replay = EpisodeReplayBuffer(capacity=10_000, batch_size_B=1, batch_length_T=1)
    for e in range(n_episodes):
        frames = np.full((steps + 1, 64, 64, 3), 90, dtype=np.uint8)
        for t in range(steps + 1):
            frames[t, 20:30, (t + e) % 54 : (t + e) % 54 + 10] = rng.integers(0, 255, (10, 10, 3))
        ep = SingleAgentEpisode(
            observations=list(frames),
            actions=list(rng.integers(0, 3, steps)),
            rewards=[1.0] * steps,
            terminated=True,
            len_lookback_buffer=0,
        )
        replay.add([ep.to_numpy()])
    return replay


def test_a_packed_replay_state_restores_every_episode_exactly_and_is_smaller():
    import pickle

    from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

    from rllib_worldmodel.data import pack_replay_state, unpack_replay_state

    replay = _replay_of_frames(n_episodes=4, steps=30)
    state = replay.get_state()
    packed = pack_replay_state(state)
    assert "episodes" not in packed and len(packed["episodes_lz4"]) == 4
    assert "episodes" in state  # the live state is left as it was
    assert len(pickle.dumps(packed)) < len(pickle.dumps(state)) / 2

    restored = EpisodeReplayBuffer(capacity=10_000, batch_size_B=1, batch_length_T=1)
    restored.set_state(unpack_replay_state(packed))
    assert restored.get_num_timesteps() == replay.get_num_timesteps() == 120
    assert restored.get_num_episodes() == 4
    for a, b in zip(replay.episodes, restored.episodes):
        assert a.id_ == b.id_ and a.is_terminated == b.is_terminated
        np.testing.assert_array_equal(a.get_observations(), b.get_observations())
        np.testing.assert_array_equal(a.get_actions(), b.get_actions())
        np.testing.assert_array_equal(a.get_rewards(), b.get_rewards())
    assert restored._indices == replay._indices
    # a state from a checkpoint written before packing restores as it always did
    assert unpack_replay_state(state) is state


def test_recency_weights_halve_per_half_life_of_newer_steps():
    lengths = np.array([10, 20, 30])  # oldest first: 50, 30 and 0 steps stored after each
    np.testing.assert_array_equal(rw.data.steps_stored_after(lengths), [50, 30, 0])
    np.testing.assert_allclose(rw.data.recency_weights(lengths, 30), [2 ** (-50 / 30), 0.5, 1.0])
    np.testing.assert_array_equal(rw.data.recency_weights(lengths, None), [1.0, 1.0, 1.0])
