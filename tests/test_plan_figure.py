"""The plan's figure draws what its caption and legend say: every feasible deployment by region,
the Pareto front as a black line, the chosen plan as a large black star, log-scaled carbon."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tokenprint.plan import PlanInputs, plan
from tokenprint.simulate import Trace


def _trace(n: int = 150, rate: float = 3.0) -> Trace:
    rng = np.random.default_rng(0)
    arr = np.cumsum(rng.exponential(1 / rate, n))
    return Trace(arr - arr[0], rng.integers(50, 800, n), rng.integers(5, 200, n), "test")


def test_pareto_figure_draws_what_it_says(tmp_path: Path, catalog, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenprint.report.plan_figure import pareto_figure

    a = plan(PlanInputs(_trace(), ["llama-3.2-1b"], ["l4"], ["FR", "PL"],
                        max_batches=[8, 32], slo_ttft_s=2.0, slo_tpot_s=0.2, max_replicas=8),
             catalog)
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    out = pareto_figure(a, tmp_path / "pareto.png")
    assert out == tmp_path / "pareto.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figs
    (ax,) = fig.axes
    rows = a.all_feasible or a.table
    assert len(rows) >= 4
    title = ax.get_title()
    assert title.startswith(f"All {len(rows)} feasible deployments in 2 regions: carbon vs "
                            "latency")
    assert ax.get_xlabel() == "p95 end-to-end latency (s)"
    assert ax.get_ylabel() == "total carbon for the trace (g CO2e)" and ax.get_yscale() == "log"
    by_label = {c.get_label(): c for c in ax.collections}
    for reg in ("FR", "PL"):
        pts = [[r["e2e_s"], r["total_g"]] for r in rows if r["region"] == reg]
        dots = by_label[reg]
        assert np.allclose(dots.get_offsets(), pts, rtol=1e-12)
        assert dots.get_sizes().tolist() == [22] and dots.get_alpha() == 0.7
    assert not np.allclose(by_label["FR"].get_facecolor(), by_label["PL"].get_facecolor())
    star = by_label["chosen plan"]
    assert star.get_offsets().tolist() == [[a.best["e2e_s"], a.best["total_g"]]]
    assert star.get_sizes().tolist() == [200] and star.get_zorder() == 5
    assert star.get_facecolor().tolist() == [[0.0, 0.0, 0.0, 1.0]]
    (front,) = ax.lines
    assert front.get_label() == "Pareto front" and front.get_linestyle() == "-"
    assert front.get_color() == "k" and front.get_linewidth() == 1.2
    assert list(zip(front.get_xdata(), front.get_ydata(), strict=True)) == [
        (r["e2e_s"], r["total_g"]) for r in a.pareto]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["FR", "PL", "Pareto front",
                                                          "chosen plan"]
    plt.close("all")
