"""Measured points for calibration and validation, from ML.ENERGY files or tokenprint records.

A *points* table has one row per measured configuration: ``gpu``, ``model`` (catalog ids), ``tp``,
``batch``, ``input_len``, ``output_len``, ``dtype``, ``mode`` (``serving`` or ``static``) and the
measured metrics ``energy_per_output_token_j``, ``tpot_s``, ``throughput_tok_s``, ``ttft_s``
(NaN where not measured).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError

METRICS = ("energy_per_output_token_j", "tpot_s", "throughput_tok_s", "ttft_s")

# ML.ENERGY v2 does not record prompt lengths; the mean prompt length is assumed.
MLENERGY_INPUT_LEN_DEFAULT = 512
MLENERGY_SOURCE = ("ML.ENERGY leaderboard v2 (github ml-energy/leaderboard-v2, Apache-2.0): vLLM "
                   "runs on A100-SXM4-40GB and H100 80GB HBM3")
_MLENERGY_COLUMNS = ("Model", "GPU", "TP", "Avg BS (reqs)", "Avg Output Tokens",
                     "Token tput (tok/s)", "Avg TPOT (s)", "energy_per_output_token_J")


@dataclass(frozen=True)
class Points:
    """Points usable with the catalog, and how many rows were skipped (and why)."""

    table: pd.DataFrame
    n_skipped: int
    skipped_reasons: dict[str, int]
    source: str


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.strip().lower()).strip("-")


def _resolve(catalog: Catalog, kind: str, name: str) -> str | None:
    try:
        if kind == "gpu":
            return catalog.gpu(_slug(name)).id
        return catalog.model(name).id
    except TokenprintError:
        return None


def load_mlenergy(path: str | Path, catalog: Catalog,
                  input_len: int = MLENERGY_INPUT_LEN_DEFAULT) -> Points:
    """Read ML.ENERGY v2 runs (the flattened leaderboard CSV); skip models not in the catalog."""
    p = Path(path)
    if not p.is_file():
        raise TokenprintError(f"calibration data file {str(p)!r} does not exist")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TokenprintError(f"calibration data {str(p)!r} is not a readable CSV: {exc}") from None
    missing = [c for c in _MLENERGY_COLUMNS if c not in df.columns]
    if missing:
        raise TokenprintError(
            f"calibration data {str(p)!r} lacks ML.ENERGY columns {missing}; has "
            f"{list(df.columns)}"
        )
    rows: list[dict[str, Any]] = []
    reasons: dict[str, int] = {}
    for rec in df.to_dict("records"):
        gpu = _resolve(catalog, "gpu", str(rec["GPU"]))
        model = _resolve(catalog, "model", str(rec["Model"]))
        if gpu is None or model is None:
            why = f"model not in catalog: {rec['Model']}" if model is None else \
                f"gpu not in catalog: {rec['GPU']}"
            reasons[why] = reasons.get(why, 0) + 1
            continue
        tp = int(rec["TP"])
        # a model whose bf16 weights cannot fit the TP group ran in 8-bit (405B on 8 x H100)
        fits_bf16 = catalog.model(model).weight_bytes("bf16") < 0.9 * tp * \
            catalog.gpu(gpu).memory_gb.value * 1e9
        rows.append({
            "gpu": gpu, "model": model, "tp": tp,
            "batch": float(rec["Avg BS (reqs)"]), "input_len": float(input_len),
            "output_len": float(rec["Avg Output Tokens"]),
            "dtype": "bf16" if fits_bf16 else "fp8", "mode": "serving",
            "energy_per_output_token_j": float(rec["energy_per_output_token_J"]),
            "tpot_s": float(rec["Avg TPOT (s)"]),
            "throughput_tok_s": float(rec["Token tput (tok/s)"]),
            "ttft_s": np.nan, "task": str(rec.get("task", "")),
        })
    table = pd.DataFrame(rows, columns=[
        "gpu", "model", "tp", "batch", "input_len", "output_len", "dtype", "mode", *METRICS,
        "task"])
    return Points(table, sum(reasons.values()), reasons,
                  f"{MLENERGY_SOURCE}; file {p.name}; prompt length assumed {input_len} tokens")


def points_from_records(records: list[dict[str, Any]], catalog: Catalog,
                        source: str) -> Points:
    """Measured tokenprint bench records (static batches on a catalog GPU) as points."""
    rows: list[dict[str, Any]] = []
    reasons: dict[str, int] = {}
    for rec in records:
        if rec.get("status", "ok") != "ok" or rec.get("source", "measured") != "measured":
            reasons["not an ok measured record"] = reasons.get("not an ok measured record", 0) + 1
            continue
        gpu = _resolve(catalog, "gpu", str(rec.get("hardware_id", "")))
        model = _resolve(catalog, "model", str(rec.get("model", "")))
        if gpu is None or model is None:
            why = "model not in catalog" if model is None else \
                f"hardware not a catalog GPU: {rec.get('hardware_id')}"
            reasons[why] = reasons.get(why, 0) + 1
            continue
        rows.append({
            "gpu": gpu, "model": model, "tp": int(rec.get("tp", 1) or 1),
            "batch": float(rec["batch"]), "input_len": float(rec["input_len"]),
            "output_len": float(rec["output_len"]), "dtype": str(rec.get("dtype", "bf16")),
            "mode": "static",
            "energy_per_output_token_j": float(rec["energy_per_output_token_j"]),
            "tpot_s": float(rec["tpot_s"]), "throughput_tok_s": float(rec["throughput_tok_s"]),
            "ttft_s": float(rec["ttft_s"]), "task": "bench",
        })
    table = pd.DataFrame(rows, columns=[
        "gpu", "model", "tp", "batch", "input_len", "output_len", "dtype", "mode", *METRICS,
        "task"])
    return Points(table, sum(reasons.values()), reasons, source)
