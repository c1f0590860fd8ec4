"""Wall time of ``plan`` on Ray with 2 workers against local, for a fixed candidate set.

The candidate set: Llama-3.1-8B on 4 GPU types × 4 max-batch limits × 3 regions, the Azure code
hour (or a synthetic hour when the shared trace is absent). Ray is started before timing.
Prints the ratio ray/local (below 1: Ray is faster) and checks both answers are the same.
"""

from __future__ import annotations

import time
from pathlib import Path

from tokenprint.catalog import load_catalog
from tokenprint.executor import init_ray
from tokenprint.plan import PlanInputs, plan
from tokenprint.simulate import load_trace, synthetic_poisson

AZURE = Path(__file__).resolve().parents[2] / "shared/data/traces/AzureLLMInferenceTrace_code.csv"


def main() -> None:
    cat = load_catalog()
    trace = load_trace(AZURE) if AZURE.is_file() else synthetic_poisson(9000, 2.5, 2048, 28)
    inp = PlanInputs(trace, ["llama-3.1-8b"], ["l4", "l40s", "a100-sxm4-80gb", "h100-sxm"],
                     ["US-CAL-CISO", "FR", "PL"], max_batches=[16, 32, 64, 128])
    t0 = time.perf_counter()
    local = plan(inp, cat).to_dict()
    t_local = time.perf_counter() - t0
    init_ray(num_cpus=2)
    plan(PlanInputs(trace.head(200), ["llama-3.1-8b"], ["l4"], ["FR"], [16]), cat,
         executor="ray")  # warm the workers
    t0 = time.perf_counter()
    distributed = plan(inp, cat, executor="ray").to_dict()
    t_ray = time.perf_counter() - t0
    same = local["best"] == distributed["best"] and local["pareto"] == distributed["pareto"]
    print(f"plan over {local['candidates_simulated']} simulations: local {t_local:.2f} s, "
          f"Ray with 2 workers {t_ray:.2f} s → ratio {t_ray / t_local:.2f} "
          f"(same answer: {same})")


if __name__ == "__main__":
    main()
