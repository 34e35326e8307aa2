"""The compute precision of V's and M's matrix multiplies and convolutions: "fp32" (default) or "bf16".

"bf16" runs them under `torch.autocast` with bfloat16 while the weights, the optimizers' state, M's LSTM cell state
and every loss stay float32 (mixed precision: no loss scaling is needed, bfloat16 has float32's exponent range).
It pays where the hardware has bfloat16 units: x86 CPUs with AVX512-BF16 or AMX (AMD Zen 4 and later, Intel Xeon
from Cooper Lake / Sapphire Rapids) and CUDA GPUs from Ampere on. On a CPU without them PyTorch emulates bfloat16
and it is slower than float32. `benchmarks/devices.py --precisions fp32 bf16` measures both side by side.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, field: str = "precision") -> str:
    """Return `precision` if it is one of PRECISIONS, else raise a ValueError that names `field`."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"{field}={precision!r}: use one of {PRECISIONS} ('fp32': float32 everywhere; 'bf16': V's and M's "
            "matrix multiplies and convolutions in bfloat16, weights and losses in float32)."
        )
    return precision


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context V and M compute in: torch.autocast(bfloat16) for "bf16" on `device`'s type, else a no-op."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether `device` computes bfloat16 in hardware (where "bf16" is expected to be faster than "fp32")."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # PyTorch's own check of AVX512-BF16 / AMX support on this CPU (oneDNN's ISA detection)
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False
