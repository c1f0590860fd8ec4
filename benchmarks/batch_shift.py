"""Carbon the Batch API saves by waiting: a week of 24-hour batches over real hourly grids.

Each hour of one week, the Azure LLM code trace's requests (its arrivals folded into that hour)
are submitted as one batch with a 24-hour window, for Llama-3.1-8B on H100s. The gateway's own
scheduler (``tokenprint.gateway.batch_runner.choose_start``) picks each batch's start hour and
region from a forecast, on a clock that runs as fast as the loop: a **perfect** forecast (the
real hourly values), and the **persistence** forecast the gateway falls back to (the hour of
submission as it is, each later hour as it was a day earlier). Carbon is the batch's predicted
energy (``tokenprint.predict.serving``) at the real intensity of the hours it runs, charged
through ``tokenprint.carbon.charge``; the baseline runs each batch at submission in the region
cleanest at that moment (what live routing does).

Prints the saving of each forecast against the baseline, and the share of batches that finish
inside their window. Needs ../shared/data (Electricity Maps 2023 hourly files; the trace falls
back to a synthetic one).

Usage: python benchmarks/batch_shift.py [--week-start 2023-06-05]
       [--regions US-CAL-CISO,US-TEX-ERCO,US-MIDA-PJM] [--gpus 8]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from tokenprint.carbon.charge import charge
from tokenprint.carbon.intensity import load_intensity_csv, parse_time
from tokenprint.catalog import load_catalog
from tokenprint.gateway.batch_runner import choose_start
from tokenprint.predict.serving import ServingEnergy
from tokenprint.traces import load_trace, synthetic_poisson
from tokenprint.units import S_PER_HOUR

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WINDOW_H = 24


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--week-start", default="2023-06-05")
    ap.add_argument("--regions", default="US-CAL-CISO,US-TEX-ERCO,US-MIDA-PJM")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs the batches run on")
    args = ap.parse_args()
    grid = SHARED / "grid" / "electricitymaps_hourly"
    regions = args.regions.split(",")
    series = {r: load_intensity_csv(grid / f"{r}_2023.csv", fill=True, region=r)
              for r in regions}
    trace_path = SHARED / "traces" / "AzureLLMInferenceTrace_code.csv"
    trace = load_trace(trace_path) if trace_path.is_file() else synthetic_poisson(9000, 2.5)
    cat = load_catalog()
    serving = ServingEnergy(cat, "llama-3.1-8b", "h100-sxm", 1)
    e_in, e_out = serving.per_token_j(64)
    energy_j = float(trace.input_len.sum() * e_in + trace.output_len.sum() * e_out)
    # the batch's duration on --gpus GPUs at batch 64 (the predicted throughput), whole hours
    tokens_per_s = float(serving.static(64.0, 512.0, 128.0)["throughput_tok_s"][0])
    hours = max(math.ceil(trace.output_len.sum() / (tokens_per_s * args.gpus) / S_PER_HOUR), 1)
    t0 = parse_time(f"{args.week_start}T00:00:00Z")
    mid = lambda t: (np.floor(t / S_PER_HOUR) + 0.5) * S_PER_HOUR  # noqa: E731

    def cost(start_s: float, region: str) -> float:
        """Real carbon of the batch run from ``start_s`` in ``region`` (energy spread evenly
        over its hours)."""
        hs = mid(start_s + S_PER_HOUR * np.arange(hours))
        ci = series[region].at(hs)
        return float(charge(np.full(hours, energy_j / hours), ci).operational_g.sum())

    totals = {"at submission": 0.0, "perfect forecast": 0.0, "persistence forecast": 0.0}
    inside = {k: 0 for k in totals}
    n = 7 * 24
    for k in range(n):
        sub = t0 + k * S_PER_HOUR
        deadline = sub + WINDOW_H * S_PER_HOUR
        now_best = min(regions, key=lambda r: float(series[r].at(np.array([mid(sub)]))[0]))
        totals["at submission"] += cost(sub, now_best)
        inside["at submission"] += sub + hours * S_PER_HOUR <= deadline
        for name, shift in (("perfect forecast", 0.0), ("persistence forecast", 86_400.0)):
            # the hour of submission is known (the live value); later hours are forecast
            hrs = mid(sub + S_PER_HOUR * np.arange(WINDOW_H))
            hrs[1:] -= shift
            options = []
            for r in regions:
                fc = series[r].at(hrs)
                start = choose_start(sub, deadline, hours * S_PER_HOUR, fc)
                k = int((mid(start) - mid(sub)) // S_PER_HOUR)
                options.append((float(fc[k]), start, r))
            _, start, region = min(options)
            totals[name] += cost(start, region)
            inside[name] += start + hours * S_PER_HOUR <= deadline
    base = totals["at submission"]
    print(f"{n} batches over the week from {args.week_start} in {', '.join(regions)}: "
          f"{trace.n:,} requests each ({energy_j / 3.6e6:.2f} kWh predicted, {hours} h on "
          f"{args.gpus} H100s), 24-hour windows")
    for name, g in totals.items():
        print(f"  {name:21s} {g / 1e3:8.2f} kg CO2e  saving {(1 - g / base) * 100:5.1f} %  "
              f"inside the window {inside[name] / n:.0%}")


if __name__ == "__main__":
    main()
