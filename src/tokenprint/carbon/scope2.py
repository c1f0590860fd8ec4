"""Scope 2 both ways (GHG Protocol Scope 2 Guidance), and the Software Carbon Intensity.

* **Location-based**: energy × the grid's average intensity where and when it was used (what
  every other charge in tokenprint is).
* **Market-based**: energy covered by contractual instruments is charged at their factor, the
  rest at the region's **residual mix** (the grid once the instruments sold are taken out).
  Instruments apply in the Guidance's order: energy attribute certificates and PPAs first, then
  the supplier's own factor; a region's instruments cover only that region's energy. With
  ``annual`` matching an instrument's volume (its MWh over its span, prorated to the period
  asked) covers any energy of the period; with ``hourly`` matching each hour's share of it covers
  only that hour's energy, and the energy covered hour by hour by carbon-free instruments is the
  **24/7 carbon-free share**.
* **SCI** (ISO/IEC 21031:2024): ``(E × I + M) / R`` — operational energy at the location-based
  intensity plus embodied carbon, per functional unit (1,000 output tokens by default).

Pure and vectorized over ledger rows: energy, time and region per row in, grams per row out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.errors import TokenprintError
from tokenprint.units import S_PER_HOUR

F64 = NDArray[np.float64]
KINDS = ("certificate", "ppa", "supplier")     # the order instruments apply in
MATCHING = ("annual", "hourly")


@dataclass(frozen=True)
class Contract:
    """A contractual instrument: ``mwh`` of energy over ``[start_s, end_s)`` in ``region`` at
    ``g_per_kwh`` (0 for a renewable PPA or certificate). A supplier factor with ``mwh`` None
    covers all of the region's energy left."""

    kind: str
    region: str
    start_s: float
    end_s: float
    g_per_kwh: float
    mwh: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TokenprintError(f"contract kind {self.kind!r} is invalid; valid: "
                                  f"{', '.join(KINDS)}")
        if not self.end_s > self.start_s:
            raise TokenprintError(f"contract for {self.region} ends before it starts")
        if not (0 <= self.g_per_kwh <= 2000):
            raise TokenprintError(f"contract factor {self.g_per_kwh} g/kWh is invalid; it must "
                                  "be 0 to 2000")
        if self.mwh is not None and not (0 <= self.mwh < 1e9):
            raise TokenprintError(f"contract volume {self.mwh} MWh is invalid")
        if self.mwh is None and self.kind != "supplier":
            raise TokenprintError(f"a {self.kind} needs its volume (mwh)")


@dataclass(frozen=True)
class MarketBased:
    """Per row: market-based grams and the kWh instruments covered; and the share of all energy
    covered hour by hour by carbon-free instruments (hourly matching; None with annual)."""

    grams: F64
    covered_kwh: F64
    cfe_share_247: float | None


def _volume_kwh(c: Contract, t0: float, t1: float) -> float:
    """The contract's kWh falling in ``[t0, t1)``: its volume spread evenly over its span."""
    overlap = max(min(t1, c.end_s) - max(t0, c.start_s), 0.0)
    return float(c.mwh or 0.0) * 1000.0 * overlap / (c.end_s - c.start_s)


def market_based(energy_kwh: ArrayLike, time_s: ArrayLike, region: Sequence[str],
                 contracts: Sequence[Contract], residual_g_per_kwh: dict[str, float],
                 period: tuple[float, float], matching: str = "annual") -> MarketBased:
    """Market-based grams for each row (its energy, the time it was used, its region) over the
    reporting ``period``; a region's energy no instrument covers is charged at its residual mix."""
    if matching not in MATCHING:
        raise TokenprintError(f"matching {matching!r} is invalid; valid: {', '.join(MATCHING)}")
    e = np.asarray(energy_kwh, dtype=np.float64)
    t = np.asarray(time_s, dtype=np.float64)
    reg = np.asarray([r.upper() for r in region])
    if np.any(e < 0):
        raise TokenprintError("energy must be >= 0 kWh")
    grams = np.zeros_like(e)
    covered = np.zeros_like(e)
    cfe = 0.0
    order = sorted(contracts, key=lambda c: KINDS.index(c.kind))
    t0, t1 = period
    for r in sorted(set(reg.tolist())):
        if r not in {k.upper() for k in residual_g_per_kwh}:
            raise TokenprintError(f"no residual mix for region {r}: give its factor")
        mix = {k.upper(): v for k, v in residual_g_per_kwh.items()}[r]
        mine = [c for c in order if c.region.upper() == r]
        rows = reg == r
        # the buckets energy is matched within: the whole period, or each hour
        hour = np.floor(t / S_PER_HOUR) if matching == "hourly" else np.zeros_like(t)
        for h in np.unique(hour[rows]):
            sel = rows & (hour == h)
            lo, hi = (h * S_PER_HOUR, (h + 1) * S_PER_HOUR) if matching == "hourly" else (t0, t1)
            need = float(e[sel].sum())
            if need <= 0:
                continue
            left, g_bucket, cfe_bucket = need, 0.0, 0.0
            for c in mine:
                if left <= 0:
                    break
                vol = left if c.mwh is None else min(_volume_kwh(c, lo, hi), left)
                g_bucket += vol * c.g_per_kwh
                cfe_bucket += vol if c.g_per_kwh == 0 else 0.0
                left -= vol
            g_bucket += left * mix
            share = e[sel] / need                       # rows share their bucket pro rata
            grams[sel] = g_bucket * share
            covered[sel] = (need - left) * share
            cfe += cfe_bucket
    total = float(e.sum())
    return MarketBased(grams, covered, (cfe / total if total > 0 else None)
                       if matching == "hourly" else None)


def sci_g_per_unit(operational_location_g: ArrayLike, embodied_g: ArrayLike,
                   units: ArrayLike) -> F64:
    """SCI = (E × I + M) / R: location-based operational grams plus embodied grams per
    functional unit (NaN where there is no unit)."""
    r = np.asarray(units, dtype=np.float64)
    num = np.asarray(operational_location_g, dtype=np.float64) + np.asarray(embodied_g,
                                                                              dtype=np.float64)
    return np.asarray(np.where(r > 0, num / np.where(r > 0, r, 1.0), np.nan))


class RunningMarket:
    """Market-based grams as energy arrives, request by request (for live counters such as the
    gateway's ``/metrics``). Each instrument's volume is consumed first come within its span
    (``annual``) or within each hour's share of it (``hourly``), in the Guidance's order; what
    none covers is charged at the region's residual mix. Over a whole contract span the total
    equals :func:`market_based`'s; reports (``ledger report``) prorate to their period instead.
    ``share`` scales every volume (a gateway of N worker processes gives each 1/N)."""

    def __init__(self, contracts: Sequence[Contract], residual_g_per_kwh: dict[str, float],
                 matching: str = "annual", share: float = 1.0) -> None:
        if matching not in MATCHING:
            raise TokenprintError(f"matching {matching!r} is invalid; valid: "
                                  f"{', '.join(MATCHING)}")
        self.contracts = sorted(contracts, key=lambda c: KINDS.index(c.kind))
        self.mix = {k.upper(): float(v) for k, v in residual_g_per_kwh.items()}
        self.matching, self.share = matching, share
        self._used: dict[tuple[int, float], float] = {}   # (instrument, hour or 0) → kWh used

    def check_regions(self, regions: Sequence[str]) -> None:
        """Refuse a region without a residual mix (its uncovered energy has no factor)."""
        missing = sorted({r.upper() for r in regions} - set(self.mix))
        if missing:
            raise TokenprintError(f"no residual mix for region(s) {', '.join(missing)}: give "
                                  "their factors under [residual_mix] in the contracts file")

    def grams(self, energy_kwh: float, time_s: float, region: str) -> float:
        """Market-based grams of ``energy_kwh`` used at ``time_s`` in ``region``."""
        r = region.upper()
        if r not in self.mix:
            raise TokenprintError(f"no residual mix for region {r}: give its factor")
        left, g = float(energy_kwh), 0.0
        hour = float(np.floor(time_s / S_PER_HOUR))
        for i, c in enumerate(self.contracts):
            if left <= 0:
                break
            if c.region.upper() != r or not c.start_s <= time_s < c.end_s:
                continue
            if c.mwh is None:
                vol = left
            else:
                lo, hi = ((hour * S_PER_HOUR, (hour + 1) * S_PER_HOUR)
                          if self.matching == "hourly" else (c.start_s, c.end_s))
                key = (i, hour if self.matching == "hourly" else 0.0)
                room = _volume_kwh(c, lo, hi) * self.share - self._used.get(key, 0.0)
                vol = min(max(room, 0.0), left)
                self._used[key] = self._used.get(key, 0.0) + vol
            g += vol * c.g_per_kwh
            left -= vol
        if self.matching == "hourly" and len(self._used) > 50_000:   # hours long past
            self._used = {k: v for k, v in self._used.items() if k[1] >= hour - 48}
        return g + left * self.mix[r]
