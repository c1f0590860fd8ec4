from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokenprint.catalog import load_catalog
from tokenprint.errors import TokenprintError
from tokenprint.predict import predict_records
from tokenprint.predict.calibrate import fit_params, point_arrays, predict_points
from tokenprint.predict.datasets import load_mlenergy
from tokenprint.predict.params import PARAM_NAMES, ProfileArrays
from tokenprint.predict.shapes import ShapeArrays, max_batch_fits, pass_bytes, pass_flops
from tokenprint.predict.validate import validation_report


def test_flops_and_bytes_by_hand(catalog):
    tiny = catalog.model("tiny")
    # tiny: hidden 128, 2 layers, 4 heads × 32, 2 KV heads, FFN 256, vocab 1024, untied
    attn = 128 * 128 * 2 + 128 * 64 * 2          # q,o + k,v
    per_layer = attn + 3 * 128 * 256 + 2 * 128
    params = 1024 * 128 + 2 * per_layer + 128 + 1024 * 128
    assert tiny.params == params
    shape = ShapeArrays.of([tiny], ["bf16"])
    # prefill 10 tokens, batch 3: 3 × (2·P_mm·10 + 4·2·4·32·(10·11/2)); P_mm: no embedding, norms
    p_mm = params - 1024 * 128 - (2 * 2 * 128 + 128)
    expected = 3 * (2 * p_mm * 10 + 4 * 2 * 4 * 32 * 55)
    assert float(pass_flops(shape, 3, 10, 0)[0]) == expected
    # one decode step at context 10: attention over 10 cached + itself
    assert float(pass_flops(shape, 1, 1, 10)[0]) == 2 * p_mm + 4 * 2 * 4 * 32 * 11
    # bytes: matmul weights in bf16 + KV (2·2·2·32·2 = 512 B/token) × 11 tokens × batch 2
    assert float(pass_bytes(shape, 2, 1, 10)[0]) == p_mm * 2 + 2 * 512 * 11


def test_moe_flops_and_bytes_by_hand(catalog):
    m = catalog.model("qwen3-30b-a3b")
    shape = ShapeArrays.of([m], ["bf16"])
    dense, expert = m.dense_matmul_params, m.expert_params
    # FLOPs follow the active parameters: dense + 8 routed experts per token
    assert float(pass_flops(shape, 1, 1, 0)[0]) == 2 * (dense + 8 * expert) \
        + 4 * 48 * 32 * 128 * 1
    # bytes: one token touches exactly its 8 experts; many tokens touch all 128
    kv = 2 * 48 * 4 * 128 * 2
    assert float(pass_bytes(shape, 1, 1, 0)[0]) == pytest.approx(
        dense * 2 + 8 * expert * 2 + kv, rel=1e-12)
    two = 128 * (1 - (1 - 8 / 128) ** 2)  # expected experts two tokens touch
    assert float(pass_bytes(shape, 2, 1, 0)[0]) == pytest.approx(
        dense * 2 + two * expert * 2 + 2 * kv, rel=1e-12)
    assert float(pass_bytes(shape, 4096, 1, 0)[0]) == pytest.approx(
        dense * 2 + 128 * expert * 2 + 4096 * kv, rel=1e-9)
    # memory holds all experts: a 30.5 B model in bf16 does not fit 48 GB beside much KV
    assert max_batch_fits(m, 48, "bf16", 4096) < max_batch_fits(m, 80, "bf16", 4096)


def test_fp8_uses_fp8_tensor_rate_only_where_it_exists(catalog):
    from tokenprint.predict.params import peak_flops

    assert peak_flops(catalog.gpu("h100-sxm"), "fp8") == pytest.approx(1978.9e12)
    assert peak_flops(catalog.gpu("a100-sxm4-80gb"), "fp8") == pytest.approx(312e12)
    m = catalog.model("llama-3.1-70b")
    # fp8 weights halve the bytes a decode step reads (KV stays 16-bit by default)
    b16 = ShapeArrays.of([m], ["bf16"])
    b8 = ShapeArrays.of([m], ["fp8"])
    assert float(b8.dense_matmul_params[0] * b8.dense_weight_bytes_per_param[0]) == \
        pytest.approx(float(b16.dense_matmul_params[0] * b16.dense_weight_bytes_per_param[0]) / 2)
    assert float(b8.kv_bytes_per_token[0]) == float(b16.kv_bytes_per_token[0])


def test_max_batch_fits_by_hand(catalog):
    m = catalog.model("llama-2-7b")
    free = 16e9 * 0.9 - m.params * 2
    assert max_batch_fits(m, 16, "fp16", 1000) == int(free // (524_288 * 1000))
    assert max_batch_fits(catalog.model("llama-3.1-70b"), 16, "bf16", 100) == 0


def test_monotone_in_batch(catalog):
    recs = predict_records(catalog, catalog.model("llama-3.2-1b"), catalog.gpu("a100-sxm4-80gb"),
                           [1, 2, 4, 8, 16, 32, 64], 512, 128)
    thr = [r["throughput_tok_s"] for r in recs]
    ept = [r["energy_per_output_token_j"] for r in recs]
    pw = [r["decode_power_w"] for r in recs]
    assert all(b > a for a, b in itertools.pairwise(thr))
    assert all(b < a for a, b in itertools.pairwise(ept))
    assert all(b >= a for a, b in itertools.pairwise(pw))  # power never falls with load
    for r in recs:
        assert r["source"] == "predicted" and r["energy_kind"] == "predicted"
        assert r["ttft_s_low"] <= r["ttft_s"] <= r["ttft_s_high"]
        # no vllm-2025 profile for the A100: the stack's prior, from its H100 profile
        assert r["calibrated"] is False and r["stack"] == "vllm-2025"
        assert r["profile"] == "vllm-2025-prior" and "h100-sxm" in r["calibration"]


def test_oom_reported_not_clipped(catalog):
    recs = predict_records(catalog, catalog.model("llama-2-7b"), catalog.gpu("t4"),
                           [1, 64, 512], 512, 128)
    assert [r["status"] for r in recs] == ["ok", "oom", "oom"]
    assert recs[0]["dtype"] == "fp16"  # T4: no bf16
    assert len(recs) == 3


def test_bad_inputs(catalog):
    m, g = catalog.model("llama-2-7b"), catalog.gpu("t4")
    with pytest.raises(TokenprintError, match="no bf16"):
        predict_records(catalog, m, g, [1], 128, 128, dtype="bf16")
    with pytest.raises(TokenprintError, match="exceeds"):
        predict_records(catalog, m, g, [1], 4000, 128)
    with pytest.raises(TokenprintError, match="batch 0"):
        predict_records(catalog, m, g, [0], 128, 128)


def _synthetic_points(catalog, truth: np.ndarray, noise: float, seed: int = 0,
                      extra: tuple[tuple[str, str, int], ...] = ()) -> pd.DataFrame:
    rows: list[dict] = []
    runs = [(m, "bf16", 4 if "70b" in m else (2 if "34b" in m else 1))
            for m in ("llama-3.1-8b", "mistral-7b", "llama-3.1-70b", "codellama-34b")]
    for model, dtype, tp in [*runs, *extra]:
        for b in (16, 32, 64, 128, 256, 512):
            for mode in ("serving", "static"):
                rows.append({"gpu": "h100-sxm", "model": model, "stack": "vllm-2025", "tp": tp,
                             "batch": float(b), "input_len": 512.0, "output_len": 256.0,
                             "dtype": dtype, "mode": mode, "task": "synthetic"})
    df = pd.DataFrame(rows)
    for m in ("energy_per_output_token_j", "tpot_s", "throughput_tok_s", "ttft_s"):
        df[m] = np.nan
    pa = point_arrays(df, catalog)
    pred = predict_points(pa, ProfileArrays.from_vector(truth))
    rng = np.random.default_rng(seed)
    for m, v in pred.items():
        df[m] = v * np.exp(rng.normal(0, noise, size=len(df)))
    return df


def test_calibration_recovers_known_parameters(catalog):
    # PARAM_NAMES order: eff_compute, eff_memory, step, seq, tp_latency, base, mem, peak, exponent,
    # eff_fp8_block
    truth = np.array([0.55, 0.7, 2e-3, 1e-4, 3e-4, 0.3, 0.5, 0.6, 0.6, 1.0])
    df = _synthetic_points(catalog, truth, noise=0.02)
    fit = fit_params(point_arrays(df, catalog))
    fitted = fit.values
    # no block-scaled fp8 model among the points: that efficiency is not fitted, nor reported
    # as ending on its bound
    assert fitted[PARAM_NAMES.index("eff_fp8_block")] == 1.0
    assert "eff_fp8_block" not in fit.at_bounds
    # the well-identified parameters come back within 15 %
    for name in ("eff_compute", "eff_memory", "seq_overhead_s", "mem_frac"):
        i = PARAM_NAMES.index(name)
        assert fitted[i] == pytest.approx(truth[i], rel=0.15), name
    # and the fitted model reproduces the data to about the noise level
    pa = point_arrays(df, catalog)
    pred = predict_points(pa, ProfileArrays.from_vector(fitted))
    err = np.abs(pred["energy_per_output_token_j"] / df["energy_per_output_token_j"] - 1)
    assert float(np.median(err)) < 0.05


def test_calibration_recovers_the_block_fp8_efficiency(catalog):
    """With block-scaled fp8 MoE runs among the points (Qwen3-30B-A3B and -235B in fp8), the
    share of the bandwidth their experts reach is fitted back; a channel-scaled fp8 MoE
    (Llama-4-Scout) is not slowed by it."""
    truth = np.array([0.55, 0.7, 2e-3, 1e-4, 3e-4, 0.3, 0.5, 0.6, 0.6, 0.45])
    extra = (("qwen3-30b-a3b", "fp8", 1), ("qwen3-235b-a22b", "fp8", 4))
    df = _synthetic_points(catalog, truth, noise=0.02, extra=extra)
    fit = fit_params(point_arrays(df, catalog))
    assert fit.values[PARAM_NAMES.index("eff_fp8_block")] == pytest.approx(0.45, rel=0.15)
    scout = ShapeArrays.of([catalog.model("llama-4-scout")], ["fp8"])
    qwen = ShapeArrays.of([catalog.model("qwen3-30b-a3b")], ["fp8"])
    assert scout.expert_block_scaled.tolist() == [0.0]
    assert qwen.expert_block_scaled.tolist() == [1.0]
    assert ShapeArrays.of([catalog.model("qwen3-30b-a3b")], ["bf16"]).expert_block_scaled[0] == 0


def test_validate_on_shared_subset(shared_data: Path, catalog):
    pts = load_mlenergy(shared_data / "calibration/mlenergy_v2_llm_runs.csv", catalog)
    assert pts.n_skipped > 0 and len(pts.table) > 100
    sub = pts.table[pts.table["model"].isin(["llama-3.1-8b", "mistral-7b"])]
    report = validation_report(sub.reset_index(drop=True), catalog, "batch", pts.n_skipped,
                               pts.source)
    assert set(report) >= {"n_points", "n_skipped", "mape", "bias", "coverage", "by_gpu",
                           "by_model", "by_stack"}
    assert set(report["coverage"]) >= {"energy_per_token", "tpot", "throughput"}
    assert set(report["mape"]) >= {"energy_per_token", "tpot", "throughput"}
    assert report["n_points"] == len(sub)
    assert report["mape"]["energy_per_token"] < 25.0
    json.dumps(report)


def test_predict_cli_json(capsys):
    from tokenprint.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", "llama-3.2-3b", "--gpu", "T4", "--batch", "1,8,64",
              "--input-len", "512", "--output-len", "128", "--json"])
    assert exc.value.code in (0, None)
    recs = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in recs] == [1, 8, 64]
    assert all(r["source"] == "predicted" for r in recs)


def test_user_profile_via_catalog(tmp_path: Path):
    f = tmp_path / "prof.toml"
    f.write_text('[[profile]]\nid = "t4-mine"\ngpu = "t4"\nstack = "hf-transformers"\n'
                 'source = "my fit"\neff_compute = 0.3\neff_memory = 0.6\n'
                 'step_overhead_s = 0.02\nseq_overhead_s = 0.0001\nbase_frac = 0.2\n'
                 'mem_frac = 0.5\npeak_frac = 0.5\npower_exponent = 1.0\n')
    cat = load_catalog([f])
    rec = predict_records(cat, cat.model("llama-3.2-1b"), cat.gpu("t4"), [1], 128, 32,
                          stack="hf-transformers")[0]
    assert rec["calibrated"] is True and "my fit" in rec["calibration"]
    assert rec["stack"] == "hf-transformers" and rec["profile"] == "t4-mine"
    # asked under another stack, the user's profile would be passed over without a word: the
    # two disagree, and the error names both stacks (it silently used the stack's prior before)
    with pytest.raises(TokenprintError, match="hf-transformers, not vllm-2025"):
        predict_records(cat, cat.model("llama-3.2-1b"), cat.gpu("t4"), [1], 128, 32,
                        stack="vllm-2025")


# --- issue #13: physics, stacks, one model, validation as users get it -------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tokenprint.predict.model import pass_time, power_levels, power_w  # noqa: E402
from tokenprint.predict.params import hardware_arrays, resolve_profile  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(eff_c=st.floats(0.05, 0.9), eff_m=st.floats(0.05, 0.95), step=st.floats(1e-5, 0.1),
       seq=st.floats(1e-8, 5e-3), base=st.floats(0.0, 1.0), mem=st.floats(0.0, 1.0),
       peak=st.floats(0.0, 1.0), k=st.floats(0.1, 1.0), ctx=st.integers(1, 8192),
       gpu=st.sampled_from(["t4", "rtx-6000-ada", "a100-sxm4-80gb", "h100-sxm"]),
       model=st.sampled_from(["llama-3.2-1b", "llama-2-7b", "qwen3-30b-a3b"]),
       fp8=st.booleans(), eff_block=st.floats(0.1, 1.0))
def test_power_is_monotone_in_load_and_bounded(eff_c, eff_m, step, seq, base, mem, peak, k, ctx,
                                               gpu, model, fp8, eff_block):
    cat = load_catalog()
    g, m = cat.gpu(gpu), cat.model(model)
    dt = "fp8" if fp8 else "bf16" if g.bf16 else "fp16"   # fp8 Qwen3-30B-A3B: block-scaled
    shape, hw = ShapeArrays.of([m], [dt]), hardware_arrays([g], [dt])
    prof = ProfileArrays.from_vector(np.array([eff_c, eff_m, step, seq, 2e-4, base, mem, peak,
                                               k, eff_block]))
    batches = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], dtype=float)
    p = power_w(hw, prof, pass_time(shape, hw, prof, batches, 1.0, float(ctx), 1.0))
    assert np.all(np.diff(p) >= -1e-9 * p[:-1])          # never falls as the batch grows
    assert np.all(p >= hw.idle_w - 1e-9) and np.all(p <= hw.tdp_w + 1e-9)
    # and TDP is reachable: all fractions at 1 and a compute-bound pass give TDP
    full = ProfileArrays.from_vector(np.array([eff_c, eff_m, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, k,
                                               1.0]))
    assert float(power_levels(hw, full)[2][0]) == pytest.approx(g.tdp_w.value)


def test_transferred_prior_never_mixes_stacks(catalog):
    # the B200 has no profile: under each stack it borrows that stack's parameters only
    b200 = catalog.gpu("b200")
    for stack in ("vllm-2025", "hf-transformers", "tensorrt-llm"):
        res = resolve_profile(b200, catalog, stack)
        assert res.calibrated is False and res.stack == stack
        donors = catalog.stack_profiles(stack)
        assert donors and all(d.stack == stack for d in donors)
        for name in ("eff_compute", "step_overhead_s", "eff_fp8_block"):
            gm = float(np.exp(np.mean(np.log([getattr(d, name) for d in donors]))))
            assert res.values[name] == pytest.approx(gm)
    # the block-scaled fp8 slowdown was measured under vLLM 2025 only (ML.ENERGY v3's FP8 Qwen3
    # MoE): that stack's prior carries it to the B200, the HF stack's does not
    assert resolve_profile(b200, catalog, "vllm-2025").values["eff_fp8_block"] < 0.7
    assert resolve_profile(b200, catalog, "hf-transformers").values["eff_fp8_block"] == 1.0
    # different stacks give different answers on the same GPU
    a = resolve_profile(b200, catalog, "vllm-2025").values["step_overhead_s"]
    b = resolve_profile(b200, catalog, "hf-transformers").values["step_overhead_s"]
    assert a != pytest.approx(b)
    with pytest.raises(TokenprintError, match=r"(?i)valid stacks: .*vllm-2025"):
        resolve_profile(b200, catalog, "vllm-1999")  # names the valid stacks


def test_no_refit_equals_predict_row_for_row(catalog):
    from tokenprint.predict.validate import no_refit_predictions

    rows = [{"gpu": g, "model": "llama-3.1-8b", "stack": s, "tp": 1, "batch": float(b),
             "input_len": 512.0, "output_len": 128.0, "dtype": "bf16", "mode": "static",
             "energy_total": False, "idle_tail_s": 0.0, "energy_per_output_token_j": 1.0,
             "tpot_s": 1.0, "throughput_tok_s": 1.0, "ttft_s": np.nan, "task": "t"}
            for g in ("h100-sxm", "b200") for s in ("vllm-2025", "tensorrt-llm")
            for b in (1, 8, 64)]
    df = no_refit_predictions(pd.DataFrame(rows), catalog)
    for _, row in df.iterrows():
        rec = predict_records(catalog, catalog.model("llama-3.1-8b"), catalog.gpu(row["gpu"]),
                              [int(row["batch"])], 512, 128, stack=row["stack"])[0]
        for m in ("energy_per_output_token_j", "tpot_s", "throughput_tok_s"):
            assert row[f"pred_{m}"] == pytest.approx(rec[m], rel=1e-12)
            assert row[f"low_{m}"] == pytest.approx(rec[f"{m}_low"], rel=1e-12)
            assert row[f"high_{m}"] == pytest.approx(rec[f"{m}_high"], rel=1e-12)


def test_simulate_step_equals_predict_step(catalog):
    from tokenprint.predict.step import step_costs

    for model, dtype in (("llama-3.1-8b", "bf16"), ("qwen3-30b-a3b", "bf16"),
                         ("nemotron-nano-9b-v2", "bf16"), ("qwen3-30b-a3b", "fp8")):
        costs, _ = step_costs(catalog, model, "h100-sxm", dtype=dtype, stack="vllm-2025")
        m = catalog.model(model)
        shape = ShapeArrays.of([m], [dtype])
        hw = hardware_arrays([catalog.gpu("h100-sxm")], [dtype])
        prof = ProfileArrays.from_values(resolve_profile(catalog.gpu("h100-sxm"), catalog,
                                                         "vllm-2025").values)
        for b, ctx in ((1, 100), (16, 700), (256, 2000)):
            pt = pass_time(shape, hw, prof, float(b), 1.0, float(ctx), 1.0)
            # the simulator's decode step for b requests holding ctx tokens each, in total b*ctx
            comp = (costs.matmul_flops_per_token * b + costs.attn_flops_per_ctx * (b * ctx + b)
                    ) / costs.flops_per_s
            mem = (costs.weight_bytes(b) + costs.kv_bytes_per_token * (b * ctx + b)
                   + 2 * costs.state_bytes_per_seq * b) / costs.bytes_per_s
            dt = max(comp, mem) + costs.step_overhead_s + costs.seq_overhead_s * b
            assert dt == pytest.approx(float(pt.total_s[0]), rel=1e-9)
            assert costs.power(dt, comp, costs.step_overhead_s) == pytest.approx(
                float(power_w(hw, prof, pt)[0]), rel=1e-9)


def test_coverage_on_a_hand_made_table():
    from tokenprint.predict.validate import _stats

    meas = [1.0, 2.0, 3.0, 4.0]
    df = pd.DataFrame({"energy_per_output_token_j": meas, "tpot_s": meas,
                       "throughput_tok_s": meas,
                       "pred_energy_per_output_token_j": [1.0, 1.0, 3.0, 5.0],
                       "low_energy_per_output_token_j": [0.5, 0.5, 2.0, 4.5],
                       "high_energy_per_output_token_j": [1.5, 1.5, 4.0, 5.5]})
    for m in ("tpot_s", "throughput_tok_s"):
        df[f"pred_{m}"], df[f"low_{m}"], df[f"high_{m}"] = np.nan, np.nan, np.nan
    s = _stats(df)
    # inside: 1 in [0.5,1.5], 3 in [2,4]; outside: 2 (> 1.5), 4 (< 4.5)
    assert s["coverage"]["energy_per_token"] == 0.5
    # errors 0, -0.5, 0, +0.25 → MAPE 18.75 %, bias -6.25 %
    assert s["mape"]["energy_per_token"] == pytest.approx(18.75)
    assert s["bias"]["energy_per_token"] == pytest.approx(-6.25)
    assert s["mape"]["tpot"] is None


def test_temporal_check_v2_profile_on_v3_data(shared_data: Path, catalog):
    """Fit on ML.ENERGY v2 (vLLM 2024) only, predict v3 (vLLM late 2025) on the same H100: the
    old stack's profile is far off, which is why profiles are keyed by stack."""
    from tokenprint.predict.datasets import load_mlenergy_v3

    cal = shared_data / "calibration"
    v2 = load_mlenergy(cal / "mlenergy_v2_llm_runs.csv", catalog).table
    v3 = load_mlenergy_v3(cal / "mlenergy_v3_h100/mlenergy_v3_h100_configs.csv", catalog).table
    pts = pd.concat([v2[v2["gpu"] == "h100-sxm"], v3], ignore_index=True)
    rep = validation_report(pts, catalog, "stack", 0, "v2 -> v3")
    old_on_new = rep["by_stack"]["vllm-2025"]
    # measured in this repository: energy +46 % biased, TPOT +156 % (README, Accuracy)
    assert old_on_new["bias"]["energy_per_token"] > 20.0
    assert old_on_new["bias"]["tpot"] > 80.0
    # while the shipped vllm-2025 profile, on the stack it was made for, is within 20 %
    same = validation_report(v3, catalog, None, 0, "v3")
    assert same["mape"]["energy_per_token"] < 20.0
    assert same["coverage"]["energy_per_token"] >= 0.8


def test_validate_cli_no_refit_on_v3(shared_data: Path, capsys):
    from tokenprint.cli.main import main

    f = shared_data / "calibration/mlenergy_v3_h100/mlenergy_v3_h100_configs.csv"
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--data", str(f), "--format", "mlenergy-v3", "--no-refit", "--json"])
    assert exc.value.code in (0, None)
    rep = json.loads(capsys.readouterr().out)
    for key in ("n_points", "n_skipped", "mape", "bias", "coverage", "by_gpu", "by_model",
                "by_stack"):
        assert key in rep, key
    for key in ("mape", "bias", "coverage"):
        assert set(rep[key]) >= {"energy_per_token", "tpot", "throughput"}
    assert rep["refit"] is False and rep["n_points"] > 360
    # every row is answered now (multimodal, latent attention, hybrids); the multimodal tasks
    # are scored apart
    assert rep["n_skipped"] == sum(rep["skipped_reasons"].values()) == 0
    assert rep["n_points"] == 405
    assert {"image-chat", "video-chat", "lm-arena-chat"} <= set(rep["by_task"])


def test_argonne_boundaries_by_hand(tmp_path: Path, catalog):
    from tokenprint.predict.calibrate import point_arrays, predict_points
    from tokenprint.predict.datasets import load_argonne
    from tokenprint.predict.params import resolve_profile

    (tmp_path / "power_results_tidy.csv").write_text(
        "hardware,num_gpus,framework,model,input_len_tokens,output_len_tokens,batch_size,"
        "latency_s,throughput_total_tok_per_s_source,avg_power_mW_source,avg_power_W,"
        "energy_per_output_token_J_derived,energy_per_total_token_J_derived,is_llama_family\n"
        "Nvidia H100 GPU,1,vLLM,meta-llama/Llama-2-7b-hf,1024,1024,16,10.0,3276.8,300000,300,"
        "0.1831,0.0916,True\n"
        "Nvidia H100 GPU,1,llama.cpp,meta-llama/Llama-2-7b-hf,1024,1024,16,10.0,3276.8,300000,"
        "300,0.1831,0.0916,True\n")
    pts = load_argonne(tmp_path, catalog)
    assert len(pts.table) == 1 and pts.n_skipped == 1
    row = pts.table.iloc[0]
    # input+output throughput → output tokens/s: 3276.8 × 1024 / 2048
    assert row["throughput_tok_s"] == pytest.approx(1638.4)
    assert row["stack"] == "vllm-2024" and row["idle_tail_s"] == 1.0 and row["energy_total"]
    # the prediction for that row reproduces the window: (E_run + idle × 1 s) × t / (t + 1 s)
    pa = point_arrays(pts.table, catalog)
    res = resolve_profile(catalog.gpu("h100-sxm"), catalog, "vllm-2024")
    got = predict_points(pa, ProfileArrays.from_values(res.values))["energy_per_output_token_j"]
    no_tail = pts.table.assign(idle_tail_s=0.0)
    e = predict_points(point_arrays(no_tail, catalog),
                       ProfileArrays.from_values(res.values))["energy_per_output_token_j"]
    recs = predict_records(catalog, catalog.model("llama-2-7b"), catalog.gpu("h100-sxm"), [16],
                           1024, 1024, dtype="fp16", stack="vllm-2024")
    t = recs[0]["e2e_s"]
    e_run = float(e[0]) * 16 * 1024
    assert float(got[0]) == pytest.approx((e_run + 70.0 * 1.0) * t / (t + 1.0) / (16 * 1024))


def test_wrong_format_names_the_right_one(shared_data: Path, capsys):
    from tokenprint.cli.main import main

    f = shared_data / "calibration/mlenergy_v2_llm_runs.csv"
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "--data", str(f), "--out", "/dev/null"])
    assert exc.value.code == 2
    assert "--format mlenergy" in capsys.readouterr().err


def test_serving_composition_by_hand(catalog):
    """Continuous batching: each iteration decodes one token for every running request at the
    mean context and prefills the batch/output_len requests that replace finished ones; the KV
    budget caps the running batch."""
    from tokenprint.predict.model import pass_time, power_w, predict_serving

    m, g = catalog.model("llama-3.1-8b"), catalog.gpu("l4")
    shape, hw = ShapeArrays.of([m], ["bf16"]), hardware_arrays([g], ["bf16"])
    prof = ProfileArrays.from_vector(np.array([0.5, 0.7, 2e-3, 1e-4, 2e-4, 0.2, 0.5, 0.5,
                                               0.6, 1.0]))
    li, lo, b = 512.0, 256.0, 8.0
    out = predict_serving(shape, hw, prof, b, li, lo, 1.0)
    step = pass_time(shape, hw, prof, b, 1.0, li + lo / 2, 1.0)
    pre = pass_time(shape, hw, prof, 1.0, li, 0.0, 1.0)
    share = b / lo * float(pre.total_s[0])
    iteration = float(step.total_s[0]) + share
    energy = float(power_w(hw, prof, step)[0]) * float(step.total_s[0]) \
        + float(power_w(hw, prof, pre)[0]) * share
    assert float(out["running_batch"][0]) == b
    assert float(out["tpot_s"][0]) == pytest.approx(float(step.total_s[0]))
    assert float(out["ttft_s"][0]) == pytest.approx(float(pre.total_s[0] + step.total_s[0]))
    assert float(out["iteration_s"][0]) == pytest.approx(iteration)
    assert float(out["throughput_tok_s"][0]) == pytest.approx(b / iteration)
    assert float(out["mean_power_w"][0]) == pytest.approx(energy / iteration)
    assert float(out["energy_per_output_token_j"][0]) == pytest.approx(energy / b)
    # the KV cache caps the running batch: 24 GB × 0.9 less 16 GB of weights, at 640 tokens
    cap = (0.9 * 24e9 - m.weight_bytes("bf16")) / (m.kv_bytes_per_token("bf16") * (li + lo / 2))
    big = predict_serving(shape, hw, prof, 10_000.0, li, lo, 1.0)
    assert float(big["running_batch"][0]) == pytest.approx(cap)
    # two GPUs of a parallel group double the power drawn for the same work share
    two = predict_serving(shape, hw, prof, b, li, lo, 2.0)
    assert float(two["mean_power_w"][0]) > float(out["mean_power_w"][0])


@pytest.mark.parametrize("model,tp,ok", [("qwen3-235b-a22b", 8, True), ("llama-3.1-8b", 3, False),
                                         ("llama-3.1-8b", 4, True), ("llama-3.1-8b", 16, True),
                                         ("llama-3.1-8b", 1, True), ("qwen3-30b-a3b", 2, True)])
def test_parallel_groups_that_can_share_a_model(catalog, model, tp, ok):
    from tokenprint.predict.shapes import group_fits_heads

    assert group_fits_heads(catalog.model(model), tp) is ok
    if not ok:
        with pytest.raises(TokenprintError, match="cannot share"):
            predict_records(catalog, catalog.model(model), catalog.gpu("h100"), [1], 64, 8, tp=tp)


def test_simulate_step_equals_predict_step_in_a_parallel_group(catalog):
    """The replica's decode step on 4 GPUs: all-reduce bytes and the log2(4) = 2 latency steps,
    whose wait draws base power as the fixed costs do (model.pass_time / power_w)."""
    from tokenprint.predict.step import step_costs

    costs, _ = step_costs(catalog, "llama-3.1-70b", "h100-sxm", tp=4, stack="vllm-2025")
    m = catalog.model("llama-3.1-70b")
    prof_v = resolve_profile(catalog.gpu("h100-sxm"), catalog, "vllm-2025").values
    assert costs.comm_fixed_s == pytest.approx(2 * m.num_layers * prof_v["tp_latency_s"] * 2)
    shape = ShapeArrays.of([m], ["bf16"])
    hw = hardware_arrays([catalog.gpu("h100-sxm")], ["bf16"])
    prof = ProfileArrays.from_values(prof_v)
    for b, ctx in ((1, 100), (64, 1500)):
        pt = pass_time(shape, hw, prof, float(b), 1.0, float(ctx), 4.0)
        comp = (costs.matmul_flops_per_token * b + costs.attn_flops_per_ctx * (b * ctx + b)
                ) / costs.flops_per_s
        mem = (costs.weight_bytes(b) + costs.kv_bytes_per_token * (b * ctx + b)) \
            / costs.bytes_per_s
        dt = (max(comp, mem) + costs.step_overhead_s + costs.seq_overhead_s * b
              + costs.comm_s_per_token * b + costs.comm_fixed_s)
        assert dt == pytest.approx(float(pt.total_s[0]), rel=1e-9)
        waits = costs.step_overhead_s + costs.comm_fixed_s
        assert float(pt.step_overhead_s[0]) == pytest.approx(waits, rel=1e-12)
        assert costs.power(dt, comp, waits) == pytest.approx(
            float(power_w(hw, prof, pt)[0]) * 4, rel=1e-9)


def test_the_models_added_after_the_fit_are_answered(shared_data: Path, catalog):
    """Mixtral, Qwen2/2.5, Gemma 2 and Mistral-7B v0.1, which ML.ENERGY v2 and Argonne measure,
    are in the catalog: none of their rows is refused any more, and each is predicted."""
    from tokenprint.predict.datasets import load_argonne

    cal = shared_data / "calibration"
    v2 = load_mlenergy(cal / "mlenergy_v2_llm_runs.csv", catalog)
    arg = load_argonne(cal / "argonne_llm_inference_bench", catalog)
    for pts in (v2, arg):
        refused = " ".join(pts.skipped_reasons)
        for name in ("Mixtral-8x7B", "Mixtral-8x22B", "gemma-2-", "Qwen2-7B", "Qwen2-72B",
                     "Mistral-7B-v0.1"):
            assert name not in refused
    assert {"mixtral-8x7b", "mixtral-8x22b", "gemma-2-9b"} <= set(v2.table["model"])
    assert {"mistral-7b-v0.1", "qwen2.5-7b", "qwen2.5-72b"} <= set(arg.table["model"])
    # Argonne's MI300X vLLM rows are read (under vLLM 2024, whose prior they are scored with)
    mi = arg.table[arg.table["gpu"] == "mi300x"]
    assert len(mi) > 500 and set(mi["stack"]) == {"vllm-2024"}
    assert not any("MI300X" in reason for reason in arg.skipped_reasons)
    rec = predict_records(catalog, catalog.model("mixtral-8x7b"), catalog.gpu("h100"), [8],
                          512, 128, tp=2)[0]
    assert rec["status"] == "ok" and 0 < rec["energy_per_output_token_j"] < 10


def test_an_fp8_record_says_which_scales_it_assumed_and_a_user_file_can_change_them(tmp_path):
    """Qwen3's published FP8 is block-scaled: the record says so, and costs its experts at the
    profile's eff_fp8_block. A user who quantizes per channel instead says so in a catalog file,
    and the same prediction then reads the experts at the full rate (less time, less energy)."""
    from tokenprint.catalog import load_catalog as load

    cat = load()
    block = predict_records(cat, cat.model("qwen3-30b-a3b"), cat.gpu("h100"), [64], 512, 128,
                            dtype="fp8")[0]
    assert block["fp8_scales"] == "block"
    assert "fp8_scales" not in predict_records(cat, cat.model("qwen3-30b-a3b"), cat.gpu("h100"),
                                               [64], 512, 128)[0]
    f = tmp_path / "mine.toml"
    f.write_text('[[model]]\nid = "qwen3-30b-a3b"\nfp8_scales = "channel"\n'
                 'source = "quantized per channel with vLLM --quantization fp8"\n')
    mine = load([f])
    chan = predict_records(mine, mine.model("qwen3-30b-a3b"), mine.gpu("h100"), [64], 512, 128,
                           dtype="fp8")[0]
    assert chan["fp8_scales"] == "channel"
    assert chan["tpot_s"] < block["tpot_s"]
    assert chan["energy_per_output_token_j"] < block["energy_per_output_token_j"]


def test_validate_names_why_rows_were_skipped(shared_data: Path):
    """Under the table, the commonest reasons rows were refused, with their counts."""
    import os
    import subprocess
    import sys

    data = shared_data / "calibration" / "splitwise_perf_model"
    proc = subprocess.run([sys.executable, "-m", "tokenprint", "validate", "--format",
                           "splitwise", "--data", str(data), "--no-refit"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0
    assert "skipped 285: hardware not modelled: h100-80gb-pcap (power-capped)" in proc.stdout
    assert "skipped 10: prefill faster than the GPUs' dense fp16 peak allows" in proc.stdout
