"""The plan's figure: carbon against latency for every feasible deployment (``pareto.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tokenprint.files import atomic_path
from tokenprint.plan.answer import PlanAnswer
from tokenprint.report.figures import log_axis


def pareto_figure(a: PlanAnswer, path: Path) -> Path:
    """Every feasible deployment of a plan answer: carbon against latency by region, the Pareto
    front and the chosen plan (``pareto.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = a.all_feasible or a.table
    fig, ax = plt.subplots(figsize=(8, 4.5))
    regions = sorted({r["region"] for r in rows})
    colours = plt.get_cmap("tab10")
    for i, reg in enumerate(regions):
        pts = [r for r in rows if r["region"] == reg]
        ax.scatter([r["e2e_s"] for r in pts], [r["total_g"] for r in pts], s=22, alpha=0.7,
                   color=colours(i), label=reg)
    front = a.pareto
    ax.plot([r["e2e_s"] for r in front], [r["total_g"] for r in front], "k-", lw=1.2,
            label="Pareto front")
    best = a.best
    assert best is not None, "a figure of a feasible plan"
    ax.scatter([best["e2e_s"]], [best["total_g"]], marker="*", s=200, color="k", zorder=5,
               label="chosen plan")
    ax.set_xlabel(f"{a.header.targets['percentile']} end-to-end latency (s)")
    ax.set_ylabel("total carbon for the trace (g CO2e)")
    log_axis(ax)
    # configurations within 0.5 % of each other in a region draw on top of each other
    shown = len({(r["region"], round(r["e2e_s"], 3), round(float(np.log(r["total_g"])) * 200))
                 for r in rows if r["total_g"] > 0})
    ax.set_title(f"All {len(rows)} feasible deployments in {len(regions)} regions: "
                 "carbon vs latency"
                 + (f"\n({len(rows) - shown} overlap another of the same region within 0.5 %)"
                    if shown < len(rows) else ""), fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=140)
    plt.close(fig)
    return path
