"""fleet.html reads like the study's page: a headline from its own numbers, readable numbers
(no NaN, no 7.209e+04, no nanosecond timestamps), and a figure whose time axis spans the
window even with one step (it spanned 2025-2029)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from tokenprint.fleet.output import headline, write_outputs
from tokenprint.fleet.report import summary


def _table(steps: int) -> pd.DataFrame:
    t0 = pd.Timestamp("2025-07-01T12:00:00Z")
    rows = []
    for name, gpus, method in (("chat", 2, "dcgm"), ("search", 4, "predicted")):
        for i in range(steps):
            gen = np.nan if (name == "search" and i == 0) else 72_090.0
            op = 267.0 if np.isfinite(gen) else np.nan
            rows.append({
                "deployment": name, "model": "llama-3.1-8b", "gpu": "h100-sxm", "gpus": gpus,
                "region": "FR", "engine": "vllm", "end_utc": t0 + pd.Timedelta(minutes=5 * i),
                "prompt_tokens": 1.0, "generation_tokens": gen, "mean_running": 1.0,
                "utilization": 0.5, "energy_j": 3.2e6 if np.isfinite(gen) else np.nan,
                "energy_method": method, "intensity_g_per_kwh": 300.0, "operational_g": op,
                "embodied_g": 12.0 * gpus, "total_g": op + 12.0 * gpus,
                "g_per_1k_tokens": np.nan,
                "status": "ok" if np.isfinite(gen) else "no data", "intensity_source": "x"})
    return pd.DataFrame(rows)


def test_fleet_page_is_readable(tmp_path: Path):
    table = _table(6)
    totals = summary(table)
    write_outputs(table, totals, tmp_path, "Fleet carbon, 30 min")
    page = (tmp_path / "fleet.html").read_text()
    body = re.sub(r"<script>.*?</script>|src=\"data:[^\"]+\"", "", page, flags=re.S)
    assert "NaN" not in body and "nan" not in body.split("<body>")[1]
    assert not re.search(r"\d\.\d+e[+-]\d", body)                  # no 7.209e+04
    assert "1,730,160" not in body and "72,090" in body            # thousands separators
    assert "2025-07-01 12:05:00 UTC" in body and "<time datetime=" in body
    sentences = headline(table, totals)
    assert len(sentences) == 3
    total = totals["total_g"].sum()
    assert f"{total / 1e3:.3g} kg" in sentences[0]
    assert "1 step had no samples" in sentences[2]
    assert all(s in page for s in sentences[:2])
    assert 'src="data:image/png;base64,' in page                     # one file travels


def test_one_step_figure_spans_minutes_not_years(tmp_path: Path, monkeypatch):
    import matplotlib.pyplot as plt

    limits = []
    real_close = plt.close

    def spy(fig=None):
        if fig is not None and hasattr(fig, "axes") and fig.axes:
            limits.append(fig.axes[0].get_xlim())
        real_close(fig)

    monkeypatch.setattr(plt, "close", spy)
    table = _table(1)
    write_outputs(table, summary(table), tmp_path, "one step")
    lo, hi = limits[0]
    assert 0 < hi - lo < 1.0                 # matplotlib dates are in days: under a day
