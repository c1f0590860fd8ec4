"""Replay a request trace through a cluster and charge its carbon (what `tokenprint simulate`
does).

Run: python api_simulate.py
"""

from tokenprint.catalog import load_catalog
from tokenprint.simulate import ClusterSpec, carbon_of, simulate, summary, synthetic_poisson

cat = load_catalog()
trace = synthetic_poisson(2_000, rate_per_s=20.0, input_mean=512, output_mean=256, seed=0)

for replicas in (2, 4):
    spec = ClusterSpec("llama-3.1-8b", "h100-sxm", replicas=replicas, max_batch=64)
    result = simulate(trace, cat, spec)
    carbon = carbon_of(result, cat, "FR", lifetime_years=5.0, pue=1.2)
    s = summary(result, carbon, slo_ttft_s=1.0, slo_tpot_s=0.2, region="FR")
    print(f"{replicas} × h100-sxm: {s.slo_attainment:.0%} of requests meet the targets, "
          f"p95 TTFT {s.ttft_s.p95:.3g} s, {float(carbon.total_g.mid):.3g} g CO2e "
          f"({carbon.g_per_1k_tokens:.3g} g per 1k tokens)"
          + ("; the queue grows without bound" if s.queue_grows else ""))
