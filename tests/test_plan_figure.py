"""The plan's figure draws what its caption and legend say: every feasible deployment by region,
the Pareto front as a black line, the chosen plan as a large black star, log-scaled carbon."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
    assert list(fig.get_size_inches()) == [8.0, 4.5]
    import matplotlib.colors as mcolors
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (1120, 630)                          # 8 × 4.5 in at 140 dpi
    assert np.allclose(by_label["FR"].get_facecolor()[0][:3], mcolors.to_rgb("tab:blue"))
    assert np.allclose(by_label["PL"].get_facecolor()[0][:3], mcolors.to_rgb("tab:orange"))
    assert star.get_paths()[0].vertices.shape[0] >= 10           # a star, not a dot
    assert ax.get_title().endswith("carbon vs latency") or "overlap another" in title
    assert ax.title.get_fontsize() == 10
    assert ax.xaxis.get_gridlines()[0].get_alpha() == 0.3
    legend = ax.get_legend()
    assert (legend.get_frame_on(), legend.get_texts()[0].get_fontsize(), legend._loc) == (
        False, 8.0, 2)
    assert tuple(legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted()).bounds[
        :2]) == pytest.approx((1.01, 1.0))
    assert [t.get_text() for t in legend.get_texts()] == ["FR", "PL", "Pareto front",
                                                          "chosen plan"]
    plt.close("all")


def test_pareto_figure_counts_the_points_it_hides(tmp_path: Path, monkeypatch):
    """Two deployments of one region within 0.5 % of each other draw on top of each other:
    the title says how many."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenprint.plan.answer import PlanAnswer, PlanHeader
    from tokenprint.report.plan_figure import pareto_figure

    header = PlanHeader("t", 1, {"percentile": "p99"}, 3, [], "device", 5.0, 1.0, "annual",
                        "annual", 1.0)
    rows = [{"region": "FR", "e2e_s": 1.0, "total_g": 100.0},
            {"region": "FR", "e2e_s": 1.0, "total_g": 100.1},
            {"region": "FR", "e2e_s": 2.0, "total_g": 50.0}]
    a = PlanAnswer(header, best=rows[2], pareto=[rows[2], rows[0]], all_feasible=rows)
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    pareto_figure(a, tmp_path / "p.png")
    ax = figs[0].axes[0]
    assert ax.get_title() == ("All 3 feasible deployments in 1 regions: carbon vs latency\n"
                              "(1 overlap another of the same region within 0.5 %)")
    assert ax.get_xlabel() == "p99 end-to-end latency (s)"
    plt.close("all")
