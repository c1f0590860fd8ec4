"""Carbon-optimal deployment under latency targets.

For every model × GPU × max-batch candidate, the smallest replica count meeting the p95 (or p99)
TTFT and TPOT targets is found by simulation (replicas double, then bisect). Each feasible
candidate is costed in every region (operational carbon with annual or hourly intensity, embodied
carbon of the provisioned GPUs for the trace's duration); the lowest total wins. Baselines from
the same simulations — latency-optimal, energy-optimal, fewest GPUs, placed in the home (first)
region — show what the carbon-optimal plan saves; the Pareto front of carbon vs p95 latency shows
the trade-off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tokenprint.carbon.intensity import IntensitySeries, iso, load_intensity_csv
from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.plan.answer import Infeasible, PlanAnswer, PlanHeader
from tokenprint.plan.rows import Evaluated, PlanInputs, PlanRow
from tokenprint.plan.shift import split_headline, time_shift
from tokenprint.predict.shapes import group_fits_heads, kv_token_budget
from tokenprint.simulate.cluster import ClusterSpec, carbon_of, simulate

PERCENTILES = {"p95": 95.0, "p99": 99.0}


def _q(x: np.ndarray, pct: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, pct)) if x.size else float("inf")


def min_tp(catalog: Catalog, model: str, gpu: str) -> int | None:
    """Smallest tensor-parallel degree in 1, 2, 4, 8 whose group holds the weights and some KV."""
    m = catalog.model(model)
    g = catalog.gpu(gpu)
    for tp in (1, 2, 4, 8):
        if not group_fits_heads(m, tp):
            continue
        if kv_token_budget(m, g.memory_gb.value, "bf16" if g.bf16 else "fp16", tp) > 0:
            return tp
    return None


def evaluate(inp: PlanInputs, catalog: Catalog, model: str, gpu: str, tp: int, max_batch: int,
             replicas: int, hourly: bool) -> Evaluated:
    """Simulate one configuration and score it against the targets."""
    spec = ClusterSpec(model=model, gpu=gpu, replicas=replicas, tp=tp, max_batch=max_batch,
                       stack=inp.stack)
    res = simulate(inp.trace, catalog, spec, hourly=hourly)
    pct = PERCENTILES[inp.percentile]
    ttft, tpot, e2e = _q(res.ttft_s, pct), _q(res.tpot_s, pct), _q(res.e2e_s, pct)
    ok = bool(res.served.all() and ttft <= inp.slo_ttft_s and tpot <= inp.slo_tpot_s)
    return Evaluated(model, gpu, tp, max_batch, replicas, res, ttft, tpot, e2e, ok)


def search_replicas(inp: PlanInputs, catalog: Catalog, model: str, gpu: str, tp: int,
                    max_batch: int, hourly: bool) -> list[Evaluated]:
    """Every configuration simulated while finding the fewest replicas meeting the targets."""
    seen: dict[int, Evaluated] = {}

    def ev(r: int) -> Evaluated:
        if r not in seen:
            seen[r] = evaluate(inp, catalog, model, gpu, tp, max_batch, r, hourly)
        return seen[r]

    r = 1
    while r < inp.max_replicas and not ev(r).feasible:
        r = min(r * 2, inp.max_replicas)
    if ev(r).feasible:
        lo, hi = r // 2 + 1 if r > 1 else 1, r
        while lo < hi:
            mid = (lo + hi) // 2
            if ev(mid).feasible:
                hi = mid
            else:
                lo = mid + 1
        ev(hi)
        ev(hi * 2 if hi * 2 <= inp.max_replicas else hi)  # one larger size for the Pareto front
    return sorted(seen.values(), key=lambda e: e.replicas)


def _intensity_for(inp: PlanInputs, region: str) -> IntensitySeries | None:
    if inp.intensity_dir is None:
        return None
    for name in (f"{region}.csv", f"{region.upper()}.csv", f"{region}_2023.csv",
                 f"{region.upper()}_2023.csv"):
        p = inp.intensity_dir / name
        if p.is_file():
            return load_intensity_csv(p, fill=True, region=region)
    raise TokenprintError(f"no hourly intensity file for region {region} in "
                          f"{str(inp.intensity_dir)!r} (expected {region.upper()}.csv)")


def _worker_catalog(files: list[str]) -> Catalog:
    from tokenprint.catalog import get_catalog

    return get_catalog(list(files))


def plan(inp: PlanInputs, catalog: Catalog, progress: Any = None, executor: str = "local",
         address: str | None = None) -> PlanAnswer:
    """Find the lowest-carbon deployment meeting the targets (``.to_dict()`` is plan.json).

    ``executor="ray"`` simulates the candidates as parallel Ray tasks; the answer is the same.
    """
    _check(inp)
    regions = [catalog.region(r).id.upper() for r in inp.regions]
    hourly = inp.intensity_dir is not None
    series = {r: _intensity_for(inp, r) for r in regions}
    if hourly and inp.trace.start_s == 0.0:
        raise TokenprintError("hourly intensity needs the trace placed on the calendar (--start)")
    evaluated, skipped = _simulate_all(inp, catalog, hourly, progress, executor, address)
    rows = [PlanRow(ev, r, carbon_of(ev.result, catalog, r, scope=inp.scope,
                                     lifetime_years=inp.lifetime_years, pue=inp.pue,
                                     intensity=series[r]))
            for ev in evaluated for r in regions]
    header = PlanHeader(
        trace=inp.trace.name, n_requests=inp.trace.n,
        targets={"percentile": inp.percentile, "ttft_s": inp.slo_ttft_s,
                 "tpot_s": inp.slo_tpot_s},
        candidates_simulated=len(evaluated), skipped=skipped, scope=inp.scope,
        lifetime_years=inp.lifetime_years, pue=inp.pue,
        intensity="hourly files" if hourly else "annual averages",
        intensity_basis=(f"each region's hourly intensity over the trace's own hours "
                         f"(from {iso(inp.trace.start_s)})" if hourly else
                         "each region's annual average intensity"),
        trace_duration_s=float(inp.trace.duration_s))
    feasible = [x for x in rows if x.feasible]
    if not feasible:
        return PlanAnswer(header, infeasible=_infeasible(rows, inp))
    return _answer(header, feasible, inp, catalog, regions, series)


def _check(inp: PlanInputs) -> None:
    """Refuse inputs no plan can be made from."""
    if inp.percentile not in PERCENTILES:
        raise TokenprintError(f"unknown percentile {inp.percentile!r}; valid: p95, p99")
    if not (inp.models and inp.gpus and inp.regions and inp.max_batches):
        raise TokenprintError("models, GPUs, regions and max batch sizes must be non-empty")
    if not 0.0 <= inp.deferrable <= 1.0:
        raise TokenprintError(f"deferrable share {inp.deferrable} must be within 0..1")


def _simulate_all(inp: PlanInputs, catalog: Catalog, hourly: bool, progress: Any,
                  executor: str, address: str | None) -> tuple[list[Evaluated], list[str]]:
    """Every model × GPU × max batch that fits, simulated at its fewest replicas meeting the
    targets (locally or as Ray tasks); and what could not be tried."""
    from tokenprint.executor import parallel_map

    skipped: list[str] = []
    jobs: list[tuple[str, str, int, int]] = []
    for model in (catalog.model(m).id for m in inp.models):
        for gpu in (catalog.gpu(g).id for g in inp.gpus):
            tp = min_tp(catalog, model, gpu)
            if tp is None:
                skipped.append(f"{model} does not fit 8 × {gpu}")
                continue
            jobs.extend((model, gpu, tp, mb) for mb in inp.max_batches)
    files = list(catalog.files)

    def run(job: tuple[str, str, int, int]) -> list[Evaluated]:
        cat = catalog if executor == "local" else _worker_catalog(files)
        return search_replicas(inp, cat, job[0], job[1], job[2], job[3], hourly)

    results = parallel_map(run, jobs, executor, address,
                           on_result=(lambda i, r: progress()) if progress else None)
    evaluated = [ev for group in results for ev in group]
    if not evaluated:
        raise TokenprintError("no candidate can hold the model: " + "; ".join(skipped))
    return evaluated, skipped


def _infeasible(rows: list[PlanRow], inp: PlanInputs) -> Infeasible:
    """The targets no candidate meets, and the closest candidate."""
    closest = min(rows, key=lambda x: max(x.config.ttft_q / inp.slo_ttft_s,
                                          x.config.tpot_q / inp.slo_tpot_s))
    near = closest.config
    failing = [name for name, v, t in (("ttft", near.ttft_q, inp.slo_ttft_s),
                                       ("tpot", near.tpot_q, inp.slo_tpot_s)) if v > t]
    return Infeasible(failing, closest.to_dict(), (
        f"no candidate meets the {inp.percentile} targets within {inp.max_replicas} replicas; "
        f"{' and '.join(failing)} cannot be met; closest: {near.replicas} × {near.gpu} (batch "
        f"{near.max_batch}) with {inp.percentile} TTFT {near.ttft_q:.3g} s, TPOT "
        f"{near.tpot_q:.3g} s"))


def _answer(header: PlanHeader, feasible: list[PlanRow], inp: PlanInputs, catalog: Catalog,
            regions: list[str], series: dict[str, IntensitySeries | None]) -> PlanAnswer:
    """The best feasible placement (within the region capacities where given), its baselines
    in the home region, the Pareto front and the table; a split and a time shift where asked."""
    caps = {k.upper(): v for k, v in inp.region_capacity.items()}
    fits = [x for x in feasible if x.gpus_total <= caps.get(x.region.upper(), 10**9)]
    best, tie = _choose(fits or feasible, inp.tie_tolerance)
    baselines = _baselines([x for x in feasible if x.region == regions[0]])
    best_public = best.to_dict()
    split = headline = None
    savings = _savings(best.total_g, baselines)
    if inp.region_capacity:
        split, headline = split_headline(best if fits else min(feasible, key=lambda x: x.total_g),
                                 bool(fits), caps, best.total_g, inp, catalog, regions, series)
        if headline is not None:
            tie, savings = None, _savings(headline["total_g"], baselines)
    return PlanAnswer(
        header, best=headline or best_public, tie_break=tie,
        total_range_g=best_public["total_range_g"], sources=best.carbon.sources,
        home_region=regions[0], baselines={k: v.total_g for k, v in baselines.items()},
        baseline_configs={k: v.to_dict() for k, v in baselines.items()},
        savings_pct=savings,
        savings_pct_same_region=_savings(
            best.total_g, _baselines([x for x in feasible if x.region == best.region])),
        pareto=[x.to_dict() for x in pareto(feasible)],
        table=[x.to_dict() for x in sorted(feasible, key=lambda x: x.total_g)[:50]],
        all_feasible=[{"gpu": x.config.gpu, "replicas": x.config.replicas,
                       "max_batch": x.config.max_batch, "region": x.region,
                       "e2e_s": x.e2e_s, "total_g": x.total_g} for x in feasible],
        split=split,
        time_shift=(time_shift(best, inp, series[best.region]) if inp.deferrable > 0
                    else None))


def _baselines(rows: list[PlanRow]) -> dict[str, PlanRow]:
    """What a carbon-blind operator would pick among ``rows``."""
    return {
        "latency-optimal": min(rows, key=lambda x: (x.e2e_s, x.total_g)),
        "energy-optimal": min(rows, key=lambda x: (x.energy_j, x.total_g)),
        "fewest-GPUs": min(rows, key=lambda x: (x.gpus_total, x.total_g)),
    }


def _savings(total_g: float, baselines: dict[str, PlanRow]) -> dict[str, float]:
    """Percent saved against each baseline."""
    return {k: (1 - total_g / v.total_g) * 100 if v.total_g else 0.0
            for k, v in baselines.items()}


def _choose(rows: list[PlanRow], tolerance: float) -> tuple[PlanRow, dict[str, Any] | None]:
    """The lowest-carbon row, unless another within ``tolerance`` of it has a lower p95
    latency (then fewer GPUs): a 0.005 % carbon saving is not worth 14 % more latency. Returns
    the choice and, when the tie-break moved it, why."""
    lowest = min(rows, key=lambda x: x.total_g)
    near = [x for x in rows if x.total_g <= lowest.total_g * (1 + tolerance)]
    pick = min(near, key=lambda x: (x.e2e_s, x.gpus_total, x.total_g))
    if pick is lowest:
        return lowest, None
    return pick, {
        "tolerance_pct": tolerance * 100,
        "lowest_carbon": lowest.to_dict(),
        "carbon_above_lowest_pct": (pick.total_g / lowest.total_g - 1) * 100,
        "p95_latency_below_lowest_pct": (1 - pick.e2e_s / lowest.e2e_s) * 100
        if lowest.e2e_s else 0.0,
        "rule": f"within {tolerance * 100:g} % of the lowest carbon, the lowest p95 latency, "
                "then the fewest GPUs",
    }


def pareto(rows: list[PlanRow]) -> list[PlanRow]:
    """Non-dominated configurations in (total carbon, p95 end-to-end latency)."""
    pts = sorted(rows, key=lambda x: (x.total_g, x.e2e_s))
    front: list[PlanRow] = []
    best_lat = float("inf")
    for x in pts:
        if x.e2e_s < best_lat:
            front.append(x)
            best_lat = x.e2e_s
    return front
