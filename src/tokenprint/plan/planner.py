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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries, iso, load_intensity_csv
from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.plan.milp import LinearProgram
from tokenprint.predict.params import DEFAULT_STACK
from tokenprint.predict.shapes import group_fits_heads, kv_token_budget
from tokenprint.simulate.cluster import ClusterSpec, SimCarbon, SimResult, carbon_of, simulate
from tokenprint.traces import Trace
from tokenprint.units import S_PER_HOUR

PERCENTILES = {"p95": 95.0, "p99": 99.0}


@dataclass
class PlanInputs:
    """What to plan for."""

    trace: Trace
    models: list[str]
    gpus: list[str]
    regions: list[str]
    max_batches: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    slo_ttft_s: float = 1.0
    slo_tpot_s: float = 0.2
    percentile: str = "p95"
    scope: str = "device"
    lifetime_years: float = 5.0
    pue: float = 1.0
    max_replicas: int = 64
    intensity_dir: Path | None = None
    deferrable: float = 0.0
    deadline_h: float = 0.0
    region_capacity: dict[str, int] = field(default_factory=dict)
    stack: str = DEFAULT_STACK
    tie_tolerance: float = 0.01


@dataclass
class Evaluated:
    """One simulated configuration (independent of region)."""

    model: str
    gpu: str
    tp: int
    max_batch: int
    replicas: int
    result: SimResult
    ttft_q: float
    tpot_q: float
    e2e_q: float
    feasible: bool

    @property
    def n_gpus(self) -> int:
        """GPUs provisioned."""
        return self.replicas * self.tp

    def label(self) -> dict[str, Any]:
        """The configuration as JSON."""
        return {"model": self.model, "gpu": self.gpu, "tp": self.tp, "replicas": self.replicas,
                "max_batch": self.max_batch, "gpus_total": self.n_gpus,
                "ttft_s": self.ttft_q, "tpot_s": self.tpot_q, "e2e_s": self.e2e_q}


@dataclass(frozen=True)
class PlanRow:
    """One simulated configuration placed in one region, with its carbon there."""

    config: Evaluated
    region: str
    carbon: SimCarbon

    @property
    def total_g(self) -> float:
        """Operational + embodied grams (central estimate)."""
        return float(self.carbon.total_g.mid)

    @property
    def e2e_s(self) -> float:
        """End-to-end latency at the planned percentile."""
        return self.config.e2e_q

    @property
    def energy_j(self) -> float:
        """Energy of every provisioned GPU over the trace."""
        return self.config.result.energy_j

    @property
    def gpus_total(self) -> int:
        """GPUs provisioned."""
        return self.config.n_gpus

    @property
    def feasible(self) -> bool:
        """Meets the latency targets with every request served."""
        return self.config.feasible

    def to_dict(self) -> dict[str, Any]:
        """As JSON; sources are given once at the top of the answer."""
        carbon = self.carbon.to_dict()
        carbon.pop("sources")
        return {**self.config.label(), "region": self.region, "feasible": self.feasible,
                "energy_j": self.energy_j, **carbon}


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
         address: str | None = None) -> dict[str, Any]:
    """Find the lowest-carbon deployment meeting the targets; JSON-ready answer.

    ``executor="ray"`` simulates the candidates as parallel Ray tasks; the answer is the same.
    """
    if inp.percentile not in PERCENTILES:
        raise TokenprintError(f"unknown percentile {inp.percentile!r}; valid: p95, p99")
    if not (inp.models and inp.gpus and inp.regions and inp.max_batches):
        raise TokenprintError("models, GPUs, regions and max batch sizes must be non-empty")
    if not 0.0 <= inp.deferrable <= 1.0:
        raise TokenprintError(f"deferrable share {inp.deferrable} must be within 0..1")
    models = [catalog.model(m).id for m in inp.models]
    gpus = [catalog.gpu(g).id for g in inp.gpus]
    regions = [catalog.region(r).id.upper() for r in inp.regions]
    hourly = inp.intensity_dir is not None
    series = {r: _intensity_for(inp, r) for r in regions}
    if hourly and inp.trace.start_s == 0.0:
        raise TokenprintError("hourly intensity needs the trace placed on the calendar (--start)")
    skipped: list[str] = []
    jobs: list[tuple[str, str, int, int]] = []
    for model in models:
        for gpu in gpus:
            tp = min_tp(catalog, model, gpu)
            if tp is None:
                skipped.append(f"{model} does not fit 8 × {gpu}")
                continue
            jobs.extend((model, gpu, tp, mb) for mb in inp.max_batches)
    from tokenprint.executor import parallel_map

    files = list(catalog.files)

    def run(job: tuple[str, str, int, int]) -> list[Evaluated]:
        cat = catalog if executor == "local" else _worker_catalog(files)
        return search_replicas(inp, cat, job[0], job[1], job[2], job[3], hourly)

    results = parallel_map(run, jobs, executor, address,
                           on_result=(lambda i, r: progress()) if progress else None)
    evaluated = [ev for group in results for ev in group]
    if not evaluated:
        raise TokenprintError("no candidate can hold the model: " + "; ".join(skipped))
    rows = [PlanRow(ev, r, carbon_of(ev.result, catalog, r, scope=inp.scope,
                                     lifetime_years=inp.lifetime_years, pue=inp.pue,
                                     intensity=series[r]))
            for ev in evaluated for r in regions]
    feasible = [x for x in rows if x.feasible]
    answer: dict[str, Any] = {
        "trace": inp.trace.name, "n_requests": inp.trace.n,
        "targets": {"percentile": inp.percentile, "ttft_s": inp.slo_ttft_s,
                    "tpot_s": inp.slo_tpot_s},
        "candidates_simulated": len(evaluated), "skipped": skipped,
        "scope": inp.scope, "lifetime_years": inp.lifetime_years, "pue": inp.pue,
        "intensity": "hourly files" if hourly else "annual averages",
        "intensity_basis": (f"each region's hourly intensity over the trace's own hours "
                            f"(from {iso(inp.trace.start_s)})" if hourly else
                            "each region's annual average intensity"),
        "trace_duration_s": float(inp.trace.duration_s),
    }
    if not feasible:
        closest = min(rows, key=lambda x: max(x.config.ttft_q / inp.slo_ttft_s,
                                              x.config.tpot_q / inp.slo_tpot_s))
        near = closest.config
        failing = [name for name, v, t in (("ttft", near.ttft_q, inp.slo_ttft_s),
                                           ("tpot", near.tpot_q, inp.slo_tpot_s)) if v > t]
        answer.update({"feasible": False, "best": None, "failing_targets": failing,
                       "closest": closest.to_dict(),
                       "message": (f"no candidate meets the {inp.percentile} targets within "
                                   f"{inp.max_replicas} replicas; {' and '.join(failing)} cannot "
                                   f"be met; closest: {near.replicas} × {near.gpu} "
                                   f"(batch {near.max_batch}) with {inp.percentile} TTFT "
                                   f"{near.ttft_q:.3g} s, TPOT {near.tpot_q:.3g} s")})
        return answer
    caps = {k.upper(): v for k, v in inp.region_capacity.items()}
    fits = [x for x in feasible if x.gpus_total <= caps.get(x.region.upper(), 10**9)]
    lowest = min(feasible, key=lambda x: x.total_g)
    best, tie = _choose(fits or feasible, inp.tie_tolerance)
    home = regions[0]
    baselines = _baselines([x for x in feasible if x.region == home])
    best_public = best.to_dict()
    answer.update({
        "feasible": True,
        "best": best_public,
        "tie_break": tie,
        "total_range_g": best_public["total_range_g"],
        "sources": best.carbon.sources,
        "home_region": home,
        "baselines": {k: v.total_g for k, v in baselines.items()},
        "baseline_configs": {k: v.to_dict() for k, v in baselines.items()},
        "savings_pct": _savings(best.total_g, baselines),
        "savings_pct_same_region": _savings(
            best.total_g, _baselines([x for x in feasible if x.region == best.region])),
        "pareto": [x.to_dict() for x in pareto(feasible)],
        "table": [x.to_dict() for x in sorted(feasible, key=lambda x: x.total_g)[:50]],
        "all_feasible": [{"gpu": x.config.gpu, "replicas": x.config.replicas,
                          "max_batch": x.config.max_batch, "region": x.region,
                          "e2e_s": x.e2e_s, "total_g": x.total_g} for x in feasible],
    })
    if inp.region_capacity:
        # the split keeps every capacity; it becomes the headline where it beats the best
        # single-region plan that fits (or where none fits)
        # the chosen configuration where one fits a region, else the lowest-carbon one
        base = best if fits else lowest
        split = split_regions(base, inp, catalog, regions, series)
        answer["multi_region"] = split
        single_ok = bool(fits)
        answer["constraints"] = {"region_capacity_gpus": caps,
                                 "single_region_plan_within_capacity": single_ok}
        # (a split that only repeats the best single-region plan does not replace it)
        if split.get("total_g") is not None and (
                not single_ok or split["total_g"] < best.total_g * (1 - 1e-9)):
            headline = {**base.to_dict(), "region": "+".join(split["split"]),
                        "split": split["split"], "total_g": split["total_g"],
                        "replicas": sum(v["replicas"] for v in split["split"].values())}
            headline["gpus_total"] = headline["replicas"] * base.config.tp
            tokens = base.carbon.output_tokens
            headline["g_per_1k_tokens"] = split["total_g"] / tokens * 1000 if tokens else None
            for k in ("operational_g", "embodied_g", "total_range_g"):
                headline.pop(k, None)
            answer["best"] = headline
            answer["best_kind"] = "multi-region split within the capacities"
            answer["tie_break"] = None
            answer["savings_pct"] = _savings(split["total_g"], baselines)
        elif not single_ok:
            answer["message"] = "no plan keeps the region capacities"
    if inp.deferrable > 0:
        answer["time_shift"] = time_shift(best, inp, series[best.region])
    return answer


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


def split_regions(best: PlanRow, inp: PlanInputs, catalog: Catalog, regions: list[str],
                  series: dict[str, IntensitySeries | None]) -> dict[str, Any]:
    """Split the load of the best configuration across regions with GPU capacity limits (MILP).

    Variables: load share x_r ∈ [0, 1] and replicas n_r ∈ ℕ per region. Serving share x_r needs
    n_r ≥ x_r · R (R: replicas the whole load needs), n_r · tp ≤ capacity_r. Carbon is linear:
    busy energy scales with the share, idle energy and embodied carbon with the replicas. Each
    region's intensity is taken over the same hours as its single-region rows (the trace's own
    hours with hourly files, else the annual value), so a split that keeps the whole load in one
    region costs exactly what that region's row says.
    """
    ev = best.config
    res = ev.result
    reps = ev.replicas
    dur = res.duration_s
    idle_w_rep = res.idle_energy_j / res.idle_s if res.idle_s > 0 else 0.0
    emb1 = gpu_embodied(catalog.gpu(ev.gpu), catalog, inp.scope).total_g.mid   # one GPU
    emb_rep = float(charge(0, 0, emb1 * ev.tp, dur, lifetime_years=inp.lifetime_years).embodied_g)
    # per hour of the trace (one span without hourly files): busy energy and seconds, and the
    # provisioned replica-seconds
    if res.hourly_span:
        hours = sorted(res.hourly_span)
        busy_e = np.array([res.hourly.get(h, (0.0, 0.0))[1] for h in hours])
        busy_s = np.array([res.hourly.get(h, (0.0, 0.0))[0] for h in hours])
        span_s = np.array([res.hourly_span[h] for h in hours])
    else:
        hours = []
        busy_e, busy_s = np.array([res.busy_energy_j]), np.array([res.busy_s])
        span_s = np.array([dur * reps])
    lp = LinearProgram()
    share_vars, rep_vars = {}, {}
    for r in regions:
        sr = series[r]
        ci = (np.full(busy_e.shape, catalog.region(r).intensity_g_per_kwh.value) if sr is None
              or not hours else sr.at((np.array(hours, dtype=np.float64) + 0.5) * S_PER_HOUR))
        # busy energy of the share, minus the idle it displaces; idle + embodied per replica
        busy_g, idle_g = charge(np.stack([busy_e - busy_s * idle_w_rep, idle_w_rep * span_s
                                          / reps]), ci, pue=inp.pue).operational_g.sum(axis=1)
        busy_cost, rep_cost = float(busy_g), float(idle_g) + emb_rep
        cap = inp.region_capacity.get(r, inp.region_capacity.get(r.lower(), 10**6))
        share_vars[r] = lp.var(busy_cost, 0.0, 1.0)
        rep_vars[r] = lp.var(rep_cost, 0.0, cap // ev.tp, integer=True)
        lp.row(0.0, float("inf"), {rep_vars[r]: 1.0, share_vars[r]: -float(reps)})
    lp.row(1.0, 1.0, {v: 1.0 for v in share_vars.values()})
    x = lp.solve()
    split = {r: {"share": float(x[share_vars[r]]), "replicas": round(x[rep_vars[r]])}
             for r in regions if x[rep_vars[r]] > 0.5 or x[share_vars[r]] > 1e-9}
    total = float(np.dot(lp.cost, x))
    return {"solver": "HiGHS MILP", "capacity_gpus": inp.region_capacity, "split": split,
            "total_g": total,
            "note": "replicas per region scale with the load share; latency per replica as in "
                    "the single-region simulation"}


def time_shift(best: PlanRow, inp: PlanInputs, series: IntensitySeries | None
               ) -> dict[str, Any]:
    """Move the deferrable share of the load to cleaner hours within the deadline (LP).

    The cluster stays provisioned; deferred work uses its spare capacity in later hours.
    """
    if series is None:
        return {"note": "time shifting needs hourly intensity (--intensity-dir)"}
    ev = best.config
    res = ev.result
    t0 = inp.trace.start_s
    hours = max(int(np.ceil(inp.deadline_h)), 0)
    h0 = int(t0 // S_PER_HOUR)
    idx = list(range(h0, h0 + hours + 1))
    ci = [float(series.at(np.array([(h + 0.5) * S_PER_HOUR]))[0]) for h in idx]
    busy_share = min(res.busy_s / max(res.duration_s * ev.replicas, 1e-9), 1.0)
    lp = LinearProgram()
    e_def = res.busy_energy_j * inp.deferrable
    ys = []
    for i, c in enumerate(ci):
        # spare capacity: the hour of the trace keeps (1 - deferrable) of its own load
        spare = 1.0 - busy_share * (1 - inp.deferrable) if i == 0 else 1.0
        cap = max(spare / max(busy_share, 1e-9), 0.0)
        ys.append(lp.var(float(charge(e_def, c, pue=inp.pue).operational_g), 0.0, cap))
    lp.row(1.0, 1.0, {y: 1.0 for y in ys})
    x = lp.solve()
    shifted = float(np.dot(lp.cost, x))
    unshifted = float(charge(e_def, ci[0], pue=inp.pue).operational_g)
    return {"solver": "HiGHS LP", "deferrable": inp.deferrable, "deadline_h": inp.deadline_h,
            "hours_utc": [h % 24 for h in idx], "intensity_g_per_kwh": ci,
            "placement": [float(v) for v in x],
            "deferrable_operational_g": {"as_arrived": unshifted, "shifted": shifted},
            "saving_g": unshifted - shifted}
