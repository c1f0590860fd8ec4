"""Per-point arrays of hardware specs and profile parameters, and the prior for unmeasured GPUs."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from tokenprint.catalog import Catalog, Gpu
from tokenprint.catalog.schema import CalibrationProfile

F64 = NDArray[np.float64]

MODEL_VERSION = "tokenprint-predict-1"

# Effective all-reduce bandwidth between GPUs of a tensor-parallel group: a stated assumption
# (NVLink/Infinity Fabric boards vs PCIe 4.0 x16), not a measured figure.
LINK_GB_S = {"sxm": 300.0, "oam": 300.0, "pcie": 25.0}
LINK_SOURCE = ("assumption: 300 GB/s effective all-reduce bandwidth on SXM/OAM boards, 25 GB/s "
               "over PCIe 4.0 x16")

# Used only when no calibrated profile at all is loaded (fractions of TDP for power).
DEFAULT_PRIOR = {
    "eff_compute": 0.5, "eff_memory": 0.7, "step_overhead_s": 5e-3, "seq_overhead_s": 1e-4,
    "idle_frac": 0.15, "peak_frac": 0.75, "power_exponent": 1.0, "tp_latency_s": 2e-4,
}
DEFAULT_PRIOR_SOURCE = "tokenprint default assumption (no calibrated profile loaded)"
PRIOR_ERROR_DEFAULT = {"energy_per_token": 0.5, "tpot": 0.5, "throughput": 0.5, "ttft": 0.5}


@dataclass(frozen=True)
class HardwareArrays:
    """Peak rates of the GPU at each point."""

    peak_flops: F64
    mem_bw_b_s: F64
    link_b_s: F64
    tdp_w: F64
    mem_bytes: F64


@dataclass(frozen=True)
class ProfileArrays:
    """Model parameters at each point."""

    eff_compute: F64
    eff_memory: F64
    step_overhead_s: F64
    seq_overhead_s: F64
    idle_w: F64
    peak_w: F64
    power_exponent: F64
    tp_latency_s: F64

    @classmethod
    def from_vector(cls, vec: F64) -> ProfileArrays:
        """From an (8, n) or (8,) array in field order."""
        return cls(*(np.asarray(vec[i], dtype=np.float64) for i in range(len(PARAM_NAMES))))

    def take(self, index: NDArray[np.int64]) -> ProfileArrays:
        """Select per-point parameters by index."""
        return ProfileArrays(*(np.asarray(getattr(self, f.name))[index] for f in fields(self)))


PARAM_NAMES = ("eff_compute", "eff_memory", "step_overhead_s", "seq_overhead_s", "idle_w",
               "peak_w", "power_exponent", "tp_latency_s")


def peak_flops(gpu: Gpu, dtype: str) -> float:
    """Dense tensor FLOP/s for a dtype (fp32 assumed at a quarter of the FP16 rate)."""
    base = gpu.fp16_tflops.value * 1e12
    return base / 4.0 if dtype == "fp32" else base


def hardware_arrays(gpus: list[Gpu], dtypes: list[str]) -> HardwareArrays:
    """Stack GPU specs for points (one GPU and dtype per point)."""
    return HardwareArrays(
        peak_flops=np.array([peak_flops(g, d) for g, d in zip(gpus, dtypes, strict=True)]),
        mem_bw_b_s=np.array([g.memory_bw_gb_s.value * 1e9 for g in gpus]),
        link_b_s=np.array([LINK_GB_S[g.form_factor] * 1e9 for g in gpus]),
        tdp_w=np.array([g.tdp_w.value for g in gpus]),
        mem_bytes=np.array([g.memory_gb.value * 1e9 for g in gpus]),
    )


@dataclass(frozen=True)
class ResolvedProfile:
    """Parameters for one GPU and where they came from (calibrated or prior)."""

    gpu: str
    values: dict[str, float]
    calibration: str
    calibrated: bool
    error: dict[str, float]


def prior_from(profiles: list[CalibrationProfile], catalog: Catalog) -> tuple[dict[str, float],
                                                                             str]:
    """Prior parameters fitted across calibrated GPUs: geometric means of efficiencies and
    overheads, mean idle and peak power as fractions of TDP."""
    if not profiles:
        return dict(DEFAULT_PRIOR), DEFAULT_PRIOR_SOURCE

    def gmean(xs: list[float]) -> float:
        return float(np.exp(np.mean(np.log(np.maximum(xs, 1e-12)))))

    tdps = [catalog.gpu(p.gpu).tdp_w.value for p in profiles]
    prior = {
        "eff_compute": gmean([p.eff_compute for p in profiles]),
        "eff_memory": gmean([p.eff_memory for p in profiles]),
        "step_overhead_s": gmean([p.step_overhead_s for p in profiles]),
        "seq_overhead_s": gmean([p.seq_overhead_s for p in profiles]),
        "idle_frac": float(np.mean([p.idle_w / t for p, t in zip(profiles, tdps, strict=True)])),
        "peak_frac": float(np.mean([p.peak_w / t for p, t in zip(profiles, tdps, strict=True)])),
        "power_exponent": gmean([p.power_exponent for p in profiles]),
        "tp_latency_s": gmean([p.tp_latency_s for p in profiles]),
    }
    names = ", ".join(sorted(p.gpu for p in profiles))
    return prior, f"prior fitted across calibrated GPUs ({names}) from their specs"


def resolve_profile(gpu: Gpu, catalog: Catalog, prior_error: dict[str, float] | None = None,
                    exclude_gpu: str | None = None) -> ResolvedProfile:
    """The GPU's calibrated profile, or the prior scaled to its specs (TDP, idle power)."""
    prof = None if exclude_gpu == gpu.id else catalog.profile_for(gpu.id)
    if prof is not None:
        vals = {n: float(getattr(prof, n)) for n in PARAM_NAMES}
        err = {k: v for k, v in prof.error.items() if "." not in k}
        return ResolvedProfile(gpu.id, vals, f"{prof.id}: {prof.source}", True,
                               err or dict(PRIOR_ERROR_DEFAULT))
    others = [p for p in catalog.profiles.values() if p.gpu != exclude_gpu]
    prior, src = prior_from(others, catalog)
    tdp = gpu.tdp_w.value
    idle = gpu.idle_w.value if gpu.idle_w is not None else prior["idle_frac"] * tdp
    vals = {
        "eff_compute": prior["eff_compute"], "eff_memory": prior["eff_memory"],
        "step_overhead_s": prior["step_overhead_s"], "seq_overhead_s": prior["seq_overhead_s"],
        "idle_w": idle, "peak_w": max(prior["peak_frac"] * tdp, idle * 1.05),
        "power_exponent": prior["power_exponent"], "tp_latency_s": prior["tp_latency_s"],
    }
    err = dict(prior_error or _prior_error(catalog) or PRIOR_ERROR_DEFAULT)
    return ResolvedProfile(gpu.id, vals, src, False, err)


def _prior_error(catalog: Catalog) -> dict[str, float] | None:
    """Held-out-GPU errors recorded with the calibrated profiles (``gpu_holdout.*`` keys)."""
    out: dict[str, float] = {}
    for prof in catalog.profiles.values():
        for key, val in prof.error.items():
            if key.startswith("gpu_holdout."):
                metric = key.split(".", 1)[1]
                out[metric] = max(out.get(metric, 0.0), val)
    return out or None
