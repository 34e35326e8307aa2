"""Recorded real episodes: the container, the paper's random data collection, and on-disk storage.

An `Episode` holds T transitions: obs (T+1, ...) including the final observation, actions (T, ...), rewards (T,),
and whether it ended by termination (death) or truncation (the frame cap). Frames stay uint8, so 64x64x3 costs
12 KiB per step. The algorithm's replay (RLlib's EpisodeReplayBuffer) goes into checkpoints compressed episode by
episode (`pack_replay_state`).
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import lz4.frame
import numpy as np


@dataclass
class Episode:
    """One recorded episode.

    Args:
        obs: Observations o_0..o_T, (T+1, *obs_shape).
        actions: Actions a_0..a_{T-1}, (T,) for discrete or (T, A) for continuous.
        rewards: Rewards r_0..r_{T-1}, (T,).
        terminated: The episode ended by termination (its last transition is a "done" for M).
        truncated: The episode was cut by a time limit.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool

    def __post_init__(self) -> None:
        t = len(self.actions)
        if len(self.obs) != t + 1 or len(self.rewards) != t:
            raise ValueError(
                f"Episode needs T+1 observations and T actions/rewards; got {len(self.obs)} obs, "
                f"{t} actions, {len(self.rewards)} rewards."
            )

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards))


class RandomHoldPolicy:
    """The paper's data-collection policy: a uniformly random action held for a random 1-10 steps.

    Args:
        action_space: The env's action space.
        hold: Inclusive (min, max) number of steps to hold each action.
        seed: RNG seed.
    """

    def __init__(self, action_space: gym.Space, hold: tuple[int, int] = (1, 10), seed: int | None = None):
        if not 1 <= hold[0] <= hold[1]:
            raise ValueError(f"hold={hold}: need 1 <= min <= max.")
        self.action_space = action_space
        self.hold = hold
        self.rng = np.random.default_rng(seed)
        self.action_space.seed(int(self.rng.integers(2**31)))
        self._action = None
        self._left = 0

    def reset(self) -> None:
        self._left = 0

    def __call__(self, obs: np.ndarray | None = None) -> np.ndarray:
        if self._left <= 0:
            self._action = self.action_space.sample()
            self._left = int(self.rng.integers(self.hold[0], self.hold[1] + 1))
        self._left -= 1
        return self._action


def rollout(env: gym.Env, policy: Callable[[np.ndarray], np.ndarray], seed: int | None = None) -> Episode:
    """Run one episode of `policy` in `env` and record it."""
    obs, _ = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        policy.reset()
    all_obs, actions, rewards = [obs], [], []
    while True:
        action = policy(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        all_obs.append(obs)
        actions.append(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    return Episode(
        np.stack(all_obs),
        np.asarray(actions),
        np.asarray(rewards, dtype=np.float32),
        bool(terminated),
        bool(truncated),
    )


def collect_random_episodes(
    env: gym.Env,
    num_episodes: int,
    *,
    hold: tuple[int, int] = (1, 10),
    min_length: int = 0,
    seed: int = 0,
    on_episode: Callable[[int, Episode], None] | None = None,
) -> list[Episode]:
    """Collect episodes with `RandomHoldPolicy`, as the paper does for V and M's training data.

    Args:
        env: A real env (already adapted, e.g. by `make_takecover`).
        num_episodes: Episodes to keep.
        hold: Inclusive range of steps each random action is held.
        min_length: Episodes shorter than this are dropped and re-drawn (paper's Doom code: 100).
        seed: Seeds the policy and each episode's reset (seed + attempt), so collection is reproducible.
        on_episode: Called with (index, episode) after each kept episode, for progress reporting.
    """
    policy = RandomHoldPolicy(env.action_space, hold=hold, seed=seed)
    episodes: list[Episode] = []
    attempt = 0
    while len(episodes) < num_episodes:
        ep = rollout(env, policy, seed=seed + attempt)
        attempt += 1
        if len(ep) < min_length:
            if attempt > 20 * num_episodes + 100:
                raise RuntimeError(f"no episode reached min_length={min_length} after {attempt} tries; lower it.")
            continue
        episodes.append(ep)
        if on_episode is not None:
            on_episode(len(episodes) - 1, ep)
    return episodes


def write_folder_atomically(folder: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write a folder with `write(path)` so that a crash at any moment leaves a complete one behind.

    Savers such as RLlib's write file by file into their target folder, so a crash mid-save (or a full disk) would
    leave a folder that restores nothing, and the previous version would already be overwritten. Here the new folder
    is written beside it (`<folder>.partial`), the old one is moved aside (`<folder>.previous`), the new one takes its
    name and only then is the old one deleted. Renames within one folder are atomic, so `folder` or
    `<folder>.previous` always holds a complete version.

    Args:
        folder: Where the folder lives.
        write: Writes the whole folder at the path it is given (which does not exist yet).

    Returns:
        The folder.
    """
    folder = Path(folder).resolve()
    partial = folder.with_name(folder.name + ".partial")
    previous = folder.with_name(folder.name + ".previous")
    shutil.rmtree(partial, ignore_errors=True)  # a leftover of an earlier interrupted save
    write(partial)
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        os.replace(folder, previous)
    os.replace(partial, folder)
    shutil.rmtree(previous, ignore_errors=True)
    return folder


def save_episodes(episodes: Iterable[Episode], directory: str | os.PathLike, start_index: int = 0) -> list[Path]:
    """Write each episode to `directory/episode_<i>.npz` (compressed; written atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ep in enumerate(episodes, start=start_index):
        path = directory / f"episode_{i:06d}.npz"
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(
                f,
                obs=ep.obs,
                actions=ep.actions,
                rewards=ep.rewards,
                terminated=ep.terminated,
                truncated=ep.truncated,
            )
        os.replace(tmp, path)
        paths.append(path)
    return paths


def load_episodes(directory: str | os.PathLike, start: int = 0, stop: int | None = None) -> list[Episode]:
    """Read the `episode_*.npz` files written by `save_episodes`, in index order; `start`/`stop` slice that order
    (e.g. episodes a world model was not fitted on)."""
    paths = sorted(Path(directory).glob("episode_*.npz"))
    if not paths:
        raise FileNotFoundError(f"no episode_*.npz files in {directory}")
    paths = paths[start:stop]
    if not paths:
        raise ValueError(f"no episodes in {directory} between positions start={start} and stop={stop}")
    out = []
    for p in paths:
        with np.load(p) as d:
            out.append(Episode(d["obs"], d["actions"], d["rewards"], bool(d["terminated"]), bool(d["truncated"])))
    return out


# The key a packed replay state holds its episodes under (absent in checkpoints written before packing).
_PACKED_EPISODES = "episodes_lz4"


def pack_replay_state(state: dict, compression_level: int = 0) -> dict:
    """An `EpisodeReplayBuffer.get_state()` with each episode's state pickled and lz4-compressed, for checkpoints.

    The replay is nearly all of a checkpoint (TakeCover: 12 KiB of frame per step, 4.0 GB at 266k steps). Measured
    on 278,590 real TakeCover steps (`benchmarks/replay_checkpoint.py`, RESULTS.md "Smaller checkpoints"), lz4's
    default level stores them 2.5x smaller and writes them faster than the state as it is (10 s against 17 s, to
    the disk), restores them as fast, and a restore peaks at 1.4x the frames' bytes (1.0x unpacked: the packed
    bytes are held while the episodes are rebuilt). Episode by episode, so a save never holds a second copy of the
    whole replay. lz4 is the library RLlib itself compresses samples with (`ray.rllib.utils.compression`).

    Args:
        state: The buffer's state, as `EpisodeReplayBuffer.get_state()` returns it. It is not changed.
        compression_level: lz4's level: 0 (its default) or 3-16 (high compression; level 3 measured 3.4x smaller
            and 4x slower to write than level 0, as fast to read).

    Returns:
        The same state with `episodes` replaced by a list of compressed bytes; `unpack_replay_state` inverts it.
    """
    packed = {k: v for k, v in state.items() if k != "episodes"}
    packed[_PACKED_EPISODES] = [
        lz4.frame.compress(pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL), compression_level=compression_level)
        for e in state["episodes"]
    ]
    return packed


def unpack_replay_state(state: dict) -> dict:
    """The `EpisodeReplayBuffer.set_state()` input a `pack_replay_state` output stands for; a state that was never
    packed (a checkpoint from before packing) is returned as it is."""
    if _PACKED_EPISODES not in state:
        return state
    out = {k: v for k, v in state.items() if k != _PACKED_EPISODES}
    out["episodes"] = [pickle.loads(lz4.frame.decompress(b)) for b in state[_PACKED_EPISODES]]
    return out


def recency_weights(lengths: np.ndarray, half_life: float | None) -> np.ndarray:
    """Each stored episode's weight (oldest first) when a step's weight halves with every `half_life` real steps
    stored after its episode: what `world_model(mdn_recency_half_life=...)` draws M's windows by. A window's episode
    is drawn with probability proportional to its length times this weight, a death window's (one per death) to
    the weight alone.

    Args:
        lengths: Steps of each stored episode, oldest first (the replay's order).
        half_life: Real steps over which the weight halves; None weighs every episode 1 (the uniform draw).

    Returns:
        Weights in (0, 1], the newest episode's 1.
    """
    lengths = np.asarray(lengths, dtype=float)
    if half_life is None:
        return np.ones_like(lengths)
    return np.exp2(-steps_stored_after(lengths) / float(half_life))


def steps_stored_after(lengths: np.ndarray) -> np.ndarray:
    """Real steps stored after each episode (oldest first): its age in the replay, 0 for the newest.

    Args:
        lengths: Steps of each stored episode, oldest first.
    """
    lengths = np.asarray(lengths, dtype=float)
    return lengths[::-1].cumsum()[::-1] - lengths


def add_held_out_args(parser: argparse.ArgumentParser, episodes_help: str) -> None:
    """`--world-model` (one or more checkpoints), `--episodes` (a folder of `save_episodes`) and `--start`/`--stop`
    (the slice of it to use: episodes the models were not fitted on), shared by the fidelity benchmarks."""
    parser.add_argument("--world-model", nargs="+", required=True)
    parser.add_argument("--episodes", required=True, help=episodes_help)
    parser.add_argument("--start", type=int, default=0, help="first episode (position in the folder)")
    parser.add_argument("--stop", type=int, help="stop before this episode; use episodes the models were not fit on")
