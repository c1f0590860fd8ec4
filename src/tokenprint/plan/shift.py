"""Moving load in space and time: the best plan split across regions under GPU capacities
(HiGHS MILP), and the deferrable share moved to cleaner hours within its deadline (LP)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries
from tokenprint.catalog import Catalog
from tokenprint.plan.answer import RegionSplit
from tokenprint.plan.milp import LinearProgram
from tokenprint.plan.rows import PlanInputs, PlanRow
from tokenprint.units import S_PER_HOUR


def split_headline(base: PlanRow, single_ok: bool, caps: dict[str, int], best_g: float,
           inp: PlanInputs, catalog: Catalog, regions: list[str],
           series: dict[str, IntensitySeries | None]
           ) -> tuple[RegionSplit, dict[str, Any] | None]:
    """The split of ``base`` (the chosen plan where one fits a region, else the lowest-carbon
    one) across regions within their capacities; it becomes the headline where it beats the
    best single-region plan that fits, or where none fits (a split that only repeats the best
    single-region plan does not replace it)."""
    split = split_regions(base, inp, catalog, regions, series)
    constraints = {"region_capacity_gpus": caps, "single_region_plan_within_capacity": single_ok}
    if split.get("total_g") is None or (single_ok and split["total_g"] >= best_g * (1 - 1e-9)):
        return RegionSplit(split, constraints, message=None if single_ok else
                           "no plan keeps the region capacities"), None
    headline = {**base.to_dict(), "region": "+".join(split["split"]), "split": split["split"],
                "total_g": split["total_g"],
                "replicas": sum(v["replicas"] for v in split["split"].values())}
    headline["gpus_total"] = headline["replicas"] * base.config.tp
    tokens = base.carbon.output_tokens
    headline["g_per_1k_tokens"] = split["total_g"] / tokens * 1000 if tokens else None
    for k in ("operational_g", "embodied_g", "total_range_g"):
        headline.pop(k, None)
    return RegionSplit(split, constraints, "multi-region split within the capacities"), headline


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

    Every hour of the window is taken to be as busy as the trace (busy share ``b`` of the
    provisioned replica-time); the deferrable share ``d`` of the trace's work may run in any
    hour's spare room: ``1 − b`` in a later hour, ``1 − b·(1 − d)`` in the hour it arrived (its
    own deferrable work leaves it). Running a share ``y`` of the deferrable energy in an hour
    takes ``y·b·d`` of the cluster.
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
    defer_share = max(busy_share * inp.deferrable, 1e-9)   # of the cluster, the work to move
    for i, c in enumerate(ci):
        # spare room: the hour of the trace keeps (1 - deferrable) of its own load
        spare = 1.0 - busy_share * (1 - inp.deferrable) if i == 0 else 1.0 - busy_share
        cap = max(spare / defer_share, 0.0)
        ys.append(lp.var(float(charge(e_def, c, pue=inp.pue).operational_g), 0.0, cap))
    lp.row(1.0, 1.0, {y: 1.0 for y in ys})
    x = lp.solve()
    shifted = float(np.dot(lp.cost, x))
    unshifted = float(charge(e_def, ci[0], pue=inp.pue).operational_g)
    out: dict[str, Any] = {
        "solver": "HiGHS LP", "deferrable": inp.deferrable, "deadline_h": inp.deadline_h,
        "busy_share": busy_share, "hours_utc": [h % 24 for h in idx], "intensity_g_per_kwh": ci,
        "placement": [float(v) for v in x],
        "deferrable_operational_g": {"as_arrived": unshifted, "shifted": shifted},
        "saving_g": unshifted - shifted}
    if out["saving_g"] <= 0:   # nothing moved: say why, for the terminal and plan.json alike
        out["why_no_saving"] = (
            "the hour it arrived is already the cleanest before the deadline" if ci[0] <= min(ci)
            else f"later hours have no spare room (the cluster is {busy_share:.0%} busy)")
    return out
