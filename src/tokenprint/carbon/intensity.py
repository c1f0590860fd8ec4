"""Grid carbon intensity: constant or a regular time series, with exact interval averages.

Times are UTC seconds since the epoch (float). A series is piecewise constant over regular steps
(hourly for the usual files): the value at row *k* holds from its timestamp to the next one. The
average over any interval is exact, using the running integral of the series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from tokenprint.errors import TokenprintError
from tokenprint.units import S_PER_DAY, S_PER_HOUR

Basis = str  # "lifecycle" or "direct"
BASES = ("lifecycle", "direct")


def iso(t_s: float) -> str:
    """UTC ISO-8601 text for an epoch time in seconds."""
    return datetime.fromtimestamp(float(t_s), tz=UTC).isoformat()


def parse_time(text: str) -> float:
    """Parse an ISO-8601 time to epoch seconds (UTC when no offset is given)."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise TokenprintError(
            f"cannot read time {text!r}; use ISO 8601, e.g. 2023-07-01T13:40:00Z"
        ) from None
    if ts is pd.NaT:
        raise TokenprintError(f"cannot read time {text!r}; use ISO 8601")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.timestamp()


class Intensity(Protocol):
    """Anything that gives the mean grid intensity over time intervals."""

    @property
    def basis(self) -> Basis:
        """``lifecycle`` or ``direct``."""
        ...

    @property
    def source(self) -> str:
        """Where the values come from."""
        ...

    def mean_over(self, start_s: ArrayLike, end_s: ArrayLike) -> NDArray[np.float64]:
        """Mean intensity in g/kWh over each interval [start_s, end_s]."""
        ...


@dataclass(frozen=True)
class ConstantIntensity:
    """One intensity value for all times (an annual average, say)."""

    g_per_kwh: float
    basis: Basis = "lifecycle"
    source: str = "user-given constant"

    def __post_init__(self) -> None:
        if not np.isfinite(self.g_per_kwh) or self.g_per_kwh < 0:
            raise TokenprintError(
                f"intensity {self.g_per_kwh!r} g/kWh is invalid; it must be a number >= 0"
            )

    def mean_over(self, start_s: ArrayLike, end_s: ArrayLike) -> NDArray[np.float64]:
        """The constant, shaped like the intervals."""
        shape = np.broadcast(np.asarray(start_s), np.asarray(end_s)).shape
        return np.full(shape, float(self.g_per_kwh))


@dataclass(frozen=True)
class IntensitySeries:
    """A regular, gap-free series: ``values[k]`` holds on ``[start_s + k·step_s, … + step_s)``."""

    start_s: float
    step_s: float
    values: NDArray[np.float64]
    basis: Basis = "lifecycle"
    source: str = "intensity series"
    zone: str | None = None   # the grid zone the file says it holds (Electricity Maps' Zone Id)
    _cum: NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vals = np.asarray(self.values, dtype=np.float64)
        if vals.ndim != 1 or vals.size == 0:
            raise TokenprintError("an intensity series needs at least one value")
        if self.step_s <= 0:
            raise TokenprintError(f"intensity series step {self.step_s} s must be > 0")
        object.__setattr__(self, "values", vals)
        cum = np.concatenate([[0.0], np.cumsum(vals * self.step_s)])
        object.__setattr__(self, "_cum", cum)

    @property
    def end_s(self) -> float:
        """End of the last step (exclusive)."""
        return self.start_s + self.step_s * self.values.size

    def times_s(self) -> NDArray[np.float64]:
        """Start time of each step."""
        return np.asarray(self.start_s + self.step_s * np.arange(self.values.size),
                          dtype=np.float64)

    def _check_inside(self, t: NDArray[np.float64]) -> None:
        if t.size == 0:
            return
        lo, hi = float(np.min(t)), float(np.max(t))
        if lo < self.start_s or hi > self.end_s:
            bad = lo if lo < self.start_s else hi
            raise TokenprintError(
                f"time {iso(bad)} is outside the intensity series, which covers "
                f"{iso(self.start_s)} to {iso(self.end_s)}"
            )

    def integral(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """Running integral ∫ intensity dt from the series start to ``t_s`` (g/kWh · s)."""
        t = np.asarray(t_s, dtype=np.float64)
        self._check_inside(t)
        rel = t - self.start_s
        k = np.clip(np.floor(rel / self.step_s).astype(np.int64), 0, self.values.size - 1)
        return self._cum[k] + self.values[k] * (rel - k * self.step_s)

    def at(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """The intensity in force at each time."""
        t = np.asarray(t_s, dtype=np.float64)
        self._check_inside(t)
        k = np.clip(
            np.floor((t - self.start_s) / self.step_s).astype(np.int64), 0, self.values.size - 1
        )
        return self.values[k]

    def mean_over(self, start_s: ArrayLike, end_s: ArrayLike) -> NDArray[np.float64]:
        """Exact time-weighted mean over each interval (the point value for empty ones)."""
        a = np.asarray(start_s, dtype=np.float64)
        b = np.asarray(end_s, dtype=np.float64)
        a, b = np.broadcast_arrays(a, b)
        if np.any(b < a):
            raise TokenprintError("an interval ends before it starts")
        width = b - a
        # below a nanosecond per hour of step the difference of two integrals is rounding noise
        # (a sub-normal window gave 1.28111 between two values of 1.28125): the point value
        wide = width > 1e-9 * self.step_s
        safe = np.where(wide, width, 1.0)
        mean = (self.integral(b) - self.integral(a)) / safe
        return np.where(wide, mean, self.at(a))

    def hour_of_day_mean(self) -> NDArray[np.float64]:
        """Mean intensity for each UTC hour of day (24 values)."""
        hours = ((self.times_s() % S_PER_DAY) // S_PER_HOUR).astype(int)
        sums = np.bincount(hours, weights=self.values, minlength=24)
        counts = np.bincount(hours, minlength=24)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


# ---------------------------------------------------------------------------------------------
# Files


def _em_column(columns: list[str], basis: Basis) -> str:
    tag = "(direct)" if basis == "direct" else "(LCA)"
    for c in columns:
        if c.startswith("Carbon Intensity") and c.endswith(tag):
            return c
    raise TokenprintError(f"Electricity Maps file has no {tag} carbon intensity column")


# coal's lifecycle factor is 820 g/kWh; no grid averages above ~1,200: 5,000 catches unit slips
MAX_INTENSITY_G_PER_KWH = 5000.0


def load_intensity_csv(path: str | Path, basis: Basis = "lifecycle",
                       fill: bool = False, region: str | None = None) -> IntensitySeries:
    """Read an hourly (or any regular) intensity CSV.

    Formats, told apart by their columns:

    * Electricity Maps export: ``Datetime (UTC)`` and ``Carbon Intensity gCO₂eq/kWh (direct)`` /
      ``(LCA)``; ``basis`` picks the column.
    * EIA-930-derived: ``timestamp`` and ``avg_CI`` (lifecycle, IPCC AR5 factors).
    * plain: ``timestamp,intensity_g_per_kwh`` (basis as declared by ``basis``).

    Gaps, duplicates, unsorted rows, non-numeric or negative values raise an error naming the row;
    with ``fill=True`` missing steps are linearly interpolated instead. With ``region``, a file
    whose own zone (Electricity Maps' ``Zone Id``) is another is refused, naming both.
    """
    if basis not in BASES:
        raise TokenprintError(f"unknown intensity basis {basis!r}; valid: {', '.join(BASES)}")
    from tokenprint.files import existing_file

    p = existing_file(path, "intensity file")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TokenprintError(f"intensity file {str(p)!r} is not a readable CSV: {exc}") from None
    cols = [c.strip().lstrip("\ufeff") for c in df.columns]
    df.columns = cols
    zone = None
    if "Datetime (UTC)" in cols:
        tcol, vcol = "Datetime (UTC)", _em_column(cols, basis)
        fmt = f"Electricity Maps ({basis})"
        if "Zone Id" in cols:
            zones = {z.strip() for z in df["Zone Id"] if z.strip()}
            zone = zones.pop() if len(zones) == 1 else None
    elif "timestamp" in cols and "avg_CI" in cols:
        if basis == "direct":
            raise TokenprintError(
                f"intensity file {str(p)!r} (EIA-930 form) holds lifecycle intensity only; "
                "use basis 'lifecycle'"
            )
        tcol, vcol, fmt = "timestamp", "avg_CI", "EIA-930 avg_CI (lifecycle)"
    elif "timestamp" in cols and "intensity_g_per_kwh" in cols:
        tcol, vcol, fmt = "timestamp", "intensity_g_per_kwh", f"plain ({basis})"
    else:
        raise TokenprintError(
            f"intensity file {str(p)!r} has columns {cols}; expected an Electricity Maps export "
            "('Datetime (UTC)', 'Carbon Intensity gCO₂eq/kWh (direct)/(LCA)'), EIA-930 form "
            "('timestamp', 'avg_CI') or 'timestamp,intensity_g_per_kwh'"
        )
    if zone is not None and region is not None and zone.upper() != region.strip().upper():
        # charging France at California's intensity is a wrong answer with no error otherwise
        raise TokenprintError(f"intensity file {str(p)!r} holds zone {zone}, not region "
                              f"{region.upper()}: give --region {zone} or {region.upper()}'s "
                              "own file")
    if len(df) == 0:
        raise TokenprintError(f"intensity file {str(p)!r} has no rows")
    times = pd.to_datetime(df[tcol], errors="coerce", utc=True)
    values = pd.to_numeric(df[vcol].str.strip(), errors="coerce")
    bad_time = np.nonzero(times.isna().to_numpy())[0]
    if bad_time.size:
        i = int(bad_time[0])
        raise TokenprintError(
            f"intensity file {str(p)!r} row {i + 2}: cannot read time {df[tcol].iloc[i]!r}"
        )
    # the data an intensity file can hold: 1970-2200, a finite intensity below any grid's
    years = times.dt.year.to_numpy()
    off = np.nonzero((years < 1970) | (years > 2200))[0]
    if off.size:
        i = int(off[0])
        raise TokenprintError(
            f"intensity file {str(p)!r} row {i + 2}: time {df[tcol].iloc[i]!r} is outside "
            "1970-2200"
        )
    unbounded = np.nonzero(~np.isfinite(values.to_numpy(dtype=np.float64, na_value=0.0))
                           | (values.to_numpy(dtype=np.float64, na_value=0.0)
                              > MAX_INTENSITY_G_PER_KWH))[0]
    if unbounded.size:
        i = int(unbounded[0])
        raise TokenprintError(
            f"intensity file {str(p)!r} row {i + 2}: intensity {df[vcol].iloc[i]!r} is not a "
            f"finite number up to {MAX_INTENSITY_G_PER_KWH:g} g/kWh"
        )
    filled = 0
    bad_value = np.nonzero(values.isna().to_numpy())[0]
    if bad_value.size and fill and bad_value.size < len(values):
        filled = int(bad_value.size)
        ok = ~values.isna().to_numpy()
        idx = np.arange(len(values))
        values = pd.Series(np.interp(idx, idx[ok], values.to_numpy()[ok]))
        bad_value = bad_value[:0]
    if bad_value.size:
        i = int(bad_value[0])
        raise TokenprintError(
            f"intensity file {str(p)!r} row {i + 2}: intensity {df[vcol].iloc[i]!r} is not a "
            "number"
        )
    negative = np.nonzero(values.to_numpy() < 0)[0]
    if negative.size:
        i = int(negative[0])
        raise TokenprintError(
            f"intensity file {str(p)!r} row {i + 2}: intensity {values.iloc[i]} is negative"
        )
    t = np.array([ts.timestamp() for ts in times], dtype=np.float64)
    v = values.to_numpy(dtype=np.float64)
    if t.size == 1:
        return IntensitySeries(t[0], S_PER_HOUR, v, basis=basis,
                               source=f"{p.name} [{fmt}]", zone=zone)
    d = np.diff(t)
    dup = np.nonzero(d == 0)[0]
    if dup.size:
        raise TokenprintError(
            f"intensity file {str(p)!r} row {dup[0] + 3}: duplicate time {iso(t[dup[0] + 1])}"
        )
    back = np.nonzero(d < 0)[0]
    if back.size:
        raise TokenprintError(
            f"intensity file {str(p)!r} row {back[0] + 3}: time {iso(t[back[0] + 1])} is before "
            "the row above it; rows must be sorted by time"
        )
    step = float(np.min(d))
    ratio = d / step
    if np.any(np.abs(ratio - np.round(ratio)) > 1e-6):
        i = int(np.nonzero(np.abs(ratio - np.round(ratio)) > 1e-6)[0][0])
        raise TokenprintError(
            f"intensity file {str(p)!r} row {i + 3}: time {iso(t[i + 1])} is off the regular "
            f"{step:.0f} s grid"
        )
    gaps = np.nonzero(np.round(ratio) > 1)[0]
    if gaps.size and not fill:
        i = int(gaps[0])
        raise TokenprintError(
            f"intensity file {str(p)!r}: missing data at {iso(t[i] + step)} (between rows "
            f"{i + 2} and {i + 3}); fill the gap in the file or use the fill option to "
            "interpolate"
        )
    if gaps.size:
        grid = np.arange(t[0], t[-1] + step / 2, step)
        filled += int(grid.size - t.size)
        v = np.interp(grid, t, v)
    # interpolation is said in the source every output carries, never silent
    note = f"; {filled} missing value(s) interpolated" if filled else ""
    return IntensitySeries(float(t[0]), step, v, basis=basis,
                           source=f"{p.name} [{fmt}{note}]", zone=zone)
