"""M: the MDN-RNN that predicts the next latent, the reward and the episode end.

p(z_{t+1}, r_t, done_{t+1} | z_t, a_t, h_t): an LSTM over [z_t, a_t] whose output h_{t+1} feeds
- a mixture density head: for every latent dimension an independent K-component 1-D Gaussian mixture
  (paper §A.2: 5 mixtures, diagonal, no correlation terms),
- a reward head (regression) and a done head (logit).

`forward` runs whole sequences through `nn.LSTM` (training); `step` advances one time step with the very same
weight tensors (dreaming), so there is one set of parameters and the two paths agree exactly.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class MDNOutput(NamedTuple):
    """M's predictions for a batch.

    Every field leads with the ensemble-member axis E (E = 1 without an ensemble): (E, ..., Z, K) for the mixture
    and (E, ...) for reward and done.
    """

    logpi: torch.Tensor
    mu: torch.Tensor
    logsigma: torch.Tensor
    reward: torch.Tensor
    done_logit: torch.Tensor


class MDNRNN(nn.Module):
    """LSTM with a per-dimension Gaussian-mixture head, a reward head and a done head.

    Args:
        z_size: Latent size of V.
        action_dim: Size of the encoded action (number of actions for one-hot discrete actions).
        hidden_size: LSTM units (paper: 256 CarRacing, 512 Doom).
        num_mixtures: Gaussian components per latent dimension (paper: 5).
        logsigma_min: Floor on each component's log standard deviation; keeps the NLL finite when a component
            collapses onto a point (a known source of diverging MDN losses).
        logsigma_max: Ceiling on the log standard deviation.
        num_heads: Ensemble size E: E independent output heads (mixture, reward, done) on the shared LSTM, the
            Plan2Explore layout (one-step predictors on shared features). Their disagreement measures where M
            has not seen enough data. E = 1 is the paper's single M.
        done_bias_init: Initial bias of the done logit(s), e.g. log(1/300) for a death every ~300 steps; None keeps
            PyTorch's default. A low prior keeps a young model from ending dreams at random (measured on CarRacing:
            with no deaths in the data a logit near 0 crosses the threshold by chance).
    """

    def __init__(
        self,
        z_size: int,
        action_dim: int,
        hidden_size: int = 256,
        num_mixtures: int = 5,
        logsigma_min: float = -6.0,
        logsigma_max: float = 3.0,
        num_heads: int = 1,
        done_bias_init: float | None = None,
    ):
        super().__init__()
        if logsigma_min >= logsigma_max:
            raise ValueError(f"logsigma_min ({logsigma_min}) must be below logsigma_max ({logsigma_max})")
        if int(num_heads) < 1:
            raise ValueError(f"num_heads={num_heads} must be >= 1 (1: the paper's single M; >= 2: an ensemble).")
        self.z_size = z_size
        self.action_dim = action_dim
        self.hidden_size = hidden_size
        self.num_mixtures = num_mixtures
        self.logsigma_min = logsigma_min
        self.logsigma_max = logsigma_max
        self.num_heads = int(num_heads)
        self.lstm = nn.LSTM(z_size + action_dim, hidden_size, batch_first=True)
        # All members' heads in one Linear each (one matmul per step); with E = 1 the layout is the paper's.
        self.mdn_head = nn.Linear(hidden_size, self.num_heads * 3 * z_size * num_mixtures)
        self.reward_head = nn.Linear(hidden_size, self.num_heads)
        self.done_head = nn.Linear(hidden_size, self.num_heads)
        if done_bias_init is not None:
            with torch.no_grad():
                self.done_head.bias.fill_(float(done_bias_init))

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
        """Zero LSTM state (h, c), each (B, H): the state at every episode start."""
        device = device if device is not None else self.mdn_head.weight.device
        zeros = torch.zeros(batch_size, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def heads(self, h_N_H: torch.Tensor) -> MDNOutput:
        """Apply every member's output heads to LSTM outputs of any leading shape (..., H) -> (E, ...) fields."""
        lead, e = h_N_H.shape[:-1], self.num_heads
        out = self.mdn_head(h_N_H).view(*lead, e, self.z_size, 3, self.num_mixtures).movedim(-4, 0)
        return MDNOutput(
            *self._mixture(out), self.reward_head(h_N_H).movedim(-1, 0), self.done_head(h_N_H).movedim(-1, 0)
        )

    def _mixture(self, out_Z_3_K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logpi, mu, logsigma) from raw mixture-head outputs shaped (..., Z, 3, K)."""
        logsigma = out_Z_3_K[..., 2, :].clamp(self.logsigma_min, self.logsigma_max)
        return F.log_softmax(out_Z_3_K[..., 0, :], dim=-1), out_Z_3_K[..., 1, :], logsigma

    def member_mixture(
        self, h_B_H: torch.Tensor, member_B: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixture of one ensemble member per row, (logpi, mu, logsigma) each (B, Z, K): what `heads` gives at
        `[member, rows]`, computing only those members' outputs (1/E of the mixture head's work, the bulk of a
        dream step's when E > 1).

        Args:
            h_B_H: LSTM outputs.
            member_B: Each row's ensemble member, ints in [0, E).
        """
        e, width = self.num_heads, 3 * self.z_size * self.num_mixtures
        weight, bias = self.mdn_head.weight.view(e, width, -1), self.mdn_head.bias.view(e, width)
        if e == 1:
            out = F.linear(h_B_H, weight[0], bias[0])
        else:
            out = h_B_H.new_empty(h_B_H.shape[0], width)
            for k in range(e):  # rows grouped by member: one matmul each
                rows = torch.nonzero(member_B == k).squeeze(1)
                if rows.numel():
                    out[rows] = F.linear(h_B_H[rows], weight[k], bias[k]).to(out.dtype)  # bf16 under autocast
        return self._mixture(out.view(-1, self.z_size, 3, self.num_mixtures))

    def sample_next(
        self, h_B_H: torch.Tensor, temperature: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Next latents (B, Z) from LSTM outputs: each row from a uniformly drawn ensemble member's mixture
        (`sample_mixture`), the rule dreams use, computing only the drawn members' mixtures (`member_mixture`: the
        same draws as from all members' `heads`, 1/E of the mixture head's work).

        Args:
            h_B_H: LSTM outputs.
            temperature: The dream's tau.
            generator: Torch RNG on h's device.
        """
        member = torch.randint(0, self.num_heads, (h_B_H.shape[0],), device=h_B_H.device, generator=generator)
        return sample_mixture(*self.member_mixture(h_B_H, member), temperature, generator)

    def forward(
        self,
        z_B_T_Z: torch.Tensor,
        a_B_T_A: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        closed_loop: float = 0.0,
        generator: torch.Generator | None = None,
        horizon: int = 1,
    ) -> tuple[MDNOutput, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run whole sequences.

        Args:
            z_B_T_Z: Latents z_0..z_{T-1}.
            a_B_T_A: Encoded actions a_0..a_{T-1}.
            state: (h, c), each (B, H); zeros (an episode start) when None.
            closed_loop: Scheduled sampling (`forward_closed_loop`); 0 (teacher forcing, the paper) runs the fused
                LSTM kernel.
            generator: Torch RNG for the closed-loop samples.
            horizon: Free-running segment length of the closed loop (`forward_closed_loop`).

        Returns:
            (predictions for steps 1..T, LSTM outputs h_B_T_H, final state (h, c)).
        """
        if closed_loop != 0:  # forward_closed_loop checks the value
            return self.forward_closed_loop(z_B_T_Z, a_B_T_A, state, closed_loop, generator, horizon)
        h_B_T_H, final = self.hidden(z_B_T_Z, a_B_T_A, state)
        return self.heads(h_B_T_H), h_B_T_H, final

    def forward_valid(
        self,
        z_B_T_Z: torch.Tensor,
        a_B_T_A: torch.Tensor,
        valid_B_T: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        closed_loop: float = 0.0,
        generator: torch.Generator | None = None,
        horizon: int = 1,
    ) -> tuple[MDNOutput, tuple[torch.Tensor, torch.Tensor]]:
        """`forward` for training on padded batches: with teacher forcing, the output heads only at the valid steps
        and the LSTM only as far as each group of rows needs (`hidden_by_length`).

        Training windows are padded to the batch's longest, and on short-episode data most of a batch is padding
        (TakeCover's random-hold episodes at 4 tics a step: a third of a window batch is valid). The heads' matmul
        (E members x 3 x Z x K outputs a step) and the mixture NLL after it were half of an update's work and the
        LSTM most of the rest, so computing them only where the loss counts cuts an update's time by half or
        more (`benchmarks/mdn_update.py`), and the loss is the same: padded steps have weight 0.

        Args:
            z_B_T_Z: Latents z_0..z_{T-1}.
            a_B_T_A: Encoded actions a_0..a_{T-1}.
            valid_B_T: Bool, the steps whose predictions are wanted (the loss mask).
            state: (h, c), each (B, H); zeros when None.
            closed_loop: Scheduled sampling, as in `forward`.
            generator: Torch RNG for the closed-loop samples.
            horizon: Free-running segment length of the closed loop.

        Returns:
            (predictions at the N valid (b, t) in row-major order, i.e. `x_B_T[valid_B_T]`'s order, fields
            leading with (E, N); the final state (h, c), exact for the rows valid at the last step, which are the
            ones a next chunk continues).
        """
        if closed_loop != 0:  # steps one by one anyway (T times slower), so the heads' share is small there
            pred, _, final = self.forward_closed_loop(z_B_T_Z, a_B_T_A, state, closed_loop, generator, horizon)
            return MDNOutput(*(x[:, valid_B_T] for x in pred)), final
        h_B_T_H, final = self.hidden_by_length(z_B_T_Z, a_B_T_A, valid_B_T, state)
        return self.heads(h_B_T_H[valid_B_T]), final

    def hidden_by_length(
        self,
        z_B_T_Z: torch.Tensor,
        a_B_T_A: torch.Tensor,
        valid_B_T: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        groups: int = 4,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`hidden` for rows of different lengths: rows sorted by their last valid step run in `groups` fused LSTM
        calls, each only as long as its longest row. Causal, so every valid step's output is `hidden`'s.

        The fused kernel has no cheap way to skip padding (packed sequences ran slower on CPU), and a window batch
        is mostly padding; four groups of similar lengths halve the LSTM's work on the main job's batches.

        Args:
            z_B_T_Z: Latents z_0..z_{T-1}.
            a_B_T_A: Encoded actions a_0..a_{T-1}.
            valid_B_T: Bool, the steps whose outputs are wanted.
            state: (h, c), each (B, H); zeros when None.
            groups: Fused calls at most.

        Returns:
            (h_B_T_H, zero after each row's group's length; the final state (h, c) after each row's group's length,
            which for the rows valid at the last step is the state after all T steps).
        """
        self._check(z_B_T_Z, a_B_T_A, ndim=3)
        b, t_len = valid_B_T.shape
        h0, c0 = state if state is not None else self.initial_state(b, z_B_T_Z.device)
        # each row's length: its last valid step + 1 (0 without any)
        last = t_len - valid_B_T.flip(1).to(torch.int8).argmax(1)
        lengths = torch.where(valid_B_T.any(1), last, torch.zeros_like(last))
        h_B_T_H = z_B_T_Z.new_zeros(b, t_len, self.lstm.hidden_size)
        hn, cn = h0.clone(), c0.clone()
        for rows in torch.argsort(lengths).tensor_split(min(groups, b)):  # ascending: a group's last row is longest
            n = int(lengths[rows[-1]])
            if n == 0:
                continue
            h_rows, (hn_rows, cn_rows) = self.hidden(z_B_T_Z[rows, :n], a_B_T_A[rows, :n], (h0[rows], c0[rows]))
            # `.to`: under bf16 autocast the LSTM returns bfloat16 into these float32 buffers (a no-op otherwise)
            h_B_T_H[rows, :n] = h_rows.to(h_B_T_H.dtype)
            hn[rows], cn[rows] = hn_rows.to(hn.dtype), cn_rows.to(cn.dtype)
        return h_B_T_H, (hn, cn)

    def hidden(
        self, z_B_T_Z: torch.Tensor, a_B_T_A: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The LSTM alone over whole sequences (teacher forcing, fused kernel): outputs h_B_T_H and the final
        state (h, c). For readers of one head (e.g. `done_head`) that need not pay for the mixture heads."""
        self._check(z_B_T_Z, a_B_T_A, ndim=3)
        if state is None:
            state = self.initial_state(z_B_T_Z.shape[0], z_B_T_Z.device)
        h0, c0 = state
        h_B_T_H, (hn, cn) = self.lstm(torch.cat([z_B_T_Z, a_B_T_A], dim=-1), (h0.unsqueeze(0), c0.unsqueeze(0)))
        return h_B_T_H, (hn.squeeze(0), cn.squeeze(0))

    @torch.no_grad()
    def state_after(
        self, z_B_T_Z: torch.Tensor, a_B_T_A: torch.Tensor, lengths_B: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM state (h, c) of each row after its own first `lengths_B[b]` steps from the zero state (zeros for
        length 0): the exact state at a window's start from its episode prefix. Without gradients (the prefix is
        context, not trained through).

        Rows sorted by length run together in fused LSTM calls between consecutive distinct lengths, the rows
        already finished dropping out at each: no step past a row's length, as a packed sequence, but on the fused
        kernel. On 2 CPU cores (32 rows, 512 units) that took 0.12 s where the packed sequence took 0.18-0.22 s
        for prefixes of 171 steps on average; a whole M update on the 400,000-step chain's windows, 4% less
        (RESULTS.md, "The episode prefix on the fused kernel").

        Args:
            z_B_T_Z: Latents, padded past each row's length.
            a_B_T_A: Encoded actions, the same.
            lengths_B: Each row's length (0 <= length <= T).

        Returns:
            (h, c), each (B, H).
        """
        self._check(z_B_T_Z, a_B_T_A, ndim=3)
        b = z_B_T_Z.shape[0]
        h, c = (s.unsqueeze(0) for s in self.initial_state(b, z_B_T_Z.device))
        order = torch.argsort(lengths_B)
        x, lengths = torch.cat([z_B_T_Z, a_B_T_A], dim=-1)[order], lengths_B[order].tolist()
        t, first = 0, 0  # rows before `first` have finished (sorted: the shortest first)
        for end in sorted(set(lengths)):
            if end > t:
                _, (h[:, first:], c[:, first:]) = self.lstm(x[first:, t:end], (h[:, first:], c[:, first:]))
                t = end
            first = bisect.bisect_right(lengths, end)
        h_B_H, c_B_H = torch.empty_like(h[0]), torch.empty_like(c[0])
        h_B_H[order], c_B_H[order] = h[0], c[0]
        return h_B_H, c_B_H

    def forward_closed_loop(
        self,
        z_B_T_Z: torch.Tensor,
        a_B_T_A: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        closed_loop: float = 0.5,
        generator: torch.Generator | None = None,
        horizon: int = 1,
    ) -> tuple[MDNOutput, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`forward`, but input latents are, with probability `closed_loop`, M's own samples of them.

        Scheduled sampling (Bengio et al. 2015) for a world model: trained only on real inputs (teacher forcing),
        M never learns to recover from its own errors, and a dream drifts away from what it was about within a few
        steps. Measured on TakeCover (benchmarks/branch_fidelity.py): teacher-forced, the done head separates "dies
        within 15 steps" from the rest with AUC 0.85-0.87; after 15 dream steps from the same real states,
        0.61-0.69. Fed its own samples (one random member per row, tau 1, no gradient through the sample), M learns
        to predict from the inputs it meets when dreaming. Gradients still flow through the LSTM state across steps.
        Steps one by one, so ~T times slower per sequence than `forward` on the fused LSTM kernel.

        `horizon` = 1 draws the choice per step and row, so own-sample runs are short (2 steps on average at 0.5):
        M never has to carry what an action does over many steps. `horizon` = k >= 2 cuts the sequence into
        segments of k steps: each segment starts from the real latent (re-synchronising M with reality) and, for a
        share `closed_loop` of (row, segment) pairs, runs its other k - 1 steps on M's own samples, as a dream does.
        Only M's memory of the last real latent and the actions since then can then predict the real latents of the
        segment: the training signal for action-driven dynamics (momentum, sweeps) that one-step teacher forcing
        lacks, because in TakeCover one step of strafing moves the view by less than a pixel. (Measured there with
        k = 30, share 0.8: the dream moved the player no better than teacher forcing on the same data; RESULTS.md.)

        Args:
            z_B_T_Z: Real latents z_0..z_{T-1}; z_0 is always used as it is.
            a_B_T_A: Encoded actions a_0..a_{T-1}.
            state: (h, c), each (B, H); zeros when None.
            closed_loop: Probability in [0, 1] of replacing each input latent after the first with M's sample
                (with `horizon` >= 2: of running a segment on M's samples).
            generator: Torch RNG for the sampling.
            horizon: Segment length; 1 draws per step.

        Returns:
            Same as `forward`.
        """
        self._check(z_B_T_Z, a_B_T_A, ndim=3)
        if not 0.0 <= closed_loop <= 1.0:
            raise ValueError(f"closed_loop={closed_loop} must be a probability in [0, 1].")
        if int(horizon) != horizon or horizon < 1:
            raise ValueError(f"horizon={horizon} must be an integer >= 1 (1: own samples drawn per step).")
        b, t_len, _ = z_B_T_Z.shape
        h, c = state if state is not None else self.initial_state(b, z_B_T_Z.device)
        dev = z_B_T_Z.device
        z, hs = z_B_T_Z[:, 0], []
        if horizon > 1 and closed_loop > 0:  # the first segment starts at z_0, which is always real
            segment_own = torch.rand(b, 1, device=dev, generator=generator) < closed_loop
        for t in range(t_len):
            h, c = self.step(z, a_B_T_A[:, t], (h, c))
            hs.append(h)
            if t + 1 == t_len:
                break
            z = z_B_T_Z[:, t + 1]
            if closed_loop > 0:
                with torch.no_grad():
                    own = self.sample_next(h, 1.0, generator)
                    if horizon == 1:
                        use = torch.rand(b, 1, device=dev, generator=generator) < closed_loop
                    elif (t + 1) % horizon == 0:  # a segment starts: read the real latent, draw the segment's mode
                        use = torch.zeros_like(segment_own)
                        segment_own = torch.rand(b, 1, device=dev, generator=generator) < closed_loop
                    else:
                        use = segment_own
                z = torch.where(use, own, z)
        h_B_T_H = torch.stack(hs, dim=1)
        return self.heads(h_B_T_H), h_B_T_H, (h, c)

    def step(
        self, z_B_Z: torch.Tensor, a_B_A: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step with the sequence model's own weights: (z_t, a_t, (h_t, c_t)) -> (h_{t+1}, c_{t+1}).

        PyTorch's LSTM gate order is input, forget, cell, output.
        """
        self._check(z_B_Z, a_B_A, ndim=2)
        h, c = state
        gates = F.linear(torch.cat([z_B_Z, a_B_A], dim=-1), self.lstm.weight_ih_l0, self.lstm.bias_ih_l0)
        gates = gates + F.linear(h, self.lstm.weight_hh_l0, self.lstm.bias_hh_l0)
        i, f, g, o = gates.chunk(4, dim=-1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        return h_next, c_next

    def _check(self, z: torch.Tensor, a: torch.Tensor, ndim: int) -> None:
        if z.dim() != ndim or z.shape[-1] != self.z_size:
            raise ValueError(f"MDNRNN expects z with {ndim} dims and last dim {self.z_size}, got {tuple(z.shape)}")
        if a.shape[:-1] != z.shape[:-1] or a.shape[-1] != self.action_dim:
            raise ValueError(
                f"MDNRNN expects actions shaped {tuple(z.shape[:-1]) + (self.action_dim,)}, got {tuple(a.shape)}"
            )


def sample_mixture(
    logpi_B_Z_K: torch.Tensor,
    mu_B_Z_K: torch.Tensor,
    logsigma_B_Z_K: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
    uniform_B_Z_K: torch.Tensor | None = None,
    normal_B_Z: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample z from the per-dimension mixture with the paper's temperature.

    Mixture logits are divided by tau and the Gaussian noise is scaled by sqrt(tau) (paper code `doomrnn.py`).
    As tau -> 0 this becomes the mean of the most probable component (deterministic). The component is picked with
    the Gumbel-max trick (argmax(logpi / tau + Gumbel noise)), measured 2.7x faster than `Categorical.sample`.

    Args:
        logpi_B_Z_K: Log mixture weights.
        mu_B_Z_K: Component means.
        logsigma_B_Z_K: Component log standard deviations.
        temperature: tau > 0.
        generator: Torch RNG to draw from (for reproducible dreams).
        uniform_B_Z_K: The U(0, 1) draws that pick the components, if the caller supplies them (common random
            numbers); drawn from `generator` when None.
        normal_B_Z: The N(0, 1) draws of the Gaussian noise, likewise.

    Returns:
        Sampled latents, (B, Z).
    """
    u = uniform_B_Z_K
    if u is None:
        u = torch.rand(logpi_B_Z_K.shape, device=logpi_B_Z_K.device, generator=generator)
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))  # not in place: u may be the caller's
    k = torch.argmax(logpi_B_Z_K / temperature + gumbel, dim=-1, keepdim=True)
    mu = mu_B_Z_K.gather(-1, k).squeeze(-1)
    sigma = logsigma_B_Z_K.gather(-1, k).squeeze(-1).exp()
    eps = normal_B_Z if normal_B_Z is not None else torch.randn(mu.shape, device=mu.device, generator=generator)
    return mu + sigma * eps * (temperature**0.5)
