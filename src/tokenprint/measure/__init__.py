"""Energy meters: NVML (GPU), RAPL (CPU), and an explicit estimate where no counter exists."""

from __future__ import annotations

from tokenprint.measure.base import EnergyMeter, Measurement, MeterError, measure_idle
from tokenprint.measure.estimate import EstimateMeter

METERS = ("auto", "nvml", "rapl", "estimate")


def make_meter(name: str, device: str, tdp_w: float | None = None,
               gpu_indices: list[int] | None = None) -> tuple[EnergyMeter, str]:
    """Open a meter by name; ``auto`` picks the best available and says why."""
    if name not in METERS:
        raise MeterError(f"unknown meter {name!r}; valid: {', '.join(METERS)}")
    if name == "nvml" or (name == "auto" and device.startswith("cuda")):
        try:
            from tokenprint.measure.nvml import NvmlMeter

            return NvmlMeter(gpu_indices), "nvml: GPU energy counter / power sampling"
        except MeterError as exc:
            if name == "nvml":
                raise
            reason = f"nvml unavailable ({exc})"
            return EstimateMeter(device, tdp_w), f"estimate: {reason}"
    if name == "rapl" or (name == "auto" and device == "cpu"):
        try:
            from tokenprint.measure.rapl import RaplMeter

            return RaplMeter(), "rapl: CPU package + DRAM counters"
        except MeterError as exc:
            if name == "rapl":
                raise
            return EstimateMeter(device, tdp_w), f"estimate: no RAPL ({exc})"
    return EstimateMeter(device, tdp_w), "estimate: chosen"


__all__ = ["METERS", "EnergyMeter", "EstimateMeter", "Measurement", "MeterError", "make_meter",
           "measure_idle"]
