"""ViZDoom TakeCover as the world model sees it: 64x64 RGB frames, Discrete(3), a 2100-step cap."""

from __future__ import annotations

import argparse
import math
from typing import Any

import gymnasium as gym
import numpy as np

from rllib_worldmodel.envs.wrappers import ImageObservation

# The paper's env (ppaquette gym-doom on the old doom-py) asked for skill 5, and its random policy survived
# 210 ± 108 frames. Measured here with ViZDoom 1.3.2 (40 episodes each, uniform random actions): skill 4 gives
# 238 ± 106 and skill 5 gives 75 ± 34. So skill 4 is the setting that reproduces the paper's game; it is also the
# shipped take_cover.cfg's. Skill 5 stays available for anyone who wants the harder game.
DEFAULT_SKILL = 4
# paper: 60 s at 35 tics/s; "solved" is surviving 750 on average.
FRAME_CAP = 2100
# VizdoomTakeCover-v1's button map (verified): 0 = no-op, 1 = MOVE_RIGHT, 2 = MOVE_LEFT.
ACTION_MEANINGS = ("NOOP", "MOVE_RIGHT", "MOVE_LEFT")


def health(env: gym.Env) -> float:
    """The player's health now (ViZDoom's HEALTH game variable; 100 at an episode start, <= 0 once dead).

    Args:
        env: A TakeCover env from `make_takecover` (any wrappers around a ViZDoom env).
    """
    import vizdoom as vzd

    return float(_doom_game(env, "health").get_game_variable(vzd.GameVariable.HEALTH))


def lateral_position(env: gym.Env) -> float:
    """The player's coordinate along TakeCover's strafe axis, in map units (ViZDoom's POSITION_Y; POSITION_X stays
    within a few units there). Measured with the default settings: 16 to 752 from wall to wall.

    Args:
        env: A TakeCover env from `make_takecover` (any wrappers around a ViZDoom env).
    """
    import vizdoom as vzd

    return float(_doom_game(env, "lateral_position").get_game_variable(vzd.GameVariable.POSITION_Y))


def _doom_game(env: gym.Env, what: str) -> Any:
    inner = env.unwrapped
    if not hasattr(inner, "game"):
        raise ValueError(f"{what} needs a ViZDoom env (it reads the DoomGame); got {inner!r}.")
    return inner.game


def enable_object_info(env: gym.Env) -> None:
    """Make a TakeCover env report where every object is (ViZDoom's objects info, off by default): restarts its
    DoomGame with the option on, so call it before the first reset. Needed by `fireballs`.

    Args:
        env: A TakeCover env from `make_takecover`.
    """
    game = _doom_game(env, "enable_object_info")
    if not game.is_objects_info_enabled():
        game.close()
        game.set_objects_info_enabled(True)
        game.init()


def fireballs(env: gym.Env) -> np.ndarray:
    """The imps' fireballs in flight now, relative to the player, (n, 3) in map units.

    Column 0: how far the fireball still has to fly along the room's depth (imps stand ~480 units away; measured at
    4 tics a step it closes ~40 units a step, so a whole flight lasts ~12 steps, 48 frames). Column 1: its lateral
    offset now, along the strafe axis. Column 2: its lateral offset when it arrives if the player stays put (its
    velocity carried forward): a fireball is aimed at where the player was, so this, not column 1, says whether it
    hits a player who does not move (within about 30 units of 0). Empty between episodes.

    Args:
        env: A TakeCover env on which `enable_object_info` was called.
    """
    game = _doom_game(env, "fireballs")
    if not game.is_objects_info_enabled():
        raise ValueError("fireballs needs the objects info: call enable_object_info(env) before the first reset.")
    state = game.get_state()
    if state is None:
        return np.zeros((0, 3))
    player = next((o for o in state.objects if o.name == "DoomPlayer"), None)
    balls = [o for o in state.objects if o.name == "DoomImpBall"]
    if player is None or not balls:
        return np.zeros((0, 3))
    out = []
    for b in balls:
        depth, lateral = b.position_x - player.position_x, b.position_y - player.position_y
        # tics to arrival at the current speed; a fireball not closing in keeps its offset
        tics = depth / -b.velocity_x if b.velocity_x < -1e-6 else 0.0
        out.append((depth, lateral, lateral + b.velocity_y * max(tics, 0.0)))
    return np.array(out)


def make_takecover(
    skill: int = DEFAULT_SKILL,
    frame_cap: int = FRAME_CAP,
    size: int = 64,
    frame_skip: int = 1,
    screen_flashes: bool = False,
    render_hud: bool = False,
    damage_penalty: float = 0.0,
    render_mode: str | None = None,
) -> gym.Env:
    """Create VizDoom TakeCover with observations of uint8 (size, size, 3) frames.

    Args:
        skill: Doom skill 1-5 (default 4: matches the paper's random baseline, see DEFAULT_SKILL).
        frame_cap: Episode truncation in frames (game tics; paper: 2100). With `frame_skip` k an episode is cut
            after ceil(frame_cap / k) steps, so the cap stays 60 game seconds whatever the skip.
        size: Frame size after area resizing.
        frame_skip: Tics per step (paper: 1). With k > 1 the action is held for k tics, the frame is the last
            tic's and the reward is the k tics' sum, so an episode's return stays frames survived (the score).
        screen_flashes: Render the red flash when hit (shipped cfg: off, so frames never show being hit).
        render_hud: Render the HUD (shipped cfg: off).
        damage_penalty: Training reward = 1 per frame - damage_penalty x health lost (see `DamagePenalty`); 0 is
            the game's own reward. The score of a TakeCover agent is frames survived: play it on an env with 0.
        render_mode: Passed to the ViZDoom env ("rgb_array" for videos).
    """
    if not 1 <= int(skill) <= 5:
        raise ValueError(f"skill={skill}: Doom skill must be 1 (easiest) to 5 (hardest).")
    if not isinstance(damage_penalty, (int, float)) or not damage_penalty >= 0:
        raise ValueError(f"damage_penalty={damage_penalty!r} must be a number >= 0 (0: the game's own reward).")
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
    if damage_penalty > 0:
        env = DamagePenalty(env, damage_penalty)
    env = ImageObservation(env, size=size, key="screen")
    return gym.wrappers.TimeLimit(env, max_episode_steps=steps_of_frames(frame_cap, frame_skip))


def steps_of_frames(frames: int, frame_skip: int) -> int:
    """Env steps that cover `frames` game tics when each step is `frame_skip` tics (a partial step counts)."""
    return math.ceil(int(frames) / int(frame_skip))


def frame_skip_of(settings: dict[str, Any]) -> int:
    """Tics per env step of a TakeCover made with these `make_takecover` keyword arguments (an env_config's "real"
    part, or `takecover_view`'s output); `make_takecover`'s default, 1, when they do not name one."""
    return int(settings.get("frame_skip", 1))


def episode_steps(settings: dict[str, Any]) -> int:
    """The step cap of a TakeCover episode made with these `make_takecover` keyword arguments (an env_config's
    "real" part, or `takecover_view`'s output): its frame cap over its frame skip."""
    return steps_of_frames(settings.get("frame_cap", FRAME_CAP), frame_skip_of(settings))


class DamagePenalty(gym.Wrapper):
    """Subtract `penalty` x health lost from each step's reward (TakeCover's HEALTH game variable).

    TakeCover's own reward (+1 per frame alive) says nothing until the episode ends, and a hit changes nothing a
    64x64 frame shows: a world model fitted on it learns deaths at a nearly constant rate, whatever the agent does.
    With the penalty M's reward head learns where hits happen and which moves avoid them, a dense, action-dependent
    signal inside the dream. The real score stays frames survived (the unwrapped game's return); `info["damage"]`
    holds each step's health lost.

    Args:
        env: A ViZDoom gymnasium env whose Dict observation has "gamevariables" with HEALTH first.
        penalty: Reward per health point lost (> 0).
    """

    def __init__(self, env: gym.Env, penalty: float):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict) or "gamevariables" not in space.spaces:
            raise ValueError("DamagePenalty needs a ViZDoom env with HEALTH in its 'gamevariables' observation.")
        self.penalty = float(penalty)
        self._health = 0.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self._health = float(obs["gamevariables"][0])
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        health = float(obs["gamevariables"][0])
        damage = max(0.0, self._health - health)
        self._health = health
        info["damage"] = damage
        return obs, float(reward) - self.penalty * damage, terminated, truncated, info


VIEW_SWITCHES = ("screen_flashes", "render_hud")


def add_view_args(parser: argparse.ArgumentParser) -> None:
    """Add --screen-flashes and --render-hud (TakeCover render switches, both off in the shipped cfg) and
    --frame-skip (tics per env step)."""
    parser.add_argument("--screen-flashes", action="store_true", help="TakeCover: show the red flash when hit")
    parser.add_argument(
        "--render-hud", action="store_true", help="TakeCover: show the status bar (health, face; cfg: hidden)"
    )
    parser.add_argument(
        "--frame-skip",
        type=int,
        default=None,
        help="TakeCover: game tics per env step (default 1, the paper's); a world model is played with the skip "
        "it was fitted on. Step counts (--hold, --action-repeat, horizons) are env steps; scores stay frames",
    )


def takecover_view(args: argparse.Namespace, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """How the world model sees TakeCover: the render switches that are on and the frame skip, set on the command
    line or recorded in a world-model checkpoint's metadata by `rllib-worldmodel fit` (a V fitted on frames with
    the HUD must be played with the HUD; an M fitted on 4-tic steps must be played 4 tics a step). Keyword
    arguments of `make_takecover`; the frame skip appears only when it is not 1.

    Args:
        args: Parsed arguments with the flags of `add_view_args` (missing ones count as off / 1).
        metadata: `read_checkpoint(path)["metadata"]` of the world model, or None.

    Raises:
        ValueError: --frame-skip is below 1, or contradicts the skip the world model was fitted with.
    """
    recorded = (metadata or {}).get("env_settings", {})
    view: dict[str, Any] = {k: True for k in VIEW_SWITCHES if getattr(args, k, False) or recorded.get(k, False)}
    given, fitted = getattr(args, "frame_skip", None), recorded.get("frame_skip")
    if given is not None and int(given) < 1:
        raise ValueError(f"--frame-skip {given}: game tics per env step, an integer >= 1 (1: every frame, paper).")
    if given is not None and fitted is not None and int(given) != int(fitted):
        raise ValueError(
            f"--frame-skip {given}, but the world model was fitted on {fitted} tics per step: drop --frame-skip "
            "(it is read from the checkpoint) or use a world model fitted with that skip."
        )
    skip = int(given if given is not None else fitted if fitted is not None else 1)
    if skip != 1:
        view["frame_skip"] = skip
    return view
