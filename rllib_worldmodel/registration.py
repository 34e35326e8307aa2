"""Env names registered on `import rllib_worldmodel`, with both Ray (`register_env`) and gymnasium (`gym.make`).

| name                        | what                                                              |
|-----------------------------|-------------------------------------------------------------------|
| WorldModels/Dream-v0        | the learned simulator (DreamEnv; DreamVectorEnv as vector entry)  |
| WorldModels/TakeCover-v0    | ViZDoom TakeCover, 64x64 RGB, Discrete(3), 2100-step cap          |
| WorldModels/CarRacing-v0    | CarRacing-v3, 64x64 RGB without dashboard (needs the box2d extra) |
| WorldModels/Real-v0         | any gymnasium id (env_config["env_id"]) adapted to image/vector   |
| WorldModels/NoisyTV-v0      | curiosity toy: a corridor with one cell of pure noise (no reward) |

Ray creators read their own namespace of env_config when present (`{"dream": {...}, "real": {...}}`), because
RLlib deep-merges env_config overrides: an evaluation config on the real env would otherwise inherit dream keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

DREAM_ENV = "WorldModels/Dream-v0"
TAKECOVER_ENV = "WorldModels/TakeCover-v0"
CAR_RACING_ENV = "WorldModels/CarRacing-v0"
REAL_ENV = "WorldModels/Real-v0"
NOISY_TV_ENV = "WorldModels/NoisyTV-v0"
_RESERVED = ("num_envs", "dream", "real")


def _section(env_config: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The env's own settings: env_config[namespace] if present, else the top level without reserved keys."""
    if namespace in env_config:
        return dict(env_config[namespace])
    return {k: v for k, v in env_config.items() if k not in _RESERVED}


def make_dream_from_config(env_config: dict[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """Ray creator for the dream: a DreamVectorEnv when RLlib asks for `num_envs`, else a DreamEnv.

    env_config (or env_config["dream"]) holds `world_model` (checkpoint path) plus DreamSettings fields.
    """
    from rllib_worldmodel.dream import DreamEnv, DreamVectorEnv

    cfg = _section(env_config, "dream")
    if "world_model" not in cfg:
        raise ValueError(
            f"{DREAM_ENV} needs env_config['dream']['world_model'] (or env_config['world_model']): the path of a "
            "world-model checkpoint, e.g. written by `rllib-worldmodel fit`."
        )
    world_model = cfg.pop("world_model")
    if "num_envs" in env_config:
        return DreamVectorEnv(int(env_config["num_envs"]), world_model, **cfg)
    return DreamEnv(world_model, **cfg)


def _real_creator(make: Callable[..., gym.Env]) -> Callable[[dict[str, Any]], gym.Env]:
    def creator(env_config: dict[str, Any]) -> gym.Env | gym.vector.VectorEnv:
        cfg = _section(env_config, "real")
        if "num_envs" in env_config:  # RLlib's vector_entry_point mode
            return gym.vector.SyncVectorEnv([lambda: make(**cfg)] * int(env_config["num_envs"]))
        return make(**cfg)

    return creator


def register_all() -> None:
    """Register every env name with gymnasium and Ray (idempotent; cheap: nothing is constructed)."""
    from ray.tune.registry import register_env

    from rllib_worldmodel.envs import make_car_racing, make_real_env, make_takecover
    from rllib_worldmodel.envs.noisy_tv import NoisyTVEnv

    real = {
        TAKECOVER_ENV: make_takecover,
        CAR_RACING_ENV: make_car_racing,
        REAL_ENV: make_real_env,
        NOISY_TV_ENV: NoisyTVEnv,
    }
    for name, make in real.items():
        if name not in gym.registry:
            gym.register(name, entry_point=make)
        register_env(name, _real_creator(make))
    if DREAM_ENV not in gym.registry:
        gym.register(
            DREAM_ENV,
            entry_point="rllib_worldmodel.dream:DreamEnv",
            vector_entry_point="rllib_worldmodel.dream:DreamVectorEnv",
        )
    register_env(DREAM_ENV, make_dream_from_config)


def register_trainable_name() -> None:
    """Register the `WorldModels` algorithm with Tune, so `tune.Tuner("WorldModels", ...)` works."""
    from ray.tune.registry import register_trainable

    from rllib_worldmodel.algorithm import WorldModels

    register_trainable("WorldModels", WorldModels)
