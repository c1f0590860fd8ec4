"""One energy-counter interface for live serving: a cumulative reading of the hardware's joules
that the gateway (per-request attribution) and ``watch`` (per-interval accounting) difference
alike. NVML and RAPL counters live here; a DCGM exporter's or Kepler's counter is read from its
Prometheus page (:class:`tokenprint.fleet.watch.ExporterEnergy`). Energy *predicted* from tokens
is not a counter: :class:`tokenprint.predict.serving.ServingEnergy` gives it to both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from tokenprint.measure.base import MeterError
from tokenprint.measure.rapl import POWERCAP, find_domains


@runtime_checkable
class EnergyCounter(Protocol):
    """Joules since some origin (read as often as wanted; only differences mean anything), and
    the name of what counts them (``nvml``, ``rapl``, ``dcgm``, ``kepler``)."""

    method: str

    def read_j(self) -> float:
        """Joules so far."""
        ...


class RaplCounter:
    """CPU package + DRAM joules of this host from RAPL (Linux powercap), for serving on CPUs.

    Each read adds every domain's increase since the last one, unwrapping one wrap of its
    counter; read at least once per wrap period (minutes on a busy server)."""

    method = "rapl"

    def __init__(self, root: Path = POWERCAP) -> None:
        self.domains = find_domains(root)
        if not self.domains:
            raise MeterError(f"no readable RAPL domain under {root} (needs Linux powercap and "
                             "read access to energy_uj; often root only)")
        for d in self.domains:
            d.last_uj = d.read_uj()

    def read_j(self) -> float:
        """Joules since this counter started, over its package and DRAM domains."""
        for d in self.domains:
            d.poll()
        return sum(d.total_uj for d in self.domains) / 1e6
