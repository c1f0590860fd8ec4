"""Pure helpers over recorded counter and power sequences (unit-tested without hardware)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def energy_in_window(t_s: ArrayLike, power_w: ArrayLike, start_s: float, end_s: float) -> float:
    """Energy of power samples over ``[start_s, end_s]``, interpolating at the edges."""
    t = np.asarray(t_s, dtype=np.float64)
    p = np.asarray(power_w, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    if t.size == 0 or end_s <= start_s:
        return 0.0
    if t.size == 1:
        return float(p[0] * (end_s - start_s))
    inner = (t > start_s) & (t < end_s)
    grid = np.concatenate([[start_s], t[inner], [end_s]])
    pw = np.interp(grid, t, p)
    return float(np.sum(0.5 * (pw[1:] + pw[:-1]) * np.diff(grid)))
