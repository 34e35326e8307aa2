"""A "noisy TV" toy for curiosity: a corridor where one cell shows pure random noise.

The agent walks a corridor of `length` cells (actions: 0 = left, 1 = stay, 2 = right), starting at `start`. Its
observation is its position (one-hot) plus `noise_dims` extra numbers that are zero everywhere except on the TV
cell, where they are fresh uniform noise every step. There is no extrinsic reward: it measures exploration only.
A prediction-error bonus is drawn to the TV (its noise is never predictable); an ensemble-disagreement bonus is not
(every member learns the same mean and variance for it) and keeps pushing toward unvisited cells.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class NoisyTVEnv(gym.Env):
    """Corridor with a noisy TV.

    Args:
        length: Number of cells.
        start: Start cell.
        tv_cell: The cell whose observation is noise.
        noise_dims: Size of the noise part of the observation.
        max_episode_steps: Episode length (no termination).
    """

    metadata = {"render_modes": []}

    def __init__(
        self, length: int = 25, start: int = 6, tv_cell: int = 2, noise_dims: int = 4, max_episode_steps: int = 40
    ):
        if not (0 <= start < length and 0 <= tv_cell < length):
            raise ValueError(f"start={start} and tv_cell={tv_cell} must be cells of a corridor of length {length}.")
        if noise_dims < 1 or max_episode_steps < 1:
            raise ValueError("noise_dims and max_episode_steps must be >= 1.")
        self.length, self.start, self.tv_cell, self.noise_dims = length, start, tv_cell, noise_dims
        self.max_episode_steps = max_episode_steps
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (length + noise_dims,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.pos, self.t = start, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length + self.noise_dims, np.float32)
        obs[self.pos] = 1.0
        if self.pos == self.tv_cell:
            obs[self.length :] = self.np_random.uniform(-1.0, 1.0, self.noise_dims)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos, self.t = self.start, 0
        return self._obs(), {"cell": self.pos}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.pos = int(np.clip(self.pos + int(action) - 1, 0, self.length - 1))
        self.t += 1
        return self._obs(), 0.0, False, self.t >= self.max_episode_steps, {"cell": self.pos}


def cell_of(obs: np.ndarray, length: int) -> np.ndarray:
    """Cells from observations (..., length + noise_dims): the argmax of the one-hot part."""
    return np.asarray(obs)[..., :length].argmax(-1)
