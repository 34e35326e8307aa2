"""Real-env adapters on the real games (headless ViZDoom, Box2D CarRacing) and generic envs."""

import gymnasium as gym
import numpy as np
import pytest

import rllib_worldmodel as rw
from rllib_worldmodel.envs import adapt_env, ImageObservation, make_real_env, make_takecover, VectorObservation


def test_takecover_frames_actions_and_cap():
    env = make_takecover(frame_cap=30)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(3)
    assert env.unwrapped.game.get_doom_skill() == 4
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs.std() > 1.0  # a real rendered frame
    steps, truncated = 0, False
    while not truncated:
        obs, reward, terminated, truncated, _ = env.step(0)
        steps += 1
        assert reward == 1.0 and not terminated  # 30 steps is too short to die
    assert steps == 30
    env.close()


def test_takecover_frame_skip_keeps_the_score_and_the_cap_in_frames():
    """With 4 tics a step the return is still frames survived and the 60-second cap is 525 steps, not 2100."""
    from rllib_worldmodel.envs.vizdoom import steps_of_frames

    env = make_takecover(frame_cap=30, frame_skip=4)
    env.reset(seed=0)
    rewards, truncated = [], False
    while not truncated:
        _, reward, terminated, truncated, _ = env.step(0)
        rewards.append(reward)
        assert not terminated  # 30 frames is too short to die
    env.close()
    assert len(rewards) == 8 and rewards[0] == 4.0  # ceil(30 / 4) steps of 4 tics, each tic +1
    assert [steps_of_frames(2100, k) for k in (1, 4, 3)] == [2100, 525, 700]
    with pytest.raises(ValueError, match="frame_skip"):
        make_takecover(frame_skip=0)


def test_takecover_registered_and_configurable():
    env = gym.make(rw.TAKECOVER_ENV, skill=3, frame_cap=100)
    assert env.unwrapped.game.get_doom_skill() == 3
    env.close()
    with pytest.raises(ValueError, match="skill"):
        make_takecover(skill=9)


def test_takecover_damage_penalty_charges_exactly_the_health_lost():
    env = make_takecover(damage_penalty=0.5)
    env.reset(seed=0)
    frames, damage, shaped = 0, 0.0, 0.0
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(0)  # standing still: hit until dead
        frames, damage, shaped = frames + 1, damage + info["damage"], shaped + reward
        assert reward == pytest.approx(1.0 - 0.5 * info["damage"])
    env.close()
    assert terminated and damage == pytest.approx(100.0)  # every point of health, the lethal hit included
    assert shaped == pytest.approx(frames - 50.0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="damage_penalty"):
            make_takecover(damage_penalty=bad)


def test_takecover_lateral_position_follows_strafing():
    from rllib_worldmodel.envs.vizdoom import lateral_position

    env = make_takecover(frame_cap=200)
    ends = {}
    for action in (1, 2):  # MOVE_RIGHT, MOVE_LEFT from the same start
        env.reset(seed=3)
        start = lateral_position(env)
        for _ in range(30):
            env.step(action)
        ends[action] = lateral_position(env) - start
    env.close()
    assert ends[1] * ends[2] < 0  # opposite directions
    assert min(abs(ends[1]), abs(ends[2])) > 50  # momentum: 30 steps cross a good part of the 736-unit room
    with pytest.raises(ValueError, match="ViZDoom"):
        lateral_position(gym.make("CartPole-v1"))


def test_takecover_health_starts_full_and_ends_at_death():
    from rllib_worldmodel.envs.vizdoom import health

    env = make_takecover(frame_cap=2100, frame_skip=4)
    env.reset(seed=5)
    readings, terminated = [health(env)], False
    while not terminated:
        _, _, terminated, truncated, _ = env.step(0)  # standing still: hit within a few hundred frames
        assert not truncated
        readings.append(health(env))
    env.close()
    assert readings[0] == 100.0 and readings[-1] <= 0.0
    assert all(b <= a for a, b in zip(readings, readings[1:]))  # nothing in TakeCover heals
    with pytest.raises(ValueError, match="ViZDoom"):
        health(gym.make("CartPole-v1"))


def test_takecover_fireballs_fly_from_the_imps_toward_the_player():
    from rllib_worldmodel.envs.vizdoom import enable_object_info, fireballs

    env = make_takecover(frame_cap=400, frame_skip=4)
    with pytest.raises(ValueError, match="enable_object_info"):
        fireballs(env)
    enable_object_info(env)
    enable_object_info(env)  # idempotent: the game is not restarted twice
    env.reset(seed=0)
    seen = []
    for _ in range(60):
        seen.append(fireballs(env))
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            break
    env.close()
    balls = np.concatenate([b for b in seen if len(b)])
    assert balls.shape[1] == 3 and len(balls) > 10
    assert balls[:, 0].max() <= 500 and balls[:, 0].min() > -50  # between the imps' wall and the player
    assert np.abs(balls[:, 1]).max() < 800  # within the room's width
    # the first fireball, followed while it flies: ~40 units closer each 4-tic step, aimed at the standing player
    first = next(i for i, b in enumerate(seen) if len(b))
    track = [seen[i][0] for i in range(first, first + 4)]
    assert all(30 < a[0] - b[0] < 50 for a, b in zip(track, track[1:]))
    assert all(abs(t[2]) < 30 for t in track)  # on arrival: where the player stands
    assert abs(track[0][1]) > abs(track[-1][1])  # its offset now shrinks toward that
    with pytest.raises(ValueError, match="ViZDoom"):
        fireballs(gym.make("CartPole-v1"))


def test_car_racing_frames():
    pytest.importorskip("Box2D")
    env = gym.make(rw.CAR_RACING_ENV)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert isinstance(env.action_space, gym.spaces.Box) and env.action_space.shape == (3,)
    obs, *_ = env.step(np.array([0.0, 0.5, 0.0], dtype=np.float32))
    assert env.observation_space.contains(obs)
    env.close()


def test_generic_vector_env():
    env = make_real_env("CartPole-v1")
    assert isinstance(env, VectorObservation)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (4,)


class _DictImageEnv(gym.Env):
    observation_space = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (120, 160, 3), np.uint8)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {"pixels": np.full((120, 160, 3), 200, np.uint8)}, {}

    def step(self, action):
        return self.reset()[0], 0.0, False, False, {}


def test_generic_image_env_with_dict_obs_and_crop():
    env = adapt_env(_DictImageEnv(), image_key="pixels")
    obs, _ = env.reset()
    assert obs.shape == (64, 64, 3) and (obs == 200).all()
    cropped = ImageObservation(_DictImageEnv(), size=32, key="pixels", crop=(0, 60, None, None))
    assert cropped.reset()[0].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="key="):
        ImageObservation(_DictImageEnv())
    with pytest.raises(ValueError, match="image"):
        ImageObservation(gym.make("CartPole-v1"))


def test_noisy_tv_env():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import rllib_worldmodel as rw
    from rllib_worldmodel.envs.noisy_tv import cell_of, NoisyTVEnv

    env = gym.make(rw.NOISY_TV_ENV, length=8, start=3, tv_cell=1, max_episode_steps=5)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert info["cell"] == 3 and cell_of(obs, 8) == 3 and not obs[8:].any()  # no noise away from the TV
    obs, *_ = env.step(0)
    obs, _, term, trunc, info = env.step(0)  # two steps left: on the TV
    assert info["cell"] == 1 and obs[8:].any() and not term and not trunc
    noise = [env.step(1)[0][8:] for _ in range(2)]  # stay: fresh noise every step
    assert not np.allclose(noise[0], noise[1])
    assert env.step(1)[3]  # truncated after max_episode_steps
    with pytest.raises(ValueError, match="tv_cell"):
        NoisyTVEnv(length=4, tv_cell=9)
