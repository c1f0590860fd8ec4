"""Estimated energy where no counter exists: power from TDP and utilization.

Formula (documented, and every record made with it says ``estimated``)::

    P = P_idle + (P_tdp - P_idle) × u,     E = ∫ P dt

* CPU: ``u`` = process CPU time / (wall time × logical cores) over the window; ``P_tdp`` defaults
  to 10 W per logical core and ``P_idle`` to 30 % of it (assumptions, override with
  ``tdp_w``/``idle_w``).
* GPU without NVML: ``u`` = 1 while work runs (an upper bound), ``P_tdp`` the catalog TDP.
"""

from __future__ import annotations

import os
import time

from tokenprint.measure.base import EnergyKind, Measurement, check_positive

CPU_W_PER_CORE = 10.0
CPU_IDLE_FRACTION = 0.3
class EstimateMeter:
    """TDP × utilization energy model (``estimated``)."""

    kind: EnergyKind = "estimated"

    def __init__(self, device: str = "cpu", tdp_w: float | None = None,
                 idle_w: float | None = None, cores: int | None = None) -> None:
        self.name = "estimate"
        self.device = device
        self.cores = cores or os.cpu_count() or 1
        default_tdp = CPU_W_PER_CORE * self.cores if device == "cpu" else 300.0
        self.tdp_w = float(tdp_w if tdp_w is not None else default_tdp)
        self.idle_w = float(idle_w if idle_w is not None else CPU_IDLE_FRACTION * self.tdp_w)
        self._windows: dict[str, tuple[float, float]] = {}

    def begin_window(self, key: str) -> None:
        """Start a window (wall clock and process CPU time)."""
        self._windows[key] = (time.perf_counter(), time.process_time())

    def utilization(self, wall_s: float, cpu_s: float) -> float:
        """Utilization over a window, clipped to [0, 1]."""
        if self.device != "cpu":
            return 1.0
        if wall_s <= 0:
            return 0.0
        return min(1.0, max(0.0, cpu_s / (wall_s * self.cores)))

    def end_window(self, key: str) -> Measurement:
        """End a window and estimate its energy."""
        w0, c0 = self._windows.pop(key)
        wall = time.perf_counter() - w0
        cpu = time.process_time() - c0
        u = self.utilization(wall, cpu)
        power = self.idle_w + (self.tdp_w - self.idle_w) * u
        return check_positive(Measurement(wall, power * wall, self.name, "estimated",
                                          {self.device: power * wall}, power))

    def close(self) -> None:
        """Nothing to release."""
