"""Simulated requests per second: the Azure code trace on 4 replicas, and 1,000,000 synthetic.

Targets (issue: simulate): the Azure hour (8,819 requests) in under 5 s on one core; at least
100,000 simulated requests per second on a 1,000,000-request synthetic trace.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tokenprint.catalog import load_catalog
from tokenprint.simulate import ClusterSpec, load_trace, simulate, synthetic_poisson

AZURE = Path(__file__).resolve().parents[2] / "shared/data/traces/AzureLLMInferenceTrace_code.csv"


def main() -> None:
    cat = load_catalog()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else AZURE
    if path.is_file():
        tr = load_trace(path)
        t0 = time.perf_counter()
        simulate(tr, cat, ClusterSpec("llama-3.1-8b", "h100-sxm", replicas=4, max_batch=64))
        dt = time.perf_counter() - t0
        print(f"Azure code trace: {tr.n:,} requests on 4 replicas in {dt:.3f} s "
              f"({tr.n / dt:,.0f} requests/s; target: under 5 s)")
    else:
        print(f"Azure trace not found at {path}; skipping that half")
    syn = synthetic_poisson(1_000_000, 120.0, 512, 256, seed=1)
    t0 = time.perf_counter()
    res = simulate(syn, cat, ClusterSpec("llama-3.1-8b", "h100-sxm", replicas=16, max_batch=128))
    dt = time.perf_counter() - t0
    print(f"synthetic Poisson: {syn.n:,} requests on 16 replicas in {dt:.2f} s "
          f"({syn.n / dt:,.0f} requests/s; target >= 100,000/s); served {res.served.sum():,}")


if __name__ == "__main__":
    main()
