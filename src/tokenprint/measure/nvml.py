"""NVIDIA GPU energy through NVML (nvidia-ml-py).

Energy comes from the cumulative energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ,
Volta and newer) read at the window's edges. A background thread also samples power at
``sample_hz`` (>= 10 Hz) for the peak power, for GPUs without the counter (integrated by the
trapezoid rule), and so both can be compared.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import numpy as np

from tokenprint.measure.base import EnergyKind, Measurement, MeterError, check_positive
from tokenprint.measure.integrate import energy_in_window


def _nvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise MeterError(
            "the nvml meter needs nvidia-ml-py: pip install 'tokenprint[nvml]'"
        ) from None
    return pynvml


class NvmlMeter:
    """Energy of the chosen GPUs (all visible ones by default), ``measured``."""

    kind: EnergyKind = "measured"

    def __init__(self, indices: list[int] | None = None, sample_hz: float = 20.0) -> None:
        if sample_hz < 10:
            raise MeterError(f"sample rate {sample_hz} Hz is too low; use >= 10 Hz")
        self.name = "nvml"
        nv = _nvml()
        try:
            nv.nvmlInit()
        except Exception as exc:  # NVMLError and driver-missing errors
            raise MeterError(f"NVML could not start: {exc}") from None
        self._nv = nv
        count = nv.nvmlDeviceGetCount()
        idx = list(range(count)) if indices is None else indices
        bad = [i for i in idx if i < 0 or i >= count]
        if not idx or bad:
            raise MeterError(f"GPU index {bad or idx} not present; NVML sees {count} GPU(s)")
        self.handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in idx]
        self.names = [f"gpu{i}" for i in idx]
        self.has_counter = [self._counter_ok(h) for h in self.handles]
        self._period = 1.0 / sample_hz
        self._lock = threading.Lock()
        self._t: list[float] = []
        self._p: list[list[float]] = [[] for _ in self.handles]
        self._windows: dict[str, tuple[float, list[float | None]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _counter_ok(self, handle: Any) -> bool:
        try:
            self._nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            return True
        except Exception:
            return False

    def device_names(self) -> list[str]:
        """Product names of the metered GPUs."""
        out = []
        for h in self.handles:
            n = self._nv.nvmlDeviceGetName(h)
            out.append(n.decode() if isinstance(n, bytes) else str(n))
        return out

    def _sample(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter()
            vals = []
            for h in self.handles:
                try:
                    vals.append(self._nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
                except Exception:
                    vals.append(float("nan"))  # a missed sample: skipped by the integral
            with self._lock:
                self._t.append(now)
                for lst, v in zip(self._p, vals, strict=True):
                    lst.append(v)
            time.sleep(max(0.0, self._period - (time.perf_counter() - now)))

    def _counters_mj(self) -> list[float | None]:
        out: list[float | None] = []
        for h, ok in zip(self.handles, self.has_counter, strict=True):
            out.append(float(self._nv.nvmlDeviceGetTotalEnergyConsumption(h)) if ok else None)
        return out

    def begin_window(self, key: str) -> None:
        """Start a window: read the counters."""
        self._windows[key] = (time.perf_counter(), self._counters_mj())

    def end_window(self, key: str) -> Measurement:
        """End a window: counter energy where available, else integrated power samples."""
        t0, c0 = self._windows.pop(key)
        c1 = self._counters_mj()
        t1 = time.perf_counter()
        time.sleep(self._period * 1.5)  # let the sampler pass the window's end
        with self._lock:
            t = np.array(self._t)
            powers = [np.array(p) for p in self._p]
        per: dict[str, float] = {}
        sampled = 0.0
        peak = 0.0
        for name, a, b, p in zip(self.names, c0, c1, powers, strict=True):
            e_sampled = energy_in_window(t, p, t0, t1)
            sampled += e_sampled
            inside = p[(t >= t0) & (t <= t1)]
            if inside.size and np.isfinite(inside).any():
                peak += float(np.nanmax(inside))
            per[name] = (b - a) / 1000.0 if a is not None and b is not None else e_sampled
        self._trim(t0)
        return check_positive(Measurement(t1 - t0, sum(per.values()), self.name, "measured",
                                          per, peak or None, sampled))

    def _trim(self, before: float) -> None:
        """Drop samples older than every open window (keeps memory flat on long sweeps)."""
        keep_from = min([w[0] for w in self._windows.values()] + [before])
        with self._lock:
            i = int(np.searchsorted(np.array(self._t), keep_from - 1.0))
            del self._t[:i]
            for lst in self._p:
                del lst[:i]

    def close(self) -> None:
        """Stop sampling and shut NVML down."""
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self._nv.nvmlShutdown()


class NvmlEnergySource:
    """Cumulative energy (J) of the visible GPUs from NVML's counters, for live attribution
    (a :class:`tokenprint.measure.counter.EnergyCounter`)."""

    method = "nvml"

    def __init__(self, indices: list[int] | None = None) -> None:
        nv = _nvml()
        try:
            nv.nvmlInit()
        except Exception as exc:
            raise MeterError(f"NVML could not start: {exc}") from None
        self._nv = nv
        count = nv.nvmlDeviceGetCount()
        self.handles = [nv.nvmlDeviceGetHandleByIndex(i)
                        for i in (indices if indices is not None else range(count))]
        try:
            self.read_j()
        except Exception as exc:
            raise MeterError(f"these GPUs have no NVML energy counter: {exc}") from None

    def read_j(self) -> float:
        """Sum of the counters, joules."""
        return sum(float(self._nv.nvmlDeviceGetTotalEnergyConsumption(h)) for h in
                   self.handles) / 1000.0
