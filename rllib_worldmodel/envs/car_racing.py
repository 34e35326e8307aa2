"""CarRacing-v3 as the world model sees it: 64x64 RGB frames without the dashboard, continuous actions."""

from __future__ import annotations

import gymnasium as gym

from rllib_worldmodel.envs.wrappers import ImageObservation

# paper code (carracing/env.py) keeps frame[0:84] of 96 rows: the bottom 12 rows are the dashboard.
DASHBOARD_CROP = (0, 84, None, None)


def make_car_racing(size: int = 64, frame_cap: int = 1000, crop_dashboard: bool = True, **kwargs) -> gym.Env:
    """Create CarRacing-v3 (needs the `box2d` extra) with uint8 (size, size, 3) frames.

    Args:
        size: Frame size after resizing.
        frame_cap: Episode truncation in steps (gymnasium's default: 1000).
        crop_dashboard: Drop the bottom dashboard strip as the paper's code does.
        **kwargs: Passed to gym.make("CarRacing-v3", ...), e.g. domain_randomize, render_mode.
    """
    try:
        import Box2D  # noqa: F401
    except ImportError as e:
        raise ImportError("CarRacing needs Box2D: pip install 'rllib_worldmodel[box2d]' (box2d==2.3.10).") from e
    env = gym.make("CarRacing-v3", max_episode_steps=frame_cap, **kwargs)
    return ImageObservation(env, size=size, crop=DASHBOARD_CROP if crop_dashboard else None)
