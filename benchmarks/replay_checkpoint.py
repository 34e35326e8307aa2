"""What the replay costs a checkpoint: bytes and seconds, stored as RLlib gives it vs lz4-packed, side by side.

    python benchmarks/replay_checkpoint.py --episodes 200

Collects real TakeCover episodes with the main job's collection policy (random actions held 1-25 steps, 4 tics a
step, the shipped screen settings) into RLlib's EpisodeReplayBuffer as the EnvRunners hand them over (numpy'd
`SingleAgentEpisode`s), then writes the buffer's state to disk the ways a `WorldModels` checkpoint could hold it
(`EpisodeReplayBuffer.get_state()` as it is, and `data.pack_replay_state` at two lz4 levels) and reads it back into a
fresh buffer in a fresh process (whose peak memory is the restore's), checking every frame. The replay is nearly all
of a checkpoint: 12 KiB of frame per step. Writes JSON and prints the table last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import pickle
import tempfile
import time
from pathlib import Path

from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

from rllib_worldmodel.data import pack_replay_state, RandomHoldPolicy, rollout, unpack_replay_state
from rllib_worldmodel.envs import make_takecover


def collect(episodes: int, seed: int) -> EpisodeReplayBuffer:
    """`episodes` random-hold TakeCover episodes in an EpisodeReplayBuffer."""
    env = make_takecover(frame_skip=4)
    policy = RandomHoldPolicy(env.action_space, hold=(1, 25), seed=seed)
    replay = EpisodeReplayBuffer(capacity=10**7, batch_size_B=1, batch_length_T=1)
    for i in range(episodes):
        policy.reset()
        ep = rollout(env, policy, seed=seed + i)
        sa = SingleAgentEpisode(
            observations=list(ep.obs),
            actions=list(ep.actions),
            rewards=list(ep.rewards),
            terminated=ep.terminated,
            truncated=ep.truncated,
            len_lookback_buffer=0,
        )
        replay.add([sa.to_numpy()])
    env.close()
    return replay


def frames_digest(replay: EpisodeReplayBuffer) -> str:
    """A hash of every frame in the replay, in order."""
    h = hashlib.sha1()
    for e in replay.episodes:
        h.update(e.get_observations().tobytes())
    return h.hexdigest()


def peak_memory_bytes() -> int:
    """This process's peak resident memory: Linux's VmHWM (`ru_maxrss` would not do: it carries the parent's peak
    across the fork and exec that start a fresh process)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark measures memory on Linux only")


def read_back(path: str) -> dict:
    """In a fresh process: load the file into a fresh buffer; the seconds, the memory it took and the frames' hash."""
    base = peak_memory_bytes()  # after the imports
    t = time.perf_counter()
    with open(path, "rb") as f:
        loaded = pickle.load(f)
    fresh = EpisodeReplayBuffer(capacity=10**7, batch_size_B=1, batch_length_T=1)
    fresh.set_state(unpack_replay_state(loaded))
    del loaded  # what a restore keeps is the buffer
    read_s = time.perf_counter() - t
    return {"read_s": read_s, "read_peak_bytes": peak_memory_bytes() - base, "digest": frames_digest(fresh)}


def round_trip(replay: EpisodeReplayBuffer, digest: str, level: int | None, folder: Path) -> dict:
    """Write the replay's state to a file (packed at lz4 `level`, or as it is: None), timing it to the disk, and read
    it back in a fresh process (a restore), checking every frame."""
    path = folder / "replay.pkl"
    t = time.perf_counter()
    state = replay.get_state()
    with open(path, "wb") as f:
        packed = state if level is None else pack_replay_state(state, compression_level=level)
        pickle.dump(packed, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())  # a checkpoint's write is done when it is on the disk
    write_s = time.perf_counter() - t
    del state, packed
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        read = pool.apply(read_back, (str(path),))
    if read.pop("digest") != digest:
        raise RuntimeError(f"the replay read back from {path} holds other frames than were written")
    size = path.stat().st_size
    path.unlink()
    steps = replay.get_num_timesteps()
    return {"bytes": size, "bytes_per_step": size / steps, "write_s": write_s, **read}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=200, help="random-hold TakeCover episodes in the replay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="where to write the two files (default: a temporary folder)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "replay_checkpoint.json"))
    args = parser.parse_args()
    t = time.perf_counter()
    replay = collect(args.episodes, args.seed)
    collect_s = time.perf_counter() - t
    steps = replay.get_num_timesteps()
    frames_bytes = sum(e.get_observations().nbytes for e in replay.episodes)
    digest = frames_digest(replay)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        rows = {
            name: round_trip(replay, digest, level, Path(folder))
            for name, level in (("as RLlib gives it", None), ("lz4, level 0 (the default)", 0), ("lz4, level 3", 3))
        }
    raw = rows["as RLlib gives it"]["bytes"]
    for r in rows.values():
        r["ratio"] = raw / r["bytes"]
        r["read_peak_over_frames"] = r["read_peak_bytes"] / frames_bytes
    out = {
        "episodes": args.episodes,
        "steps": steps,
        "frames_bytes": frames_bytes,
        "collect_s": collect_s,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    gb = frames_bytes / 1e9
    print(f"\nreplay of {args.episodes} random-hold TakeCover episodes, {steps} steps, {gb:.2f} GB of frames")
    print(f"({args.out}); a restore's memory is its fresh process's peak over its imports, per byte of frames")
    print("| stored as | bytes per step | smaller by | write s (to disk) | restore s | restore memory / frames |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['bytes_per_step']:.0f} | {r['ratio']:.2f}x | {r['write_s']:.1f} | {r['read_s']:.1f} | "
            f"{r['read_peak_over_frames']:.2f}x |"
        )


if __name__ == "__main__":
    main()
