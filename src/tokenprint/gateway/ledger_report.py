"""Carbon accounts an organisation can report, from the request ledger: per team, project,
model or key and per day or month, Scope 2 location- and market-based (with the contracts
declared in a TOML file), embodied carbon and the SCI per 1,000 output tokens.

The contracts file's format: :mod:`tokenprint.carbon.contracts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokenprint.carbon.contracts import Contracts, load_contracts  # noqa: F401 (re-exported)
from tokenprint.carbon.intensity import parse_time
from tokenprint.carbon.operational import kwh
from tokenprint.carbon.scope2 import market_based, sci_g_per_unit
from tokenprint.database import Database
from tokenprint.errors import TokenprintError
from tokenprint.gateway.ledger_schema import NUMERIC_COLUMNS

BY = {"team": "team", "project": "project", "model": "model", "key": "key_name",
      "upstream": "upstream", "region": "region", "user": "user_digest", "batch": "batch_id"}
PERIODS = {"day": "D", "month": "M"}
# what the accounts' SCI covers (ISO/IEC 21031:2024's E, I, M and R)
SCI_BOUNDARY = ("SCI = (E × I + M) / R: E each request's GPU energy at its upstream (measured "
                "with a meter, else predicted) × PUE, I the location-based grid intensity, M the "
                "request's share of its upstream's embodied carbon over its duration, R 1,000 "
                "output tokens (sci_g_per_1k_tokens) or one request (sci_g_per_request); the "
                "gateway's own host, networking and idle capacity are outside")
FIELDS = ("requests", "prompt_tokens", "completion_tokens", "energy_kwh", "location_g",
          "market_g", "embodied_g", "total_g", "g_per_1k_tokens", "sci_g_per_1k_tokens",
          "sci_g_per_request")


def ledger_rows(db: Database, start_s: float, end_s: float) -> pd.DataFrame:
    """The ledger's rows in ``[start_s, end_s)`` (SQLite or PostgreSQL; older ledgers without
    the organisation columns read them as empty)."""
    names, got = db.table("SELECT * FROM requests WHERE time_utc >= ? AND time_utc < ?",
                          (start_s, end_s))
    df = pd.DataFrame(got, columns=names)
    for col in NUMERIC_COLUMNS & set(names):   # a column of only NULLs reads as numbers too
        df[col] = pd.to_numeric(df[col])
    for col in ("key_name", "team", "project", "user_digest", "tags", "batch_id"):
        if col not in df:
            df[col] = None
    return df


def report(rows: pd.DataFrame, by: list[str], period: str, start_s: float, end_s: float,
           contracts: Contracts | None = None) -> pd.DataFrame:
    """One row per ``by`` group and period: requests, tokens, energy, location- and
    market-based operational grams, embodied, total (location-based + embodied), grams and SCI
    per 1,000 output tokens."""
    bad = [b for b in by if b not in BY]
    if bad or not by:
        raise TokenprintError(f"--by {','.join(by)!r} is invalid; give one or more of "
                              f"{', '.join(BY)}")
    if period not in PERIODS:
        raise TokenprintError(f"--period {period!r} is invalid; valid: {', '.join(PERIODS)}")
    df = rows.copy()
    keys = [BY[b] for b in by]
    for k in keys:
        df[k] = df[k].fillna("—").astype(str)
    df["energy_kwh"] = kwh(df["energy_j"].fillna(0.0).to_numpy())
    df["location_g"] = df["operational_g"].fillna(0.0)
    if contracts is None:
        df["market_g"] = df["location_g"]       # no instruments declared: the same figure
    else:
        mb = market_based(df["energy_kwh"].to_numpy(), df["time_utc"].to_numpy(),
                          df["region"].astype(str).tolist(), contracts.contracts,
                          contracts.residual_g_per_kwh, (start_s, end_s), contracts.matching)
        df["market_g"] = mb.grams
    df["embodied_g"] = df["embodied_g"].fillna(0.0)
    t = pd.to_datetime(df["time_utc"], unit="s", utc=True).dt.tz_localize(None)
    df["period"] = t.dt.to_period(PERIODS[period]).astype(str)
    g = df.groupby([*keys, "period"], sort=True)
    out = g.agg(requests=("id", "size"), prompt_tokens=("prompt_tokens", "sum"),
                completion_tokens=("completion_tokens", "sum"), energy_kwh=("energy_kwh", "sum"),
                location_g=("location_g", "sum"), market_g=("market_g", "sum"),
                embodied_g=("embodied_g", "sum")).reset_index()
    out["total_g"] = out["location_g"] + out["embodied_g"]
    per_k = out["completion_tokens"].to_numpy(float) / 1000.0
    out["g_per_1k_tokens"] = np.where(per_k > 0, out["total_g"] / np.where(per_k > 0, per_k, 1),
                                      np.nan)
    out["sci_g_per_1k_tokens"] = sci_g_per_unit(out["location_g"], out["embodied_g"], per_k)
    out["sci_g_per_request"] = sci_g_per_unit(out["location_g"], out["embodied_g"],
                                              out["requests"])
    out = out.rename(columns={BY[b]: b for b in by})
    return out[[*by, "period", *FIELDS]]


def report_window(start: str | None, end: str | None, now_s: float) -> tuple[float, float]:
    """``--start``/``--end`` as epoch seconds (default: the last 30 days)."""
    t1 = parse_time(end) if end else now_s
    t0 = parse_time(start) if start else t1 - 30 * 86400.0
    if not t1 > t0:
        raise TokenprintError("--end must be after --start")
    return t0, t1


def as_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN as None)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
             for k, v in r.items()} for r in table.to_dict("records")]


def write_page(table: pd.DataFrame, by: list[str], out: Path, title: str) -> list[Path]:
    """``report.png`` (each group's total carbon per period) and ``report.html`` (a headline,
    the figure and the table, laid out as the study's page)."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenprint.files import atomic_path, write_text_atomic
    from tokenprint.pages import CSS, grams, img, number

    out.mkdir(parents=True, exist_ok=True)
    label = table[by].astype(str).agg(" · ".join, axis=1)
    fig, ax = plt.subplots(figsize=(9, 4.2), constrained_layout=True)
    periods = sorted(table["period"].unique())
    top = float(table["total_g"].abs().max() or 1.0)
    unit, scale = next((u, k) for u, k in (("kg", 1e-3), ("g", 1.0), ("mg", 1e3), ("µg", 1e6))
                       if top * k >= 1 or u == "µg")
    for name in sorted(label.unique()):
        rows = table[label == name].set_index("period").reindex(periods)
        ax.plot(periods, rows["total_g"] * scale, marker="o", label=name)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)   # 17, not 1.7 × 1e-5
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"{unit} CO2e (location-based + embodied)")
    ax.set_xlabel("period")
    ax.set_title(f"Carbon by {', '.join(by)}")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.tick_params(axis="x", labelrotation=30)
    png = out / "report.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)
    total, market = float(table["total_g"].sum()), float(table["market_g"].sum())
    location = float(table["location_g"].sum())
    share = table.assign(label=label).groupby("label")["total_g"].sum()
    lead = [f"{grams(total)} CO2e ({grams(location)} operational, location-based, + "
            f"{grams(float(table['embodied_g'].sum()))} embodied) for "
            f"{number(float(table['completion_tokens'].sum()))} output tokens.",
            f"Market-based operational: {grams(market)} "
            f"({'the same: no contracts declared' if market == location else 'with the contracts'}"
            ").",
            (f"The largest is {share.idxmax()}: {share.max() / total:.0%} of the total."
             if total > 0 and len(share) > 1 else "")]
    heads = [*by, "period", *FIELDS]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[h]))}</td>" for h in heads)
                   + "</tr>" for r in as_records(table))
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<ul class='headline'>{''.join(f'<li>{html.escape(s)}</li>' for s in lead if s)}"
            f"</ul><figure>{img(png)}<figcaption>Each group's carbon per period.</figcaption>"
            "</figure><div class='scroll key'><table><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in heads) + f"</tr></thead><tbody>{body}</tbody>"
            f"</table></div><p class='sub'>{html.escape(SCI_BOUNDARY)}.</p></body></html>")
    write_text_atomic(out / "report.html", page)
    return [png, out / "report.html"]
