"""Per-iteration schedules for the dream's knobs (temperature, pessimism, curiosity).

A schedule is given as one of:
- a number: constant;
- ("linear", start, end, iterations): start at iteration 0, end at `iterations` and after, linear in between;
- a list of numbers: per round (iteration i uses entry i; the last entry repeats).
"""

from __future__ import annotations

import math
from typing import Any


class Schedule:
    """A value that depends on the training iteration.

    Args:
        spec: A number, ("linear", start, end, iterations) or a list of per-round values (see the module doc).
        name: The setting's name, used in error messages.
        minimum: Smallest allowed value.
        strict: Values must be strictly above `minimum` (e.g. tau > 0) instead of >= it.
    """

    def __init__(self, spec: Any, name: str, minimum: float = 0.0, strict: bool = False):
        self.spec, self.name = spec, name
        if isinstance(spec, bool):
            raise ValueError(self._usage(f"{name}={spec!r} is not a number or schedule"))
        if isinstance(spec, (int, float)):
            values, self.kind = [float(spec)], "constant"
        elif isinstance(spec, (tuple, list)) and spec and spec[0] == "linear":
            if len(spec) != 4 or not isinstance(spec[3], int) or spec[3] < 1:
                raise ValueError(self._usage(f"{name}={spec!r}: a linear schedule is ('linear', start, end, n >= 1)"))
            values, self.kind = [float(spec[1]), float(spec[2])], "linear"
        elif isinstance(spec, (tuple, list)) and spec and all(isinstance(v, (int, float)) for v in spec):
            values, self.kind = [float(v) for v in spec], "per_round"
        else:
            raise ValueError(self._usage(f"{name}={spec!r} is not a number or schedule"))
        for v in values:
            bad = not math.isfinite(v) or (v <= minimum if strict else v < minimum)
            if bad:
                raise ValueError(f"{name}: every value must be {'>' if strict else '>='} {minimum}; got {v!r}.")
        self._values = values

    @staticmethod
    def _usage(msg: str) -> str:
        return msg + "; use a number, ('linear', start, end, iterations) or a list of per-round values."

    def value(self, iteration: int) -> float:
        """The value at a 0-based training iteration."""
        if self.kind == "constant":
            return self._values[0]
        if self.kind == "linear":
            start, end = self._values
            frac = min(max(iteration, 0) / self.spec[3], 1.0)
            return start + frac * (end - start)
        return self._values[min(max(iteration, 0), len(self._values) - 1)]

    def max_value(self) -> float:
        """The largest value the schedule ever takes (e.g. to check whether a lever is ever switched on)."""
        return max(self._values)

    def __repr__(self) -> str:
        return f"Schedule({self.name}={self.spec!r})"
