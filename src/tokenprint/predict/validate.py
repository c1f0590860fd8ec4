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
from tokenprint.catalog.schema import CalibrationProfile
from tokenprint.errors import TokenprintError
from tokenprint.predict.calibrate import (
    PointArrays,
    fit_params,
    group_mask,
    groups,
    point_arrays,
    predict_points,
)
from tokenprint.predict.params import (
    DEFAULT_RANGE,
    PARAM_NAMES,
    ProfileArrays,
    resolve_profile,
    stack_prior,
    widest,
)

HOLDOUTS = ("batch", "model", "gpu", "stack", "tp")
REPORTED = {"energy_per_output_token_j": "energy_per_token", "tpot_s": "tpot",
            "throughput_tok_s": "throughput", "ttft_s": "ttft"}


def _profile(gpu: str, stack: str, values: np.ndarray) -> CalibrationProfile:
    return CalibrationProfile.model_validate({
        "id": f"{gpu}-{stack}-tmp", "gpu": gpu, "stack": stack, "source": "validation fit",
        **{n: float(v) for n, v in zip(PARAM_NAMES, values, strict=True)}})


class _Predictions:
    """Predicted metrics and range factors per point, filled group by group."""

    def __init__(self, n: int) -> None:
        self.pred = {m: np.full(n, np.nan) for m in REPORTED}
        self.lo = {m: np.full(n, np.nan) for m in REPORTED}
        self.hi = {m: np.full(n, np.nan) for m in REPORTED}

    def fill(self, idx: np.ndarray, pa: PointArrays, values: np.ndarray | dict[str, float],
             ranges: dict[str, tuple[float, float]]) -> None:
        prof = (ProfileArrays.from_values(values) if isinstance(values, dict)
                else ProfileArrays.from_vector(values))
        out = predict_points(pa.take(idx), prof)
        for m, key in REPORTED.items():
            self.pred[m][idx] = out[m]
            lo, hi = ranges.get(key, DEFAULT_RANGE)
            self.lo[m][idx] = out[m] * lo
            self.hi[m][idx] = out[m] * hi

    def frame(self, points: pd.DataFrame) -> pd.DataFrame:
        out = points.copy()
        for m in REPORTED:
            meas = points[m].to_numpy(float)
            out[f"pred_{m}"] = self.pred[m]
            out[f"low_{m}"] = self.lo[m]
            out[f"high_{m}"] = self.hi[m]
            out[f"ratio_{m}"] = meas / self.pred[m]
            out[f"err_{m}"] = (self.pred[m] - meas) / meas
        return out


def no_refit_predictions(points: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """Every point predicted with the catalog's profiles (or its stack's prior), as ``predict``
    does, with the ranges ``predict`` would give."""
    if points.empty:
        raise TokenprintError("no usable points to validate on (none matches the catalog)")
    pa = point_arrays(points, catalog)
    acc = _Predictions(len(points))
    calibrated = np.zeros(len(points), dtype=bool)
    for gpu, stack in groups(points):
        idx = np.nonzero(group_mask(points, gpu, stack))[0]
        res = resolve_profile(catalog.gpu(gpu), catalog, stack)
        acc.fill(idx, pa, res.values, res.ranges)
        calibrated[idx] = res.calibrated
    out = acc.frame(points)
    out["calibrated"] = calibrated
    return out


def _batch_bins(points: pd.DataFrame) -> np.ndarray:
    return np.round(np.log2(np.maximum(points["batch"].to_numpy(float), 1.0))).astype(int)


def heldout_predictions(points: pd.DataFrame, catalog: Catalog, holdout: str,
                        fallback_batch: bool = False) -> pd.DataFrame:
    """Predicted metrics for every point under the given holdout scheme (refitting on the rest).

    Points that cannot be held out (a stack with one GPU under ``gpu``; a group with one model
    under ``model`` unless ``fallback_batch``; a group with one parallel-group size under ``tp``)
    are left NaN. ``tp`` predicts each group size of a (GPU, stack) from a fit to its others:
    what a user gets on a layout nobody measured.
    """
    if holdout not in HOLDOUTS:
        raise TokenprintError(f"unknown holdout {holdout!r}; valid: {', '.join(HOLDOUTS)}")
    if points.empty:
        raise TokenprintError("no usable points to validate on (none matches the catalog)")
    points = points.reset_index(drop=True)
    pa = point_arrays(points, catalog)
    acc = _Predictions(len(points))
    pairs = groups(points)
    full: dict[tuple[str, str], np.ndarray] = {}
    for g, s in (pairs if holdout != "stack" else []):  # the stack holdout refits from scratch
        full[(g, s)] = fit_params(pa.take(np.nonzero(group_mask(points, g, s))[0])).values

    def ranges_for(gpu: str, stack: str, calibrated: bool) -> dict[str, tuple[float, float]]:
        res = resolve_profile(catalog.gpu(gpu), catalog, stack,
                              exclude_gpu=None if calibrated else gpu)
        # a held-out GPU count is a layout the fit never saw: the ranges predict gives one
        return widest(res.ranges, res.tp_ranges) if holdout == "tp" else res.ranges

    if holdout == "gpu":
        for g, s in pairs:
            others = [_profile(o, s2, full[(o, s2)]) for o, s2 in pairs if s2 == s and o != g]
            if not others:
                continue
            prior, _ = stack_prior(others)
            acc.fill(np.nonzero(group_mask(points, g, s))[0], pa, prior,
                     ranges_for(g, s, calibrated=False))
        return acc.frame(points)
    if holdout == "stack":
        for g, s in pairs:
            train = ((points["gpu"] == g) & (points["stack"] != s)).to_numpy()
            if train.sum() < 3:
                continue
            values = fit_params(pa.take(np.nonzero(train)[0])).values
            acc.fill(np.nonzero(group_mask(points, g, s))[0], pa, values,
                     ranges_for(g, s, calibrated=True))
        return acc.frame(points)
    bins = _batch_bins(points)
    for g, s in pairs:
        gmask = group_mask(points, g, s)
        key = (points["model"].to_numpy() if holdout == "model" else
               points["tp"].to_numpy() if holdout == "tp" else bins)
        levels = np.unique(key[gmask])
        if holdout == "model" and len(levels) < 2 and fallback_batch:
            key, levels = bins, np.unique(bins[gmask])
        if len(levels) < 2:
            continue
        for level in levels:
            test = gmask & (key == level)
            train = gmask & ~test
            if train.sum() < 3:
                continue
            values = fit_params(pa.take(np.nonzero(train)[0]), x0=full[(g, s)]).values
            acc.fill(np.nonzero(test)[0], pa, values, ranges_for(g, s, calibrated=True))
    return acc.frame(points)


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
