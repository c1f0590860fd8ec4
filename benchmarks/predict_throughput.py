"""Predictions per second of the vectorized performance model on one core.

Target (issue #13): at least 1,000,000 predictions per second. Each prediction is a full
static-batch record (TTFT, TPOT, throughput, power and energy per phase) for one (model, GPU,
batch, input, output) point. Prints the measured rate. ``DTYPE=fp8`` runs every point in fp8
(the block-scaled fp8 experts' term included); the default is bf16.

Usage: [DTYPE=fp8] python benchmarks/predict_throughput.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from tokenprint.catalog import load_catalog
from tokenprint.predict.model import predict_static
from tokenprint.predict.params import PARAM_NAMES, ProfileArrays, hardware_arrays, resolve_profile
from tokenprint.predict.shapes import ShapeArrays

N = 1_000_000
DTYPE = os.environ.get("DTYPE", "bf16")


def main() -> None:
    cat = load_catalog()
    rng = np.random.default_rng(0)
    models = list(cat.models.values())
    gpus = list(cat.gpus.values())
    mi = rng.integers(0, len(models), N)
    gi = rng.integers(0, len(gpus), N)
    shape = ShapeArrays.of(models, [DTYPE] * len(models)).take(mi)
    hw = hardware_arrays(gpus, [DTYPE] * len(gpus)).take(gi)
    prof_rows = np.array([[resolve_profile(g, cat, "vllm-2025").values[n] for n in PARAM_NAMES]
                          for g in gpus])
    prof = ProfileArrays.from_vector(prof_rows[gi].T)
    batch = 2.0 ** rng.integers(0, 10, N)
    li = rng.integers(16, 4096, N).astype(float)
    lo = rng.integers(16, 1024, N).astype(float)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        out = predict_static(shape, hw, prof, batch, li, lo, 1.0)
        best = min(best, time.perf_counter() - t0)
    assert np.all(np.isfinite(out["energy_per_output_token_j"]))
    print(f"predictions: {N:,} (static-batch records, 12 metrics each; weights {DTYPE})")
    print(f"time: {best:.3f} s (best of 3)")
    print(f"rate: {N / best:,.0f} predictions/s (target >= 1,000,000/s)")


if __name__ == "__main__":
    main()
