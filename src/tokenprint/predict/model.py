"""The analytical performance and power model: roofline time per pass, load-driven power.

Time of one forward pass (prefill or a decode step) on a group of ``tp`` GPUs::

    t = max(FLOPs / (peak_flops · eff_compute), bytes / (mem_bw · eff_memory)) / tp
        + all-reduce bytes / link_bw + 2·layers·tp_latency_s·log2(tp)   (tp > 1 only)
        + step_overhead_s + seq_overhead_s · batch

where the routed experts' bytes of a model whose fp8 weights carry 128 × 128 block scales
(DeepSeek's and Qwen's FP8 checkpoints) count ``1 / eff_fp8_block`` times: their grouped GEMMs
dequantize block by block and reach less of the bandwidth. On ML.ENERGY v3's H100 runs the FP8
Qwen3-235B-A22B decodes slower than the bf16 one on the same eight GPUs (25 against 20 ms a
step at batch 8) though it reads half the bytes, and draws more power, where a channel-scaled
FP8 MoE (Llama-4-Maverick) decodes as fast as its bytes say.

Each all-reduce waits a latency that grows with the depth of the group, ``log2(tp)`` steps (the
tree NCCL uses for small messages; every step also waits for the slowest GPU): on Splitwise's
Llama-2-70B decode steps the time left after the weights' read grows by the same ~11 ms per
doubling of the group on an A100 (TP 2 → 4 → 8), where a latency independent of the group
size would predict TP 8 faster than TP 4, which it is not.

Power of each GPU while the pass runs rises from the stack's *base* level (the GPU awake, clocks
up, the engine between kernels) toward *mem* with the share of the pass that is not fixed
per-step overhead or all-reduce latency (both are waits), and toward *peak* with the
compute-bound share::

    P = base + (mem − base) · (1 − step_overhead/t) + (peak − mem) · (t_compute/t)^k
    base = idle + base_frac·(TDP − idle);  mem = base + mem_frac·(TDP − base);
    peak = mem + peak_frac·(TDP − mem)

with ``0 < k <= 1`` (power tracks arithmetic work more steeply than its roofline share: on an
H100 under vLLM it reaches the TDP while decode is still memory-bound), so ``idle <= P <= TDP``
always, P can reach TDP, and P never falls as the batch grows (both shares are non-decreasing in
the batch). Between passes with nothing in flight the GPU draws its idle
floor, which callers book as idle energy.

Two workloads are modelled:

* **static** batch (``tokenprint bench``, HF ``generate``, offline vLLM runs): prefill all
  ``batch`` prompts, then ``output_len - 1`` decode steps; TTFT is the prefill, TPOT the mean
  decode step.
* **serving** (continuous batching at a steady ``batch`` of requests in flight): each iteration
  decodes one token for every request at the mean context and prefills the ``batch / output_len``
  requests that replace finished ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tokenprint.predict.params import F64, HardwareArrays, ProfileArrays
from tokenprint.predict.shapes import (
    MEMORY_FRACTION,
    ShapeArrays,
    allreduce_bytes,
    group_kv_bytes_per_token,
    pass_bytes,
    pass_flops,
)


@dataclass(frozen=True)
class PassTime:
    """One forward pass: total seconds and the parts power depends on."""

    total_s: F64
    compute_s: F64
    step_overhead_s: F64


def pass_time(shape: ShapeArrays, hw: HardwareArrays, prof: ProfileArrays, batch: ArrayLike,
              new_tokens: ArrayLike, cached_tokens: ArrayLike, tp: ArrayLike,
              encoder_flops: ArrayLike = 0.0) -> PassTime:
    """Seconds for one forward pass over ``new_tokens`` per sequence, and its parts.

    ``encoder_flops``: a vision encoder's FLOPs per sequence, run in this (prefill) pass; the
    encoder is compute-bound and split over the group like the language model.
    """
    t = np.asarray(tp, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    flops = pass_flops(shape, b, new_tokens, cached_tokens) \
        + b * np.asarray(encoder_flops, dtype=np.float64)
    t_compute = flops / t / (hw.peak_flops * prof.eff_compute)
    # block-scaled fp8 experts are read at eff_fp8_block of the other weights' rate
    slow = (1.0 + shape.expert_block_scaled * (1.0 / prof.eff_fp8_block - 1.0)
            if shape.expert_block_scaled.any() else 1.0)
    t_memory = pass_bytes(shape, b, new_tokens, cached_tokens, t, slow) / t \
        / (hw.mem_bw_b_s * prof.eff_memory)
    latency = np.where(t > 1, shape.allreduces * prof.tp_latency_s
                       * np.log2(np.maximum(t, 1.0)), 0.0)
    comm = np.where(t > 1, allreduce_bytes(shape, b, new_tokens, t) / hw.link_b_s, 0.0)
    step = np.broadcast_to(prof.step_overhead_s, np.shape(t_compute)).astype(np.float64)
    total = np.maximum(t_compute, t_memory) + comm + latency + step + prof.seq_overhead_s * b
    # the GPUs wait through the all-reduces' latency as through the step's fixed costs
    return PassTime(np.asarray(total), np.asarray(t_compute), np.asarray(step + latency))


def power_levels(hw: HardwareArrays, prof: ProfileArrays) -> tuple[F64, F64, F64]:
    """Per-GPU base, memory-bound and peak power (W), ordered idle <= base <= mem <= peak <= TDP."""
    base = hw.idle_w + prof.base_frac * (hw.tdp_w - hw.idle_w)
    mem = base + prof.mem_frac * (hw.tdp_w - base)
    peak = mem + prof.peak_frac * (hw.tdp_w - mem)
    return np.asarray(base), np.asarray(mem), np.asarray(peak)


def gpu_power_w(base_w: Any, mem_w: Any, peak_w: Any, exponent: Any, total_s: Any,
                compute_s: Any, step_overhead_s: Any) -> Any:
    """Power over a span of passes from its total, compute-bound and fixed-overhead seconds.

    Plain arithmetic, so it serves numpy arrays (``predict``) and floats (the simulator's event
    loop) alike; ``compute_s <= total_s - step_overhead_s`` always holds for a pass.
    """
    busy = 1.0 - step_overhead_s / total_s
    return base_w + (mem_w - base_w) * busy + (peak_w - mem_w) * (compute_s / total_s) ** exponent


def power_w(hw: HardwareArrays, prof: ProfileArrays, pt: PassTime) -> F64:
    """Power of one GPU while the pass runs."""
    base, mem, peak = power_levels(hw, prof)
    return np.asarray(gpu_power_w(base, mem, peak, prof.power_exponent, pt.total_s,
                                  pt.compute_s, pt.step_overhead_s))


def predict_static(shape: ShapeArrays, hw: HardwareArrays, prof: ProfileArrays,
                   batch: ArrayLike, input_len: ArrayLike, output_len: ArrayLike,
                   tp: ArrayLike, encoder_flops: ArrayLike = 0.0) -> dict[str, F64]:
    """Static-batch run: prefill then decode. All arrays broadcast; returns arrays.

    ``input_len`` counts every prompt token, media tokens included; ``encoder_flops`` is the
    vision encoder's work per request (:mod:`tokenprint.predict.media`).
    """
    b = np.asarray(batch, dtype=np.float64)
    li = np.asarray(input_len, dtype=np.float64)
    lo = np.asarray(output_len, dtype=np.float64)
    t = np.asarray(tp, dtype=np.float64)
    pre = pass_time(shape, hw, prof, b, li, 0.0, t, encoder_flops)
    n_dec = np.maximum(lo - 1.0, 0.0)
    # Simpson's rule over the decode steps' context (first, middle, last step)
    c0, c1 = li, li + np.maximum(n_dec - 1.0, 0.0)
    steps = [pass_time(shape, hw, prof, b, 1.0, c, t) for c in (c0, 0.5 * (c0 + c1), c1)]
    w = (1.0, 4.0, 1.0)
    tpot = sum(wi * s.total_s for wi, s in zip(w, steps, strict=True)) / 6.0
    p_pre = power_w(hw, prof, pre) * t
    p_dec = sum(wi * power_w(hw, prof, s) * s.total_s for wi, s in zip(w, steps, strict=True)) \
        / (6.0 * tpot) * t
    ttft = pre.total_s
    decode_s = n_dec * tpot
    e2e = ttft + decode_s
    e_pre = p_pre * ttft
    e_dec = p_dec * decode_s
    out_tokens = b * lo
    return {
        "ttft_s": ttft,
        "tpot_s": np.asarray(tpot),
        "e2e_s": e2e,
        "throughput_tok_s": out_tokens / e2e,
        "prefill_power_w": p_pre,
        "decode_power_w": np.asarray(p_dec),
        "mean_power_w": (e_pre + e_dec) / e2e,
        "prefill_energy_j": e_pre,
        "decode_energy_j": e_dec,
        "energy_per_input_token_j": e_pre / (b * li),
        "energy_per_output_token_j": np.where(n_dec > 0, e_dec / out_tokens, e_pre / out_tokens),
        "energy_per_token_total_j": (e_pre + e_dec) / out_tokens,
    }


def predict_serving(shape: ShapeArrays, hw: HardwareArrays, prof: ProfileArrays,
                    batch: ArrayLike, input_len: ArrayLike, output_len: ArrayLike,
                    tp: ArrayLike, encoder_flops: ArrayLike = 0.0) -> dict[str, F64]:
    """Continuous batching at a steady ``batch`` of requests in flight.

    Requests beyond what the KV cache holds (90 % of memory less the weights, at the mean context)
    wait in the queue: the running batch is capped there.
    """
    requested = np.asarray(batch, dtype=np.float64)
    li = np.asarray(input_len, dtype=np.float64)
    lo = np.asarray(output_len, dtype=np.float64)
    t = np.asarray(tp, dtype=np.float64)
    free = MEMORY_FRACTION * t * hw.mem_bytes - shape.weight_bytes
    per_seq = group_kv_bytes_per_token(shape, t) * (li + 0.5 * lo) + shape.state_bytes_per_seq
    cap = np.maximum(free / per_seq, 1.0)
    b = np.minimum(requested, cap)
    step = pass_time(shape, hw, prof, b, 1.0, li + 0.5 * lo, t)
    pre_one = pass_time(shape, hw, prof, 1.0, li, 0.0, t, encoder_flops)
    prefill_share = b / lo * pre_one.total_s
    iteration = step.total_s + prefill_share
    e_iter = (power_w(hw, prof, step) * step.total_s
              + power_w(hw, prof, pre_one) * prefill_share) * t
    return {
        "running_batch": b,
        "tpot_s": step.total_s,
        "ttft_s": pre_one.total_s + step.total_s,
        "iteration_s": iteration,
        "throughput_tok_s": b / iteration,
        "mean_power_w": e_iter / iteration,
        "energy_per_output_token_j": e_iter / b,
    }


def apply_range(mid: ArrayLike, factors: tuple[float, float]) -> tuple[Any, Any]:
    """Low/high around a prediction from multiplicative range factors."""
    m = np.asarray(mid, dtype=np.float64)
    return m * factors[0], m * factors[1]
