"""Footprints per second for 10^6 (configuration, hour) pairs, vectorized, on one core.

Target (issue: foundation): at least 1,000,000 footprints per second. Prints the measured rate.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from tokenprint.carbon import IntensitySeries, footprint_arrays, gpu_embodied
from tokenprint.catalog import load_catalog

N_CONFIGS = 1000
N_HOURS = 1000


def main() -> None:
    cat = load_catalog()
    rng = np.random.default_rng(0)
    gpus = list(cat.gpus.values())
    embodied = np.array([gpu_embodied(g, cat, "device").total_g.mid for g in gpus])
    hourly = IntensitySeries(0.0, 3600.0, rng.uniform(20, 800, size=N_HOURS))
    cfg_gpu = rng.integers(0, len(gpus), size=N_CONFIGS)
    energy_j = rng.uniform(1e5, 1e7, size=N_CONFIGS)          # energy per config-hour
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        ci = hourly.at(hourly.times_s())                         # (hours,)
        out = footprint_arrays(energy_j[:, None], 3600.0, ci[None, :],
                               embodied[cfg_gpu][:, None], 5.0, 1.1)
        total = out["total_g"]
        best = min(best, time.perf_counter() - t0)
    n = total.size
    print(f"footprints: {n:,} (configurations × hours)")
    print(f"time: {best * 1e3:.1f} ms (best of 5)")
    print(f"rate: {n / best:,.0f} footprints/s (target >= 1,000,000/s)")


if __name__ == "__main__":
    main()
