"""``tokenprint fleet report --ledger``: the deployments ``tokenprint watch`` charged, from the
intervals it wrote to its ledger instead of from Prometheus. Watchers on many hosts writing one
PostgreSQL ledger are summed here in one place."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tokenprint.errors import TokenprintError
from tokenprint.fleet.report import ReportWindow
from tokenprint.fleet.watch import WatchInterval


def ledger_report(intervals: list[WatchInterval], w: ReportWindow) -> pd.DataFrame:
    """Deployments charged by ``tokenprint watch`` from the intervals it wrote to its ledger
    (a shared PostgreSQL one sums the watchers of many hosts), step by step: each interval
    counts in the step its end falls in."""
    if not intervals:
        raise TokenprintError("the watch ledger has no intervals in the window; run tokenprint "
                              "watch with the same --ledger or --results")
    df = pd.DataFrame([iv.__dict__ for iv in intervals])
    k = np.ceil((df["end_utc"].to_numpy(float) - w.start_s) / w.step_s)
    df["step_end"] = w.start_s + np.maximum(k, 0) * w.step_s
    df = df[df["step_end"] <= w.end_s + 1e-6]
    ok = df["status"] == "ok"
    steps = w.start_s + w.step_s * np.arange(int((w.end_s - w.start_s) // w.step_s) + 1)
    frames = []
    for name, d in df.groupby("deployment", sort=True):
        good = d[ok.loc[d.index]]
        sums = good.groupby("step_end")[["prompt_tokens", "generation_tokens", "energy_j",
                                         "operational_g", "embodied_g"]].sum()
        sums = sums.reindex(steps)          # a step without a good interval has no numbers
        # the newest interval's labels; a label the watcher left out is None, never NaN
        first = d.iloc[-1].where(d.iloc[-1].notna(), None)
        o, e, g = sums["operational_g"], sums["embodied_g"], sums["generation_tokens"]
        frames.append(pd.DataFrame({
            "deployment": name, "team": first["team"], "project": first["project"],
            "model": first["model"], "gpu": first["gpu"], "gpus": first["gpus"],
            "region": first["region"], "engine": first["engine"] or "watch",
            "end_utc": pd.to_datetime(steps, unit="s", utc=True),
            "prompt_tokens": sums["prompt_tokens"].to_numpy(), "generation_tokens": g.to_numpy(),
            "mean_running": np.nan, "utilization": np.nan,
            "energy_j": sums["energy_j"].to_numpy(), "energy_method": first["energy_method"],
            "intensity_g_per_kwh": np.nan, "operational_g": o.to_numpy(),
            "embodied_g": e.to_numpy(), "total_g": (o + e).to_numpy(),
            "g_per_1k_tokens": ((o + e) / g * 1000).where(g > 0).to_numpy(),
            "status": np.where(o.isna().to_numpy(), "no data", "ok"),
            "intensity_source": "as tokenprint watch charged it (its ledger)"}))
    return pd.concat(frames, ignore_index=True)
