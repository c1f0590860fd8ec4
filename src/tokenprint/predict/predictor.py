"""Predictions as records in the same schema as measured runs (``source: predicted``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tokenprint.catalog import Catalog, Gpu, ModelArch
from tokenprint.errors import TokenprintError
from tokenprint.predict.media import Media, media_cost
from tokenprint.predict.model import apply_range, predict_static
from tokenprint.predict.params import (
    DEFAULT_RANGE,
    DEFAULT_STACK,
    MODEL_VERSION,
    ProfileArrays,
    ResolvedProfile,
    check_stack,
    hardware_arrays,
    resolve_profile,
)
from tokenprint.predict.shapes import ShapeArrays, group_fits_heads, kv_dtype_for, max_batch_fits
from tokenprint.records import RunRecord, run_record

DTYPES = ("auto", "bf16", "fp16", "fp32", "fp8", "mxfp4", "nvfp4")

# which relative error (from calibration) sets the range of each predicted metric
_RANGE_METRIC = {
    "ttft_s": "ttft", "tpot_s": "tpot", "e2e_s": "tpot", "throughput_tok_s": "throughput",
    "prefill_energy_j": "energy_per_token", "decode_energy_j": "energy_per_token",
    "energy_per_input_token_j": "energy_per_token", "energy_per_output_token_j":
    "energy_per_token", "mean_power_w": "energy_per_token",
}


def resolve_dtype(dtype: str, gpu: Gpu | None) -> str:
    """``auto`` → bf16 where the GPU supports it, else fp16 (the T4 has no bf16)."""
    if dtype not in DTYPES:
        raise TokenprintError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if dtype != "auto":
        if dtype == "bf16" and gpu is not None and not gpu.bf16:
            raise TokenprintError(f"GPU {gpu.id!r} has no bf16 support; use fp16 or auto")
        return dtype
    return "bf16" if gpu is None or gpu.bf16 else "fp16"


def profile_arrays(resolved: ResolvedProfile) -> ProfileArrays:
    """One profile as scalar arrays."""
    return ProfileArrays.from_values(resolved.values)


def predict_records(catalog: Catalog, model: ModelArch, gpu: Gpu, batches: list[int],
                    input_len: int, output_len: int, dtype: str = "auto", tp: int = 1,
                    exclude_gpu_profile: bool = False, stack: str = DEFAULT_STACK,
                    kv_dtype: str = "auto", media: Media | None = None) -> list[RunRecord]:
    """Predicted static-batch records for each batch size, with ranges and memory fit.

    Every record names the serving stack, the profile used and whether the GPU was calibrated
    under that stack (else the stack's prior, transferred by the GPU's specs). ``media``: images
    or video in every prompt, whose tokens join the ``input_len`` text tokens and whose vision
    encoder runs in the prefill.
    """
    stack = check_stack(catalog, stack)
    if tp < 1:
        raise TokenprintError(f"tensor-parallel degree {tp} is invalid; it must be >= 1")
    if not group_fits_heads(model, tp):
        raise TokenprintError(
            f"a group of {tp} GPUs cannot share {model.id}'s {model.num_kv_heads} KV heads "
            "(it must divide them or be a multiple of them)"
        )
    for name, val in (("input length", input_len), ("output length", output_len)):
        if val < 1:
            raise TokenprintError(f"{name} {val} is invalid; it must be >= 1")
    cost = media_cost(model, media or Media())
    prompt = input_len + round(cost.tokens)
    if prompt + output_len > model.max_context:
        raise TokenprintError(
            f"input + output length {prompt + output_len} exceeds {model.id}'s context of "
            f"{model.max_context} tokens"
        )
    for size in batches:
        if size < 1:
            raise TokenprintError(f"batch {size} is invalid; it must be >= 1")
    dt = resolve_dtype(dtype, gpu)
    kv_dt = kv_dtype_for(dt, kv_dtype)
    resolved = resolve_profile(gpu, catalog, stack,
                               exclude_gpu=gpu.id if exclude_gpu_profile else None)
    shape = ShapeArrays.of([model], [dt], [kv_dt])
    hw = hardware_arrays([gpu], [dt])
    b = np.asarray(batches, dtype=np.float64)
    out = predict_static(shape, hw, profile_arrays(resolved), b, prompt, output_len, tp,
                         cost.encoder_flops)
    fit = max_batch_fits(model, gpu.memory_gb.value, dt, prompt + output_len, tp,
                         kv_dtype=kv_dt)
    ranges = resolved.ranges_at(tp)
    records = []
    for i, batch in enumerate(batches):
        rec: dict[str, Any] = {
            "run_id": f"pred-{model.id}-{gpu.id}-{dt}-tp{tp}-b{batch}-i{prompt}-o{output_len}",
            "source": "predicted",
            "status": "ok" if batch <= fit else "oom",
            "model": model.id, "engine": "predict", "device": "cuda", "hardware_id": gpu.id,
            "dtype": dt, "kv_dtype": kv_dt, "batch": batch, "input_len": input_len,
            "output_len": output_len,
            "tp": tp, "max_batch_fits": fit,
            **({} if media is None or media.empty else {
                "media": media.describe(), "media_tokens": round(cost.tokens),
                "encoder_flops": cost.encoder_flops}),
            **({"fp8_scales": model.fp8_scales} if dt == "fp8" else {}),
            "meter": "model", "energy_kind": "predicted",
            "model_version": MODEL_VERSION, "stack": resolved.stack,
            "profile": resolved.profile_id, "calibration": resolved.calibration,
            "calibrated": resolved.calibrated,
        }
        for key, arr in out.items():
            value = float(np.asarray(arr).reshape(-1)[i] if np.ndim(arr) else arr)
            rec[key] = value
            metric = _RANGE_METRIC.get(key)
            if metric is not None:
                lo, hi = apply_range(value, ranges.get(metric, DEFAULT_RANGE))
                if key == "mean_power_w":   # a range cannot pass what the GPUs can draw
                    hi = min(float(hi), gpu.tdp_w.value * tp)
                rec[f"{key}_low"], rec[f"{key}_high"] = float(lo), float(hi)
        records.append(run_record(rec))
    return records
