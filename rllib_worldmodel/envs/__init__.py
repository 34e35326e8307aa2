"""Real-env adapters: ViZDoom TakeCover, CarRacing, and generic image/vector wrappers for any gymnasium env."""

from __future__ import annotations

import gymnasium as gym

from rllib_worldmodel.envs.car_racing import make_car_racing
from rllib_worldmodel.envs.vizdoom import make_takecover
from rllib_worldmodel.envs.wrappers import adapt_env, ImageObservation, VectorObservation

__all__ = ["ImageObservation", "VectorObservation", "adapt_env", "make_car_racing", "make_real_env", "make_takecover"]


def make_real_env(env_id: str, size: int = 64, image_key: str | None = None, **kwargs) -> gym.Env:
    """Make any registered gymnasium env and adapt its observations for a world model.

    Args:
        env_id: A gymnasium id, e.g. "CartPole-v1", or one of ours ("WorldModels/TakeCover-v0").
        size: Frame size for image observations.
        image_key: Dict key holding the image, for Dict observations.
        **kwargs: Passed to gym.make.
    """
    env = gym.make(env_id, **kwargs)
    if isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.shape in (
        (size, size, 3),
        (size, size, 1),
    ):
        return env
    return adapt_env(env, size=size, image_key=image_key)
