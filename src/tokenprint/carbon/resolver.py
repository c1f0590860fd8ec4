"""Grid intensity behind one resolver: one class per source, one fallback chain that says why it
fell back, one cache per source. The gateway, ``watch`` and anything else that charges live
carbon ask an :class:`IntensityResolver`.

Sources (``SOURCES``; a new one is one class registered here plus its name in a config):

* ``annual`` — the catalog's annual average for the region (never fails; the chain's end);
* ``file`` — an hourly intensity CSV per region (:func:`load_intensity_csv`);
* ``electricitymaps`` — Electricity Maps' live API (``/carbon-intensity/latest``, an average,
  attributional intensity);
* ``watttime`` — WattTime's v3 API (``/login`` with HTTP Basic, then ``/v3/forecast`` with a
  bearer token: a marginal signal, MOER, in lbs/MWh). Accounts stay attributional; a marginal
  reading says so in its ``signal`` so a decision made on it is recorded as such.

A live source caches each zone's answer for ``cache_s``, serves a stale one for up to an hour,
refuses answers outside [0, 2,000] g/kWh, and otherwise gives way to the next source with the
reason in the reading's text.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from tokenprint.carbon.intensity import IntensitySeries, load_intensity_csv, parse_time
from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.units import S_PER_HOUR

STALE_AFTER_S = S_PER_HOUR  # a live answer older than this gives way to the next source
# Plausible grid intensities (g CO2e/kWh): the dirtiest grids (coal, lifecycle) stay below ~1,100.
MIN_G_PER_KWH = 0.0
MAX_G_PER_KWH = 2000.0
G_PER_KWH_PER_LB_PER_MWH = 0.45359237   # 1 lb/MWh = 453.59237 g per 1,000 kWh

T = TypeVar("T")


@dataclass(frozen=True)
class Reading:
    """One intensity: its value, where it came from (and why earlier sources were passed
    over), and whether it is an average (attributional) or a marginal signal."""

    g_per_kwh: float
    source: str
    signal: str = "average"


class Source:
    """A source of intensity for a region. ``cached`` answers without the network (the request
    path); ``fetch`` may ask it. Either returns None and records why in ``why[zone]``."""

    name: ClassVar[str] = ""
    signal: ClassVar[str] = "average"

    def __init__(self) -> None:
        self.why: dict[str, str] = {}

    def cached(self, zone: str, now_s: float) -> Reading | None:
        """An answer without touching the network, or None."""
        return None

    async def fetch(self, zone: str, now_s: float) -> Reading | None:
        """An answer, asking the network where the source lives there."""
        return self.cached(zone, now_s)


class AnnualSource(Source):
    """The catalog's annual average: always an answer."""

    name = "annual"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog

    def cached(self, zone: str, now_s: float) -> Reading:
        r = self.catalog.region(zone)
        return Reading(r.intensity_g_per_kwh.value, f"annual average {r.year} ({r.basis})")


class FileSource(Source):
    """Hourly CSV files per region; a time outside a file's span has no answer."""

    name = "file"

    def __init__(self, files: dict[str, str] | None = None) -> None:
        super().__init__()
        # refused at start when it cannot work: non-numeric or negative values and gaps are
        # errors naming the row (not silently interpolated)
        self.series: dict[str, IntensitySeries] = {
            region.upper(): load_intensity_csv(path, fill=False, region=region)
            for region, path in (files or {}).items()}

    def cached(self, zone: str, now_s: float) -> Reading | None:
        s = self.series.get(zone)
        if s is None:
            self.why[zone] = "no hourly file for the region"
            return None
        if not s.start_s <= now_s < s.end_s:
            self.why[zone] = "hourly file does not cover now"
            return None
        return Reading(float(s.at(np.array([now_s]))[0]), "hourly file")


class LiveSource(Source):
    """An HTTP API with a per-zone cache; subclasses say how to ask for one zone's value."""

    def __init__(self, base_url: str, cache_s: float = 300.0, timeout_s: float = 3.0) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._cache: dict[str, tuple[float, float]] = {}
        # the readings of the last two days, by zone and hour: a persistence forecast
        self.history: dict[str, dict[int, float]] = {}

    def label(self, state: str = "") -> str:
        return f"live ({self.name}{', ' + state if state else ''})"

    def cached(self, zone: str, now_s: float) -> Reading | None:
        hit = self._cache.get(zone)
        if hit is None:
            self.why.setdefault(zone, "not fetched yet")
            return None
        age = now_s - hit[0]
        if age >= max(self.cache_s, STALE_AFTER_S):
            self.why[zone] = f"stale: the last answer is {age:.0f} s old"
            return None
        state = "cached" if age < self.cache_s else f"stale, {age:.0f} s old"
        return Reading(hit[1], self.label(state), self.signal)

    async def fetch(self, zone: str, now_s: float) -> Reading | None:
        hit = self._cache.get(zone)
        if hit is not None and now_s - hit[0] < self.cache_s:
            return Reading(hit[1], self.label("cached"), self.signal)
        value = await self._call(self.ask, zone, "unavailable")
        if value is None:
            return None
        if not (value == value and MIN_G_PER_KWH <= value <= MAX_G_PER_KWH):
            # no grid emits outside this; a NaN, inf or negative answer is a broken API
            self.why[zone] = (f"rejected: {value!r} g/kWh is outside [{MIN_G_PER_KWH:g}, "
                              f"{MAX_G_PER_KWH:g}]")
            return None
        self._cache[zone] = (now_s, value)
        hours = self.history.setdefault(zone, {})
        hours[int(now_s // S_PER_HOUR)] = value
        for h in [h for h in hours if h < now_s // S_PER_HOUR - 48]:
            del hours[h]
        self.why.pop(zone, None)
        return Reading(value, self.label(), self.signal)

    async def _call(self, ask: Callable[[Any, str], Awaitable[T]], zone: str, failed: str
                    ) -> T | None:
        """One API call for the zone, or None with why it failed (``failed: …``) in ``why``."""
        try:
            import httpx

            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                return await ask(client, zone)
        except _Unavailable as exc:
            self.why[zone] = f"{failed}: {exc}"
        except Exception as exc:
            self.why[zone] = f"{failed}: {exc.__class__.__name__}"
        return None

    async def ask(self, client: Any, zone: str) -> float:
        """The API's current value for the zone, in g/kWh."""
        raise NotImplementedError

    async def forecast(self, zone: str, start_s: float, hours: int) -> np.ndarray | None:
        """The API's forecast for each hour from the hour of ``start_s``, in g/kWh (the mean of
        its points in each hour; NaN past its horizon), or None with the reason in ``why``."""
        points = await self._call(self.ask_forecast, zone, "no forecast")
        if points is None:
            return None
        h0 = np.floor(start_s / S_PER_HOUR)
        sums, counts = np.zeros(hours), np.zeros(hours)
        for t, g in points:
            k = int(np.floor(t / S_PER_HOUR) - h0)
            if 0 <= k < hours:
                if not (g == g and MIN_G_PER_KWH <= g <= MAX_G_PER_KWH):
                    self.why[zone] = f"no forecast: {g!r} g/kWh is outside the plausible range"
                    return None
                sums[k] += g
                counts[k] += 1
        if not counts.any():
            self.why[zone] = "no forecast: none of its points falls in the window"
            return None
        with np.errstate(invalid="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    async def ask_forecast(self, client: Any, zone: str) -> list[tuple[float, float]]:
        """The API's forecast points for the zone: (epoch second, g/kWh)."""
        raise _Unavailable(f"{self.name} has no forecast endpoint here")

    def persistence(self, zone: str, start_s: float, hours: int) -> np.ndarray | None:
        """Each hour from the hour of ``start_s`` as it was read a day earlier (the hour of
        ``start_s`` as read now where it was), NaN where no reading was kept; None without
        any."""
        seen = self.history.get(zone, {})
        h0 = int(start_s // S_PER_HOUR)
        out = np.array([seen.get(h0 + k - 24, np.nan) for k in range(hours)])
        if h0 in seen:
            out[0] = seen[h0]
        return out if np.isfinite(out).any() else None


class _Unavailable(Exception):
    """The source cannot answer, for a reason worth saying (a missing token)."""


def _number(raw: Any, what: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        # JSON true is not 1 g/kWh, nor "300" a number: the API's answer is broken
        raise TypeError(f"{what} is {raw!r}, not a number")
    return float(raw)


class ElectricityMapsSource(LiveSource):
    """Electricity Maps' latest carbon intensity (``auth-token`` from an environment variable)."""

    name = "electricitymaps"

    def __init__(self, token_env: str = "ELECTRICITYMAPS_TOKEN",
                 base_url: str = "https://api.electricitymap.org/v3", cache_s: float = 300.0,
                 timeout_s: float = 3.0) -> None:
        super().__init__(base_url, cache_s, timeout_s)
        self.token_env = token_env

    async def ask(self, client: Any, zone: str) -> float:
        token = os.environ.get(self.token_env)
        if not token:
            raise _Unavailable(f"${self.token_env} not set")
        r = await client.get(f"{self.base_url}/carbon-intensity/latest", params={"zone": zone},
                             headers={"auth-token": token})
        r.raise_for_status()
        return _number(r.json()["carbonIntensity"], "carbonIntensity")

    async def ask_forecast(self, client: Any, zone: str) -> list[tuple[float, float]]:
        """``/carbon-intensity/forecast``: hourly points, ``datetime`` and ``carbonIntensity``."""
        token = os.environ.get(self.token_env)
        if not token:
            raise _Unavailable(f"${self.token_env} not set")
        r = await client.get(f"{self.base_url}/carbon-intensity/forecast",
                             params={"zone": zone}, headers={"auth-token": token})
        r.raise_for_status()
        return [(parse_time(str(p["datetime"])), _number(p["carbonIntensity"],
                                                         "carbonIntensity"))
                for p in r.json()["forecast"]]


class WattTimeSource(LiveSource):
    """WattTime's marginal operating emission rate (MOER) now: the first point of its
    ``/v3/forecast``, after a ``/login`` with HTTP Basic (user and password from environment
    variables); Electricity Maps zones map to WattTime regions through ``regions``."""

    name = "watttime"
    signal = "marginal"
    DEFAULT_REGIONS: ClassVar[dict[str, str]] = {
        "US-CAL-CISO": "CAISO_NORTH", "US-TEX-ERCO": "ERCOT_NORTHCENTRAL",
        "US-MIDA-PJM": "PJM_DC", "US-NY-NYIS": "NYISO_NYC", "US-MIDW-MISO": "MISO_INDIANAPOLIS",
    }

    def __init__(self, user_env: str = "WATTTIME_USER", password_env: str = "WATTTIME_PASSWORD",
                 base_url: str = "https://api.watttime.org", regions: dict[str, str] | None = None,
                 cache_s: float = 300.0, timeout_s: float = 3.0) -> None:
        super().__init__(base_url, cache_s, timeout_s)
        self.user_env, self.password_env = user_env, password_env
        self.regions = {**self.DEFAULT_REGIONS, **{k.upper(): v for k, v in
                                                   (regions or {}).items()}}
        self._token: str | None = None

    async def ask(self, client: Any, zone: str) -> float:
        region = self.regions.get(zone)
        if region is None:
            raise _Unavailable(f"no WattTime region for {zone} (give watttime_regions)")
        if self._token is None:
            user, password = os.environ.get(self.user_env), os.environ.get(self.password_env)
            if not user or not password:
                raise _Unavailable(f"${self.user_env} and ${self.password_env} not set")
            r = await client.get(f"{self.base_url}/login", auth=(user, password))
            r.raise_for_status()
            self._token = str(r.json()["token"])
        r = await client.get(f"{self.base_url}/v3/forecast",
                             params={"region": region, "signal_type": "co2_moer",
                                     "horizon_hours": 0},
                             headers={"Authorization": f"Bearer {self._token}"})
        if r.status_code == 401:      # the token expired: log in again next time
            self._token = None
        r.raise_for_status()
        body = r.json()
        units = body.get("meta", {}).get("units", "lbs_co2_per_mwh")
        if units != "lbs_co2_per_mwh":
            raise TypeError(f"units {units!r}")
        return _number(body["data"][0]["value"], "value") * G_PER_KWH_PER_LB_PER_MWH

    async def ask_forecast(self, client: Any, zone: str) -> list[tuple[float, float]]:
        """``/v3/forecast`` over 24 hours: 5-minute MOER points, converted to g/kWh."""
        await self.ask(client, zone)            # logs in, and checks the region and units
        r = await client.get(f"{self.base_url}/v3/forecast",
                             params={"region": self.regions[zone], "signal_type": "co2_moer",
                                     "horizon_hours": 24},
                             headers={"Authorization": f"Bearer {self._token}"})
        r.raise_for_status()
        return [(parse_time(str(p["point_time"])),
                 _number(p["value"], "value") * G_PER_KWH_PER_LB_PER_MWH)
                for p in r.json()["data"]]


SOURCES: dict[str, type[Source]] = {
    cls.name: cls for cls in (AnnualSource, FileSource, ElectricityMapsSource, WattTimeSource)}


class IntensityResolver:
    """The intensity of a region now, from the chosen source, falling back to the annual
    average with the reason in the text. ``await current(region)`` may ask the network;
    ``latest(region)`` never does (the request path), ``refresh`` keeps live caches warm."""

    def __init__(self, catalog: Catalog, mode: str = "annual",
                 files: dict[str, str] | None = None, **options: Any) -> None:
        if mode not in SOURCES:
            raise TokenprintError(f"unknown intensity source {mode!r}; valid: "
                                  f"{', '.join(SOURCES)}")
        self.catalog = catalog
        self.mode = mode
        self.annual_source = AnnualSource(catalog)
        self.source: Source
        if mode == "annual":
            self.source = self.annual_source
        elif mode == "file":
            self.source = FileSource(files)
        else:
            self.source = SOURCES[mode](**options)

    def annual(self, region: str) -> tuple[float, str]:
        """The catalog's annual average for a region."""
        r = self.annual_source.cached(region, 0.0)
        return r.g_per_kwh, r.source

    def _fallback(self, zone: str, region: str) -> Reading:
        base = self.annual_source.cached(region, 0.0)
        why = self.source.why.get(zone, "no answer")
        what = "live" if isinstance(self.source, LiveSource) else self.source.name
        text = f"{base.source} ({what} {why})" if what == "live" else f"{base.source} ({why})"
        return Reading(base.g_per_kwh, text)

    async def reading(self, region: str, now_s: float | None = None) -> Reading:
        """The intensity now, asking the source (network included) first."""
        zone = region.upper()
        now = time.time() if now_s is None else now_s
        got = await self.source.fetch(zone, now)
        return got if got is not None else self._fallback(zone, region)

    def latest_reading(self, region: str, now_s: float | None = None) -> Reading:
        """The intensity now without waiting on the network."""
        zone = region.upper()
        now = time.time() if now_s is None else now_s
        got = self.source.cached(zone, now)
        return got if got is not None else self._fallback(zone, region)

    async def current(self, region: str, now_s: float | None = None) -> tuple[float, str]:
        """(g/kWh, where it came from), asking the network where the source lives there."""
        r = await self.reading(region, now_s)
        return r.g_per_kwh, r.source

    def latest(self, region: str, now_s: float | None = None) -> tuple[float, str]:
        """(g/kWh, where it came from) without touching the network."""
        r = self.latest_reading(region, now_s)
        return r.g_per_kwh, r.source

    async def refresh(self, regions: list[str]) -> None:
        """Fetch live answers whose cache expired (a no-op for the other sources)."""
        if isinstance(self.source, LiveSource):
            for region in sorted({r.upper() for r in regions}):
                await self.source.fetch(region, time.time())
