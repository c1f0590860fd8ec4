"""Rebuild the sample data that ships in ``tokenprint/examples`` from the shared public data.

Usage: python scripts/make_examples.py [SHARED_DATA_DIR]   (default: ../shared/data)

Small extracts only, each under a licence that allows redistribution with attribution (listed in
``src/tokenprint/examples/ATTRIBUTION.md``): one month of Electricity Maps hourly intensity for
five zones (ODbL), the first ten minutes of the Azure LLM inference code trace (CC BY 4.0), and
30 ML.ENERGY v2 runs on catalog models (Apache-2.0).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from tokenprint.catalog import load_catalog
from tokenprint.predict.datasets import load_mlenergy

OUT = Path(__file__).resolve().parents[1] / "src" / "tokenprint" / "examples"
ZONES = ("US-CAL-CISO", "US-TEX-ERCO", "US-MIDA-PJM", "US-NY-NYIS", "CA-ON")
EM_COLUMNS = ["Datetime (UTC)", "Country", "Zone Name", "Zone Id",
              "Carbon Intensity gCO₂eq/kWh (direct)", "Carbon Intensity gCO₂eq/kWh (LCA)",
              "Data Source", "Data Estimated"]


def july(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return df.loc[df["Datetime (UTC)"].str.startswith("2023-07"), EM_COLUMNS]


def main(shared: Path) -> None:
    em = shared / "grid" / "electricitymaps_hourly"
    (OUT / "hourly").mkdir(parents=True, exist_ok=True)
    for zone in ZONES:
        july(em / f"{zone}_2023.csv").to_csv(OUT / "hourly" / f"{zone}.csv", index=False)
    july(em / "US-CAL-CISO_2023.csv").to_csv(OUT / "US-CAL-CISO_2023.csv", index=False)

    trace = pd.read_csv(shared / "traces" / "AzureLLMInferenceTrace_code.csv")
    t = pd.to_datetime(trace["TIMESTAMP"])
    trace.loc[t < t.iloc[0] + pd.Timedelta(minutes=10)].to_csv(
        OUT / "AzureLLMInferenceTrace_code.csv", index=False)

    runs = pd.read_csv(shared / "calibration" / "mlenergy_v2_llm_runs.csv")
    catalog = load_catalog()
    usable = []
    for i, row in runs.iterrows():
        one = runs.loc[[i]]
        tmp = OUT / ".one.csv"
        one.to_csv(tmp, index=False)
        if len(load_mlenergy(tmp, catalog).table):
            usable.append(row)
        tmp.unlink()
    found = pd.DataFrame(usable)
    sample = pd.concat([g.head(15) for _, g in found.groupby("GPU")])   # 15 runs per GPU
    sample.to_csv(OUT / "mlenergy_sample.csv", index=False)
    print(f"wrote {OUT}: {len(ZONES)} zones × {len(july(em / 'CA-ON_2023.csv'))} h, "
          f"trace {int((t < t.iloc[0] + pd.Timedelta(minutes=10)).sum())} requests, "
          f"{len(sample)} ML.ENERGY runs")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else
         Path(__file__).resolve().parents[2] / "shared" / "data")
