"""Predictions of measured points, either with the shipped profiles (``no_refit``, as
``tokenprint predict`` would) or held out (a refit on the rest of the data): ``batch``, ``model``,
``gpu``, ``stack`` or ``tp``. :mod:`tokenprint.predict.validate` scores them;
:mod:`tokenprint.predict.calibrate` turns their errors into ranges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tokenprint.catalog import Catalog
from tokenprint.catalog.schema import CalibrationProfile
from tokenprint.errors import TokenprintError
from tokenprint.predict.fit import (
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
