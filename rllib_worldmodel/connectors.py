"""Env-to-module connectors that let stock RLlib policies read the frames our envs (real and dream) produce."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from ray.rllib.connectors.env_to_module.observation_preprocessor import SingleAgentObservationPreprocessor


class NormalizeFrames(SingleAgentObservationPreprocessor):
    """uint8 (H, W, C) frames -> float32 in [0, 1]. RLlib's default CNN encoders expect float observations, while
    `WorldModels/TakeCover-v0` and the pixel-mode dream emit the uint8 frames V is trained on.

    Use as `config.env_runners(env_to_module_connector=lambda env, spaces, device: NormalizeFrames())`.
    """

    def recompute_output_observation_space(self, input_observation_space, input_action_space) -> gym.Space:
        return gym.spaces.Box(0.0, 1.0, input_observation_space.shape, np.float32)

    def preprocess(self, observation, episode):
        return np.asarray(observation, dtype=np.float32) / 255.0
