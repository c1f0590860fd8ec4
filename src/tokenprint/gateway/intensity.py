"""Grid intensity for the gateway: :class:`tokenprint.carbon.resolver.IntensityResolver` built
from the gateway's configuration (the resolver holds every source, its cache and fallback)."""

from __future__ import annotations

from typing import Any

from tokenprint.carbon.resolver import (  # noqa: F401  (re-exported for the gateway's callers)
    MAX_G_PER_KWH,
    MIN_G_PER_KWH,
    STALE_AFTER_S,
    IntensityResolver,
    LiveSource,
)
from tokenprint.catalog import Catalog


class IntensityProvider(IntensityResolver):
    """The resolver with the gateway's option names: ``token_env`` and ``base_url`` configure
    Electricity Maps; any other source takes its own keyword options."""

    def __init__(self, catalog: Catalog, mode: str = "annual",
                 files: dict[str, str] | None = None, token_env: str = "ELECTRICITYMAPS_TOKEN",
                 base_url: str = "https://api.electricitymap.org/v3", cache_s: float = 300.0,
                 timeout_s: float = 3.0, **options: Any) -> None:
        if mode == "electricitymaps":
            options = {"token_env": token_env, "base_url": base_url, **options}
        if mode not in ("annual", "file"):
            options = {"cache_s": cache_s, "timeout_s": timeout_s, **options}
        super().__init__(catalog, mode, files, **options)

    @property
    def _cache(self) -> dict[str, tuple[float, float]]:
        """The live source's cache (zone → (fetched at, g/kWh)); empty for the others."""
        return self.source._cache if isinstance(self.source, LiveSource) else {}
