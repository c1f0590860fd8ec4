"""Estimates with a range: ``low <= mid <= high``, as floats or numpy arrays.

Sources disagree on most carbon figures (embodied carbon of one H100 varies by more than 30x across
tools), so tokenprint carries low/mid/high through every computation and reports the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Estimate:
    """A value with its plausible range. Arithmetic keeps the ordering of independent terms."""

    low: Any
    mid: Any
    high: Any

    @classmethod
    def exact(cls, value: ArrayLike) -> Estimate:
        """An estimate with no spread."""
        return cls(value, value, value)

    def __add__(self, other: Estimate | float) -> Estimate:
        if isinstance(other, Estimate):
            return Estimate(self.low + other.low, self.mid + other.mid, self.high + other.high)
        return Estimate(self.low + other, self.mid + other, self.high + other)

    __radd__ = __add__

    def scale(self, factor: ArrayLike) -> Estimate:
        """Multiply by a non-negative factor (scalar or array)."""
        f = np.asarray(factor)
        if np.any(f < 0):
            raise ValueError("Estimate.scale needs a non-negative factor")
        if f.ndim == 0:
            fs = float(f)
            return Estimate(self.low * fs, self.mid * fs, self.high * fs)
        return Estimate(self.low * f, self.mid * f, self.high * f)

    def times(self, other: Estimate) -> Estimate:
        """Product of two non-negative estimates (low×low, mid×mid, high×high)."""
        return Estimate(self.low * other.low, self.mid * other.mid, self.high * other.high)

    def as_dict(self) -> dict[str, Any]:
        """Plain-python ``{"low", "mid", "high"}`` (floats or lists), for JSON output."""

        def plain(v: Any) -> Any:
            arr = np.asarray(v)
            return float(arr) if arr.ndim == 0 else arr.tolist()

        return {"low": plain(self.low), "mid": plain(self.mid), "high": plain(self.high)}
