"""fleet report over 30 days × 100 deployments of 15 s series (synthetic), on one core.

The series (token and energy counters every 15 s, with a counter restart per deployment) are
generated here; a stand-in for Prometheus's API answers the report's queries with the hourly
``increase()`` of those series, computed the way Prometheus does it (resets counted from zero).
Timed: the report itself (queries answered, carbon per deployment × hour, totals), and writing
its CSV/JSON/figure/HTML. Prometheus's own query time is not in it. Target: under 10 s.

Usage: python benchmarks/fleet_report.py [--days 30] [--deployments 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tokenprint.catalog import load_catalog
from tokenprint.fleet.output import write_outputs
from tokenprint.fleet.report import Deployment, Prometheus, ReportWindow, fleet_report, summary

STEP_S = 15.0


def hourly_increase(counter: np.ndarray, per_hour: int) -> np.ndarray:
    """Per-hour increase of a counter sampled every 15 s; a drop is a restart from zero."""
    d = np.diff(counter, prepend=counter[0])
    d = np.where(d < 0, counter, d)
    return d.reshape(-1, per_hour).sum(axis=1)


class SyntheticPrometheus(Prometheus):
    """Answers the report's queries from synthetic 15 s series."""

    def __init__(self, n_dep: int, days: int, start: float) -> None:
        super().__init__("synthetic://")
        rng = np.random.default_rng(0)
        per_hour = int(3600 / STEP_S)
        n = days * 24 * per_hour
        self.start, self.hours = start, days * 24
        self.series: dict[tuple[str, str], np.ndarray] = {}
        for k in range(n_dep):
            load = 0.5 + 0.5 * np.sin(np.arange(n) * 2 * np.pi / (24 * per_hour) + k)
            gen = np.cumsum(rng.poisson(200 * load))
            gen[n // 2:] -= gen[n // 2]                     # the engine restarts once
            prompt = gen * 4
            energy = np.cumsum(STEP_S * (150 + 500 * load))
            name = f"d{k}"
            self.series[(name, "gen")] = hourly_increase(gen.astype(float), per_hour)
            self.series[(name, "prompt")] = hourly_increase(prompt.astype(float), per_hour)
            self.series[(name, "energy")] = hourly_increase(energy * 1000, per_hour)  # mJ
            self.series[(name, "running")] = load.reshape(-1, per_hour).mean(axis=1) * 16
            self.series[(name, "busy")] = np.ones(self.hours)
        self.queries = 0

    def names(self, match: str) -> set[str]:
        return {"vllm:generation_tokens_total"}

    def range_sum(self, query: str, start: float, end: float, step_s: float) -> pd.Series:
        self.queries += 1
        name = query.split('job="')[1].split('"')[0]
        kind = ("energy" if "DCGM" in query else "busy" if "bool" in query else
                "running" if "avg_over_time" in query else
                "prompt" if "prompt" in query else "gen")
        n = int((end - start) // step_s) + 1
        return pd.Series(self.series[(name, kind)][:n], index=start + step_s * np.arange(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--deployments", type=int, default=100)
    a = ap.parse_args()
    catalog = load_catalog()
    start = 1_700_000_000.0
    t_gen = time.perf_counter()
    prom = SyntheticPrometheus(a.deployments, a.days, start)
    t_gen = time.perf_counter() - t_gen
    deps = [Deployment(name=f"d{k}", match={"job": f"d{k}"}, model="llama-3.1-8b",
                       gpu="h100-sxm", gpus=8, region=("FR", "PL", "US-CAL-CISO")[k % 3],
                       energy="dcgm", energy_match={"job": f"d{k}"})
            for k in range(a.deployments)]
    window = ReportWindow(start + 3600, start + a.days * 86400, 3600)
    t0 = time.perf_counter()
    table = fleet_report(prom, catalog, deps, window)
    totals = summary(table)
    t_report = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        write_outputs(table, totals, Path(tmp), "benchmark")
        t_write = time.perf_counter() - t1
    samples = a.days * 86400 / STEP_S * a.deployments
    print(f"{a.deployments} deployments × {a.days} days at 15 s: {samples:,.0f} samples per "
          f"series (synthesised in {t_gen:.1f} s, not timed); {len(table):,} deployment-hours")
    print(f"report: {t_report:.2f} s ({prom.queries} queries answered); files: {t_write:.2f} s; "
          f"total {t_report + t_write:.2f} s (target < 10 s)")


if __name__ == "__main__":
    main()
