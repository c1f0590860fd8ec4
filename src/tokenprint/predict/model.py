"""The analytical performance and power model: roofline time per phase, utilization-driven power.

Time of one forward pass (prefill or a decode step)::

    t = max(FLOPs / (peak_flops · eff_compute), bytes / (mem_bw · eff_memory))
        + all-reduce bytes / link_bw + 2·layers·tp_latency_s   (tensor parallel only)
        + step_overhead_s + seq_overhead_s · batch

Power while it runs: ``idle_w + (peak_w - idle_w) · u^power_exponent`` per GPU, where ``u`` is the
fraction of the pass spent on roofline-bound work (the rest is overhead). Energy = power × time ×
GPUs. Parameters come from a calibration profile per GPU or from the prior (see ``params``).

Two workloads are modelled:

* **static** batch (what ``tokenprint bench`` measures): prefill all ``batch`` prompts, then
  ``output_len - 1`` decode steps; TTFT is the prefill, TPOT the mean decode step. Energy per
  input token is prefill energy / (batch × input_len); energy per output token is decode energy /
  (batch × output_len), as bench records it; ``energy_per_token_total_j`` is all energy / output
  tokens (ML.ENERGY's definition).
* **serving** (continuous batching at a steady ``batch`` of requests in flight, as vLLM runs in
  the ML.ENERGY leaderboard): each iteration decodes one token for every request at the mean
  context, and prefills the ``batch / output_len`` requests that replace finished ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tokenprint.predict.params import F64, HardwareArrays, ProfileArrays
from tokenprint.predict.shapes import ShapeArrays, allreduce_bytes, pass_bytes, pass_flops


def pass_time(shape: ShapeArrays, hw: HardwareArrays, prof: ProfileArrays, batch: ArrayLike,
              new_tokens: ArrayLike, cached_tokens: ArrayLike, bytes_per_elem: ArrayLike,
              tp: ArrayLike) -> tuple[F64, F64]:
    """Seconds for one forward pass, and its roofline-busy fraction ``u`` in [0, 1]."""
    t = np.asarray(tp, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    flops = pass_flops(shape, b, new_tokens, cached_tokens) / t
    nbytes = pass_bytes(shape, b, new_tokens, cached_tokens, bytes_per_elem) / t
    t_compute = flops / (hw.peak_flops * prof.eff_compute)
    t_memory = nbytes / (hw.mem_bw_b_s * prof.eff_memory)
    bound = np.maximum(t_compute, t_memory)
    comm = np.where(t > 1, allreduce_bytes(shape, b, new_tokens, bytes_per_elem, t)
                    / hw.link_b_s + 2.0 * shape.layers * prof.tp_latency_s, 0.0)
    total = bound + comm + prof.step_overhead_s + prof.seq_overhead_s * b
    return total, bound / total


def power_w(prof: ProfileArrays, util: ArrayLike) -> F64:
    """Power of one GPU at roofline-busy fraction ``util``."""
    u = np.clip(np.asarray(util, dtype=np.float64), 0.0, 1.0)
    return np.asarray(prof.idle_w + (prof.peak_w - prof.idle_w) * u ** prof.power_exponent)


def predict_static(shape: ShapeArrays, hw: HardwareArrays, prof: ProfileArrays,
                   batch: ArrayLike, input_len: ArrayLike, output_len: ArrayLike,
                   bytes_per_elem: ArrayLike, tp: ArrayLike) -> dict[str, F64]:
    """Static-batch run: prefill then decode. All arrays broadcast; returns arrays."""
    b = np.asarray(batch, dtype=np.float64)
    li = np.asarray(input_len, dtype=np.float64)
    lo = np.asarray(output_len, dtype=np.float64)
    t = np.asarray(tp, dtype=np.float64)
    ttft, u_pre = pass_time(shape, hw, prof, b, li, 0.0, bytes_per_elem, t)
    n_dec = np.maximum(lo - 1.0, 0.0)
    # Simpson's rule over the decode steps' context (first, middle, last step)
    c0, c1 = li, li + np.maximum(n_dec - 1.0, 0.0)
    s0, u0 = pass_time(shape, hw, prof, b, 1.0, c0, bytes_per_elem, t)
    sm, um = pass_time(shape, hw, prof, b, 1.0, 0.5 * (c0 + c1), bytes_per_elem, t)
    s1, u1 = pass_time(shape, hw, prof, b, 1.0, c1, bytes_per_elem, t)
    tpot = (s0 + 4.0 * sm + s1) / 6.0
    p_pre = power_w(prof, u_pre) * t
    p_dec = (power_w(prof, u0) * s0 + 4.0 * power_w(prof, um) * sm
             + power_w(prof, u1) * s1) / (s0 + 4.0 * sm + s1) * t
    decode_s = n_dec * tpot
    e2e = ttft + decode_s
    e_pre = p_pre * ttft
    e_dec = p_dec * decode_s
    out_tokens = b * lo
    return {
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "throughput_tok_s": out_tokens / e2e,
        "prefill_power_w": p_pre,
        "decode_power_w": p_dec,
        "mean_power_w": (e_pre + e_dec) / e2e,
        "prefill_energy_j": e_pre,
        "decode_energy_j": e_dec,
        "energy_per_input_token_j": e_pre / (b * li),
        "energy_per_output_token_j": np.where(n_dec > 0, e_dec / out_tokens, e_pre / out_tokens),
        "energy_per_token_total_j": (e_pre + e_dec) / out_tokens,
    }


def predict_serving(shape: ShapeArrays, hw: HardwareArrays, prof: ProfileArrays,
                    batch: ArrayLike, input_len: ArrayLike, output_len: ArrayLike,
                    bytes_per_elem: ArrayLike, tp: ArrayLike) -> dict[str, F64]:
    """Continuous batching at a steady ``batch`` of requests in flight.

    Requests beyond what the KV cache holds (90 % of memory less the weights, at the mean context)
    wait in the queue: the running batch is capped there.
    """
    requested = np.asarray(batch, dtype=np.float64)
    li = np.asarray(input_len, dtype=np.float64)
    lo = np.asarray(output_len, dtype=np.float64)
    t = np.asarray(tp, dtype=np.float64)
    be = np.asarray(bytes_per_elem, dtype=np.float64)
    free = 0.9 * t * hw.mem_bytes - shape.weight_params * be
    cap = np.maximum(free / (shape.kv_bytes_per_token(be) * (li + 0.5 * lo)), 1.0)
    b = np.minimum(requested, cap)
    step, u_step = pass_time(shape, hw, prof, b, 1.0, li + 0.5 * lo, bytes_per_elem, t)
    pre_one, u_pre = pass_time(shape, hw, prof, 1.0, li, 0.0, bytes_per_elem, t)
    prefill_share = b / lo * pre_one
    iteration = step + prefill_share
    e_iter = (power_w(prof, u_step) * step + power_w(prof, u_pre) * prefill_share) * t
    return {
        "running_batch": b,
        "tpot_s": step,
        "ttft_s": pre_one + step,
        "iteration_s": iteration,
        "throughput_tok_s": b / iteration,
        "mean_power_w": e_iter / iteration,
        "energy_per_output_token_j": e_iter / b,
    }


def relative_range(mid: ArrayLike, rel_error: float) -> tuple[Any, Any]:
    """Low/high around a prediction from a relative error (low floored at a tenth of mid)."""
    m = np.asarray(mid, dtype=np.float64)
    return np.maximum(m * (1.0 - rel_error), 0.1 * m), m * (1.0 + rel_error)
