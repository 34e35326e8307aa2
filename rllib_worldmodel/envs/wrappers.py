"""Generic observation adapters that turn any gymnasium env into one a world model can learn.

- `ImageObservation`: image (or Dict-with-image) observations -> uint8 (size, size, C) frames, optionally cropped
  first (e.g. a HUD or dashboard strip). Area (box) resampling keeps small objects such as distant fireballs as
  averaged pixels instead of skipping them.
- `VectorObservation`: any Box observation -> flat float32 vector.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image


class ImageObservation(gym.ObservationWrapper):
    """Resize (and optionally crop / pick a Dict key of) image observations to uint8 (size, size, C).

    Args:
        env: The env to wrap.
        size: Output height and width (the ConvVAE expects 64).
        key: Which entry of a Dict observation holds the image (e.g. "screen" for ViZDoom); None for Box obs.
        crop: (top, bottom, left, right) pixel rows/cols to keep, Python-slice style (None = to the edge),
            applied before resizing.
    """

    def __init__(
        self,
        env: gym.Env,
        size: int = 64,
        key: str | None = None,
        crop: tuple[int | None, int | None, int | None, int | None] | None = None,
    ):
        super().__init__(env)
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict):
            if key is None or key not in space.spaces:
                raise ValueError(f"ImageObservation: pass key= one of {list(space.spaces)} for a Dict observation.")
            space = space.spaces[key]
        elif key is not None:
            raise ValueError(f"ImageObservation: key={key!r} given but the observation space is {space}.")
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
            raise ValueError(f"ImageObservation needs (H, W, C) image observations, got {space}.")
        if size < 8:
            raise ValueError(f"ImageObservation: size={size} is too small; use 64 for the ConvVAE.")
        self.size = size
        self.key = key
        self.crop = crop
        self.observation_space = gym.spaces.Box(0, 255, (size, size, space.shape[-1]), np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        frame = observation[self.key] if self.key is not None else observation
        if self.crop is not None:
            top, bottom, left, right = self.crop
            frame = frame[top:bottom, left:right]
        if frame.dtype != np.uint8:  # float images in [0, 1] or [0, 255]
            scale = 255.0 if frame.max() <= 1.0 else 1.0
            frame = np.clip(frame * scale, 0, 255).astype(np.uint8)
        if frame.shape[:2] == (self.size, self.size):
            return np.ascontiguousarray(frame)
        squeeze = frame.shape[-1] == 1
        img = Image.fromarray(frame[..., 0] if squeeze else frame)
        out = np.asarray(img.resize((self.size, self.size), resample=Image.Resampling.BOX))
        return out[..., None] if squeeze else out


class VectorObservation(gym.ObservationWrapper):
    """Flatten any Box observation to a float32 vector.

    Args:
        env: The env to wrap.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"VectorObservation needs a Box observation space, got {space}.")
        self.observation_space = gym.spaces.Box(
            space.low.astype(np.float32).ravel(), space.high.astype(np.float32).ravel(), dtype=np.float32
        )

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32).ravel()


def adapt_env(env: gym.Env, size: int = 64, image_key: str | None = None) -> gym.Env:
    """Wrap any gymnasium env so its observations suit a world model.

    Image (rank-3 Box, or a Dict holding one under `image_key`, default "screen" when present) -> ImageObservation;
    any other Box -> VectorObservation.

    Args:
        env: The env.
        size: Frame size for image observations.
        image_key: Dict key of the image, if the observation is a Dict.
    """
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict):
        key = image_key or ("screen" if "screen" in space.spaces else None)
        return ImageObservation(env, size=size, key=key)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        return ImageObservation(env, size=size)
    if isinstance(space, gym.spaces.Box):
        return VectorObservation(env)
    raise ValueError(f"observation space {space} is not supported: use an image or Box observation.")
