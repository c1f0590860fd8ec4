"""The fit itself: per-point arrays of a points table, the model's prediction of each point on
its own measurement boundary, and robust least squares in log space for one (GPU, stack).

``calibrate`` turns fits into profiles with held-out ranges; ``holdout`` refits on subsets;
``validate`` scores predictions. All three use this module, none of them each other's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import least_squares

from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.predict.model import predict_serving, predict_static
from tokenprint.predict.params import (
    DEFAULT_PRIOR,
    F64,
    PARAM_NAMES,
    HardwareArrays,
    ProfileArrays,
    hardware_arrays,
)
from tokenprint.predict.shapes import ShapeArrays

Mask = NDArray[np.bool_]

# residual weights: energy per token is the figure carbon depends on
METRIC_WEIGHTS = {"energy_per_output_token_j": 2.0, "tpot_s": 1.0, "throughput_tok_s": 1.0,
                  "ttft_s": 1.0}
ERROR_KEYS = {"energy_per_output_token_j": "energy_per_token", "tpot_s": "tpot",
              "throughput_tok_s": "throughput", "ttft_s": "ttft"}
# A gentle pull toward the default prior keeps weakly constrained terms (the compute efficiency
# of batch-1 data, say) sane without moving well-constrained ones.
PRIOR_WEIGHT = 0.05
# Bounds: the fastest kernels reach ~90 % of the datasheet tensor peak and ~95 % of the memory
# bandwidth; overheads from 10 µs to 0.2 s per step; power fractions anywhere in [0, 1].
BOUNDS = {
    "eff_compute": (0.02, 0.9), "eff_memory": (0.05, 0.95), "step_overhead_s": (1e-5, 0.2),
    "seq_overhead_s": (1e-8, 5e-3), "tp_latency_s": (1e-7, 2e-3), "base_frac": (1e-3, 1.0),
    "mem_frac": (1e-3, 1.0), "peak_frac": (1e-3, 1.0), "power_exponent": (0.1, 1.0),
    "eff_fp8_block": (0.1, 1.0),
}
# Held-out ranges cover this central share of the held-out ratios measured / predicted: 85 % for
# a calibrated (GPU, stack) (a model held out), 90 % for a GPU the stack has no profile for (the
# GPU held out), where errors run larger and a user has nothing else to go on.
RANGE_QUANTILES = (0.05, 0.95)
PRIOR_RANGE_QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class PointArrays:
    """Everything the model needs per point, precomputed once per table."""

    shape: ShapeArrays
    hw: HardwareArrays
    batch: F64
    input_len: F64
    output_len: F64
    tp: F64
    serving: Mask
    energy_total: Mask
    tpot_iteration: Mask
    idle_tail_s: F64
    encoder_flops: F64          # vision encoder FLOPs per request (0: text only)
    measured: dict[str, F64]

    def take(self, idx: NDArray[np.int64]) -> PointArrays:
        """The points at these indices."""
        return PointArrays(
            shape=self.shape.take(idx), hw=self.hw.take(idx), batch=self.batch[idx],
            input_len=self.input_len[idx], output_len=self.output_len[idx], tp=self.tp[idx],
            serving=self.serving[idx], energy_total=self.energy_total[idx],
            tpot_iteration=self.tpot_iteration[idx],
            idle_tail_s=self.idle_tail_s[idx], encoder_flops=self.encoder_flops[idx],
            measured={m: v[idx] for m, v in self.measured.items()})


def point_arrays(points: pd.DataFrame, catalog: Catalog) -> PointArrays:
    """Precompute per-point arrays for a points table."""
    models = [catalog.model(m) for m in points["model"]]
    gpus = [catalog.gpu(g) for g in points["gpu"]]
    dtypes = [str(d) for d in points["dtype"]]

    def col(name: str, default: float = 0.0) -> F64:
        if name not in points:
            return np.full(len(points), default)
        return points[name].to_numpy(float)

    def flag(name: str) -> Mask:
        if name not in points:
            return np.zeros(len(points), dtype=bool)
        return points[name].to_numpy(bool)

    return PointArrays(
        shape=ShapeArrays.of(models, dtypes), hw=hardware_arrays(gpus, dtypes),
        batch=col("batch"), input_len=col("input_len"), output_len=col("output_len"),
        tp=col("tp", 1.0), serving=(points["mode"] == "serving").to_numpy(),
        energy_total=flag("energy_total"), tpot_iteration=flag("tpot_includes_prefill"),
        idle_tail_s=col("idle_tail_s"), encoder_flops=col("encoder_flops"),
        measured={m: col(m, np.nan) for m in METRIC_WEIGHTS},
    )


def predict_points(pa: PointArrays, prof: ProfileArrays) -> dict[str, F64]:
    """Model predictions for each point, on its own mode and measurement boundary."""
    args = (pa.shape, pa.hw, prof, pa.batch, pa.input_len, pa.output_len, pa.tp,
            pa.encoder_flops)
    serv = predict_serving(*args)
    stat = predict_static(*args)
    static_energy = np.where(pa.energy_total, stat["energy_per_token_total_j"],
                             stat["energy_per_output_token_j"])
    # a power window with `tail` seconds of idle after the run: average power × run time
    tail = pa.idle_tail_s
    e_run = stat["energy_per_token_total_j"] * pa.batch * pa.output_len
    e2e = stat["e2e_s"]
    windowed = (e_run + pa.hw.idle_w * tail * pa.tp) * e2e / (e2e + tail) \
        / (pa.batch * pa.output_len)
    static_energy = np.where(tail > 0, windowed, static_energy)
    return {
        "energy_per_output_token_j": np.where(pa.serving, serv["energy_per_output_token_j"],
                                              static_energy),
        "tpot_s": np.where(pa.serving, np.where(pa.tpot_iteration, serv["iteration_s"],
                                                serv["tpot_s"]), stat["tpot_s"]),
        "throughput_tok_s": np.where(pa.serving, serv["throughput_tok_s"],
                                     stat["throughput_tok_s"]),
        "ttft_s": np.where(pa.serving, serv["ttft_s"], stat["ttft_s"]),
    }


def _log_bounds() -> tuple[F64, F64]:
    lo = np.log([BOUNDS[n][0] for n in PARAM_NAMES])
    hi = np.log([BOUNDS[n][1] for n in PARAM_NAMES])
    return lo, hi


def _x_prior() -> F64:
    return np.log(np.array([DEFAULT_PRIOR[n] for n in PARAM_NAMES]))


def at_bounds(values: F64, rel: float = 0.01, free: Mask | None = None) -> list[str]:
    """Parameters within 1 % (in log terms) of a bound (of those the fit was free to move)."""
    lo, hi = _log_bounds()
    x = np.log(values)
    keep = np.ones(len(PARAM_NAMES), dtype=bool) if free is None else free
    return [n for n, xi, a, b, k in zip(PARAM_NAMES, x, lo, hi, keep, strict=True)
            if k and (xi - a < rel or b - xi < rel)]


@dataclass(frozen=True)
class Fit:
    """Fitted parameter values, the rms of the weighted log residuals, and bound hits."""

    values: F64
    rms_log: float
    at_bounds: list[str]


def free_params(pa: PointArrays) -> Mask:
    """Which parameters the points can tell: the block-scaled fp8 efficiency only where some
    point runs such a model (elsewhere it keeps its prior, 1: no slowdown)."""
    free = np.ones(len(PARAM_NAMES), dtype=bool)
    free[PARAM_NAMES.index("eff_fp8_block")] = bool(np.any(pa.shape.expert_block_scaled > 0))
    return free


def fit_params(pa: PointArrays, x0: F64 | None = None) -> Fit:
    """Fit the parameters of one (GPU, stack) to its points."""
    lo, hi = _log_bounds()
    prior = _x_prior()
    start = np.clip(prior if x0 is None else np.log(x0), lo + 1e-9, hi - 1e-9)
    masks = {m: np.isfinite(v) & (v > 0) for m, v in pa.measured.items()}
    if sum(int(mk.sum()) for mk in masks.values()) < 3:
        raise TokenprintError("too few measured values to fit a profile (need at least 3)")
    free = free_params(pa)
    fixed = np.where(free, 0.0, prior)

    def full(xf: F64) -> F64:
        x = fixed.copy()
        x[free] = xf
        return x

    def residuals(xf: F64) -> F64:
        x = full(xf)
        pred = predict_points(pa, ProfileArrays.from_vector(np.exp(x)))
        parts = [METRIC_WEIGHTS[m] * np.log(np.maximum(pred[m][mk], 1e-30) / pa.measured[m][mk])
                 for m, mk in masks.items() if mk.any()]
        parts.append(PRIOR_WEIGHT * (xf - prior[free]))
        return np.concatenate(parts)

    sol = least_squares(residuals, start[free], bounds=(lo[free], hi[free]), loss="soft_l1",
                        f_scale=0.2, max_nfev=300)
    values = np.exp(full(sol.x))
    return Fit(values, float(np.sqrt(np.mean(sol.fun ** 2))), at_bounds(values, free=free))


def ratios(pa: PointArrays, values: F64) -> dict[str, F64]:
    """Measured / predicted per metric (NaN where unmeasured)."""
    pred = predict_points(pa, ProfileArrays.from_vector(values))
    return {m: pa.measured[m] / pred[m] for m in METRIC_WEIGHTS}


def range_factors(ratio: F64, quantiles: tuple[float, float] = RANGE_QUANTILES
                  ) -> tuple[float, float] | None:
    """The (low, high) multiplicative range covering the central share of held-out ratios,
    always containing 1 (the prediction itself)."""
    r = ratio[np.isfinite(ratio) & (ratio > 0)]
    if r.size < 3:
        return None
    lo, hi = np.quantile(r, quantiles)
    return round(float(min(lo, 1.0)), 4), round(float(max(hi, 1.0)), 4)


def groups(points: pd.DataFrame) -> list[tuple[str, str]]:
    """The (gpu, stack) pairs in a points table."""
    pairs = points[["gpu", "stack"]].drop_duplicates().itertuples(index=False)
    return sorted((str(g), str(s)) for g, s in pairs)


def group_mask(points: pd.DataFrame, gpu: str, stack: str) -> Mask:
    """Rows of one (gpu, stack)."""
    return ((points["gpu"] == gpu) & (points["stack"] == stack)).to_numpy()
