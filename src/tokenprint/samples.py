"""Sample data for README's commands, cut from the public datasets at copy time.

Nothing of the datasets ships with the package: ``tokenprint examples --copy DIR`` reads them
from a data folder (``--data``, ``$TOKENPRINT_DATA``, or ``shared/data`` beside a source
checkout) and writes small extracts: one month of Electricity Maps hourly intensity for five
zones, the first ten minutes of the Azure LLM code trace and 30 ML.ENERGY runs on catalog models.
Sources and licences: ``tokenprint/examples/ATTRIBUTION.md``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError

ZONES = ("US-CAL-CISO", "US-TEX-ERCO", "US-MIDA-PJM", "US-NY-NYIS", "CA-ON")
EM_COLUMNS = ["Datetime (UTC)", "Country", "Zone Name", "Zone Id",
              "Carbon Intensity gCO₂eq/kWh (direct)", "Carbon Intensity gCO₂eq/kWh (LCA)",
              "Data Source", "Data Estimated"]
# what each extract is read from, relative to the data folder
INPUTS = {"intensity": Path("grid/electricitymaps_hourly"),
          "trace": Path("traces/AzureLLMInferenceTrace_code.csv"),
          "runs": Path("calibration/mlenergy_v2_llm_runs.csv")}
EXTRACTS = {
    "US-CAL-CISO_2023.csv": "hourly intensity, CAISO, July 2023 (Electricity Maps, ODbL)",
    **{f"hourly/{z}.csv": f"hourly intensity, {z}, July 2023, for plan --intensity-dir"
       for z in ZONES},
    "AzureLLMInferenceTrace_code.csv": "Azure LLM code trace, first 10 minutes (CC BY 4.0)",
    "mlenergy_sample.csv": "30 ML.ENERGY v2 runs on A100/H100 (Apache-2.0)",
}


def find_data(explicit: Path | None = None) -> Path:
    """The folder holding the public datasets: ``explicit``, ``$TOKENPRINT_DATA``, or
    ``shared/data`` beside the source checkout this package runs from."""
    here = Path(__file__).resolve()
    candidates = ([explicit] if explicit is not None else
                  [Path(os.environ["TOKENPRINT_DATA"])] if os.environ.get("TOKENPRINT_DATA")
                  else [p / "shared" / "data" for p in here.parents[2:4]])
    for c in candidates:
        if all((c / rel).exists() for rel in INPUTS.values()):
            return c
    raise TokenprintError(
        f"no public datasets in {', '.join(repr(str(c)) for c in candidates)} (needs "
        f"{', '.join(str(r) for r in INPUTS.values())}); give --data DIR or set "
        "TOKENPRINT_DATA to a folder holding them (sources in ATTRIBUTION.md)")


def _july(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return df.loc[df["Datetime (UTC)"].str.startswith("2023-07"), EM_COLUMNS]


def extracts(data: Path, catalog: Catalog) -> dict[str, pd.DataFrame]:
    """Every extract, by its path under the examples folder."""
    from tokenprint.predict.datasets import load_mlenergy

    em = data / INPUTS["intensity"]
    out = {f"hourly/{z}.csv": _july(em / f"{z}_2023.csv") for z in ZONES}
    out["US-CAL-CISO_2023.csv"] = out["hourly/US-CAL-CISO.csv"]
    trace = pd.read_csv(data / INPUTS["trace"])
    t = pd.to_datetime(trace["TIMESTAMP"])
    out["AzureLLMInferenceTrace_code.csv"] = trace.loc[t < t.iloc[0] + pd.Timedelta(minutes=10)]
    runs = pd.read_csv(data / INPUTS["runs"])
    with tempfile.TemporaryDirectory() as tmp:   # the loader decides which rows it can use
        one = Path(tmp) / "one.csv"
        keep = []
        for i in range(len(runs)):
            runs.iloc[[i]].to_csv(one, index=False)
            keep.append(len(load_mlenergy(one, catalog).table) > 0)
    usable = runs.loc[keep]
    out["mlenergy_sample.csv"] = pd.concat([g.head(15) for _, g in usable.groupby("GPU")])
    return out
