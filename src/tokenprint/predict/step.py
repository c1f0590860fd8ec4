"""The performance model's constants for one replica, as plain floats for the simulator's loop.

``simulate`` steps a replica event by event and sums runs of decode steps in closed form, so it
needs the model as linear coefficients rather than arrays. They are derived here from the same
profile, specs and shapes as ``model.pass_time`` and ``model.power_w`` (a test pins the two to the
same step time and power), so there is one performance model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.predict.model import gpu_power_w, power_levels
from tokenprint.predict.params import (
    DEFAULT_STACK,
    LINK_GB_S,
    ProfileArrays,
    hardware_arrays,
    peak_flops,
    resolve_profile,
)
from tokenprint.predict.predictor import resolve_dtype
from tokenprint.predict.shapes import (
    ACTIVATION_BYTES,
    MEMORY_FRACTION,
    ShapeArrays,
    group_fits_heads,
    kv_dtype_for,
    kv_token_budget,
)


@dataclass(frozen=True)
class StepCosts:
    """Per-replica constants of the step-time and power model (a parallel group counts as one)."""

    flops_per_s: float              # effective FLOP/s of the group
    bytes_per_s: float              # effective memory bytes/s of the group
    matmul_flops_per_token: float   # 2 × active matmul params (+ a hybrid's SSM scan)
    attn_flops_per_ctx: float       # attention FLOPs per token of context (decode form)
    dense_weight_bytes: float       # weights every pass reads
    expert_bytes: float             # bytes of one routed expert (all layers; block-scaled fp8
                                    # ones count 1 / eff_fp8_block times); 0 if dense
    n_experts: float
    experts_per_token: float
    kv_bytes_per_token: float
    step_overhead_s: float
    seq_overhead_s: float
    comm_s_per_token: float         # all-reduce seconds per token in the pass (parallel only)
    comm_fixed_s: float             # per-pass all-reduce latency (parallel only)
    idle_w: float                   # whole group, nothing in flight
    base_w: float                   # whole group
    mem_w: float                    # whole group
    peak_w: float                   # whole group
    power_exponent: float
    kv_budget_tokens: int
    state_bytes_per_seq: float = 0.0   # a hybrid's fixed SSM state per sequence (0: none)

    @property
    def state_tokens(self) -> int:
        """KV-cache tokens a sequence's fixed state takes from the budget (0 without one)."""
        if self.state_bytes_per_seq <= 0:
            return 0
        return math.ceil(self.state_bytes_per_seq / self.kv_bytes_per_token)

    def weight_bytes(self, tokens: float) -> float:
        """Weight bytes a pass over ``tokens`` tokens reads (routed experts it touches)."""
        if self.n_experts <= 0:
            return self.dense_weight_bytes
        touched = self.n_experts * (1.0 - (1.0 - self.experts_per_token / self.n_experts)
                                    ** tokens)
        return self.dense_weight_bytes + touched * self.expert_bytes

    def power(self, total_s: float, compute_s: float, step_overhead_s: float) -> float:
        """Group power over a span of passes (``model.gpu_power_w``)."""
        return float(gpu_power_w(self.base_w, self.mem_w, self.peak_w, self.power_exponent,
                                 total_s, compute_s, step_overhead_s))


def step_costs(catalog: Catalog, model_id: str, gpu_id: str, dtype: str = "auto", tp: int = 1,
               stack: str = DEFAULT_STACK, memory_fraction: float = MEMORY_FRACTION,
               kv_dtype: str = "auto") -> tuple[StepCosts, dict[str, Any]]:
    """Model constants for one replica, and where they came from."""
    model = catalog.model(model_id)
    gpu = catalog.gpu(gpu_id)
    dt = resolve_dtype(dtype, gpu)
    kv_dt = kv_dtype_for(dt, kv_dtype)
    prof = resolve_profile(gpu, catalog, stack)
    v = prof.values
    if tp < 1 or not group_fits_heads(model, tp):
        raise TokenprintError(f"tensor-parallel degree {tp} is invalid for {model.id}")
    budget = kv_token_budget(model, gpu.memory_gb.value, dt, tp, kv_dt, memory_fraction)
    if budget <= 0:
        raise TokenprintError(
            f"{model.id} in {dt} ({model.weight_bytes(dt) / 1e9:.1f} GB) does not fit {tp} × "
            f"{gpu.id} ({gpu.memory_gb.value:g} GB each); use more tensor parallelism")
    shape = ShapeArrays.of([model], [dt], [kv_dt])
    hw = hardware_arrays([gpu], [dt])
    base, mem, peak = power_levels(hw, ProfileArrays.from_values(v))
    link = LINK_GB_S[gpu.form_factor] * 1e9
    comm_tok = (model.allreduces_per_pass * model.hidden_size * ACTIVATION_BYTES * 2 * (tp - 1)
                / tp / link if tp > 1 else 0.0)
    costs = StepCosts(
        flops_per_s=peak_flops(gpu, dt) * v["eff_compute"] * tp,
        bytes_per_s=gpu.memory_bw_gb_s.value * 1e9 * v["eff_memory"] * tp,
        matmul_flops_per_token=2.0 * model.matmul_params + model.ssm_flops_per_token,
        attn_flops_per_ctx=model.attn_flops_per_pair(decode=True),
        dense_weight_bytes=float(shape.dense_matmul_params[0]
                                 * shape.dense_weight_bytes_per_param[0]),
        expert_bytes=float(shape.expert_params[0] * shape.expert_weight_bytes_per_param[0]
                           / (v["eff_fp8_block"] if shape.expert_block_scaled[0] else 1.0)),
        n_experts=float(model.num_experts), experts_per_token=float(model.experts_per_token),
        kv_bytes_per_token=model.group_kv_bytes_per_token(kv_dt, tp),   # the group's bytes
        state_bytes_per_seq=model.state_bytes_per_seq(kv_dt),
        step_overhead_s=v["step_overhead_s"], seq_overhead_s=v["seq_overhead_s"],
        comm_s_per_token=comm_tok,
        comm_fixed_s=(model.allreduces_per_pass * v["tp_latency_s"] * math.log2(tp)
                      if tp > 1 else 0.0),
        idle_w=float(hw.idle_w[0]) * tp, base_w=float(base[0]) * tp, mem_w=float(mem[0]) * tp,
        peak_w=float(peak[0]) * tp, power_exponent=v["power_exponent"],
        kv_budget_tokens=budget,
    )
    return costs, {"dtype": dt, "kv_dtype": kv_dt, "stack": prof.stack,
                   "profile": prof.profile_id, "calibration": prof.calibration,
                   "calibrated": prof.calibrated, "kv_budget_tokens": budget}
