"""Multi-head latent attention (DeepSeek-V3/R1, Kimi K2) and mixed dense/MoE layer stacks,
derived by hand from the models' config.json."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tokenprint.predict import predict_records
from tokenprint.predict.shapes import ShapeArrays, kv_token_budget, pass_bytes, pass_flops

H, L, HEADS = 7168, 61, 128
QL, KVL, NOPE, ROPE, V = 1536, 512, 128, 64, 128
E, K, MOE, DENSE, FIRST, VOCAB = 256, 8, 2048, 18432, 3, 129280


def test_deepseek_v3_parameters_by_hand(catalog):
    m = catalog.model("deepseek-v3")
    attn = (H * QL + QL * HEADS * (NOPE + ROPE)              # query down and up projections
            + H * (KVL + ROPE) + KVL * HEADS * (NOPE + V)     # joint KV down (+ RoPE key), up
            + HEADS * V * H)                                  # output
    assert m.attention_params_per_layer == attn
    expert = 3 * H * MOE
    moe_layers = L - FIRST
    dense = L * attn + FIRST * 3 * H * DENSE + moe_layers * (expert + H * E) + VOCAB * H
    assert m.dense_matmul_params == dense
    assert m.expert_params == moe_layers * expert
    norms = L * (2 * H + QL + KVL) + H
    assert m.params == dense + E * moe_layers * expert + VOCAB * H + norms
    assert abs(m.params / 1e9 - 671) < 0.5                    # the published 671B
    assert abs(m.active_params / 1e9 - 36.6) < 0.1            # 36.6B with the output head


def test_mla_cache_and_attention_flops_by_hand(catalog):
    m = catalog.model("deepseek-v3")
    assert m.kv_bytes_per_token("bf16") == L * (KVL + ROPE) * 2       # 70,272 B, no heads
    assert m.kv_bytes_per_token("fp8") == L * (KVL + ROPE)
    # decode, absorbed: scores over the latent and its RoPE part, values over the latent
    assert m.attn_flops_per_pair(decode=True) == 2 * L * HEADS * (2 * KVL + ROPE)
    # prefill, decompressed: per head scores over nope + rope dims, values over v_head_dim
    assert m.attn_flops_per_pair(decode=False) == 2 * L * HEADS * (NOPE + ROPE + V)
    s = ShapeArrays.of([m], ["fp8"], ["bf16"])
    c = 4096.0
    decode = float(pass_flops(s, 1, 1, c)[0])
    assert decode == pytest.approx(2 * m.matmul_params + 2 * L * HEADS * (2 * KVL + ROPE)
                                   * (c + 1))
    prefill = float(pass_flops(s, 1, 512, 0)[0])
    assert prefill == pytest.approx(2 * m.matmul_params * 512
                                    + 2 * L * HEADS * (NOPE + ROPE + V) * 512 * 513 / 2)


def test_mla_latent_is_replicated_across_a_tensor_parallel_group(catalog):
    m = catalog.model("deepseek-v3")
    s = ShapeArrays.of([m], ["fp8"], ["bf16"])
    kv = L * (KVL + ROPE) * 2
    one = float(pass_bytes(s, 4, 1, 1000, 1)[0])
    eight = float(pass_bytes(s, 4, 1, 1000, 8)[0])
    assert eight - one == pytest.approx(7 * 4 * kv * 1001)      # seven more copies read
    # the KV budget of 8 × H200: the latent sits on all 8, so 1/8 of the free memory holds it
    h200 = catalog.gpu("h200")
    free = 8 * h200.memory_gb.value * 1e9 * 0.9 - m.weight_bytes("fp8")
    assert kv_token_budget(m, h200.memory_gb.value, "fp8", 8) == int(free // (kv * 8))
    gqa = catalog.model("qwen3-235b-a22b")       # grouped-query KV heads split, not copied
    g = ShapeArrays.of([gqa], ["bf16"])
    assert float(pass_bytes(g, 1, 1, 10, 8)[0]) == float(pass_bytes(g, 1, 1, 10, 1)[0])


def test_maverick_counts_its_dense_and_moe_layers(catalog):
    m = catalog.model("llama-4-maverick")
    h, attn = 5120, 5120 * 40 * 128 * 2 + 5120 * 8 * 128 * 2
    assert m.moe_layers == 24
    dense = 48 * attn + 24 * 3 * h * 16384 + 24 * (3 * h * 8192 + h * 128) + 202048 * h
    assert m.dense_matmul_params == dense
    assert m.expert_params == 24 * 3 * h * 8192
    assert 400 <= m.params / 1e9 <= 402


def test_new_models_predict_on_the_gpus_they_are_served_on(catalog):
    ds = predict_records(catalog, catalog.model("deepseek-r1"), catalog.gpu("h200"), [1, 64],
                         1024, 256, "fp8", tp=8, stack="vllm-2025")
    assert all(r["status"] == "ok" for r in ds)
    assert ds[1]["throughput_tok_s"] > ds[0]["throughput_tok_s"]
    assert all(np.isfinite(r["energy_per_output_token_j"]) and r["energy_per_output_token_j"] > 0
               for r in ds)
    # 671 GB of FP8 weights do not fit 8 × H100 (80 GB, 90 % usable): refused as such
    h100 = predict_records(catalog, catalog.model("deepseek-v3"), catalog.gpu("h100-sxm"), [1],
                           1024, 256, "fp8", tp=8)
    assert h100[0]["status"] == "oom" and h100[0]["max_batch_fits"] == 0
    coder = predict_records(catalog, catalog.model("qwen3-coder-480b-a35b"),
                            catalog.gpu("h100-sxm"), [8], 1024, 256, "fp8", tp=8)
    assert coder[0]["status"] == "ok"


def test_nemotron_nano_9b_v2_hybrid_by_hand(catalog):
    """27 Mamba-2 blocks, 25 ReLU² MLPs, 4 attention blocks (hybrid_override_pattern)."""
    m = catalog.model("nemotron-nano-9b-v2")
    h, inner, groups, state, heads, conv = 4480, 128 * 80, 8, 128, 128, 4
    chans = inner + 2 * groups * state
    assert (m.ssm_layers, m.mlp_layers, m.attention_layers) == (27, 25, 4)
    attn = h * 40 * 128 * 2 + h * 8 * 128 * 2
    mamba = h * (inner + chans + heads) + inner * h           # in_proj (x, z, B, C, dt), out
    mlp = 2 * h * 15680                                        # ReLU²: up and down
    assert m.dense_matmul_params == 4 * attn + 25 * mlp + 27 * mamba + 131072 * h
    small = 56 * h + h + 27 * (chans * (conv + 1) + 3 * heads + inner)
    assert m.params == m.dense_matmul_params + 131072 * h + small
    assert abs(m.params / 1e9 - 8.89) < 0.01
    # only the 4 attention blocks keep a KV cache
    assert m.kv_bytes_per_token("bf16") == 2 * 4 * 8 * 128 * 2
    # the fixed state: the SSM state in fp32 (the config's mamba_ssm_cache_dtype), the
    # convolution's last 3 inputs in bf16
    assert m.state_bytes_per_seq("bf16") == 27 * (inner * state * 4 + chans * 3 * 2)
    assert m.ssm_flops_per_token == 27 * (4 * inner * state + 2 * chans * conv)
    assert m.attn_flops_per_pair() == 4 * 4 * 40 * 128
    s = ShapeArrays.of([m], ["bf16"])
    # each pass reads and writes every sequence's state once, whatever its length
    assert float(pass_bytes(s, 8, 1, 100)[0]) - float(pass_bytes(s, 8, 1, 0)[0]) == \
        pytest.approx(8 * m.kv_bytes_per_token("bf16") * 100)
    assert float(pass_bytes(s, 8, 1, 0)[0]) - float(pass_bytes(s, 7, 1, 0)[0]) == \
        pytest.approx(m.kv_bytes_per_token("bf16") + 2 * m.state_bytes_per_seq("bf16"))
    assert float(pass_flops(s, 1, 1, 0)[0]) == pytest.approx(
        2 * m.matmul_params + m.ssm_flops_per_token + 4 * 4 * 40 * 128)


def test_hybrid_batches_fit_state_and_cache_and_the_simulator_holds_the_state(catalog):
    import math

    from tokenprint.predict.shapes import max_batch_fits
    from tokenprint.predict.step import step_costs
    from tokenprint.simulate.replica import simulate_replica

    m = catalog.model("nemotron-nano-9b-v2")
    free = 80 * 1e9 * 0.9 - m.weight_bytes("bf16")
    per_seq = m.kv_bytes_per_token("bf16") * 2048 + m.state_bytes_per_seq("bf16")
    assert max_batch_fits(m, 80, "bf16", 2048) == int(free // per_seq)
    costs, _ = step_costs(catalog, "nemotron-nano-9b-v2", "h100-sxm")
    assert costs.state_bytes_per_seq == m.state_bytes_per_seq("bf16") > 0
    # each request holds its state in the cache budget, as that many tokens of KV cache
    assert costs.state_tokens == math.ceil(m.state_bytes_per_seq("bf16")
                                           / m.kv_bytes_per_token("bf16"))
    assert step_costs(catalog, "llama-3.1-8b", "h100-sxm")[0].state_tokens == 0
    # a budget that holds the tokens of two requests but not their states admits one at a time
    need = 100 + 20
    tight = replace(costs, kv_budget_tokens=2 * need + costs.state_tokens)
    res = simulate_replica(np.zeros(2), np.array([100, 100]), np.array([20, 20]), tight, 8)
    assert res.first_token_s[1] >= res.finish_s[0]
    roomy = replace(costs, kv_budget_tokens=2 * (need + costs.state_tokens))
    res = simulate_replica(np.zeros(2), np.array([100, 100]), np.array([20, 20]), roomy, 8)
    assert res.first_token_s[1] == res.first_token_s[0]


def test_holdout_tp_predicts_each_group_size_from_the_others(catalog, shared_data):
    """validate --holdout tp: Splitwise's Llama-2-70B at TP 2/4/8, each size from a fit to the
    other sizes of its (GPU, stack); every scored point has a held-out prediction."""
    from tokenprint.predict.datasets import load_points
    from tokenprint.predict.validate import heldout_predictions, validation_report

    pts = load_points("splitwise", shared_data / "calibration" / "splitwise_perf_model"
                      / "perf_model_llama2_70b_unique.csv", catalog)
    sub = pts.table[pts.table["gpu"] == "h100-sxm"].reset_index(drop=True)
    assert set(sub["tp"]) >= {2, 4, 8}
    df = heldout_predictions(sub, catalog, "tp")
    assert np.isfinite(df["pred_tpot_s"]).sum() > 0.9 * len(sub)
    rep = validation_report(sub, catalog, "tp", 0, pts.source)
    assert rep["holdout"] == "tp" and rep["mape"]["tpot"] is not None


@pytest.mark.parametrize("columns", ["80", "200"])
def test_predict_table_never_cuts_a_number(columns):
    """As a user runs it (rich reads COLUMNS when the console is made, at start)."""
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tokenprint", "predict", "--model",
                           "llama-3.1-8b", "--gpu", "l4,h100", "--batch", "1,8,128"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": columns})
    out = proc.stdout
    assert proc.returncode == 0 and "…" not in out
    assert out.count("Predicted: llama-3.1-8b") == 2          # one table per GPU
    if columns == "80":
        assert "ranges (low–high) left out at 80 columns" in out
    else:
        assert "(0.0" in out and "left out" not in out        # ranges under the values


def test_a_prefill_faster_than_the_tensor_peak_is_refused(catalog, tmp_path):
    """Splitwise records TP-2 batch-64 prefills of Llama-2-70B in 0.8 s on A100s, a quarter of
    what 2 × 312 TFLOP/s allow for 64 × 512 prompt tokens: such a row is refused by name, its
    plausible neighbour kept."""
    from tokenprint.predict.datasets import load_splitwise

    head = ("model,hardware,tensor_parallel,prompt_size_tokens,batch_size,token_size_tokens,"
            "prompt_time_ms,token_time_ms\n")
    rows = ("llama2-70b,a100-80gb,2,512,32,128,6638.9,72.1\n"
            "llama2-70b,a100-80gb,2,512,64,128,802.0,67.3\n")
    f = tmp_path / "perf.csv"
    f.write_text(head + rows)
    pts = load_splitwise(f, catalog)
    assert len(pts.table) == 1 and float(pts.table["batch"].iloc[0]) == 32.0
    (reason,) = pts.skipped_reasons
    assert reason.startswith("prefill faster than the GPUs' dense fp16 peak allows")
    # the floor itself: 2 · matmul params · 64 · 512 FLOPs over 2 × 312 TFLOP/s is about 7.4 s
    floor_s = 2 * catalog.model("llama-2-70b").matmul_params * 64 * 512 / (2 * 312e12)
    assert 7.0 < floor_s < 7.8


def test_a_row_faster_than_its_hardware_is_refused(catalog):
    """A decode step cannot beat its weights read at the datasheet bandwidth: Llama-3.1-8B in
    bf16 on one H100 reads 16 GB a step, at 3.35 TB/s 4.8 ms, so at most ~208 tokens/s at batch
    1. A row claiming 2,000 is refused by name; one at 150 is kept."""
    import pandas as pd

    from tokenprint.predict.plausible import BEYOND_HARDWARE, decode_floor_s, drop_beyond_hardware
    from tokenprint.predict.points import COLUMNS, Points

    rows = [{"gpu": "h100-sxm", "model": "llama-3.1-8b", "stack": "vllm-2025", "tp": 1,
             "batch": 1.0, "input_len": 128.0, "output_len": 128.0, "dtype": "bf16",
             "mode": "static", "energy_total": False, "idle_tail_s": 0.0,
             "tpot_includes_prefill": False, "energy_per_output_token_j": 1.0, "tpot_s": np.nan,
             "throughput_tok_s": thr, "ttft_s": np.nan, "task": "t", "encoder_flops": 0.0}
            for thr in (150.0, 2000.0)]
    pts = Points(pd.DataFrame(rows, columns=list(COLUMNS)), 3, {"other": 3}, "hand-made")
    floor = decode_floor_s(pts, catalog)
    m = catalog.model("llama-3.1-8b")
    expected = (m.dense_matmul_params * 2 + m.kv_bytes_per_token("bf16") * 129) / 3.35e12
    assert floor[0] == pytest.approx(expected, rel=1e-9)
    kept = drop_beyond_hardware(pts, catalog)
    assert kept.table["throughput_tok_s"].tolist() == [150.0]
    assert kept.n_skipped == 4 and kept.skipped_reasons == {"other": 3, BEYOND_HARDWARE: 1}
    # a step reported shorter than the floor is refused the same way
    pts2 = Points(pts.table.assign(throughput_tok_s=np.nan, tpot_s=[0.010, 0.001]), 0, {}, "x")
    assert drop_beyond_hardware(pts2, catalog).table["tpot_s"].tolist() == [0.010]
