"""The work a pass does (FLOPs, bytes, all-reduces, experts, KV budget) by hand.

Each figure is rebuilt from the architecture's numbers and the formula in
``tokenprint.predict.shapes``' docstring.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenprint.catalog.schema import dtype_bytes
from tokenprint.predict.model import pass_time
from tokenprint.predict.params import ProfileArrays, hardware_arrays, resolve_profile
from tokenprint.predict.shapes import (
    ACTIVATION_BYTES,
    ShapeArrays,
    allreduce_bytes,
    experts_touched,
    group_fits_heads,
    group_kv_bytes_per_token,
    kv_dtype_for,
    kv_token_budget,
    max_batch_fits,
    pass_bytes,
    pass_flops,
)


def _one(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def test_allreduce_bytes_by_hand(catalog):
    m = catalog.model("llama-3.1-8b")
    s = ShapeArrays.of([m], ["bf16"])
    # two all-reduces per layer of batch × tokens × hidden 16-bit activations; each GPU sends
    # 2 (t − 1) / t of the buffer in a ring
    act = 3 * 5 * m.hidden_size * ACTIVATION_BYTES
    for tp in (2, 4, 8):
        want = 2 * m.num_layers * act * 2 * (tp - 1) / tp
        assert _one(allreduce_bytes(s, 3, 5, tp)) == pytest.approx(want)
    assert _one(allreduce_bytes(s, 3, 5, 1)) == 0.0
    assert ACTIVATION_BYTES == 2.0


def test_pass_flops_and_bytes_by_hand(catalog):
    m = catalog.model("llama-3.1-8b")
    s = ShapeArrays.of([m], ["bf16"])
    b, n, c = 4, 3, 100
    attn = 4 * m.num_layers * m.num_heads * m.head_dim * (n * c + n * (n + 1) / 2)
    assert _one(pass_flops(s, b, n, c)) == pytest.approx(b * (2 * m.matmul_params * n + attn))
    kv = m.kv_bytes_per_token("bf16")
    want = m.dense_matmul_params * 2 + b * kv * (c + n)
    assert _one(pass_bytes(s, b, n, c)) == pytest.approx(want)


def test_experts_touched_by_hand(catalog):
    moe = catalog.model("qwen3-30b-a3b")
    s = ShapeArrays.of([moe], ["bf16"])
    e, k = moe.num_experts, moe.experts_per_token
    assert _one(experts_touched(s, 1)) == pytest.approx(k)          # one token: its k experts
    assert _one(experts_touched(s, 10)) == pytest.approx(e * (1 - (1 - k / e) ** 10))
    assert _one(experts_touched(s, 1e6)) == pytest.approx(e)        # many tokens: all of them
    dense = ShapeArrays.of([catalog.model("llama-3.1-8b")], ["bf16"])
    assert _one(experts_touched(dense, 50)) == 0.0
    # the bytes of a MoE pass: dense weights + the touched experts + KV
    b, n, c = 2, 5, 0
    experts = e * (1 - (1 - k / e) ** (b * n)) * moe.expert_params * 2
    want = moe.dense_matmul_params * 2 + experts + b * moe.kv_bytes_per_token("bf16") * (c + n)
    assert _one(pass_bytes(s, b, n, c)) == pytest.approx(want)


def test_kv_dtypes_and_mxfp4_weights(catalog):
    assert kv_dtype_for("fp8") == "bf16" and kv_dtype_for("int8") == "bf16"
    assert kv_dtype_for("mxfp4") == "bf16" and kv_dtype_for("fp16") == "fp16"
    assert kv_dtype_for("fp8", "fp8") == "fp8"
    gpt = catalog.model("gpt-oss-20b")
    s = ShapeArrays.of([gpt], ["mxfp4"])
    assert _one(s.dense_weight_bytes_per_param) == dtype_bytes("bf16")   # attention stays 16-bit
    assert _one(s.expert_weight_bytes_per_param) == dtype_bytes("mxfp4")
    m = catalog.model("llama-3.1-8b")
    fp8_kv = ShapeArrays.of([m], ["fp8"], ["fp8"])
    assert _one(fp8_kv.kv_bytes_per_token) == pytest.approx(m.kv_bytes_per_token("fp8"))
    assert _one(ShapeArrays.of([m], ["fp8"]).kv_bytes_per_token) == \
        pytest.approx(m.kv_bytes_per_token("bf16"))


def test_kv_budget_and_batches_by_hand(catalog):
    m = catalog.model("llama-3.1-8b")
    free = 2 * 80 * 1e9 * 0.9 - m.weight_bytes("bf16")
    budget = kv_token_budget(m, 80, "bf16", tp=2)
    assert budget == int(free // m.kv_bytes_per_token("bf16"))
    assert kv_token_budget(m, 80, "bf16", tp=2, kv_dtype="fp8") == \
        int(free // m.kv_bytes_per_token("fp8"))
    assert kv_token_budget(m, 1, "bf16") == 0                      # the weights do not fit
    # weights that exactly fill the usable memory leave no KV room
    exact_gb = m.weight_bytes("bf16") / 1e9 / 0.9
    assert kv_token_budget(m, exact_gb, "bf16") == 0
    assert max_batch_fits(m, 80, "bf16", 1000, tp=2) == budget // 1000
    assert max_batch_fits(m, 80, "bf16", 1, tp=2) == budget          # one token per request
    assert max_batch_fits(m, 80, "bf16", 0, tp=2) == budget
    assert group_fits_heads(m, 1) and group_fits_heads(m, 2) and not group_fits_heads(m, 3)
    assert group_fits_heads(m, 16)                                    # KV heads replicated


def test_communication_time_of_a_pair_by_hand(catalog):
    m, g = catalog.model("llama-3.1-8b"), catalog.gpu("h100-sxm")
    s = ShapeArrays.of([m], ["bf16"])
    hw = hardware_arrays([g], ["bf16"])
    prof = ProfileArrays.from_values(resolve_profile(g, catalog, "vllm-2025").values)
    one, two = pass_time(s, hw, prof, 8, 1, 500, 1), pass_time(s, hw, prof, 8, 1, 500, 2)
    comm = (_one(allreduce_bytes(s, 8, 1, 2)) / _one(hw.link_b_s)
            + 2 * m.num_layers * _one(prof.tp_latency_s))          # log2(2) = 1 step
    # a group of 8 waits three tree steps per all-reduce
    eight = pass_time(s, hw, prof, 8, 1, 500, 8)
    comm8 = (_one(allreduce_bytes(s, 8, 1, 8)) / _one(hw.link_b_s)
             + 2 * m.num_layers * _one(prof.tp_latency_s) * 3)
    bound_eight = max(_one(one.compute_s) / 8, (_one(one.total_s) - _one(one.step_overhead_s)
                                                - 8 * _one(prof.seq_overhead_s)) / 8)
    assert _one(eight.total_s) == pytest.approx(
        bound_eight + comm8 + _one(prof.step_overhead_s) + 8 * _one(prof.seq_overhead_s),
        rel=1e-9)
    bound_two = max(_one(one.compute_s) / 2, (_one(one.total_s) - _one(one.step_overhead_s)
                                              - 8 * _one(prof.seq_overhead_s)) / 2)
    want = bound_two + comm + _one(prof.step_overhead_s) + 8 * _one(prof.seq_overhead_s)
    assert _one(two.total_s) == pytest.approx(want, rel=1e-9)
    assert _one(two.compute_s) == pytest.approx(_one(one.compute_s) / 2)
    assert math.isfinite(_one(two.total_s))


def test_nvfp4_weights_and_rates_by_hand(catalog):
    """NVFP4: 4-bit elements and an FP8 scale per 16 (4.5 bits), the embedding and LM head in
    bf16; the matmuls at the FP4 tensor rate where the GPU has one (B200), else at FP16's."""
    from tokenprint.predict.params import peak_flops

    m = catalog.model("llama-3.1-8b")                       # untied: embedding and head apart
    table = 128256 * 4096 * 2
    assert m.weight_bytes("nvfp4") == pytest.approx((m.params - table) * 4.5 / 8 + table * 2)
    s = ShapeArrays.of([m], ["nvfp4"])
    head = 128256 * 4096
    dense = m.dense_matmul_params
    assert _one(s.dense_weight_bytes_per_param) * dense == pytest.approx(
        (dense - head) * 4.5 / 8 + head * 2)
    assert _one(s.kv_bytes_per_token) == m.kv_bytes_per_token("bf16")   # 16-bit KV cache
    assert peak_flops(catalog.gpu("b200"), "nvfp4") == 9000e12
    h100 = catalog.gpu("h100-sxm")
    assert peak_flops(h100, "nvfp4") == h100.fp16_tflops.value * 1e12
    assert peak_flops(catalog.gpu("b200"), "mxfp4") == 2250e12     # gpt-oss: bf16 dense layers


def test_shape_arrays_refuse_mismatched_lists(catalog):
    """One dtype per model: a list of another length is an error, not a silent truncation."""
    m = catalog.model("llama-3.1-8b")
    with pytest.raises(ValueError):
        ShapeArrays.of([m, m], ["bf16"])
    with pytest.raises(ValueError):
        ShapeArrays.of([m], ["bf16"], ["auto", "fp8"])
    assert ShapeArrays.of([m, m], ["bf16", "fp8"]).weight_bytes.shape == (2,)


# ---- latent attention, hybrid state and the memory fits, by hand ---------------------------------

def test_latent_attention_costs_more_per_pair_in_decode_than_in_prefill(catalog):
    """DeepSeek-V3 decodes with absorbed projections (the latent's up-projections folded into
    each query-key pair), prefill without: the step picks one per pass, decode at one new
    token, prefill from two."""
    m = catalog.model("deepseek-v3")
    dec, pre = m.attn_flops_per_pair(decode=True), m.attn_flops_per_pair(decode=False)
    assert dec > pre
    s = ShapeArrays.of([m], ["bf16"])
    assert (s.attn_flops_decode[0], s.attn_flops_prefill[0]) == (dec, pre)
    base = 2.0 * s.active_matmul_params[0] + s.ssm_flops_per_token[0]
    # one new token after 99 cached: 100 pairs; two new tokens after 99: 99·2 + 3 = 201 pairs
    assert pass_flops(s, 1, 1, 99)[0] == pytest.approx(base + dec * 100, rel=1e-12)
    assert pass_flops(s, 1, 2, 99)[0] == pytest.approx(2 * base + pre * 201, rel=1e-12)


def test_the_latent_cache_is_replicated_across_the_group(catalog):
    """MLA's compressed KV is held whole by every GPU of a tensor-parallel group; grouped KV
    heads are split (a group's total stays one copy)."""
    mla, gqa = catalog.model("deepseek-v3"), catalog.model("llama-2-7b")
    s = ShapeArrays.of([mla, gqa], ["bf16", "bf16"])
    one = s.kv_bytes_per_token
    np.testing.assert_array_equal(group_kv_bytes_per_token(s, 4.0), one * [4.0, 1.0])
    assert mla.group_kv_bytes_per_token("bf16", 4) == 4 * mla.group_kv_bytes_per_token("bf16", 1)
    # pass_bytes without a group size is one GPU's
    np.testing.assert_array_equal(pass_bytes(s, 2, 1, 50), pass_bytes(s, 2, 1, 50, 1.0))
    assert pass_bytes(s, 2, 1, 50, 4.0)[0] - pass_bytes(s, 2, 1, 50, 1.0)[0] == pytest.approx(
        2 * 51 * one[0] * 3, rel=1e-12)


def test_a_hybrid_models_state_follows_its_kv_dtype_and_fills_memory(catalog):
    """Nemotron Nano 9B v2 keeps a fixed Mamba state per sequence beside a small KV cache: a
    batch fits while batch × (KV per token × context + state) fits beside the weights."""
    h = catalog.model("nemotron-nano-9b-v2")
    s8 = ShapeArrays.of([h], ["bf16"], ["fp8"])
    assert s8.state_bytes_per_seq[0] == h.state_bytes_per_seq(kv_dtype_for("bf16", "fp8"))
    assert s8.state_bytes_per_seq[0] != h.state_bytes_per_seq("bf16")
    free = 80 * 1e9 * 0.9 - h.weight_bytes("bf16")
    per_seq = h.group_kv_bytes_per_token("bf16", 1) * 4096 + h.state_bytes_per_seq("bf16")
    assert max_batch_fits(h, 80, "bf16", 4096) == int(free // per_seq)
    assert h.state_bytes_per_seq("bf16") > 0.5 * per_seq     # the state is most of it here


def test_experts_touched_at_the_edges():
    """E·(1 − (1 − k/E)^t): a model with one expert always uses it; none, none."""
    from types import SimpleNamespace

    shape = SimpleNamespace(n_experts=np.array([0.0, 1.0, 8.0]),
                            experts_per_token=np.array([0.0, 1.0, 2.0]))
    got = experts_touched(shape, 3)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, [0.0, 1.0, 8 * (1 - 0.75 ** 3)])


def test_a_group_that_splits_no_head_evenly_is_refused(catalog):
    odd = catalog.model("llama-2-7b").model_copy(update={"num_kv_heads": 3})
    assert group_fits_heads(odd, 1) and group_fits_heads(odd, 3) and group_fits_heads(odd, 6)
    assert not group_fits_heads(odd, 2) and not group_fits_heads(odd, 4)


def test_a_replicated_latent_cache_is_read_on_every_gpu_of_the_group(catalog):
    """DeepSeek-V3's MLA latent sits whole on each of 8 GPUs (vLLM): a memory-bound decode step
    reads 8 copies of it, the weights once across the group; with the latent split instead the
    step would be shorter by exactly 7 copies over the group's bandwidth."""
    from dataclasses import replace

    m = catalog.model("deepseek-v3")
    gpu = catalog.gpu("h100-sxm")
    prof = ProfileArrays.from_values(resolve_profile(gpu, catalog, "vllm-2025").values)
    shape = ShapeArrays.of([m], ["fp8"])
    split = replace(shape, kv_replicated=np.zeros(1))
    hw = hardware_arrays([gpu], ["fp8"])
    b, ctx = 64.0, 8000.0
    whole = float(pass_time(shape, hw, prof, b, 1.0, ctx, 8.0).total_s[0])
    shared = float(pass_time(split, hw, prof, b, 1.0, ctx, 8.0).total_s[0])
    copies = 7 * b * (ctx + 1) * m.kv_bytes_per_token("bf16")
    bw = gpu.memory_bw_gb_s.value * 1e9 * prof.eff_memory
    assert whole - shared == pytest.approx(float(copies / 8 / bw), rel=1e-9)
