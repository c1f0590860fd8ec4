"""Measured rows no hardware could have produced, refused before they reach a fit or a score.

A decode step cannot take less time than reading its weights and KV cache at the GPUs' full
datasheet bandwidth, nor less than its FLOPs at their dense tensor peak: ``batch / that floor``
is a ceiling on output tokens per second, and the floor itself one on the time per output token.
A prefill cannot take less than its FLOPs at that peak (the whole batch's prompts in a static
run, one request's in serving), a floor on the time to first token. A row past any of them was
measured on something other than it says (other weights, another batch, a failed run). Loaders
pass their points through :func:`drop_beyond_hardware`, which counts each refused row under its
reason, as they count the others.
"""

from __future__ import annotations

import numpy as np

from tokenprint.catalog import Catalog
from tokenprint.predict.params import HardwareArrays, hardware_arrays
from tokenprint.predict.points import Points
from tokenprint.predict.shapes import ShapeArrays, pass_bytes, pass_flops

BEYOND_HARDWARE = ("faster than the GPUs' datasheet bandwidth and tensor peak allow for its "
                   "weights (measured on other weights, batch or run than the row says)")
PREFILL_BEYOND_PEAK = ("prefill faster than the GPUs' dense fp16 peak allows for the batch (the "
                       "fp8 peak for fp8 weights): the run cannot have prefilled it all, a "
                       "mislabelled row")


Arrays = tuple[ShapeArrays, HardwareArrays]


def _arrays(points: Points, catalog: Catalog) -> Arrays:
    """The points' model shapes and GPU specs, as arrays."""
    t = points.table
    dtypes = [str(d) for d in t["dtype"]]
    return (ShapeArrays.of([catalog.model(m) for m in t["model"]], dtypes),
            hardware_arrays([catalog.gpu(g) for g in t["gpu"]], dtypes))


def decode_floor_s(points: Points, catalog: Catalog, arrays: Arrays | None = None) -> np.ndarray:
    """Per row, the least time one decode step can take on its GPUs (seconds); ``arrays``: the
    points' shapes and hardware, where the caller has them already."""
    shape, hw = arrays or _arrays(points, catalog)
    t = points.table
    b = t["batch"].to_numpy(float)
    tp = t["tp"].to_numpy(float)
    ctx = t["input_len"].to_numpy(float)   # the shortest context any decode step sees
    memory = pass_bytes(shape, b, 1.0, ctx, tp) / tp / hw.mem_bw_b_s
    compute = pass_flops(shape, b, 1.0, ctx) / tp / hw.peak_flops
    return np.asarray(np.maximum(memory, compute))


def prefill_floor_s(points: Points, catalog: Catalog, arrays: Arrays | None = None
                    ) -> np.ndarray:
    """Per row, the least time its recorded prefill can take: the prompts' FLOPs (the batch's in
    a static run, one request's in serving) at the GPUs' dense tensor peak (seconds)."""
    shape, hw = arrays or _arrays(points, catalog)
    t = points.table
    b = np.where(t["mode"].to_numpy() == "serving", 1.0, t["batch"].to_numpy(float))
    flops = pass_flops(shape, b, t["input_len"].to_numpy(float), 0.0) \
        + b * t["encoder_flops"].to_numpy(float)
    return np.asarray(flops / t["tp"].to_numpy(float) / hw.peak_flops)


def drop_beyond_hardware(points: Points, catalog: Catalog) -> Points:
    """The points without the rows that beat their hardware's floors, counted by reason."""
    t = points.table
    if t.empty:
        return points
    arrays = _arrays(points, catalog)      # built once for both floors
    floor = decode_floor_s(points, catalog, arrays)
    tpot = t["tpot_s"].to_numpy(float)
    thr = t["throughput_tok_s"].to_numpy(float)
    ttft = t["ttft_s"].to_numpy(float)
    decode_bad = ((np.isfinite(tpot) & (tpot < floor))
                  | (np.isfinite(thr) & (thr > t["batch"].to_numpy(float) / floor)))
    prefill_bad = (np.isfinite(ttft) & (ttft < prefill_floor_s(points, catalog, arrays))
                   & ~decode_bad)
    bad = decode_bad | prefill_bad
    if not bad.any():
        return points
    reasons = dict(points.skipped_reasons)
    for why, mask in ((BEYOND_HARDWARE, decode_bad), (PREFILL_BEYOND_PEAK, prefill_bad)):
        if mask.any():
            reasons[why] = reasons.get(why, 0) + int(mask.sum())
    return Points(t[~bad].reset_index(drop=True), points.n_skipped + int(bad.sum()), reasons,
                  points.source)
