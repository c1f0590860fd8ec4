"""Operational carbon: energy × PUE × grid intensity, integrated exactly over time.

``C_op [g] = E [kWh] × PUE × CI [g/kWh]``. With a time-varying intensity the energy is placed on
the timeline (spread evenly over its interval, or following sampled power) and integrated against
the series, so a run spanning 13:40-14:20 is charged 20 minutes of each hour's intensity.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.carbon.intensity import ConstantIntensity, Intensity, IntensitySeries
from tokenprint.errors import TokenprintError
from tokenprint.units import J_PER_KWH

# Uptime Institute's 2023 survey averages 1.58 and its worst sites report about 3; the bound only
# keeps a typo (12 for 1.2, 1e308) from turning into carbon figures beyond any data centre.
MAX_PUE = 10.0


def kwh(energy_j: ArrayLike) -> NDArray[np.float64]:
    """Energy in kWh (what intensities are per) from joules."""
    return np.asarray(energy_j, dtype=np.float64) / J_PER_KWH


def facility_kwh(energy_j: ArrayLike, pue: float = 1.0) -> NDArray[np.float64]:
    """The facility's kilowatt-hours for ``energy_j`` at the IT equipment (× PUE): what
    contractual instruments cover in market-based Scope 2."""
    _check_pue(pue)
    return kwh(energy_j) * pue


def joules(energy_kwh: ArrayLike) -> NDArray[np.float64]:
    """Energy in joules from kWh."""
    return np.asarray(energy_kwh, dtype=np.float64) * J_PER_KWH


def _check_pue(pue: float) -> None:
    if not np.isfinite(pue) or not 1.0 <= pue <= MAX_PUE:
        raise TokenprintError(f"PUE {pue!r} is invalid; it must be a number from 1.0 to "
                              f"{MAX_PUE:g}")


def operational_g(energy_j: ArrayLike, intensity_g_per_kwh: ArrayLike,
                  pue: float = 1.0) -> NDArray[np.float64]:
    """Grams CO2e for ``energy_j`` at a (constant) intensity: vectorized over both."""
    _check_pue(pue)
    e = np.asarray(energy_j, dtype=np.float64)
    ci = np.asarray(intensity_g_per_kwh, dtype=np.float64)
    if np.any(e < 0):
        raise TokenprintError("energy must be >= 0 J")
    return e / J_PER_KWH * pue * ci


def operational_g_over(energy_j: ArrayLike, start_s: ArrayLike, duration_s: ArrayLike,
                       intensity: Intensity, pue: float = 1.0) -> NDArray[np.float64]:
    """Grams CO2e for energy spread evenly over ``[start_s, start_s + duration_s]``."""
    d = np.asarray(duration_s, dtype=np.float64)
    if np.any(d < 0):
        raise TokenprintError("duration must be >= 0 s")
    start = np.asarray(start_s, dtype=np.float64)
    ci = intensity.mean_over(start, start + d)
    return operational_g(energy_j, ci, pue)


def operational_g_energy_timeline(t_s: ArrayLike, cumulative_energy_j: ArrayLike,
                                  intensity: Intensity, pue: float = 1.0) -> float:
    """Grams CO2e for a cumulative energy counter read at times ``t_s``.

    Each interval's energy is spread evenly over that interval (the best a counter tells).
    """
    t = np.asarray(t_s, dtype=np.float64)
    e = np.asarray(cumulative_energy_j, dtype=np.float64)
    if t.shape != e.shape or t.ndim != 1 or t.size < 2:
        raise TokenprintError("an energy timeline needs matching times and energies, 2 or more")
    if np.any(np.diff(t) <= 0):
        raise TokenprintError("timeline times must increase strictly")
    seg = np.diff(e)
    if np.any(seg < 0):
        raise TokenprintError("a cumulative energy timeline must not decrease")
    return float(np.sum(operational_g_over(seg, t[:-1], np.diff(t), intensity, pue)))


def operational_g_power_timeline(t_s: ArrayLike, power_w: ArrayLike, intensity: Intensity,
                                 pue: float = 1.0) -> float:
    """Grams CO2e for power samples, linear between samples, exact across intensity steps.

    The intensity's step boundaries are inserted into the sample grid (power interpolated there),
    then each piece is integrated by the trapezoid rule at its step's intensity.
    """
    t = np.asarray(t_s, dtype=np.float64)
    p = np.asarray(power_w, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1 or t.size < 2:
        raise TokenprintError("a power timeline needs matching times and powers, 2 or more")
    if np.any(np.diff(t) <= 0):
        raise TokenprintError("timeline times must increase strictly")
    if np.any(p < 0):
        raise TokenprintError("power must be >= 0 W")
    if isinstance(intensity, IntensitySeries):
        edges = intensity.start_s + intensity.step_s * np.arange(intensity.values.size + 1)
        inner = edges[(edges > t[0]) & (edges < t[-1])]
        grid = np.union1d(t, inner)
        pw = np.interp(grid, t, p)
    else:
        grid, pw = t, p
    energy = 0.5 * (pw[1:] + pw[:-1]) * np.diff(grid)
    mid = 0.5 * (grid[1:] + grid[:-1])
    if isinstance(intensity, ConstantIntensity):
        ci = np.full(mid.shape, intensity.g_per_kwh)
    elif isinstance(intensity, IntensitySeries):
        ci = intensity.at(mid)
        intensity.at(np.array([grid[0], grid[-1]]))  # raises if the run leaves the series
    else:
        ci = intensity.mean_over(grid[:-1], grid[1:])
    return float(np.sum(operational_g(energy, ci, pue)))


def crossover_intensity(e_old_kwh: float, emb_old_g: float, e_new_kwh: float,
                        emb_new_g: float, pue: float = 1.0) -> float | None:
    """Grid intensity (g/kWh) at which two options emit the same per unit of work.

    ``total = e_kwh × pue × CI + emb_g``; None when the lines do not cross at CI >= 0.
    """
    de = (e_old_kwh - e_new_kwh) * pue
    if de == 0:
        return None
    ci = (emb_new_g - emb_old_g) / de
    return float(ci) if ci >= 0 else None
