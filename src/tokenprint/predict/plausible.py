"""Measured rows no hardware could have produced, refused before they reach a fit or a score.

A decode step cannot take less time than reading its weights and KV cache at the GPUs' full
datasheet bandwidth, nor less than its FLOPs at their dense tensor peak: ``batch / that floor``
is a ceiling on output tokens per second, and the floor itself one on the time per output token.
A row past either was measured on something other than it says (other weights, another batch, a
failed run). Loaders pass their points through :func:`drop_beyond_hardware`, which counts each
refused row under one reason, as they count the others.
"""

from __future__ import annotations

import numpy as np

from tokenprint.catalog import Catalog
from tokenprint.predict.params import hardware_arrays
from tokenprint.predict.points import Points
from tokenprint.predict.shapes import ShapeArrays, pass_bytes, pass_flops

BEYOND_HARDWARE = ("faster than the GPUs' datasheet bandwidth and tensor peak allow for its "
                   "weights (measured on other weights, batch or run than the row says)")


def decode_floor_s(points: Points, catalog: Catalog) -> np.ndarray:
    """Per row, the least time one decode step can take on its GPUs (seconds)."""
    t = points.table
    models = [catalog.model(m) for m in t["model"]]
    dtypes = [str(d) for d in t["dtype"]]
    shape = ShapeArrays.of(models, dtypes)
    hw = hardware_arrays([catalog.gpu(g) for g in t["gpu"]], dtypes)
    b = t["batch"].to_numpy(float)
    tp = t["tp"].to_numpy(float)
    ctx = t["input_len"].to_numpy(float)   # the shortest context any decode step sees
    memory = pass_bytes(shape, b, 1.0, ctx, tp) / tp / hw.mem_bw_b_s
    compute = pass_flops(shape, b, 1.0, ctx) / tp / hw.peak_flops
    return np.asarray(np.maximum(memory, compute))


def drop_beyond_hardware(points: Points, catalog: Catalog) -> Points:
    """The points without the rows that beat their hardware's floor, counted by reason."""
    t = points.table
    if t.empty:
        return points
    floor = decode_floor_s(points, catalog)
    tpot = t["tpot_s"].to_numpy(float)
    thr = t["throughput_tok_s"].to_numpy(float)
    bad = ((np.isfinite(tpot) & (tpot < floor))
           | (np.isfinite(thr) & (thr > t["batch"].to_numpy(float) / floor)))
    if not bad.any():
        return points
    reasons = dict(points.skipped_reasons)
    reasons[BEYOND_HARDWARE] = reasons.get(BEYOND_HARDWARE, 0) + int(bad.sum())
    return Points(t[~bad].reset_index(drop=True), points.n_skipped + int(bad.sum()), reasons,
                  points.source)
