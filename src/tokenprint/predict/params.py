"""Per-point arrays of hardware specs and profile parameters, and the per-stack prior.

A profile is keyed by GPU *and* serving stack. A GPU without a profile under a stack borrows the
parameters of that stack's calibrated GPUs, transferred by its specs: efficiencies and engine
overheads as they are (geometric means), power levels as fractions of its own TDP above its own
idle floor. It never borrows another stack's: the same GPU runs several times faster on a newer
engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from numpy.typing import NDArray

from tokenprint.catalog import Catalog, Gpu
from tokenprint.catalog.schema import CalibrationProfile
from tokenprint.errors import TokenprintError

F64 = NDArray[np.float64]

MODEL_VERSION = "tokenprint-predict-2"

DEFAULT_STACK = "vllm-2025"
DEFAULT_STACK_NOTE = "the newest vLLM stack with public measurements"

# Effective all-reduce bandwidth between GPUs of a parallel group: a stated assumption
# (NVLink/Infinity Fabric boards vs PCIe 4.0 x16), not a measured figure.
LINK_GB_S = {"sxm": 300.0, "oam": 300.0, "pcie": 25.0}

# Idle floor where the catalog has no figure: NVIDIA datacenter GPUs report about a tenth of
# their TDP at idle in nvidia-smi (H100 SXM ~70 W of 700 W, A100 ~50 W of 400 W, T4 ~9 W of
# 70 W).
IDLE_FRAC_OF_TDP = 0.1
IDLE_SOURCE = "assumption: idle floor = 10 % of TDP (nvidia-smi idle readings of datacenter GPUs)"

PARAM_NAMES = ("eff_compute", "eff_memory", "step_overhead_s", "seq_overhead_s", "tp_latency_s",
               "base_frac", "mem_frac", "peak_frac", "power_exponent", "eff_fp8_block")

# Used only for a stack with no calibrated profile at all (a user's new stack).
DEFAULT_PRIOR = {
    "eff_compute": 0.5, "eff_memory": 0.7, "step_overhead_s": 5e-3, "seq_overhead_s": 1e-4,
    "tp_latency_s": 2e-4, "base_frac": 0.2, "mem_frac": 0.5, "peak_frac": 0.5,
    "power_exponent": 0.5, "eff_fp8_block": 1.0,
}
DEFAULT_PRIOR_SOURCE = "tokenprint default assumption (no calibrated profile for this stack)"
# A prior borrowed across vendors: the one such transfer the shared data can check (Argonne's
# vLLM runs on the MI300X, vLLM's ROCm build of mid-2024, README "Accuracy") went 2.3× too fast.
OTHER_VENDOR_NOTE = ("no {vendor} GPU has a profile under this stack: on Argonne's MI300X runs "
                     "(vLLM's 2024 ROCm build) such a transfer predicted 2.3× the measured "
                     "throughput; calibrate on a few runs of your own")
# Multiplicative range [low, high] where nothing better is known.
DEFAULT_RANGE = (0.5, 2.0)
RANGE_METRICS = ("energy_per_token", "tpot", "throughput", "ttft")


def idle_w(gpu: Gpu) -> float:
    """The GPU's idle floor: the catalog's figure, else a tenth of its TDP."""
    return gpu.idle_w.value if gpu.idle_w is not None else IDLE_FRAC_OF_TDP * gpu.tdp_w.value


def peak_flops(gpu: Gpu, dtype: str) -> float:
    """Dense tensor FLOP/s for the dtype the matmuls run in.

    fp8 uses the FP8 tensor rate where the GPU has one; nvfp4 the FP4 rate where it has one
    (Blackwell); elsewhere fp8, nvfp4 and mxfp4 weights are dequantized and run at the FP16 rate
    (mxfp4 everywhere: gpt-oss keeps attention and the dense layers in bf16); fp32 at a quarter.
    """
    base = gpu.fp16_tflops.value * 1e12
    if dtype == "fp32":
        return base / 4.0
    if dtype == "fp8" and gpu.fp8_tflops is not None:
        return gpu.fp8_tflops.value * 1e12
    if dtype == "nvfp4" and gpu.fp4_tflops is not None:
        return gpu.fp4_tflops.value * 1e12
    return base


@dataclass(frozen=True)
class HardwareArrays:
    """Peak rates and power limits of the GPU at each point."""

    peak_flops: F64
    mem_bw_b_s: F64
    link_b_s: F64
    tdp_w: F64
    idle_w: F64
    mem_bytes: F64

    def take(self, index: NDArray[np.int64]) -> HardwareArrays:
        """Select points by index."""
        return HardwareArrays(*(getattr(self, f.name)[index] for f in fields(self)))


def hardware_arrays(gpus: list[Gpu], dtypes: list[str]) -> HardwareArrays:
    """Stack GPU specs for points (one GPU and weight dtype per point)."""
    return HardwareArrays(
        peak_flops=np.array([peak_flops(g, d) for g, d in zip(gpus, dtypes, strict=True)]),
        mem_bw_b_s=np.array([g.memory_bw_gb_s.value * 1e9 for g in gpus]),
        link_b_s=np.array([LINK_GB_S[g.form_factor] * 1e9 for g in gpus]),
        tdp_w=np.array([g.tdp_w.value for g in gpus]),
        idle_w=np.array([idle_w(g) for g in gpus]),
        mem_bytes=np.array([g.memory_gb.value * 1e9 for g in gpus]),
    )


@dataclass(frozen=True)
class ProfileArrays:
    """Model parameters at each point (see ``PARAM_NAMES``)."""

    eff_compute: F64
    eff_memory: F64
    step_overhead_s: F64
    seq_overhead_s: F64
    tp_latency_s: F64
    base_frac: F64
    mem_frac: F64
    peak_frac: F64
    power_exponent: F64
    eff_fp8_block: F64    # share of eff_memory that block-scaled fp8 expert weights reach

    @classmethod
    def from_vector(cls, vec: F64) -> ProfileArrays:
        """From an (10, n) or (10,) array in ``PARAM_NAMES`` order."""
        return cls(*(np.asarray(vec[i], dtype=np.float64) for i in range(len(PARAM_NAMES))))

    @classmethod
    def from_values(cls, values: dict[str, float]) -> ProfileArrays:
        """From a name → value mapping."""
        return cls(*(np.asarray(values[n], dtype=np.float64) for n in PARAM_NAMES))

    def take(self, index: NDArray[np.int64]) -> ProfileArrays:
        """Select per-point parameters by index."""
        return ProfileArrays(*(np.asarray(getattr(self, f.name))[index] for f in fields(self)))


@dataclass(frozen=True)
class ResolvedProfile:
    """Parameters for one GPU under one stack, where they came from, and the prediction range.

    ``ranges`` maps a metric (``energy_per_token``, ``tpot``, ``throughput``, ``ttft``) to the
    multiplicative ``(low, high)`` factors that bracket a prediction.
    """

    gpu: str
    stack: str
    values: dict[str, float]
    calibration: str
    calibrated: bool
    profile_id: str
    ranges: dict[str, tuple[float, float]]
    tp_sizes: tuple[int, ...] = ()                     # GPU counts the profile was fitted on
    tp_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def ranges_at(self, tp: int) -> dict[str, tuple[float, float]]:
        """The ranges for a group of ``tp`` GPUs: on a count the profile never saw, widened to
        what predicting an unmeasured layout errs by (``tp_holdout``)."""
        if not self.tp_sizes or tp in self.tp_sizes or not self.tp_ranges:
            return self.ranges
        return widest(self.ranges, self.tp_ranges)


def widest(*ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Per metric, the envelope of several ranges."""
    out: dict[str, tuple[float, float]] = {}
    for rng in ranges:
        for metric, (lo, hi) in rng.items():
            old = out.get(metric, (lo, hi))
            out[metric] = (min(old[0], lo), max(old[1], hi))
    return out


def _range_from(error: dict[str, float], prefix: str = "") -> dict[str, tuple[float, float]]:
    out = {}
    for metric in RANGE_METRICS:
        lo, hi = error.get(f"{prefix}{metric}.lo"), error.get(f"{prefix}{metric}.hi")
        if lo is not None and hi is not None:
            out[metric] = (float(lo), float(hi))
    return out


def stack_prior(profiles: list[CalibrationProfile]) -> tuple[dict[str, float], str]:
    """Prior parameters of one stack: geometric means over its calibrated GPUs (power levels are
    fractions, so they transfer to any TDP)."""
    if not profiles:
        return dict(DEFAULT_PRIOR), DEFAULT_PRIOR_SOURCE
    prior = {n: float(np.exp(np.mean(np.log([max(getattr(p, n), 1e-12) for p in profiles]))))
             for n in PARAM_NAMES}
    names = ", ".join(sorted(p.gpu for p in profiles))
    return prior, f"{profiles[0].stack} parameters of {names}, transferred by specs"


def _prior_ranges(profiles: list[CalibrationProfile]) -> dict[str, tuple[float, float]]:
    """The widest GPU-held-out range recorded by the stack's profiles, per metric."""
    out: dict[str, tuple[float, float]] = {}
    for prof in profiles:
        for metric, (lo, hi) in _range_from(prof.error, "gpu_holdout.").items():
            old = out.get(metric, (1.0, 1.0))
            out[metric] = (min(old[0], lo), max(old[1], hi))
    return out


def resolve_profile(gpu: Gpu, catalog: Catalog, stack: str = DEFAULT_STACK,
                    exclude_gpu: str | None = None) -> ResolvedProfile:
    """The GPU's calibrated profile under ``stack``, or that stack's prior for its specs.

    A profile the user gave (``--catalog``) for this GPU under another stack only is refused by
    name rather than silently passed over for the shipped one.
    """
    st = catalog.stack(stack)
    if exclude_gpu is None:
        _check_user_profiles(gpu, catalog, st.id)
    prof = None if exclude_gpu == gpu.id else catalog.profile_for(gpu.id, st.id)
    if prof is not None:
        vals = {n: float(getattr(prof, n)) for n in PARAM_NAMES}
        ranges = _range_from(prof.error) or {m: DEFAULT_RANGE for m in RANGE_METRICS}
        return ResolvedProfile(gpu.id, st.id, vals, f"{prof.id}: {prof.source}", True, prof.id,
                               ranges, tuple(prof.tp_sizes),
                               _range_from(prof.error, "tp_holdout."))
    others = [p for p in catalog.stack_profiles(st.id) if p.gpu != exclude_gpu]
    prior, src = stack_prior(others)
    if others and gpu.vendor not in {catalog.gpu(p.gpu).vendor for p in others}:
        src += f"; {OTHER_VENDOR_NOTE.format(vendor=gpu.vendor)}"
    ranges = _prior_ranges(others) or {m: DEFAULT_RANGE for m in RANGE_METRICS}
    return ResolvedProfile(gpu.id, st.id, prior, src, False, f"{st.id}-prior", ranges)


def _check_user_profiles(gpu: Gpu, catalog: Catalog, stack: str) -> None:
    """The user's own profiles for ``gpu``: one under ``stack`` is used; one under another stack
    only would be ignored without a word, so it is an error naming both stacks."""
    mine = [catalog.profiles[pid] for pid in catalog.user_profiles
            if pid in catalog.profiles and catalog.profiles[pid].gpu == gpu.id]
    if not mine or any(p.stack == stack for p in mine):
        return
    others = sorted({p.stack for p in mine})
    where = catalog.user_profiles[next(p.id for p in mine)]
    raise TokenprintError(
        f"your profile for {gpu.id} ({where}) is for stack {', '.join(others)}, not {stack}, the "
        f"stack asked: give --stack {others[0]} to use it, or calibrate under {stack}")


def check_stack(catalog: Catalog, stack: str) -> str:
    """The stack's catalog id, or one clear error naming the valid ones."""
    try:
        return catalog.stack(stack).id
    except TokenprintError:
        raise TokenprintError(
            f"unknown serving stack {stack!r}; valid: {', '.join(sorted(catalog.stacks))}"
        ) from None
