"""Validation: how far predictions land from measurements, and how often the ranges hold them.

Two ways to predict each measured point:

* ``no_refit``: with the shipped (or ``--catalog``) profiles, exactly as ``tokenprint predict``
  would — what a user gets. A (GPU, stack) without a profile gets its stack's prior.
* held out, refitting on the rest of the file: ``batch`` (each batch-size bin of a GPU and stack
  predicted by a fit to its other bins), ``model`` (each model by a fit to the other models),
  ``gpu`` (each GPU by its stack's prior built from the other GPUs of that stack), ``stack``
  (each stack's points by a fit to the same GPU under the other stacks — how wrong an old
  engine's profile is).

Reports MAPE and bias (mean signed relative error) in percent, and ``coverage``: the share of
measured values inside the predicted ``[low, high]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tokenprint.catalog import Catalog
from tokenprint.predict.holdout import (  # noqa: F401  (re-exported for callers)
    HOLDOUTS,
    REPORTED,
    heldout_predictions,
    no_refit_predictions,
)


def _stats(df: pd.DataFrame) -> dict[str, Any]:
    mape: dict[str, float | None] = {}
    bias: dict[str, float | None] = {}
    coverage: dict[str, float | None] = {}
    half: dict[str, float | None] = {}
    for m, name in REPORTED.items():
        if m not in df or f"pred_{m}" not in df:
            mape[name] = bias[name] = coverage[name] = half[name] = None
            continue
        meas = df[m].to_numpy(float)
        pred = df[f"pred_{m}"].to_numpy(float)
        ok = np.isfinite(meas) & np.isfinite(pred) & (meas > 0)
        e = (pred[ok] - meas[ok]) / meas[ok]
        lo, hi = df[f"low_{m}"].to_numpy(float)[ok], df[f"high_{m}"].to_numpy(float)[ok]
        inside = (meas[ok] >= lo) & (meas[ok] <= hi)
        mape[name] = float(np.mean(np.abs(e)) * 100) if e.size else None
        bias[name] = float(np.mean(e) * 100) if e.size else None
        coverage[name] = float(np.mean(inside)) if e.size else None
        half[name] = float(np.median((hi - lo) / 2 / pred[ok]) * 100) if e.size else None
    return {"n_points": len(df), "mape": mape, "bias": bias, "coverage": coverage,
            "median_half_width_pct": half}


def validation_report(points: pd.DataFrame, catalog: Catalog, holdout: str | None,
                      n_skipped: int, source: str,
                      skipped_reasons: dict[str, int] | None = None) -> dict[str, Any]:
    """The JSON report: ``n_points``, ``n_skipped``, ``mape``, ``bias``, ``coverage`` (each with
    ``energy_per_token``, ``tpot``, ``throughput``), ``by_gpu``, ``by_model``, ``by_stack``,
    ``by_task`` (where the data names tasks).

    ``holdout`` None predicts with the shipped profiles (``--no-refit``). MAPE, bias and the
    median range half-width are in percent; coverage is a fraction.
    """
    df = (no_refit_predictions(points, catalog) if holdout is None
          else heldout_predictions(points, catalog, holdout))
    pred_cols = [f"pred_{m}" for m in REPORTED]
    scored = df[np.isfinite(df[pred_cols].to_numpy(float)).any(axis=1)]
    overall = _stats(scored)
    reasons = dict(skipped_reasons or {})
    if len(df) > len(scored):
        reasons[f"cannot be held out by {holdout}"] = len(df) - len(scored)
    return {
        "holdout": holdout or "none",
        "refit": holdout is not None,
        "n_points": overall["n_points"],
        "n_skipped": int(n_skipped + (len(df) - len(scored))),
        "skipped_reasons": reasons,
        "mape": overall["mape"],
        "bias": overall["bias"],
        "coverage": overall["coverage"],
        "median_half_width_pct": overall["median_half_width_pct"],
        "by_gpu": {str(g): _stats(d) for g, d in scored.groupby("gpu")},
        "by_model": {str(m): _stats(d) for m, d in scored.groupby("model")},
        "by_stack": {str(s): _stats(d) for s, d in scored.groupby("stack")},
        "by_task": {str(t): _stats(d) for t, d in scored.groupby("task") if str(t)},
        "data": source,
    }
