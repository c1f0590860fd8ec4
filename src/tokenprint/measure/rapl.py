"""Intel/AMD RAPL energy counters through Linux powercap sysfs (package and DRAM domains).

Reads ``/sys/class/powercap/intel-rapl:N[:M]/energy_uj`` with wrap-around at
``max_energy_range_uj``. Counters wrap every few minutes on busy servers, so the meter also
polls in the background (every ``poll_s``) to never miss more than one wrap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tokenprint.measure.base import EnergyKind, Measurement, MeterError, check_positive

POWERCAP = Path("/sys/class/powercap")


@dataclass
class RaplDomain:
    """One RAPL zone (``package-0``, ``dram``...)."""

    name: str
    energy_path: Path
    max_uj: float
    last_uj: float = 0.0
    total_uj: float = 0.0

    def read_uj(self) -> float:
        """Current counter value in microjoules."""
        return float(self.energy_path.read_text().strip())

    def poll(self) -> None:
        """Accumulate the delta since the last poll, handling one wrap."""
        now = self.read_uj()
        delta = now - self.last_uj
        if delta < 0:
            delta += self.max_uj + 1.0
        self.total_uj += delta
        self.last_uj = now


def find_domains(root: Path = POWERCAP) -> list[RaplDomain]:
    """Package and DRAM domains that this process may read."""
    found = []
    for zone in sorted(root.glob("intel-rapl:*")):
        energy = zone / "energy_uj"
        try:
            name = (zone / "name").read_text().strip()
            max_uj = float((zone / "max_energy_range_uj").read_text().strip())
            energy.read_text()
        except OSError:
            continue
        if name.startswith("package") or name == "dram":
            found.append(RaplDomain(f"{zone.name}:{name}", energy, max_uj))
    return found


class RaplMeter:
    """CPU package + DRAM energy from RAPL counters (``measured``)."""

    kind: EnergyKind = "measured"

    def __init__(self, root: Path = POWERCAP, poll_s: float = 1.0) -> None:
        self.name = "rapl"
        self.domains = find_domains(root)
        if not self.domains:
            raise MeterError(
                f"no readable RAPL domain under {root} (needs Linux powercap and read access to "
                "energy_uj; often root only)"
            )
        for d in self.domains:
            d.last_uj = d.read_uj()
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, dict[str, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(poll_s,), daemon=True)
        self._thread.start()

    def _run(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            self._snapshot()

    def _snapshot(self) -> dict[str, float]:
        with self._lock:
            for d in self.domains:
                d.poll()
            return {d.name: d.total_uj for d in self.domains}

    def begin_window(self, key: str) -> None:
        """Start a window."""
        self._windows[key] = (time.perf_counter(), self._snapshot())

    def end_window(self, key: str) -> Measurement:
        """End a window: energy is the sum over package and DRAM domains."""
        t0, start = self._windows.pop(key)
        end = self._snapshot()
        dt = time.perf_counter() - t0
        per = {k: (end[k] - start[k]) / 1e6 for k in end}
        return check_positive(Measurement(dt, sum(per.values()), self.name, "measured", per))

    def close(self) -> None:
        """Stop the polling thread."""
        self._stop.set()
        self._thread.join(timeout=2)
