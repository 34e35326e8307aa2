"""C: the controller that maps M's view of the world, [z, h] (or [z, h, c], or V's z alone), to an action.

Paper §A.3: a single linear layer (CarRacing: 867 parameters). `hidden=0` gives exactly that; `hidden>0` adds one
tanh hidden layer. For Discrete actions C outputs logits (the action is their argmax when acting
deterministically); for Box actions it outputs tanh-squashed values rescaled to the action bounds.

Population evaluation (CMA-ES) needs many controllers at once: `batched_forward` applies P flat parameter vectors
to P groups of observations with one einsum, so a whole population steps inside one batched dream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from rllib_worldmodel.models.world_model import WorldModelConfig


class Controller(nn.Module):
    """Linear (or one-hidden-layer) controller.

    Args:
        input_size: Size of the controller input ([z, h] or [z, h, c]).
        action_space: Discrete or 1-D Box.
        hidden: Hidden units; 0 means the paper's single linear layer.
    """

    def __init__(self, input_size: int, action_space: gym.Space, hidden: int = 0):
        super().__init__()
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete, out = True, int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete, out = False, int(action_space.shape[0])
            self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))
        else:
            raise ValueError(f"Controller supports Discrete and 1-D Box actions, got {action_space}")
        if hidden < 0:
            raise ValueError(f"hidden={hidden} must be >= 0 (0: the paper's linear controller)")
        self.input_size, self.output_size, self.hidden = input_size, out, hidden
        if hidden:
            self.net = nn.Sequential(nn.Linear(input_size, hidden), nn.Tanh(), nn.Linear(hidden, out))
        else:
            self.net = nn.Linear(input_size, out)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x_B_D: torch.Tensor) -> torch.Tensor:
        """Raw outputs: logits (B, n) for Discrete, pre-tanh values (B, A) for Box."""
        return self.net(x_B_D)

    def act(self, x_B_D: torch.Tensor) -> torch.Tensor:
        """Deterministic actions: (B,) ints for Discrete, (B, A) floats within the bounds for Box."""
        return self.to_action(self.forward(x_B_D))

    def to_action(self, out: torch.Tensor) -> torch.Tensor:
        """Map raw outputs (..., n or A) to env actions."""
        if self.discrete:
            return out.argmax(-1)
        return self.low + (torch.tanh(out) + 1.0) * 0.5 * (self.high - self.low)

    def get_flat(self) -> np.ndarray:
        """All parameters as one float64 vector (CMA-ES's search space)."""
        return torch.cat([p.detach().flatten() for p in self.parameters()]).cpu().double().numpy()

    def set_flat(self, flat: np.ndarray) -> None:
        """Load parameters from a flat vector made by `get_flat`."""
        flat = torch.as_tensor(np.asarray(flat), dtype=torch.float32)
        if flat.numel() != self.num_params:
            raise ValueError(f"expected {self.num_params} parameters, got {flat.numel()}")
        i = 0
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(flat[i : i + p.numel()].view_as(p))
                i += p.numel()

    def batched_forward(self, flat_P_N: torch.Tensor, x_P_R_D: torch.Tensor) -> torch.Tensor:
        """Apply P controllers (flat parameter rows, `get_flat` layout) to P groups of R inputs: (P, R, out)."""
        p = flat_P_N.shape[0]
        i, h = 0, x_P_R_D
        layers = [m for m in self.net.modules() if isinstance(m, nn.Linear)] if self.hidden else [self.net]
        for k, layer in enumerate(layers):
            o, d = layer.weight.shape
            w = flat_P_N[:, i : i + o * d].view(p, o, d)
            b = flat_P_N[:, i + o * d : i + o * d + o].view(p, 1, o)
            i += o * d + o
            h = torch.einsum("prd,pod->pro", h, w) + b
            if k < len(layers) - 1:
                h = torch.tanh(h)
        return h


# ControllerInput's fields and the public options that name them (DreamSettings, WorldModelsConfig.dream, the CLI)
_FLAGS = {"hidden": "include_hidden", "cell": "include_cell", "prev_action": "include_prev_action"}


@dataclass(frozen=True)
class ControllerInput:
    """What C reads, in the one layout the dream's latent observations, the real-env agent and the benchmarks share:
    [z(, h)(, c)(, the previous action as M encodes it)], batch first.

    Args:
        hidden: M's hidden state h (the paper). False: C reads what V sees now and nothing of M's memory, the
            paper's "V only" controller (unless `cell` adds c back).
        cell: M's LSTM cell state c (the paper's Doom controller input).
        prev_action: The action taken last step, encoded as M reads it (one-hot for discrete actions).
    """

    hidden: bool = True
    cell: bool = False
    prev_action: bool = False

    @classmethod
    def from_flags(cls, source: Any) -> ControllerInput:
        """The spec named by `include_hidden` / `include_cell` / `include_prev_action` on an object (DreamSettings,
        WorldModelsConfig, parsed CLI arguments) or in a mapping (an RLModule's model_config); absent ones take
        their defaults."""
        get = source.get if isinstance(source, Mapping) else lambda flag, default: getattr(source, flag, default)
        defaults = cls()
        return cls(**{f: bool(get(flag, getattr(defaults, f))) for f, flag in _FLAGS.items()})

    def flags(self) -> dict[str, bool]:
        """The `include_*` keyword arguments that name this spec (`DreamSettings`, `WorldModelsConfig.dream`)."""
        return {flag: getattr(self, f) for f, flag in _FLAGS.items()}

    def size(self, wm_config: WorldModelConfig) -> int:
        """Length of C's input for a world model of this architecture."""
        size = wm_config.z_size + wm_config.rnn_size * (int(self.hidden) + int(self.cell))
        return size + (wm_config.action_dim if self.prev_action else 0)

    def build(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor, prev_action: torch.Tensor) -> torch.Tensor:
        """C's input from V's latent `z`, M's state (`h`, `c`) and the encoded previous action, all batch first.
        Always a new tensor (a copy even for z alone), so an observation never aliases the simulator's state."""
        parts = [z] + ([h] if self.hidden else []) + ([c] if self.cell else [])
        if self.prev_action:
            parts.append(prev_action)
        return torch.cat(parts, dim=-1)

    def describe(self) -> str:
        """What C reads, for reports: e.g. "z, h, previous action"."""
        return ", ".join(["z"] + ["h"] * self.hidden + ["c"] * self.cell + ["previous action"] * self.prev_action)


def held_actions(
    new: torch.Tensor, previous: torch.Tensor | None, steps_taken: torch.Tensor, action_repeat: int
) -> torch.Tensor:
    """The controller's action repeat: `new` where an episode is at a decision step (steps taken so far divisible
    by `action_repeat`), `previous` elsewhere. Batch first; `previous` None at the first step."""
    if action_repeat == 1 or previous is None:
        return new
    due = (steps_taken % action_repeat == 0).view(-1, *([1] * (new.dim() - 1)))
    return torch.where(due, new, previous)
