"""rllib_worldmodel: World Models (Ha & Schmidhuber 2018) model-based RL for Ray RLlib's new API stack.

Importing the package registers its env names with Ray and gymnasium and the `WorldModels` trainable with
Tune (see `rllib_worldmodel.registration`).
"""

from rllib_worldmodel.algorithm import WorldModels
from rllib_worldmodel.config import WorldModelsConfig
from rllib_worldmodel.data import collect_random_episodes, Episode, load_episodes, RandomHoldPolicy, save_episodes
from rllib_worldmodel.done_refit import refit_done_on_dreams
from rllib_worldmodel.dream import DreamEnv, DreamSettings, DreamSimulator, DreamVectorEnv
from rllib_worldmodel.models.controller import Controller, ControllerInput
from rllib_worldmodel.models.world_model import CheckpointError, WorldModel, WorldModelConfig
from rllib_worldmodel.registration import (
    CAR_RACING_ENV,
    DREAM_ENV,
    NOISY_TV_ENV,
    REAL_ENV,
    register_all,
    register_trainable_name,
    TAKECOVER_ENV,
)
from rllib_worldmodel.trainer import WorldModelTrainer

__version__ = "0.1.0"

__all__ = [
    "CAR_RACING_ENV",
    "DREAM_ENV",
    "NOISY_TV_ENV",
    "REAL_ENV",
    "TAKECOVER_ENV",
    "CheckpointError",
    "Controller",
    "ControllerInput",
    "DreamEnv",
    "DreamSettings",
    "DreamSimulator",
    "DreamVectorEnv",
    "Episode",
    "RandomHoldPolicy",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelTrainer",
    "WorldModels",
    "WorldModelsConfig",
    "collect_random_episodes",
    "load_episodes",
    "refit_done_on_dreams",
    "save_episodes",
]

register_all()
register_trainable_name()
