"""ViZDoom TakeCover as the world model sees it: 64x64 RGB frames, Discrete(3), a 2100-step cap."""

from __future__ import annotations

import gymnasium as gym

from rllib_worldmodel.envs.wrappers import ImageObservation

# paper (ppaquette gym-doom): skill 5; ViZDoom's shipped take_cover.cfg uses 4. Scores differ between the two.
DEFAULT_SKILL = 5
# paper: 60 s at 35 tics/s; "solved" is surviving 750 on average.
FRAME_CAP = 2100
# VizdoomTakeCover-v1's button map (verified): 0 = no-op, 1 = MOVE_RIGHT, 2 = MOVE_LEFT.
ACTION_MEANINGS = ("NOOP", "MOVE_RIGHT", "MOVE_LEFT")


def make_takecover(
    skill: int = DEFAULT_SKILL,
    frame_cap: int = FRAME_CAP,
    size: int = 64,
    frame_skip: int = 1,
    screen_flashes: bool = False,
    render_hud: bool = False,
    render_mode: str | None = None,
) -> gym.Env:
    """Create VizDoom TakeCover with observations of uint8 (size, size, 3) frames.

    Args:
        skill: Doom skill 1-5 (paper: 5; the shipped cfg: 4).
        frame_cap: Episode truncation in steps (paper: 2100).
        size: Frame size after area resizing.
        frame_skip: Tics per step (paper: 1).
        screen_flashes: Render the red flash when hit (shipped cfg: off, so frames never show being hit).
        render_hud: Render the HUD (shipped cfg: off).
        render_mode: Passed to the ViZDoom env ("rgb_array" for videos).
    """
    if not 1 <= int(skill) <= 5:
        raise ValueError(f"skill={skill}: Doom skill must be 1 (easiest) to 5 (hardest).")
    if frame_cap < 1 or frame_skip < 1:
        raise ValueError(f"frame_cap={frame_cap} and frame_skip={frame_skip} must be >= 1.")
    import vizdoom.gymnasium_wrapper  # noqa: F401  (registers VizdoomTakeCover-v1; imported lazily: no I/O at import)

    env = gym.make(
        "VizdoomTakeCover-v1",
        frame_skip=frame_skip,
        render_mode=render_mode,
        doom_skill=int(skill),
        render_screen_flashes=bool(screen_flashes),
        render_hud=bool(render_hud),
    )
    env = ImageObservation(env, size=size, key="screen")
    return gym.wrappers.TimeLimit(env, max_episode_steps=frame_cap)
