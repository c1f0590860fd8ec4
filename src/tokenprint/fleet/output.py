"""The fleet report's files: CSV and JSON tables, a figure and an HTML page."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from tokenprint.carbon.operational import kwh
from tokenprint.files import atomic_path, write_text_atomic
from tokenprint.fleet.report import SCI_BOUNDARY
from tokenprint.pages import CSS, LOCAL_TIMES, grams, img, number, time_tag

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
    _figure(table, totals, png)
    page = out / "fleet.html"
    write_text_atomic(page, _page(table, totals, title, png))
    return [csv, js, png, page]


def _figure(table: pd.DataFrame, totals: pd.DataFrame, png: Path) -> None:
    """Carbon per step of the largest deployments, and their totals split in two."""
    import matplotlib.dates as mdates

    if table.empty:   # an empty window: say so, not two empty axes dated 1970
        fig, ax = plt.subplots(figsize=(11, 4.8))
        ax.axis("off")
        ax.text(0.5, 0.5, "No deployment in the window.", ha="center", va="center", fontsize=12)
        _save(fig, png)
        return
    top = totals.nlargest(TOP, "total_g")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    shown = table[table["deployment"].isin(top["deployment"])]
    for name, g in shown.groupby("deployment", sort=False):
        a1.plot(g["end_utc"], g["total_g"], marker="." if len(g) < 200 else None,
                label=str(name))
    # the axis spans the window's steps (one step alone spanned years by default)
    times = pd.to_datetime(table["end_utc"])
    step = (times.max() - times.min()) / max(times.nunique() - 1, 1)
    pad = step if step > pd.Timedelta(0) else pd.Timedelta(minutes=1)
    a1.set_xlim(times.min() - pad, times.max() + pad)
    locator = mdates.AutoDateLocator()
    a1.xaxis.set_major_locator(locator)
    a1.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    a1.set_title("Carbon per step (operational + embodied)"
                 + (f", the {TOP} largest of {len(totals)}" if len(totals) > TOP else ""))
    a1.set_ylabel("g CO2e")
    a1.set_xlabel("step end (UTC)")
    a1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False,
              fontsize=8)
    x = range(len(top))
    a2.bar(x, top["operational_g"], label="operational")
    a2.bar(x, top["embodied_g"], bottom=top["operational_g"].fillna(0), label="embodied")
    a2.set_xticks(list(x), top["deployment"], rotation=30, fontsize=8, ha="right")
    a2.set_title("Total over the window"
                 + (f" (the {TOP} largest)" if len(totals) > TOP else ""))
    a2.set_ylabel("g CO2e")
    a2.legend(loc="upper right", frameon=False)
    _save(fig, png)


def _save(fig: plt.Figure, png: Path) -> None:
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def headline(table: pd.DataFrame, totals: pd.DataFrame) -> list[str]:
    """Three sentences from the report's own numbers: the total and its split, the largest
    deployment, and where energy was measured."""
    if totals.empty:
        return ["No deployment in the window."]
    total = float(totals["total_g"].sum(min_count=1))
    op, emb = float(totals["operational_g"].sum()), float(totals["embodied_g"].sum())
    tokens = float(totals["generation_tokens"].sum())
    per = (f", {total / tokens * 1000:.3g} g per 1,000 (the SCI, ISO/IEC 21031)"
           if tokens > 0 else "")
    out = [f"{grams(total)} CO2e over the window ({grams(op)} operational + {grams(emb)} "
           f"embodied) for {number(tokens)} output tokens{per}."]
    big = totals.loc[totals["total_g"].idxmax()] if totals["total_g"].notna().any() else None
    if big is not None and len(totals) > 1:
        out.append(f"The largest is {big['deployment']} ({big['model']} on {big['gpus']:g} × "
                   f"{big['gpu']} in {big['region']}): {grams(big['total_g'])}, "
                   f"{big['total_g'] / total:.0%} of the total.")
    steps = len(table)
    measured = int(table["energy_method"].isin(["dcgm", "kepler"]).sum())
    missing = int((table["status"] != "ok").sum())
    gap = (f"{missing} step had no samples and is" if missing == 1 else
           f"{missing} steps had no samples and are")
    out.append(f"Energy is measured (DCGM or Kepler) in {measured} of {steps} deployment-steps "
               f"and predicted from tokens in the rest; {gap} counted, not filled with zeros.")
    return out


def _page(table: pd.DataFrame, totals: pd.DataFrame, title: str, png: Path) -> str:
    """The fleet page, laid out as the study's: headline, figure, readable tables."""
    lead = "".join(f"<li>{html.escape(s)}</li>" for s in headline(table, totals))
    times = pd.to_datetime(table["end_utc"])
    span = (f"{times.min():%Y-%m-%d %H:%M} – {times.max():%Y-%m-%d %H:%M} UTC, "
            f"{len(times.unique())} steps" if len(times) else "no steps")
    heads = ("deployment", "team", "model", "GPUs", "region", "output tokens", "energy",
             "operational", "embodied", "total", "g/1k tokens", "steps (no data)")
    rows = []
    for t in totals.to_dict("records"):
        cells = (t["deployment"], t["team"] if isinstance(t.get("team"), str) else "—", t["model"],
                 f"{number(t['gpus'])} × {t['gpu']}", t["region"],
                 number(t["generation_tokens"]), _kwh(t["energy_j"]), grams(t["operational_g"]),
                 grams(t["embodied_g"]), grams(t["total_g"]), number(t["g_per_1k_tokens"]),
                 f"{t['steps']} ({t['steps_without_data']})")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    steps_html = (_steps(table) if len(table) <= MAX_HTML_ROWS else
                  f"<p>{len(table):,} steps: see fleet.csv (the page lists up to "
                  f"{MAX_HTML_ROWS:,}).</p>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(span)} · "
            f"{len(totals)} deployments</p><ul class='headline'>{lead}</ul>"
            f"<figure>{img(png)}<figcaption>Carbon per step of the largest deployments, and "
            "each one's total split into operational and embodied.</figcaption></figure>"
            "<h2>Totals</h2><div class='scroll key'><table><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in heads) + "</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table></div><p class='sub'>Energy is measured where a DCGM or Kepler "
              "counter is named, else predicted from the tokens; steps without samples are "
              "counted, never zero-filled. Embodied carbon is charged for the provisioned GPUs "
              f"in every step. {SCI_BOUNDARY}. Every number is in fleet.csv and fleet.json.</p>"
            + steps_html + LOCAL_TIMES + "</body></html>")


def _kwh(joules: float | None) -> str:
    if joules is None or not math.isfinite(joules):
        return "—"
    e = float(kwh(joules))
    return number(e * 1000, "Wh") if e < 1 else number(e, "kWh")


def _steps(table: pd.DataFrame) -> str:
    heads = ("step end", "deployment", "output tokens", "energy", "method", "operational",
             "embodied", "total", "status")
    rows = []
    for s in table.to_dict("records"):
        t = pd.Timestamp(s["end_utc"])
        cells = [time_tag(t.isoformat(), f"{t:%Y-%m-%d %H:%M:%S} UTC")] + [html.escape(str(c))
                 for c in (s["deployment"], number(s["generation_tokens"]), _kwh(s["energy_j"]),
                           s["energy_method"], grams(s["operational_g"]),
                           grams(s["embodied_g"]), grams(s["total_g"]), s["status"])]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<h2>Steps</h2><div class='scroll key'><table><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in heads) + "</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table></div>")
