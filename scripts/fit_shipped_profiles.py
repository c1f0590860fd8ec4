"""Regenerate the shipped calibration profiles from the public ML.ENERGY v2 runs.

Usage: python scripts/fit_shipped_profiles.py [../shared/data/calibration/mlenergy_v2_llm_runs.csv]
Writes src/tokenprint/catalog/data/profiles.toml.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tokenprint.catalog import load_catalog
from tokenprint.predict.calibrate import calibrate_with_errors, profiles_toml
from tokenprint.predict.datasets import load_mlenergy

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else \
        REPO.parent / "shared/data/calibration/mlenergy_v2_llm_runs.csv"
    (REPO / "src/tokenprint/catalog/data/profiles.toml").write_text(
        "# Calibration profiles of the performance model; filled by tokenprint calibrate.\n")
    cat = load_catalog()
    pts = load_mlenergy(data, cat)
    profiles = calibrate_with_errors(pts.table, cat, pts.source, engine="vllm")
    header = (
        "Calibration profiles shipped with tokenprint, fitted by scripts/fit_shipped_profiles.py\n"
        f"to {len(pts.table)} ML.ENERGY v2 runs of catalog models ({pts.n_skipped} rows of other "
        "models skipped).\nerror: p90 absolute relative error with batch sizes held out; "
        "gpu_holdout.*: with the GPU held out.\nThese set the ranges of predictions."
    )
    out = REPO / "src/tokenprint/catalog/data/profiles.toml"
    out.write_text(profiles_toml(profiles, header))
    print(f"wrote {out} ({len(profiles)} profiles)")


if __name__ == "__main__":
    main()
