"""Amortization: the share of embodied carbon charged to a piece of work.

``C_attributed = C_embodied × t / lifetime``. ``t`` is either busy time (only while the work runs)
or provisioned time (wall time the hardware is held, idle included: idle provisioned hardware
still carries its embodied carbon). Outputs state which.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.errors import TokenprintError
from tokenprint.units import S_PER_YEAR

AMORTIZATION_BASES = ("busy", "provisioned")
DEFAULT_LIFETIME_YEARS = 5.0
LIFETIME_SOURCES = (
    "lifetimes in use: 3 y (EcoLogits), 4 y (Cloud Carbon Footprint), 5 y (LLMCarbon), 7 y (FUEL)"
)


# accelerators serve 3-7 years; the bounds keep a typo from amortizing to nothing (50 years) or
# to infinity (1e-320 years divides into inf): a lifetime is at least a day
MAX_LIFETIME_YEARS = 50.0
MIN_LIFETIME_YEARS = 1.0 / 365.25


def check_lifetime(lifetime_years: float) -> float:
    """Return the lifetime if it is a finite number of years in [1 day, 50 years]."""
    if not np.isfinite(lifetime_years) or \
            not MIN_LIFETIME_YEARS <= lifetime_years <= MAX_LIFETIME_YEARS:
        raise TokenprintError(
            f"lifetime {lifetime_years!r} years is invalid; it must be a number from "
            f"{MIN_LIFETIME_YEARS:.4f} (a day) to {MAX_LIFETIME_YEARS:g}"
        )
    return float(lifetime_years)


# a fleet serving less than 0.1 % of its time is idle, not serving; below it 1/U overflows
MIN_UTILIZATION = 1e-3


def check_utilization(utilization: float) -> float:
    """Return the utilization if it is a finite share of provisioned time in [0.001, 1]."""
    if not (np.isfinite(utilization) and MIN_UTILIZATION <= utilization <= 1.0):
        raise TokenprintError(f"utilization {utilization!r} is invalid; it must be a number from "
                              f"{MIN_UTILIZATION:g} to 1 (the share of provisioned time the GPUs "
                              "serve)")
    return float(utilization)


def amortized_share(duration_s: ArrayLike, lifetime_years: float) -> NDArray[np.float64]:
    """Fraction of a lifetime that ``duration_s`` represents."""
    d = np.asarray(duration_s, dtype=np.float64)
    if np.any(d < 0):
        raise TokenprintError("duration must be >= 0 s")
    return d / (check_lifetime(lifetime_years) * S_PER_YEAR)


def amortized_g(embodied_g: ArrayLike, duration_s: ArrayLike,
                lifetime_years: float = DEFAULT_LIFETIME_YEARS) -> NDArray[np.float64]:
    """Embodied grams attributed to ``duration_s`` of use over a lifetime."""
    return np.asarray(embodied_g, dtype=np.float64) * amortized_share(duration_s, lifetime_years)


def provisioned_g(embodied_g: ArrayLike, busy_s: ArrayLike,
                  lifetime_years: float = DEFAULT_LIFETIME_YEARS,
                  utilization: float = 1.0) -> NDArray[np.float64]:
    """Embodied grams for ``busy_s`` of serving on GPUs that serve ``utilization`` of the time
    they are provisioned: the provisioned time ``busy_s / utilization``, amortized."""
    provisioned = np.asarray(busy_s, dtype=np.float64) / check_utilization(utilization)
    return amortized_g(embodied_g, provisioned, lifetime_years)
