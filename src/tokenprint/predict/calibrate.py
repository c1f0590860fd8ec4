"""Fit calibration profiles (per GPU) to measured points by robust least squares in log space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from tokenprint.catalog import Catalog
from tokenprint.catalog.schema import CalibrationProfile, dtype_bytes
from tokenprint.errors import TokenprintError
from tokenprint.predict.model import predict_serving, predict_static
from tokenprint.predict.params import (
    DEFAULT_PRIOR,
    F64,
    PARAM_NAMES,
    ProfileArrays,
    hardware_arrays,
)
from tokenprint.predict.shapes import ShapeArrays

# residual weights: energy per token is the figure carbon depends on
METRIC_WEIGHTS = {"energy_per_output_token_j": 2.0, "tpot_s": 1.0, "throughput_tok_s": 1.0,
                  "ttft_s": 1.0}
ERROR_KEYS = {"energy_per_output_token_j": "energy_per_token", "tpot_s": "tpot",
              "throughput_tok_s": "throughput", "ttft_s": "ttft"}
PRIOR_WEIGHT = 0.05
NDArrayBool = np.ndarray  # gentle pull toward the default prior keeps weakly constrained terms sane


@dataclass(frozen=True)
class PointArrays:
    """Everything the model needs per point, precomputed once per table."""

    shape: ShapeArrays
    peak_flops: F64
    mem_bw_b_s: F64
    link_b_s: F64
    tdp_w: F64
    mem_bytes: F64
    batch: F64
    input_len: F64
    output_len: F64
    bytes_per_elem: F64
    tp: F64
    serving: NDArrayBool
    measured: dict[str, F64]



def point_arrays(points: pd.DataFrame, catalog: Catalog) -> PointArrays:
    """Precompute per-point arrays for a points table."""
    models = [catalog.model(m) for m in points["model"]]
    gpus = [catalog.gpu(g) for g in points["gpu"]]
    dtypes = list(points["dtype"])
    hw = hardware_arrays(gpus, dtypes)
    return PointArrays(
        shape=ShapeArrays.of(models), peak_flops=hw.peak_flops, mem_bw_b_s=hw.mem_bw_b_s,
        link_b_s=hw.link_b_s, tdp_w=hw.tdp_w, mem_bytes=hw.mem_bytes,
        batch=points["batch"].to_numpy(float), input_len=points["input_len"].to_numpy(float),
        output_len=points["output_len"].to_numpy(float),
        bytes_per_elem=np.array([dtype_bytes(d) for d in dtypes], dtype=float),
        tp=points["tp"].to_numpy(float), serving=(points["mode"] == "serving").to_numpy(),
        measured={m: points[m].to_numpy(float) for m in METRIC_WEIGHTS},
    )


def predict_points(pa: PointArrays, prof: ProfileArrays) -> dict[str, F64]:
    """Model predictions for each point, in its own mode (serving or static)."""
    from tokenprint.predict.params import HardwareArrays

    hw = HardwareArrays(pa.peak_flops, pa.mem_bw_b_s, pa.link_b_s, pa.tdp_w, pa.mem_bytes)
    args = (pa.shape, hw, prof, pa.batch, pa.input_len, pa.output_len, pa.bytes_per_elem, pa.tp)
    serv = predict_serving(*args)
    stat = predict_static(*args)
    return {m: np.where(pa.serving, serv[m], stat[m]) for m in METRIC_WEIGHTS}


def _bounds(tdp_w: float) -> tuple[F64, F64]:
    # Efficiencies are capped where real kernels top out: dense GEMMs reach about 80 % of the
    # datasheet tensor peak, streaming kernels about 90 % of the memory bandwidth.
    lo = np.array([0.02, 0.02, 1e-6, 1e-8, 0.02 * tdp_w, 0.1 * tdp_w, 0.25, 1e-7])
    hi = np.array([0.8, 0.9, 2.0, 0.05, 0.6 * tdp_w, 1.2 * tdp_w, 4.0, 0.05])
    return np.log(lo), np.log(hi)


def _x0(tdp_w: float) -> F64:
    p = DEFAULT_PRIOR
    return np.log(np.array([p["eff_compute"], p["eff_memory"], p["step_overhead_s"],
                            p["seq_overhead_s"], p["idle_frac"] * tdp_w, p["peak_frac"] * tdp_w,
                            p["power_exponent"], p["tp_latency_s"]]))


def fit_params(pa: PointArrays, tdp_w: float, x0: F64 | None = None) -> tuple[F64, float]:
    """Fit the 8 parameters of one GPU to its points; returns (values, rms log residual)."""
    lo, hi = _bounds(tdp_w)
    start = np.clip(_x0(tdp_w) if x0 is None else np.log(x0), lo + 1e-9, hi - 1e-9)
    prior = _x0(tdp_w)
    masks = {m: np.isfinite(v) & (v > 0) for m, v in pa.measured.items()}
    if sum(int(mk.sum()) for mk in masks.values()) < 3:
        raise TokenprintError("too few measured values to fit a profile (need at least 3)")

    def residuals(x: F64) -> F64:
        prof = ProfileArrays.from_vector(np.exp(x))
        pred = predict_points(pa, prof)
        parts = [METRIC_WEIGHTS[m] * np.log(np.maximum(pred[m][mk], 1e-30) / pa.measured[m][mk])
                 for m, mk in masks.items() if mk.any()]
        parts.append(PRIOR_WEIGHT * (x - prior))
        return np.concatenate(parts)

    sol = least_squares(residuals, start, bounds=(lo, hi), loss="soft_l1", f_scale=0.2,
                        max_nfev=400)
    rms = float(np.sqrt(np.mean(sol.fun ** 2)))
    return np.exp(sol.x), rms


def rel_errors(pa: PointArrays, values: F64) -> dict[str, F64]:
    """Signed relative error (pred - meas) / meas per metric (NaN where unmeasured)."""
    pred = predict_points(pa, ProfileArrays.from_vector(values))
    return {m: (pred[m] - pa.measured[m]) / pa.measured[m] for m in METRIC_WEIGHTS}


def subset(pa: PointArrays, mask: NDArrayBool) -> PointArrays:
    """The points selected by a boolean mask."""
    idx = np.nonzero(mask)[0]
    return PointArrays(
        shape=pa.shape.take(idx), peak_flops=pa.peak_flops[idx], mem_bw_b_s=pa.mem_bw_b_s[idx],
        link_b_s=pa.link_b_s[idx], tdp_w=pa.tdp_w[idx], mem_bytes=pa.mem_bytes[idx],
        batch=pa.batch[idx],
        input_len=pa.input_len[idx], output_len=pa.output_len[idx],
        bytes_per_elem=pa.bytes_per_elem[idx], tp=pa.tp[idx], serving=pa.serving[idx],
        measured={m: v[idx] for m, v in pa.measured.items()},
    )


def p90_abs(errors: F64) -> float:
    """90th percentile of absolute relative errors (finite ones)."""
    e = np.abs(errors[np.isfinite(errors)])
    return float(np.percentile(e, 90)) if e.size else float("nan")


def fit_profiles(points: pd.DataFrame, catalog: Catalog, source: str,
                 engine: str = "any") -> list[CalibrationProfile]:
    """One profile per GPU in the points, with in-sample p90 relative errors."""
    if points.empty:
        raise TokenprintError("no usable points to calibrate on (none matches the catalog)")
    pa_all = point_arrays(points, catalog)
    profiles = []
    for gpu_id in sorted(points["gpu"].unique()):
        mask = (points["gpu"] == gpu_id).to_numpy()
        pa = subset(pa_all, mask)
        tdp = catalog.gpu(gpu_id).tdp_w.value
        values, _ = fit_params(pa, tdp)
        errs = rel_errors(pa, values)
        error = {ERROR_KEYS[m]: round(p90_abs(e), 4) for m, e in errs.items()
                 if np.isfinite(p90_abs(e))}
        profiles.append(CalibrationProfile.model_validate({
            "id": f"{gpu_id}-{engine}", "gpu": gpu_id, "engine": engine,
            "source": f"fitted by tokenprint calibrate to {int(mask.sum())} points: {source}",
            "n_points": int(mask.sum()), "error": error,
            **{n: float(v) for n, v in zip(PARAM_NAMES, values, strict=True)},
        }))
    return profiles


def profiles_toml(profiles: list[CalibrationProfile], header: str = "") -> str:
    """Catalog TOML text (``[[profile]]`` tables) for profiles."""
    import tomli_w

    doc = {"profile": [p.model_dump(exclude={"aliases", "name"}) for p in profiles]}
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    return ("\n".join(lines) + "\n\n" if lines else "") + tomli_w.dumps(doc)


def calibrate_with_errors(points: pd.DataFrame, catalog: Catalog, source: str,
                          engine: str = "any") -> list[CalibrationProfile]:
    """Profiles whose ``error`` holds held-out p90 relative errors, used as prediction ranges.

    Keys ``energy_per_token``, ``tpot``, ``throughput``, ``ttft`` come from leave-one-out over
    batch sizes; ``gpu_holdout.*`` (with two or more GPUs) from predicting each GPU with the
    prior of the others, and set the range of predictions for uncalibrated GPUs.
    """
    from tokenprint.predict.validate import heldout_predictions

    base = fit_profiles(points, catalog, source, engine)
    by_batch = heldout_predictions(points, catalog, "batch")
    by_gpu = heldout_predictions(points, catalog, "gpu") if points["gpu"].nunique() > 1 else None
    out = []
    for prof in base:
        mask = by_batch["gpu"] == prof.gpu
        error = dict(prof.error)
        for m, key in ERROR_KEYS.items():
            col = f"err_{m}"
            if col in by_batch:
                v = p90_abs(by_batch.loc[mask, col].to_numpy(float))
                if np.isfinite(v):
                    error[key] = round(v, 4)
            if by_gpu is not None and col in by_gpu:
                v = p90_abs(by_gpu.loc[by_gpu["gpu"] == prof.gpu, col].to_numpy(float))
                if np.isfinite(v):
                    error[f"gpu_holdout.{key}"] = round(v, 4)
        out.append(prof.model_copy(update={"error": error}))
    return out
