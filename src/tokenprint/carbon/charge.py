"""One charge: the operational and embodied grams of some work, composed in one place.

Every surface — the study, simulate, plan, the gateway, ``watch``, ``fleet report`` — charges
its work here: energy at the grid's intensity times PUE, and the embodied carbon of the hardware
provisioned for the work, amortized over its lifetime (busy time / utilization). Nothing outside
:mod:`tokenprint.carbon` multiplies energy by intensity or divides by a lifetime
(``tests/test_architecture.py`` holds every package to it), and the bounds on PUE, lifetime and
utilization are checked here, once per call. Vectorized: every argument broadcasts (a study's
low/mid/high, a trace's hours, a report's steps); scalars give 0-d arrays (``float()`` them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.carbon.amortize import DEFAULT_LIFETIME_YEARS, provisioned_g
from tokenprint.carbon.operational import operational_g

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Charge:
    """Grams CO2e of some work: operational (energy × PUE × intensity) and embodied (the
    provisioned hardware's share of its lifetime), with the intensity used and its source."""

    operational_g: F64
    embodied_g: F64
    intensity_g_per_kwh: F64
    intensity_source: str = ""
    pue: float = 1.0
    lifetime_years: float = DEFAULT_LIFETIME_YEARS
    utilization: float = 1.0

    @property
    def total_g(self) -> F64:
        """Operational + embodied."""
        return np.asarray(self.operational_g + self.embodied_g)


def charge(energy_j: ArrayLike, intensity_g_per_kwh: ArrayLike, embodied_g: ArrayLike = 0.0,
           busy_s: ArrayLike = 0.0, *, pue: float = 1.0,
           lifetime_years: float = DEFAULT_LIFETIME_YEARS, utilization: float = 1.0,
           intensity_source: str = "") -> Charge:
    """Charge ``energy_j`` at ``intensity_g_per_kwh`` (× ``pue``), and ``busy_s`` of hardware
    whose whole embodied carbon is ``embodied_g`` (every GPU provisioned for the work, at the
    caller's scope), which serves ``utilization`` of the time it is provisioned."""
    op = operational_g(energy_j, intensity_g_per_kwh, pue)
    emb = provisioned_g(embodied_g, busy_s, lifetime_years, utilization)
    return Charge(np.asarray(op, dtype=np.float64), np.asarray(emb, dtype=np.float64),
                  np.asarray(intensity_g_per_kwh, dtype=np.float64), intensity_source, pue,
                  lifetime_years, utilization)
