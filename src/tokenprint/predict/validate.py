"""Validation by leave-one-out over a held-out dimension: batch, model or GPU.

* ``batch``: each point is predicted by a profile fitted to the other points of its GPU.
* ``model``: each model's points are predicted by a profile fitted to the GPU's other models.
* ``gpu``: each GPU's points are predicted by the prior fitted across the other GPUs.

Reports MAPE and bias (mean signed relative error) of energy per output token, TPOT and
throughput, overall and per GPU and model.
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
    point_arrays,
    predict_points,
    subset,
)
from tokenprint.predict.params import PARAM_NAMES, ProfileArrays, prior_from

HOLDOUTS = ("batch", "model", "gpu")
REPORTED = {"energy_per_output_token_j": "energy_per_token", "tpot_s": "tpot",
            "throughput_tok_s": "throughput"}


def _profile(gpu: str, values: np.ndarray) -> CalibrationProfile:
    return CalibrationProfile.model_validate({
        "id": f"{gpu}-tmp", "gpu": gpu, "source": "validation fit",
        **{n: float(v) for n, v in zip(PARAM_NAMES, values, strict=True)}})


def _prior_values(catalog: Catalog, others: list[CalibrationProfile], gpu: str) -> np.ndarray:
    prior, _ = prior_from(others, catalog)
    g = catalog.gpu(gpu)
    tdp = g.tdp_w.value
    idle = g.idle_w.value if g.idle_w is not None else prior["idle_frac"] * tdp
    return np.array([prior["eff_compute"], prior["eff_memory"], prior["step_overhead_s"],
                     prior["seq_overhead_s"], idle, max(prior["peak_frac"] * tdp, idle * 1.05),
                     prior["power_exponent"], prior["tp_latency_s"]])


def heldout_predictions(points: pd.DataFrame, catalog: Catalog, holdout: str) -> pd.DataFrame:
    """Predicted metrics for every point under the given holdout scheme."""
    if holdout not in HOLDOUTS:
        raise TokenprintError(f"unknown holdout {holdout!r}; valid: {', '.join(HOLDOUTS)}")
    if points.empty:
        raise TokenprintError("no usable points to validate on (none matches the catalog)")
    pa_all = point_arrays(points, catalog)
    pred = {m: np.full(len(points), np.nan) for m in REPORTED}
    gpus = sorted(points["gpu"].unique())
    full_fit: dict[str, np.ndarray] = {}
    for g in gpus:
        mask = (points["gpu"] == g).to_numpy()
        full_fit[g], _ = fit_params(subset(pa_all, mask), catalog.gpu(g).tdp_w.value)

    def fill(idx: np.ndarray, pa: PointArrays, values: np.ndarray) -> None:
        out = predict_points(pa, ProfileArrays.from_vector(values))
        for m in REPORTED:
            pred[m][idx] = out[m]

    if holdout == "gpu":
        if len(gpus) < 2:
            raise TokenprintError("holding out a GPU needs points from at least two GPUs")
        for g in gpus:
            others = [_profile(o, full_fit[o]) for o in gpus if o != g]
            mask = (points["gpu"] == g).to_numpy()
            fill(np.nonzero(mask)[0], subset(pa_all, mask), _prior_values(catalog, others, g))
        return _frame(points, pred)
    key = "model" if holdout == "model" else None
    for g in gpus:
        gmask = (points["gpu"] == g).to_numpy()
        tdp = catalog.gpu(g).tdp_w.value
        groups = (points.loc[gmask, key].unique() if key else np.nonzero(gmask)[0])
        for grp in groups:
            if key:
                test = gmask & (points[key] == grp).to_numpy()
            else:
                test = np.zeros(len(points), dtype=bool)
                test[int(grp)] = True
            train = gmask & ~test
            if train.sum() < 3:
                continue
            values, _ = fit_params(subset(pa_all, train), tdp, x0=full_fit[g])
            fill(np.nonzero(test)[0], subset(pa_all, test), values)
    return _frame(points, pred)


def _frame(points: pd.DataFrame, pred: dict[str, np.ndarray]) -> pd.DataFrame:
    out = points.copy()
    for m, arr in pred.items():
        out[f"pred_{m}"] = arr
        out[f"err_{m}"] = (arr - points[m].to_numpy(float)) / points[m].to_numpy(float)
    return out


def _stats(df: pd.DataFrame) -> dict[str, Any]:
    mape, bias = {}, {}
    for m, name in REPORTED.items():
        e = df[f"err_{m}"].to_numpy(float)
        e = e[np.isfinite(e)]
        mape[name] = float(np.mean(np.abs(e)) * 100) if e.size else None
        bias[name] = float(np.mean(e) * 100) if e.size else None
    return {"n_points": len(df), "mape": mape, "bias": bias}


def validation_report(points: pd.DataFrame, catalog: Catalog, holdout: str, n_skipped: int,
                      source: str) -> dict[str, Any]:
    """The JSON report: ``n_points``, ``n_skipped``, ``mape``, ``bias``, ``by_gpu``, ``by_model``.

    MAPE and bias are in percent.
    """
    df = heldout_predictions(points, catalog, holdout)
    scored = df[np.isfinite(df["err_energy_per_output_token_j"])]
    overall = _stats(scored)
    return {
        "holdout": holdout,
        "n_points": overall["n_points"],
        "n_skipped": int(n_skipped + (len(df) - len(scored))),
        "mape": overall["mape"],
        "bias": overall["bias"],
        "by_gpu": {g: _stats(d) for g, d in scored.groupby("gpu")},
        "by_model": {m: _stats(d) for m, d in scored.groupby("model")},
        "data": source,
    }
