"""``Footprint``: operational + embodied carbon of a piece of work, with ranges and sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.carbon.amortize import (
    AMORTIZATION_BASES,
    DEFAULT_LIFETIME_YEARS,
    LIFETIME_SOURCES,
    amortized_share,
    check_utilization,
)
from tokenprint.carbon.embodied import COMPONENTS, EmbodiedBreakdown, gpu_embodied
from tokenprint.carbon.intensity import Intensity, IntensitySeries
from tokenprint.carbon.operational import operational_g
from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.ranges import Estimate
from tokenprint.units import J_PER_KWH


@dataclass(frozen=True)
class Footprint:
    """Carbon of one piece of work: operational and (amortized) embodied, in grams CO2e."""

    energy_j: float
    duration_s: float
    operational_g: Estimate
    embodied: EmbodiedBreakdown
    intensity_g_per_kwh: Estimate
    scope: str
    lifetime_years: float
    amortization: str
    pue: float
    gpu: str
    gpu_count: int
    region: str
    intensity_source: str
    energy_kind: str = "given"
    utilization: float = 1.0
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def embodied_g(self) -> Estimate:
        """Attributed embodied carbon (all components in scope)."""
        return self.embodied.total_g

    @property
    def total_g(self) -> Estimate:
        """Operational + embodied."""
        return self.operational_g + self.embodied_g

    @property
    def embodied_share(self) -> float:
        """Embodied fraction of the total (midpoints)."""
        total = float(self.total_g.mid)
        return float(self.embodied_g.mid) / total if total > 0 else 0.0

    def per_unit(self, units: float) -> dict[str, float]:
        """Operational, embodied and total grams per unit of work (token, request, ...)."""
        if units <= 0:
            raise TokenprintError(f"cannot normalise by {units!r} units; need > 0")
        return {
            "operational_g": float(self.operational_g.mid) / units,
            "embodied_g": float(self.embodied_g.mid) / units,
            "total_g": float(self.total_g.mid) / units,
        }

    def per_1k_tokens(self, tokens: float) -> dict[str, float]:
        """Grams per 1,000 tokens."""
        return self.per_unit(tokens / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (midpoints at top level, ranges alongside)."""
        total = self.total_g
        return {
            "operational_g": float(self.operational_g.mid),
            "embodied_g": float(self.embodied_g.mid),
            "total_g": float(total.mid),
            "embodied_breakdown_g": {
                k: float(self.embodied.components_g[k].mid) for k in COMPONENTS
            },
            "intensity_g_per_kwh": float(self.intensity_g_per_kwh.mid),
            "intensity_range_g_per_kwh": _lh(self.intensity_g_per_kwh),
            "operational_range_g": _lh(self.operational_g),
            "embodied_range_g": _lh(self.embodied_g),
            "total_range_g": _lh(total),
            "embodied_share": self.embodied_share,
            "energy_j": self.energy_j,
            "energy_kwh": self.energy_j / J_PER_KWH,
            "energy_kind": self.energy_kind,
            "duration_s": self.duration_s,
            "gpu": self.gpu,
            "gpu_count": self.gpu_count,
            "region": self.region,
            "scope": self.scope,
            "lifetime_years": self.lifetime_years,
            "amortization": self.amortization,
            "utilization": self.utilization,
            "pue": self.pue,
            "intensity_source": self.intensity_source,
            "sources": dict(self.sources),
            "notes": list(self.notes),
        }


def _lh(e: Estimate) -> dict[str, float]:
    return {"low": float(e.low), "high": float(e.high)}


def compute_footprint(
    catalog: Catalog,
    *,
    gpu: str,
    region: str,
    energy_j: float,
    duration_s: float,
    gpu_count: int = 1,
    scope: str = "device",
    lifetime_years: float = DEFAULT_LIFETIME_YEARS,
    pue: float = 1.0,
    intensity: Intensity | None = None,
    start_s: float | None = None,
    host: str | None = None,
    amortization: str = "provisioned",
    energy_kind: str = "given",
    energy_range_j: tuple[float, float] | None = None,
    utilization: float = 1.0,
) -> Footprint:
    """Footprint of ``energy_j`` drawn over ``duration_s`` on ``gpu_count`` GPUs in ``region``.

    Without ``intensity`` the region's annual average (with its low/high) applies; with an hourly
    ``IntensitySeries`` and ``start_s`` the energy is spread evenly over the run and integrated
    hour by hour. ``utilization`` is the share of provisioned time the GPUs serve: work that took
    ``duration_s`` holds them ``duration_s / utilization`` and is charged that much embodied.
    """
    for name, val in (("energy", energy_j), ("duration", duration_s)):
        if not np.isfinite(val) or val < 0:
            raise TokenprintError(f"{name} {val!r} is invalid; it must be a number >= 0")
    check_utilization(utilization)
    if gpu_count < 1:
        raise TokenprintError(f"GPU count {gpu_count!r} is invalid; it must be >= 1")
    if amortization not in AMORTIZATION_BASES:
        raise TokenprintError(
            f"unknown amortization {amortization!r}; valid: {', '.join(AMORTIZATION_BASES)}"
        )
    g = catalog.gpu(gpu)
    r = catalog.region(region)
    h = catalog.host(host) if host else None
    sources: dict[str, str] = {}
    notes: list[str] = []
    if intensity is None:
        ci = r.intensity_g_per_kwh.estimate
        intensity_source = (f"{r.id.upper()} annual ({r.basis}, {r.year}): "
                            f"{r.intensity_g_per_kwh.source}")
    else:
        if isinstance(intensity, IntensitySeries) and start_s is None:
            raise TokenprintError("an hourly intensity file needs a start time (--start)")
        t0 = 0.0 if start_s is None else start_s
        mean = float(intensity.mean_over(np.array(t0), np.array(t0 + duration_s)))
        ci = Estimate.exact(mean)
        intensity_source = f"{intensity.source} ({intensity.basis})"
        if isinstance(intensity, IntensitySeries):
            notes.append("energy spread evenly over the run, integrated against hourly intensity")
    sources["intensity"] = intensity_source
    e = Estimate.exact(energy_j) if energy_range_j is None else Estimate(
        energy_range_j[0], energy_j, energy_range_j[1])
    # the mean intensity over the run: energy spread evenly, integrated hour by hour
    op = Estimate(*(float(operational_g(x, c, pue)) for x, c in
                    zip((e.low, e.mid, e.high), (ci.low, ci.mid, ci.high), strict=True)))
    emb_one = gpu_embodied(g, catalog, scope, h)
    share = float(amortized_share(duration_s, lifetime_years)) / utilization
    emb = emb_one.scaled(share * gpu_count)
    sources.update(emb_one.sources)
    sources["lifetime"] = f"{lifetime_years:g} years, {amortization} time; {LIFETIME_SOURCES}"
    if utilization < 1.0:
        notes.append(f"embodied charged for {duration_s / utilization:.4g} s of provisioned time: "
                     f"the work ran {duration_s:.4g} s at {utilization:.0%} utilization")
    notes.extend(emb_one.notes)
    return Footprint(
        energy_j=float(energy_j), duration_s=float(duration_s), operational_g=op, embodied=emb,
        intensity_g_per_kwh=ci, scope=scope, lifetime_years=float(lifetime_years),
        amortization=amortization, utilization=float(utilization), pue=float(pue), gpu=g.id,
        gpu_count=gpu_count,
        region=r.id.upper(), intensity_source=intensity_source, energy_kind=energy_kind,
        sources=sources, notes=notes,
    )


def footprint_arrays(energy_j: ArrayLike, duration_s: ArrayLike,
                     intensity_g_per_kwh: ArrayLike, embodied_g: ArrayLike,
                     lifetime_years: float = DEFAULT_LIFETIME_YEARS,
                     pue: float = 1.0) -> dict[str, NDArray[np.float64]]:
    """Vectorized footprints for many (configuration, hour) pairs at once.

    All array arguments broadcast together; returns ``operational_g``, ``embodied_g``,
    ``total_g`` arrays.
    """
    op = operational_g(energy_j, intensity_g_per_kwh, pue)
    emb = np.asarray(embodied_g, dtype=np.float64) * amortized_share(duration_s, lifetime_years)
    op, emb = np.broadcast_arrays(op, emb)
    return {"operational_g": op, "embodied_g": emb, "total_g": op + emb}
