"""Pure helpers over recorded counter and power sequences (unit-tested without hardware)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def counter_energy_j(readings: ArrayLike, max_value: float, scale_to_j: float) -> float:
    """Total energy from a cumulative counter that wraps to 0 after ``max_value``.

    Each step's delta is taken modulo ``max_value + 1`` (RAPL's ``max_energy_range_uj``), so a
    wrap between two readings adds the remainder to the top plus the new value. NaN readings
    (missed samples) are dropped: the counter is cumulative, so the next good reading still
    accounts the energy between them (unless the counter wrapped more than once in the gap).
    """
    r = np.asarray(readings, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return 0.0
    d = np.diff(r)
    d = np.where(d < 0, d + (max_value + 1.0), d)
    return float(np.sum(d) * scale_to_j)


def power_energy_j(t_s: ArrayLike, power_w: ArrayLike) -> float:
    """Trapezoid integral of power samples, skipping missing (NaN) samples.

    Samples around a gap are joined by a straight line, so a missed sample costs accuracy, not
    energy.
    """
    t = np.asarray(t_s, dtype=np.float64)
    p = np.asarray(power_w, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    if t.size < 2:
        return 0.0
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    return float(np.sum(0.5 * (p[1:] + p[:-1]) * np.diff(t)))


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
