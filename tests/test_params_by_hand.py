"""Hand-derived tests of the predictor's parameter plumbing (``predict/params.py``) and the
simulator's per-replica constants (``predict/step.py``): the rates each dtype runs at, the
ranges a prediction carries, which profile a GPU gets, and the all-reduce costs of a group.
Every expected figure is written from the catalog's datasheet numbers, not by calling the code
under test."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tokenprint.catalog.schema import CalibrationProfile
from tokenprint.errors import TokenprintError
from tokenprint.predict.params import (
    DEFAULT_PRIOR,
    DEFAULT_RANGE,
    PARAM_NAMES,
    RANGE_METRICS,
    ProfileArrays,
    ResolvedProfile,
    _prior_ranges,
    _range_from,
    check_stack,
    hardware_arrays,
    idle_w,
    peak_flops,
    resolve_profile,
    stack_prior,
    widest,
)
from tokenprint.predict.shapes import ACTIVATION_BYTES
from tokenprint.predict.step import step_costs


def test_peak_flops_per_dtype(catalog):
    """H100 SXM: 989.4 TF dense FP16, 1978.9 TF FP8, no FP4 rate; B200 9 PF FP4; T4 no FP8."""
    h100, t4, b200 = catalog.gpu("h100-sxm"), catalog.gpu("t4"), catalog.gpu("b200")
    assert peak_flops(h100, "bf16") == 989.4 * 1e12
    assert peak_flops(h100, "fp32") == 989.4 * 1e12 / 4
    assert peak_flops(h100, "fp8") == 1978.9 * 1e12
    assert peak_flops(h100, "nvfp4") == 989.4 * 1e12        # dequantized to the FP16 rate
    assert peak_flops(t4, "fp8") == 65.0 * 1e12
    assert peak_flops(b200, "nvfp4") == 9000.0 * 1e12


def test_hardware_arrays_by_hand(catalog):
    h100, t4 = catalog.gpu("h100-sxm"), catalog.gpu("t4")
    hw = hardware_arrays([h100, t4], ["fp8", "fp16"])
    assert hw.peak_flops.tolist() == [1978.9 * 1e12, 65.0 * 1e12]
    assert hw.mem_bw_b_s.tolist() == [h100.memory_bw_gb_s.value * 1e9,
                                      t4.memory_bw_gb_s.value * 1e9]
    assert hw.link_b_s.tolist() == [300.0 * 1e9, 25.0 * 1e9]   # NVLink board vs PCIe
    assert hw.tdp_w.tolist() == [700.0, 70.0]
    assert hw.idle_w.tolist() == [70.0, 7.0]                  # a tenth of TDP without a figure
    assert hw.mem_bytes.tolist() == [80.0 * 1e9, 16.0 * 1e9]
    with pytest.raises(ValueError):
        hardware_arrays([h100], ["fp16", "fp8"])              # one dtype per GPU, no more
    measured = h100.model_copy(update={"idle_w": h100.tdp_w.model_copy(update={"value": 55.0})})
    assert idle_w(measured) == 55.0                           # the catalog's figure wins


def test_profile_arrays_by_hand():
    ints = ProfileArrays.from_values({n: i for i, n in enumerate(PARAM_NAMES)})
    assert ints.eff_compute.dtype == np.float64 and float(ints.power_exponent) == 8.0
    assert float(ints.eff_fp8_block) == 9.0
    vec = ProfileArrays.from_vector(np.arange(20).reshape(10, 2))
    assert vec.eff_memory.dtype == np.float64 and vec.eff_memory.tolist() == [2.0, 3.0]
    second = vec.take(np.array([1]))
    assert second.eff_compute.tolist() == [1.0] and second.power_exponent.tolist() == [17.0]


def test_ranges_by_hand():
    assert widest({"tpot": (0.9, 1.1)}, {"tpot": (0.8, 1.05), "ttft": (0.5, 2.0)}) == {
        "tpot": (0.8, 1.1), "ttft": (0.5, 2.0)}
    assert widest({"tpot": (0.9, 1.1)}) == {"tpot": (0.9, 1.1)}
    err = {"tpot.lo": 0.9, "tpot.hi": 1.2, "ttft.lo": 0.8, "energy_per_token.hi": 1.3,
           "tp_holdout.tpot.lo": 0.5, "tp_holdout.tpot.hi": 2.0}
    assert _range_from(err) == {"tpot": (0.9, 1.2)}          # a half-given range is no range
    assert _range_from(err, "tp_holdout.") == {"tpot": (0.5, 2.0)}
    rp = ResolvedProfile("g", "s", {}, "", True, "p", {"tpot": (0.9, 1.1)}, (1, 2),
                         {"tpot": (0.7, 1.2)})
    assert rp.ranges_at(2) == {"tpot": (0.9, 1.1)}            # a GPU count the fit saw
    assert rp.ranges_at(4) == {"tpot": (0.7, 1.2)}            # one it never saw: widened
    assert replace(rp, tp_sizes=()).ranges_at(4) == {"tpot": (0.9, 1.1)}
    assert replace(rp, tp_ranges={}).ranges_at(4) == {"tpot": (0.9, 1.1)}


def _profile(gpu: str, **error: float) -> CalibrationProfile:
    return CalibrationProfile(id=f"{gpu}-x", gpu=gpu, stack="vllm-2025", source="test",
                              eff_compute=0.5, eff_memory=0.8, step_overhead_s=4e-3,
                              seq_overhead_s=1e-4, base_frac=0.2, mem_frac=0.4,
                              peak_frac=0.6, power_exponent=0.5,
                              error={k.replace("__", "."): v for k, v in error.items()})


def test_stack_prior_and_its_ranges_by_hand():
    a = _profile("a100", gpu_holdout__tpot__lo=0.9, gpu_holdout__tpot__hi=1.2,
                 tpot__lo=0.1, tpot__hi=9.0)               # in-sample errors do not count
    b = _profile("h100", gpu_holdout__tpot__lo=0.95, gpu_holdout__tpot__hi=1.5,
                 gpu_holdout__ttft__lo=1.1, gpu_holdout__ttft__hi=1.3)
    # the envelope starts at (1, 1): a range always brackets the central prediction
    assert _prior_ranges([a, b]) == {"tpot": (0.9, 1.5), "ttft": (1.0, 1.3)}
    prior, src = stack_prior([a, b])
    assert prior["eff_memory"] == pytest.approx(0.8) and src == (
        "vllm-2025 parameters of a100, h100, transferred by specs")
    empty, src0 = stack_prior([])
    assert empty == DEFAULT_PRIOR and empty is not DEFAULT_PRIOR and "default" in src0


def test_resolve_profile_by_hand(catalog):
    h100 = catalog.gpu("h100-sxm")
    prof = catalog.profiles["h100-sxm-vllm-2025"]
    rp = resolve_profile(h100, catalog, "vllm-2025")
    assert (rp.gpu, rp.stack, rp.calibrated, rp.profile_id) == (
        "h100-sxm", "vllm-2025", True, "h100-sxm-vllm-2025")
    assert rp.tp_sizes == (1, 2, 4, 8)
    e = prof.error
    assert rp.ranges["energy_per_token"] == (e["energy_per_token.lo"], e["energy_per_token.hi"])
    assert rp.tp_ranges["tpot"] == (e["tp_holdout.tpot.lo"], e["tp_holdout.tpot.hi"])
    bare = replace(catalog, profiles={**catalog.profiles, prof.id: prof.model_copy(
        update={"error": {}})})
    assert resolve_profile(h100, bare, "vllm-2025").ranges == {
        m: DEFAULT_RANGE for m in RANGE_METRICS}
    # held out (as validate --holdout gpu does): the stack's prior from the other GPUs
    out = resolve_profile(h100, catalog, "vllm-2024", exclude_gpu="h100-sxm")
    assert (out.gpu, out.calibrated, out.profile_id) == ("h100-sxm", False, "vllm-2024-prior")
    others = [p for p in catalog.stack_profiles("vllm-2024") if p.gpu != "h100-sxm"]
    assert len(others) >= 2
    for m in RANGE_METRICS:
        los = [p.error[f"gpu_holdout.{m}.lo"] for p in others]
        his = [p.error[f"gpu_holdout.{m}.hi"] for p in others]
        assert out.ranges[m] == (min([1.0, *los]), max([1.0, *his]))
    # alone under its stack, the GPU held out has nothing to borrow: the default range
    alone = resolve_profile(h100, catalog, "vllm-2025", exclude_gpu="h100-sxm")
    assert alone.ranges == {m: DEFAULT_RANGE for m in RANGE_METRICS}


def test_user_profile_for_another_stack_is_refused(catalog):
    h100 = catalog.gpu("h100-sxm")
    mine = replace(catalog, user_profiles={"ghost": "gone.toml",
                                           "h100-sxm-vllm-2024": "mine.toml"})
    with pytest.raises(TokenprintError) as err:
        resolve_profile(h100, mine, "vllm-2025")
    assert str(err.value) == (
        "your profile for h100-sxm (mine.toml) is for stack vllm-2024, not vllm-2025, the "
        "stack asked: give --stack vllm-2024 to use it, or calibrate under vllm-2025")
    assert resolve_profile(h100, mine, "vllm-2024").profile_id == "h100-sxm-vllm-2024"
    with pytest.raises(TokenprintError) as bad:
        check_stack(catalog, "nope")
    assert str(bad.value) == ("unknown serving stack 'nope'; valid: deepspeed-mii, "
                              "hf-transformers, splitwise-2023, tensorrt-llm, vllm-2024, "
                              "vllm-2025")
    assert check_stack(catalog, "vllm-2024") == "vllm-2024"


def test_step_costs_of_a_group_by_hand(catalog):
    """Llama 3.1 8B on H100 SXM: 64 all-reduces a pass of 4,096 bf16 activations; a ring moves
    2·(tp−1)/tp of them over 300 GB/s, and each call waits log2(tp) latency steps."""
    v = catalog.profiles["h100-sxm-vllm-2025"]
    one, _ = step_costs(catalog, "llama-3.1-8b", "h100-sxm")
    assert one.comm_s_per_token == 0.0 and one.comm_fixed_s == 0.0
    assert one.idle_w == 70.0 and one.flops_per_s == 989.4 * 1e12 * v.eff_compute
    for tp, steps in ((2, 1.0), (4, 2.0)):
        c, info = step_costs(catalog, "llama-3.1-8b", "h100-sxm", tp=tp)
        assert c.comm_s_per_token == pytest.approx(
            64 * 4096 * ACTIVATION_BYTES * 2 * (tp - 1) / tp / 300e9, rel=1e-12)
        assert c.comm_fixed_s == pytest.approx(64 * v.tp_latency_s * steps, rel=1e-12)
        assert c.flops_per_s == pytest.approx(989.4e12 * v.eff_compute * tp, rel=1e-12)
        assert c.bytes_per_s == pytest.approx(3350e9 * v.eff_memory * tp, rel=1e-12)
        assert c.idle_w == 70.0 * tp and c.base_w == pytest.approx(tp * one.base_w)
        assert info == {"dtype": "bf16", "kv_dtype": "bf16", "stack": "vllm-2025",
                        "profile": "h100-sxm-vllm-2025", "calibration": info["calibration"],
                        "calibrated": True, "kv_budget_tokens": c.kv_budget_tokens}
        assert info["calibration"].startswith("h100-sxm-vllm-2025: ")
    fp8, _ = step_costs(catalog, "llama-3.1-8b", "h100-sxm", dtype="fp8")
    assert fp8.flops_per_s == pytest.approx(1978.9e12 * v.eff_compute, rel=1e-12)
    old = step_costs(catalog, "llama-3.1-8b", "h100-sxm", stack="vllm-2024")[1]
    assert (old["stack"], old["profile"]) == ("vllm-2024", "h100-sxm-vllm-2024")
    assert step_costs(catalog, "llama-3.2-1b", "t4")[1]["dtype"] == "fp16"   # no bf16 on a T4
    kv8, info8 = step_costs(catalog, "llama-3.1-8b", "h100-sxm", kv_dtype="fp8")
    assert info8["kv_dtype"] == "fp8" and kv8.kv_bytes_per_token == one.kv_bytes_per_token / 2
    # half the memory for weights + cache: 40 GB − 16.06 GB of weights, 131,072 B a token
    half, _ = step_costs(catalog, "llama-3.1-8b", "h100-sxm", memory_fraction=0.5)
    model = catalog.model("llama-3.1-8b")
    assert one.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    assert half.kv_budget_tokens < one.kv_budget_tokens
    assert half.kv_budget_tokens == pytest.approx(
        (40e9 - model.weight_bytes("bf16")) / one.kv_bytes_per_token, rel=0.02)


def test_step_costs_refusals_by_hand(catalog):
    with pytest.raises(TokenprintError, match=r"^tensor-parallel degree 0 is invalid for "
                                              r"llama-3.1-8b$"):
        step_costs(catalog, "llama-3.1-8b", "h100-sxm", tp=0)
    with pytest.raises(TokenprintError, match="tensor-parallel degree 3 is invalid"):
        step_costs(catalog, "llama-3.1-8b", "h100-sxm", tp=3)   # 8 KV heads over 3 GPUs
    gb = catalog.model("llama-3.1-405b").weight_bytes("bf16") / 1e9
    with pytest.raises(TokenprintError) as err:
        step_costs(catalog, "llama-3.1-405b", "l4")
    assert str(err.value) == (f"llama-3.1-405b in bf16 ({gb:.1f} GB) does not fit 1 × l4 "
                              "(24 GB each); use more tensor parallelism")


def test_step_costs_of_latent_attention_by_hand(catalog):
    """DeepSeek-V3 on 8 H200 in fp8: decode attends in the absorbed (latent) form, and each GPU
    of the group keeps the whole 576-value latent a layer (61 layers), so the group holds 8×."""
    c, _ = step_costs(catalog, "deepseek-v3", "h200", dtype="fp8", tp=8)
    model = catalog.model("deepseek-v3")
    assert c.attn_flops_per_ctx == model.attn_flops_per_pair(decode=True)
    assert c.attn_flops_per_ctx != model.attn_flops_per_pair(decode=False)
    assert c.kv_bytes_per_token == 8 * 61 * 576 * 2
    assert c.n_experts == 256 and c.experts_per_token == 8
    lone = replace(c, n_experts=1.0, experts_per_token=1.0, expert_bytes=5.0)
    assert lone.weight_bytes(3) == c.dense_weight_bytes + 5.0     # one expert, always touched
    assert math.isclose(replace(c, n_experts=0.0).weight_bytes(3), c.dense_weight_bytes)


def test_a_prior_borrowed_across_vendors_says_so(catalog):
    """An AMD GPU under a stack whose profiles are all NVIDIA's gets the transfer's one checked
    outcome in its calibration text; an NVIDIA GPU without a profile does not."""
    amd = resolve_profile(catalog.gpu("mi300x"), catalog, "vllm-2025")
    assert amd.calibrated is False
    assert "no AMD GPU has a profile under this stack" in amd.calibration
    assert "2.3×" in amd.calibration and "calibrate" in amd.calibration
    nvidia = resolve_profile(catalog.gpu("b200"), catalog, "vllm-2025")
    assert "profile under this stack" not in nvidia.calibration
    assert nvidia.calibration.endswith("transferred by specs")
