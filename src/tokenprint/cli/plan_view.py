"""How ``tokenprint plan`` prints its answer in the terminal: the best placement with its totals
(for the trace, per 1k output tokens, per day), the tie-break, baselines, the Pareto front, a
region split and a time shift."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from tokenprint.cli.common import console, fmt_g
from tokenprint.plan import PlanAnswer


def _span(seconds: float) -> str:
    """``1.0 h`` / ``45 min`` / ``2.5 days``."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.3g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.3g} min"


def _totals(a: PlanAnswer, b: dict[str, Any]) -> str:
    """The total for the trace, per 1k output tokens and per day at the trace's rate."""
    parts = [f"{fmt_g(b['total_g'])} total"]
    if b.get("g_per_1k_tokens") is not None:
        parts.append(f"{b['g_per_1k_tokens']:.3g} g per 1k output tokens")
    if a.header.trace_duration_s:
        parts.append(f"{fmt_g(b['total_g'] / a.header.trace_duration_s * 86400)} a day at "
                     "this load")
    return ", ".join(parts)


def print_plan(a: PlanAnswer, figure: str | None = None) -> None:
    if a.infeasible is not None or a.best is None:
        console.print(f"infeasible: {a.infeasible.message if a.infeasible else ''}",
                      style="bold red")
        return
    b = a.best
    each = f"{b['tp']} {b['gpu']}" if b["tp"] > 1 else f"one {b['gpu']}"
    if "split" in b:
        where = ", ".join(f"{r}: {v['replicas']} replicas, {v['share']:.0%} of the load"
                          for r, v in b["split"].items())
        console.print(f"[bold green]best (within the region capacities):[/] replicas of {each} "
                      f"each, split across regions — {where}; max batch {b['max_batch']}, "
                      f"{b['model']}: {_totals(a, b)}", highlight=False)
    else:
        console.print(f"[bold green]best:[/] {b['replicas']} replicas of {each} each "
                      f"({b['gpus_total']} GPUs) in {b['region']}, max batch {b['max_batch']}, "
                      f"{b['model']}: {_totals(a, b)} ({fmt_g(b['operational_g'])} operational + "
                      f"{fmt_g(b['embodied_g'])} embodied), {a.header.targets['percentile']} TTFT "
                      f"{b['ttft_s']:.3g} s, TPOT {b['tpot_s'] * 1e3:.0f} ms", highlight=False)
    console.print(f"every total here is for the trace's {_span(a.header.trace_duration_s)}, at "
                  f"{a.header.intensity_basis}", style="dim", highlight=False)
    if a.tie_break:
        tb = a.tie_break
        low = tb["lowest_carbon"]
        console.print(f"chosen over {low['replicas']} × {low['gpu']} b{low['max_batch']} in "
                      f"{low['region']} ({tb['carbon_above_lowest_pct']:.2g} % more carbon, "
                      f"{tb['p95_latency_below_lowest_pct']:.0f} % lower p95 latency): "
                      f"{tb['rule']}", style="dim")
    t = Table(title=f"Baselines in the home region {a.home_region} (and in {b['region']})")
    for col in ("baseline", "configuration", "total", "saving", "saving, same region"):
        t.add_column(col)
    for k, v in a.baseline_configs.items():
        t.add_row(k, f"{v['replicas']} × {v['gpu']} b{v['max_batch']}", fmt_g(v["total_g"]),
                  f"{a.savings_pct[k]:.1f} %", f"{a.savings_pct_same_region[k]:.1f} %")
    console.print(t)
    p = Table(title="Pareto front: carbon vs p95 end-to-end latency")
    for col in ("configuration", "region", "total", "p95 e2e s"):
        p.add_column(col)
    for r in a.pareto:
        p.add_row(f"{r['replicas']} × {r['gpu']} b{r['max_batch']}", r["region"],
                  fmt_g(r["total_g"]), f"{r['e2e_s']:.3g}")
    console.print(p)
    if a.split is not None and "split" not in b:
        m = a.split.multi_region
        console.print(f"multi-region split within the capacities (HiGHS): "
                      f"{fmt_g(m['total_g'])} — " + ", ".join(
                          f"{r}: {v['replicas']} replicas, {v['share']:.0%}"
                          for r, v in m["split"].items()))
    if a.time_shift is not None and "saving_g" in a.time_shift:
        ts = a.time_shift
        why = f": {ts['why_no_saving']}" if "why_no_saving" in ts else ""
        console.print(f"time shifting the deferrable share saves "
                      f"{fmt_g(ts['saving_g'])} operational{why}")
    if figure:
        console.print(f"figure: {figure}", style="dim")
