"""Looking at the world model: real frames, V's reconstructions and M's dreams side by side, written as GIFs.

GIFs are written with Pillow (already a dependency), so no video codec or moviepy is needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from rllib_worldmodel.data import Episode
from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.models.world_model import WorldModel


def write_gif(frames: np.ndarray | Sequence[np.ndarray], path: str | os.PathLike, fps: int = 20) -> Path:
    """Write uint8 RGB frames (T, H, W, 3) as a looping GIF.

    Args:
        frames: The frames.
        path: Output file; parent folders are created.
        fps: Frames per second.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    if not images:
        raise ValueError("write_gif needs at least one frame")
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def labelled_grid(columns: dict[str, np.ndarray], scale: int = 2) -> np.ndarray:
    """Stack equally long frame sequences side by side with a caption above each: (T, H', W', 3) uint8.

    Args:
        columns: Caption -> frames (T, H, W, 3), all with the same T, H and W.
        scale: Integer upscaling so 64x64 frames are visible.
    """
    seqs = list(columns.values())
    t, h, w, _ = seqs[0].shape
    pad, header = 4, 14
    width = len(seqs) * (w * scale + pad) + pad
    out = np.zeros((t, header + h * scale + pad, width, 3), dtype=np.uint8)
    canvas = Image.new("RGB", (width, header), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (caption, seq) in enumerate(columns.items()):
        x = pad + i * (w * scale + pad)
        draw.text((x, 1), caption, fill=(255, 255, 255))
        big = seq.repeat(scale, axis=1).repeat(scale, axis=2)
        out[:, header : header + h * scale, x : x + w * scale] = big
    out[:, :header] = np.asarray(canvas)
    return out


@torch.no_grad()
def dream_comparison(
    world_model: WorldModel, episode: Episode, temperature: float = 1.0, max_steps: int = 300, seed: int = 0
) -> np.ndarray:
    """Real frames | V's reconstruction | M's open-loop dream driven by the episode's real actions.

    The dream starts from V's encoding of the real first frame and then runs on M's own samples only, so the third
    column shows how long the model's imagination stays faithful to what really happened.

    Returns:
        Frames (T, H, W, 3) of the labelled side-by-side comparison.
    """
    if world_model.config.obs_kind != "image":
        raise ValueError("dream_comparison needs an image world model")
    device = world_model.device
    t = min(len(episode), max_steps)
    vae = world_model.vae
    obs = torch.from_numpy(episode.obs[: t + 1]).to(device)
    mu, _ = vae.encode(obs)
    recon = vae.to_observation(vae.decode(mu)).cpu().numpy()
    sim = DreamSimulator(
        world_model, DreamSettings(temperature=temperature, max_episode_steps=t + 1, device=str(device))
    )
    sim.reset(1, seed=seed, initial_z=mu[:1])
    dream = [sim.render()[0]]
    for a in episode.actions[:t]:
        sim.step(torch.as_tensor(np.asarray(a)[None]))
        dream.append(sim.render()[0])
    return labelled_grid(
        {"real": episode.obs[: t + 1], "V(real)": recon, f"dream tau={temperature:g}": np.stack(dream)}
    )


@torch.no_grad()
def free_dreams(world_model: WorldModel, num: int = 4, steps: int = 200, temperature: float = 1.0, seed: int = 0):
    """`num` closed-loop dreams from stored real starts under random-hold actions: frames (T, H, W, 3)."""
    from rllib_worldmodel.data import RandomHoldPolicy

    sim = DreamSimulator(
        world_model, DreamSettings(temperature=temperature, max_episode_steps=steps + 1, device=str(world_model.device))
    )
    sim.reset(num, seed=seed)
    policies = [RandomHoldPolicy(sim.action_space, seed=seed + i) for i in range(num)]
    frames, alive = [sim.render()], np.ones(num, bool)
    for _ in range(steps):
        _, _, term, _ = sim.step(torch.as_tensor(np.stack([p() for p in policies])))
        frame = sim.render()
        alive &= ~term.cpu().numpy()
        frame[~alive] //= 3  # dim dreams that the model ended (predicted death)
        frames.append(frame)
    seq = np.stack(frames)
    return labelled_grid({f"dream {i}": seq[:, i] for i in range(num)})
