"""Grid intensity for the gateway: annual average, hourly file, or Electricity Maps live API.

The live provider caches each zone's answer for ``cache_s`` and falls back to the annual average
when the API is unreachable or no token is set; the method string says which was used.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from tokenprint.carbon.intensity import IntensitySeries, load_intensity_csv
from tokenprint.catalog import Catalog
from tokenprint.units import S_PER_HOUR

STALE_AFTER_S = S_PER_HOUR  # a live answer older than this gives way to the annual average


# Plausible grid intensities (g CO2e/kWh): the dirtiest grids (coal, lifecycle) stay below ~1,100.
MIN_G_PER_KWH = 0.0
MAX_G_PER_KWH = 2000.0


class IntensityProvider:
    """``await current(region)`` → (g/kWh, description of the source); ``latest(region)`` the
    same without touching the network (for the request path)."""

    def __init__(self, catalog: Catalog, mode: str = "annual",
                 files: dict[str, str] | None = None, token_env: str = "ELECTRICITYMAPS_TOKEN",
                 base_url: str = "https://api.electricitymap.org/v3", cache_s: float = 300.0,
                 timeout_s: float = 3.0) -> None:
        self.catalog = catalog
        self.mode = mode
        self.series: dict[str, IntensitySeries] = {}
        for region, path in (files or {}).items():
            # refused at start when it cannot work: non-numeric or negative values, gaps are
            # errors naming the row (not silently interpolated)
            self.series[region.upper()] = load_intensity_csv(path, fill=False, region=region)
        self.token_env = token_env
        self.base_url = base_url.rstrip("/")
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._cache: dict[str, tuple[float, float]] = {}
        self._why: dict[str, str] = {}  # why the last live fetch failed, per zone

    def annual(self, region: str) -> tuple[float, str]:
        """The catalog's annual average for a region."""
        r = self.catalog.region(region)
        return r.intensity_g_per_kwh.value, f"annual average {r.year} ({r.basis})"

    async def current(self, region: str, now_s: float | None = None) -> tuple[float, str]:
        """Intensity now, and where it came from."""
        key = region.upper()
        now = time.time() if now_s is None else now_s
        if self.mode == "file":
            return self._from_file(key, region, now)
        if self.mode == "electricitymaps":
            return await self._live(key, now)
        return self.annual(region)

    def latest(self, region: str, now_s: float | None = None) -> tuple[float, str]:
        """Intensity now without waiting on the network: the hourly file, or the last live
        answer (``refresh`` keeps it fresh in the background), or the annual average."""
        key = region.upper()
        if self.mode == "electricitymaps":
            hit = self._cache.get(key)
            age = (time.time() if now_s is None else now_s) - hit[0] if hit else 0.0
            if hit is not None and age < max(self.cache_s, STALE_AFTER_S):
                fresh = "cached" if age < self.cache_s else f"stale, {age:.0f} s old"
                return hit[1], f"live (electricitymaps, {fresh})"
            v, src = self.annual(region)
            return v, f"{src} (live {self._why.get(key, 'not fetched yet')})"
        if self.mode == "file":
            return self._from_file(key, region, time.time() if now_s is None else now_s)
        return self.annual(region)

    async def refresh(self, regions: list[str]) -> None:
        """Fetch live answers whose cache expired (a no-op unless the mode is live)."""
        if self.mode == "electricitymaps":
            for region in sorted({r.upper() for r in regions}):
                await self._live(region, time.time())

    def _from_file(self, key: str, region: str, now: float) -> tuple[float, str]:
        s = self.series.get(key)
        if s is None:
            return self.annual(region)
        if s.start_s <= now < s.end_s:
            return float(s.at(np.array([now]))[0]), "hourly file"
        v, src = self.annual(region)
        return v, f"{src} (hourly file does not cover now)"

    async def _live(self, zone: str, now: float) -> tuple[float, str]:
        hit = self._cache.get(zone)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1], "live (electricitymaps, cached)"
        token = os.environ.get(self.token_env)
        if not token:
            self._why[zone] = f"unavailable: ${self.token_env} not set"
            v, src = self.annual(zone)
            return v, f"{src} (live {self._why[zone]})"
        try:
            import httpx

            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                r = await client.get(f"{self.base_url}/carbon-intensity/latest",
                                     params={"zone": zone}, headers={"auth-token": token})
                r.raise_for_status()
                data: dict[str, Any] = r.json()
                raw = data["carbonIntensity"]
                if isinstance(raw, bool) or not isinstance(raw, int | float):
                    # JSON true is not 1 g/kWh, nor "300" a number: the API's answer is broken
                    raise TypeError(f"carbonIntensity is {raw!r}, not a number")
                value = float(raw)
        except Exception as exc:
            self._why[zone] = f"unavailable: {exc.__class__.__name__}"
            v, src = self.annual(zone)
            return v, f"{src} (live {self._why[zone]})"
        if not (value == value and MIN_G_PER_KWH <= value <= MAX_G_PER_KWH):
            # no grid emits outside this; a NaN, inf or negative answer is a broken API
            self._why[zone] = (f"rejected: {value!r} g/kWh is outside [{MIN_G_PER_KWH:g}, "
                               f"{MAX_G_PER_KWH:g}]")
            v, src = self.annual(zone)
            return v, f"{src} (live {self._why[zone]})"
        self._cache[zone] = (now, value)
        return value, "live (electricitymaps)"
