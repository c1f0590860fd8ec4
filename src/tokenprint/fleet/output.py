"""The fleet report's files: CSV and JSON tables, a figure and an HTML page."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from tokenprint.files import atomic_path, write_text_atomic

TOP = 12               # deployments drawn in the figure (the largest totals)
MAX_HTML_ROWS = 2_000  # steps listed on the page; all of them are in fleet.csv


def write_outputs(table: pd.DataFrame, totals: pd.DataFrame, out: Path,
                  title: str) -> list[Path]:
    """``fleet.csv`` (deployment × step), ``fleet.json`` (totals and steps), ``fleet.png`` and
    ``fleet.html``, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "fleet.csv"
    write_text_atomic(csv, table.to_csv(index=False))
    js = out / "fleet.json"
    # pandas writes the large arrays itself (a per-record json.dumps of 72,000 steps takes ~9 s)
    steps = table.assign(end_utc=table["end_utc"].astype(str)).to_json(orient="records")
    write_text_atomic(js, f'{{"title": {json.dumps(title)}, "totals": '
                          f'{totals.to_json(orient="records")}, "steps": {steps}}}')
    png = out / "fleet.png"
    top = totals.nlargest(TOP, "total_g")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    shown = table[table["deployment"].isin(top["deployment"])]
    for name, g in shown.groupby("deployment", sort=False):
        a1.plot(g["end_utc"], g["total_g"], marker="." if len(g) < 200 else None,
                label=str(name))
    a1.set_title("Carbon per step (operational + embodied)"
                 + (f", the {TOP} largest of {len(totals)}" if len(totals) > TOP else ""))
    a1.set_ylabel("g CO2e")
    a1.tick_params(axis="x", labelrotation=30)
    a1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, frameon=False,
              fontsize=8)
    x = range(len(top))
    a2.bar(x, top["operational_g"], label="operational")
    a2.bar(x, top["embodied_g"], bottom=top["operational_g"], label="embodied")
    a2.set_xticks(list(x), top["deployment"], rotation=45, fontsize=8)
    a2.set_title("Total over the window"
                 + (f" (the {TOP} largest)" if len(totals) > TOP else ""))
    a2.set_ylabel("g CO2e")
    a2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    page = out / "fleet.html"
    write_text_atomic(page, (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "</style>"
        f"<h1>{html.escape(title)}</h1><img src='fleet.png' style='max-width:100%'>"
        "<h2>Totals</h2>" + totals.to_html(index=False, float_format=lambda v: f"{v:.4g}")
        + "<p>Energy is measured where a DCGM or Kepler counter is named, else predicted from "
          "the tokens; steps without samples are counted, never zero-filled. Embodied carbon "
          "is charged for the provisioned GPUs in every step.</p>"
        + ("<h2>Steps</h2>" + table.to_html(index=False, float_format=lambda v: f"{v:.4g}")
           if len(table) <= MAX_HTML_ROWS else
           f"<p>{len(table):,} steps: see fleet.csv (the page lists up to "
           f"{MAX_HTML_ROWS:,}).</p>")))
    return [csv, js, png, page]
