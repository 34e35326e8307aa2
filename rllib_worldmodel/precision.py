"""The compute precision of V's and M's matrix multiplies and convolutions: "fp32" (default), "bf16" or "auto".

"bf16" runs them under `torch.autocast` with bfloat16 while the weights, the optimizers' state, M's LSTM cell state
and every loss stay float32 (mixed precision: no loss scaling is needed, bfloat16 has float32's exponent range).
It pays where the hardware has bfloat16 units: x86 CPUs with AVX512-BF16 or AMX (AMD Zen 4 and later, Intel Xeon
from Cooper Lake / Sapphire Rapids) and CUDA GPUs from Ampere on. On a CPU without them PyTorch emulates bfloat16
and it is slower than float32. `benchmarks/devices.py --precisions fp32 bf16` measures both side by side.

"auto" is "bf16" on a device that computes bfloat16 in hardware (`bf16_supported`) and "fp32" elsewhere, decided
where the computation runs: a Learner on a GPU and EnvRunners on CPUs without bfloat16 units each get what suits
their own device, and a checkpoint saved with "auto" restores to whatever the next machine has.
"""

from __future__ import annotations

import contextlib
import functools

import torch

PRECISIONS = ("fp32", "bf16", "auto")


def check_precision(precision: str, field: str = "precision") -> str:
    """Return `precision` if it is one of PRECISIONS, else raise a ValueError that names `field`."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"{field}={precision!r}: use one of {PRECISIONS} ('fp32': float32 everywhere; 'bf16': V's and M's "
            "matrix multiplies and convolutions in bfloat16, weights and losses in float32; 'auto': bf16 where the "
            "device computes bfloat16 in hardware, else fp32)."
        )
    return precision


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision V and M actually compute at on `device`: "fp32" or "bf16" ("auto" decided by `bf16_supported`).

    Args:
        precision: One of PRECISIONS.
        device: Where the computation runs (a CUDA device is judged by its own capability).
    """
    if check_precision(precision) != "auto":
        return precision
    return "bf16" if bf16_supported(device) else "fp32"


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context V and M compute in on `device`: torch.autocast(bfloat16) where `precision` resolves to "bf16"
    (`resolve_precision`), else a no-op."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether `device` computes bfloat16 in hardware (where "bf16" is expected to be faster than "fp32")."""
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None and torch.cuda.is_available():
            # "cuda" names whichever device is current, which may change: cache the one it names now, not "None".
            # A model's parameters always carry their index, so the dream step never takes this branch.
            device = torch.device("cuda", torch.cuda.current_device())
        return _cuda_bf16(device.index)
    if device.type == "cpu":
        return _cpu_bf16()
    return False


# Cached: "auto" asks at every dream step and every fit batch, and the hardware does not change under a process.
@functools.cache
def _cpu_bf16() -> bool:
    # PyTorch's own check of AVX512-BF16 / AMX support on this CPU (oneDNN's ISA detection)
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@functools.cache
def _cuda_bf16(index: int | None) -> bool:  # None only without CUDA
    if not torch.cuda.is_available():
        return False
    if torch.version.hip:  # every ROCm GPU PyTorch supports has bfloat16 units (torch.cuda.is_bf16_supported's view)
        return True
    # Ampere (compute capability 8.0) and later have bfloat16 tensor cores. torch.cuda.is_bf16_supported() asks about
    # the current device only, and by default also says yes to older cards that emulate it, slower than float32.
    return torch.cuda.get_device_capability(index)[0] >= 8
