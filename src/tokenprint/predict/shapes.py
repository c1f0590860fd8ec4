"""Work per phase: FLOPs and bytes moved for prefill and decode of a dense or MoE transformer.

Pure and vectorized: every argument may be a numpy array; results broadcast.

* FLOPs of ``n`` new tokens per sequence after ``c`` cached ones: ``2·P_active·n`` matmul FLOPs
  (``P_active`` = the matmul parameters every token uses plus ``experts_per_token`` routed
  experts) plus attention ``a·(n·c + n(n+1)/2)`` (causal), per sequence, where ``a`` is the
  attention FLOPs per token pair over all layers: ``4·layers·heads·head_dim`` for grouped-query
  attention; for MLA the absorbed form in decode (``n = 1``) and the decompressed one in prefill.
* Bytes: the dense matmul weights once per forward pass; of the routed experts, those that at
  least one of the pass's ``T = batch·n`` tokens picks. With ``k`` of ``E`` experts per token
  chosen uniformly, the expected number touched is ``E·(1 − (1 − k/E)^T)`` — ``k`` at one token,
  all ``E`` at large batches. Plus the KV cache read and written: ``kv_bytes_per_token·(c + n)``
  per sequence (on every GPU of a parallel group for MLA's replicated latent).
* A parallel group of ``tp`` GPUs (tensor or expert parallel) divides both, and adds two
  all-reduces (or an all-to-all dispatch and combine) of the activations per layer (one per
  block of a hybrid pattern).
* Hybrid state-space models (Nemotron-H): attention layers keep a KV cache, Mamba-2 blocks a
  fixed state per sequence that every pass reads and writes (``2·state_bytes_per_seq``), and
  their scan adds ``ssm_flops_per_token``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.catalog import ModelArch
from tokenprint.catalog.schema import dtype_bytes

F64 = NDArray[np.float64]

# Activations travel between GPUs in 16-bit floats, whatever the weights are stored in.
ACTIVATION_BYTES = 2.0
# vLLM's default gpu_memory_utilization: the share of GPU memory weights and KV cache may use.
MEMORY_FRACTION = 0.9


def kv_dtype_for(weight_dtype: str, kv_dtype: str = "auto") -> str:
    """The KV cache's dtype: as asked, or 16-bit for 8/4-bit weights (vLLM's default), else the
    weights' own."""
    if kv_dtype != "auto":
        return kv_dtype
    return "bf16" if weight_dtype in ("fp8", "int8", "mxfp4", "nvfp4") else weight_dtype


def _dense_bytes_per_param(model: ModelArch, dtype: str) -> float:
    """Bytes per parameter of the weights every token uses: mxfp4 quantizes only the routed
    experts (the rest is bf16); nvfp4 every linear layer but the LM head (bf16)."""
    if dtype == "mxfp4":
        return dtype_bytes("bf16")
    if dtype == "nvfp4":
        head = model.vocab_size * model.hidden_size
        dense = model.dense_matmul_params
        return ((dense - head) * dtype_bytes("nvfp4") + head * dtype_bytes("bf16")) / dense
    return dtype_bytes(dtype)


@dataclass(frozen=True)
class ShapeArrays:
    """The numbers of a model architecture that cost time, as arrays (one per point)."""

    dense_matmul_params: F64
    expert_params: F64
    n_experts: F64
    experts_per_token: F64
    dense_weight_bytes_per_param: F64
    expert_weight_bytes_per_param: F64
    weight_bytes: F64
    kv_bytes_per_token: F64
    layers: F64
    heads: F64
    head_dim: F64
    hidden: F64
    attn_flops_decode: F64    # attention FLOPs per token pair, all layers, one new token
    attn_flops_prefill: F64   # the same for a pass over several new tokens
    kv_replicated: F64        # 1: every GPU of a group holds the whole KV cache (MLA)
    state_bytes_per_seq: F64  # fixed state-space state of a sequence (hybrid models), bytes
    ssm_flops_per_token: F64  # state-space scan FLOPs per token (hybrid models)
    allreduces: F64           # all-reduces per pass in a tensor-parallel group
    expert_block_scaled: F64  # 1: the routed experts are fp8 with 128 × 128 block scales

    @classmethod
    def of(cls, models: list[ModelArch], weight_dtypes: list[str],
           kv_dtypes: list[str] | None = None) -> ShapeArrays:
        """Stack several (architecture, weight dtype, KV dtype) points."""
        kvs = kv_dtypes or ["auto"] * len(models)

        def arr(xs: list[float]) -> F64:
            return np.asarray(xs, dtype=np.float64)

        dense_b = [_dense_bytes_per_param(m, d) for m, d in zip(models, weight_dtypes, strict=True)]
        return cls(
            dense_matmul_params=arr([m.dense_matmul_params for m in models]),
            expert_params=arr([m.expert_params for m in models]),
            n_experts=arr([m.num_experts for m in models]),
            experts_per_token=arr([m.experts_per_token for m in models]),
            dense_weight_bytes_per_param=arr(dense_b),
            expert_weight_bytes_per_param=arr([dtype_bytes(d) for d in weight_dtypes]),
            weight_bytes=arr([m.weight_bytes(d) for m, d in zip(models, weight_dtypes,
                                                                 strict=True)]),
            kv_bytes_per_token=arr([m.kv_bytes_per_token(kv_dtype_for(d, k))
                                    for m, d, k in zip(models, weight_dtypes, kvs, strict=True)]),
            layers=arr([m.num_layers for m in models]),
            heads=arr([m.num_heads for m in models]),
            head_dim=arr([m.head_dim for m in models]),
            hidden=arr([m.hidden_size for m in models]),
            attn_flops_decode=arr([m.attn_flops_per_pair(decode=True) for m in models]),
            attn_flops_prefill=arr([m.attn_flops_per_pair(decode=False) for m in models]),
            kv_replicated=arr([float(m.kv_replicated) for m in models]),
            state_bytes_per_seq=arr([m.state_bytes_per_seq(kv_dtype_for(d, k))
                                     for m, d, k in zip(models, weight_dtypes, kvs,
                                                        strict=True)]),
            ssm_flops_per_token=arr([m.ssm_flops_per_token for m in models]),
            allreduces=arr([m.allreduces_per_pass for m in models]),
            expert_block_scaled=arr([float(d == "fp8" and m.fp8_scales == "block" and m.is_moe)
                                     for m, d in zip(models, weight_dtypes, strict=True)]),
        )

    def take(self, index: ArrayLike) -> ShapeArrays:
        """Select points by index."""
        i = np.asarray(index)
        return ShapeArrays(*(getattr(self, f.name)[i] for f in fields(self)))

    @property
    def active_matmul_params(self) -> F64:
        """Matmul parameters one token uses: the dense ones plus its routed experts."""
        return np.asarray(self.dense_matmul_params + self.experts_per_token * self.expert_params)


def experts_touched(shape: ShapeArrays, tokens: ArrayLike) -> F64:
    """Expected number of distinct routed experts (per layer) that ``tokens`` tokens pick."""
    e = shape.n_experts
    k = shape.experts_per_token
    t = np.asarray(tokens, dtype=np.float64)
    safe_e = np.where(e > 0, e, 1.0)
    return np.asarray(np.where(e > 0, e * (1.0 - (1.0 - k / safe_e) ** t), 0.0))


def pass_flops(shape: ShapeArrays, batch: ArrayLike, new_tokens: ArrayLike,
               cached_tokens: ArrayLike) -> F64:
    """FLOPs of one forward pass over ``new_tokens`` per sequence after ``cached_tokens``."""
    b = np.asarray(batch, dtype=np.float64)
    n = np.asarray(new_tokens, dtype=np.float64)
    c = np.asarray(cached_tokens, dtype=np.float64)
    attn_pairs = n * c + n * (n + 1.0) / 2.0
    per_pair = np.where(n <= 1.0, shape.attn_flops_decode, shape.attn_flops_prefill)
    per_seq = (2.0 * shape.active_matmul_params + shape.ssm_flops_per_token) * n \
        + per_pair * attn_pairs
    return np.asarray(b * per_seq)


def pass_bytes(shape: ShapeArrays, batch: ArrayLike, new_tokens: ArrayLike,
               cached_tokens: ArrayLike, tp: ArrayLike = 1.0,
               expert_weight: ArrayLike = 1.0) -> F64:
    """Bytes moved from memory in that pass, summed over a group of ``tp`` GPUs: weights used
    once, the KV cache read and appended (by every GPU where it is replicated).

    ``expert_weight`` counts each routed expert's bytes that many times (the time model reads
    block-scaled fp8 experts as slower bytes: ``model.pass_time``)."""
    b = np.asarray(batch, dtype=np.float64)
    n = np.asarray(new_tokens, dtype=np.float64)
    c = np.asarray(cached_tokens, dtype=np.float64)
    dense = shape.dense_matmul_params * shape.dense_weight_bytes_per_param
    kv = b * group_kv_bytes_per_token(shape, tp) * (c + n)
    state = b * 2.0 * shape.state_bytes_per_seq   # each sequence's state read and written
    experts = expert_bytes(shape, b * n) * np.asarray(expert_weight, dtype=np.float64)
    return np.asarray(dense + experts + kv + state)


def expert_bytes(shape: ShapeArrays, tokens: ArrayLike) -> F64:
    """Bytes of the routed experts that ``tokens`` tokens touch (0 for a dense model)."""
    return np.asarray(experts_touched(shape, tokens) * shape.expert_params
                      * shape.expert_weight_bytes_per_param)


def group_kv_bytes_per_token(shape: ShapeArrays, tp: ArrayLike) -> F64:
    """KV-cache bytes per token of context in a group of ``tp`` GPUs (``ModelArch.
    group_kv_bytes_per_token``, as arrays): held by every GPU where it is replicated (MLA)."""
    t = np.asarray(tp, dtype=np.float64)
    return np.asarray(shape.kv_bytes_per_token * np.where(shape.kv_replicated > 0, t, 1.0))


def allreduce_bytes(shape: ShapeArrays, batch: ArrayLike, new_tokens: ArrayLike,
                    tp: ArrayLike) -> F64:
    """Bytes each GPU of a parallel group sends per pass (two all-reduces per layer)."""
    t = np.asarray(tp, dtype=np.float64)
    act = (np.asarray(batch, dtype=np.float64) * np.asarray(new_tokens, dtype=np.float64)
           * shape.hidden * ACTIVATION_BYTES)
    return np.asarray(shape.allreduces * act * 2.0 * (t - 1.0) / t)


def group_fits_heads(model: ModelArch, tp: int) -> bool:
    """Whether ``tp`` GPUs can share the model: the KV heads split evenly, or are replicated
    (a group that is a multiple of them, as vLLM does), or the experts are spread (MoE)."""
    kv = model.num_kv_heads
    return tp == 1 or kv % tp == 0 or tp % kv == 0 or model.is_moe


def kv_token_budget(model: ModelArch, memory_gb: float, weight_dtype: str, tp: int = 1,
                    kv_dtype: str = "auto", memory_fraction: float = MEMORY_FRACTION) -> int:
    """KV-cache tokens that fit beside the weights in ``tp`` GPUs (0: the weights do not fit)."""
    usable = tp * memory_gb * 1e9 * memory_fraction
    free = usable - model.weight_bytes(weight_dtype)
    if free <= 0:
        return 0
    return int(free // model.group_kv_bytes_per_token(kv_dtype_for(weight_dtype, kv_dtype), tp))


def max_batch_fits(model: ModelArch, memory_gb: float, dtype: str, context_tokens: int,
                   tp: int = 1, memory_fraction: float = MEMORY_FRACTION,
                   kv_dtype: str = "auto") -> int:
    """Largest batch whose weights and KV cache (``context_tokens`` each) fit (0: none fits).

    ``memory_fraction`` of the memory is usable (vLLM's default ``gpu_memory_utilization`` is 0.9);
    weights and KV cache are split across the parallel group.
    """
    free = tp * memory_gb * 1e9 * memory_fraction - model.weight_bytes(dtype)
    if free <= 0:
        return 0
    kv_dt = kv_dtype_for(dtype, kv_dtype)
    # each sequence holds its context's KV cache and, in a hybrid model, its fixed state
    per_seq = (model.group_kv_bytes_per_token(kv_dt, tp) * max(context_tokens, 1)
               + model.state_bytes_per_seq(kv_dt))
    return int(free // per_seq)
