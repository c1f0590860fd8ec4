"""Work per phase: FLOPs and bytes moved for prefill and decode of a LLaMA-style model.

Pure and vectorized: every argument may be a numpy array; results broadcast.

* Prefill of ``n`` new tokens per sequence after ``c`` cached ones: ``2·P_mm·n`` matmul FLOPs plus
  attention ``4·layers·heads·head_dim·(n·c + n(n+1)/2)`` (causal), per sequence.
* Bytes: all weights once per forward pass, plus the KV cache read and written:
  ``kv_bytes_per_token × (c + n)`` per sequence.
* Tensor parallelism divides both across ``tp`` GPUs and adds two all-reduces of the activations
  per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.catalog import ModelArch
from tokenprint.catalog.schema import dtype_bytes

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class ShapeArrays:
    """The numbers of a model architecture that cost time, as arrays (one per model)."""

    matmul_params: F64
    weight_params: F64
    layers: F64
    heads: F64
    head_dim: F64
    kv_heads: F64
    hidden: F64

    @classmethod
    def of(cls, models: list[ModelArch]) -> ShapeArrays:
        """Stack several architectures."""
        def arr(xs: list[float]) -> F64:
            return np.asarray(xs, dtype=np.float64)
        return cls(
            matmul_params=arr([m.matmul_params for m in models]),
            weight_params=arr([m.params for m in models]),
            layers=arr([m.num_layers for m in models]),
            heads=arr([m.num_heads for m in models]),
            head_dim=arr([m.head_dim for m in models]),
            kv_heads=arr([m.num_kv_heads for m in models]),
            hidden=arr([m.hidden_size for m in models]),
        )

    def take(self, index: ArrayLike) -> ShapeArrays:
        """Select models by index (for per-point arrays)."""
        i = np.asarray(index)
        return ShapeArrays(*(getattr(self, f)[i] for f in self.__dataclass_fields__))

    def kv_bytes_per_token(self, bytes_per_elem: ArrayLike) -> F64:
        """KV-cache bytes per token: 2 × layers × kv_heads × head_dim × bytes."""
        return np.asarray(2.0 * self.layers * self.kv_heads * self.head_dim
                          * np.asarray(bytes_per_elem, dtype=np.float64))


def pass_flops(shape: ShapeArrays, batch: ArrayLike, new_tokens: ArrayLike,
               cached_tokens: ArrayLike) -> F64:
    """FLOPs of one forward pass over ``new_tokens`` per sequence after ``cached_tokens``."""
    b = np.asarray(batch, dtype=np.float64)
    n = np.asarray(new_tokens, dtype=np.float64)
    c = np.asarray(cached_tokens, dtype=np.float64)
    attn_pairs = n * c + n * (n + 1.0) / 2.0
    per_seq = 2.0 * shape.matmul_params * n + 4.0 * shape.layers * shape.heads * shape.head_dim \
        * attn_pairs
    return np.asarray(b * per_seq)


def pass_bytes(shape: ShapeArrays, batch: ArrayLike, new_tokens: ArrayLike,
               cached_tokens: ArrayLike, bytes_per_elem: ArrayLike) -> F64:
    """Bytes moved from memory in that pass: weights once, KV cache read and appended."""
    be = np.asarray(bytes_per_elem, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    n = np.asarray(new_tokens, dtype=np.float64)
    c = np.asarray(cached_tokens, dtype=np.float64)
    weights = shape.weight_params * be
    kv = b * shape.kv_bytes_per_token(be) * (c + n)
    return np.asarray(weights + kv)


def allreduce_bytes(shape: ShapeArrays, batch: ArrayLike, new_tokens: ArrayLike,
                    bytes_per_elem: ArrayLike, tp: ArrayLike) -> F64:
    """Bytes each GPU sends in the two all-reduces per layer under tensor parallelism."""
    t = np.asarray(tp, dtype=np.float64)
    act = (np.asarray(batch, dtype=np.float64) * np.asarray(new_tokens, dtype=np.float64)
           * shape.hidden * np.asarray(bytes_per_elem, dtype=np.float64))
    return np.asarray(2.0 * shape.layers * act * 2.0 * (t - 1.0) / t)


def max_batch_fits(model: ModelArch, memory_gb: float, dtype: str, context_tokens: int,
                   tp: int = 1, memory_fraction: float = 0.9) -> int:
    """Largest batch whose weights and KV cache fit in ``tp`` GPUs' memory (0: none fits).

    ``memory_fraction`` of the memory is usable (vLLM's default ``gpu_memory_utilization`` is 0.9);
    weights are split across the TP group, as is the KV cache.
    """
    be = dtype_bytes(dtype)
    usable = tp * memory_gb * 1e9 * memory_fraction
    free = usable - model.params * be
    per_seq = model.kv_bytes_per_token(dtype) * max(context_tokens, 1)
    if free <= 0:
        return 0
    return int(free // per_seq)
