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
    shape = ShapeArrays.of([tiny])
    # prefill 10 tokens, batch 3: 3 × (2·P_mm·10 + 4·2·4·32·(10·11/2))
    p_mm = params - 1024 * 128
    expected = 3 * (2 * p_mm * 10 + 4 * 2 * 4 * 32 * 55)
    assert float(pass_flops(shape, 3, 10, 0)[0]) == expected
    # one decode step at context 10: attention over 10 cached + itself
    assert float(pass_flops(shape, 1, 1, 10)[0]) == 2 * p_mm + 4 * 2 * 4 * 32 * 11
    # bytes: weights in bf16 + KV (2·2·2·32·2 = 512 B/token) × 11 tokens × batch 2
    assert float(pass_bytes(shape, 2, 1, 10, 2)[0]) == params * 2 + 2 * 512 * 11


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
    assert all(b > a for a, b in itertools.pairwise(thr))
    assert all(b < a for a, b in itertools.pairwise(ept))
    for r in recs:
        assert r["source"] == "predicted" and r["energy_kind"] == "predicted"
        assert r["ttft_s_low"] <= r["ttft_s"] <= r["ttft_s_high"]
        assert r["calibrated"] is False or "a100" in r["calibration"]


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


def _synthetic_points(catalog, truth: np.ndarray, noise: float, seed: int = 0) -> pd.DataFrame:
    rows = []
    for model in ("llama-3.1-8b", "mistral-7b", "llama-3.1-70b", "codellama-34b"):
        tp = 4 if "70b" in model else (2 if "34b" in model else 1)
        for b in (16, 32, 64, 128, 256, 512):
            for mode in ("serving", "static"):
                rows.append({"gpu": "h100-sxm", "model": model, "tp": tp, "batch": float(b),
                             "input_len": 512.0, "output_len": 256.0, "dtype": "bf16",
                             "mode": mode, "task": "synthetic"})
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
    truth = np.array([0.55, 0.7, 2e-3, 1e-4, 90.0, 500.0, 1.2, 3e-4])
    df = _synthetic_points(catalog, truth, noise=0.02)
    fitted, _ = fit_params(point_arrays(df, catalog), 700.0)
    # the well-identified parameters come back within 15 %
    for name in ("eff_compute", "eff_memory", "seq_overhead_s", "peak_w"):
        i = PARAM_NAMES.index(name)
        assert fitted[i] == pytest.approx(truth[i], rel=0.15), name
    # and the fitted model reproduces the data to about the noise level
    pa = point_arrays(df, catalog)
    pred = predict_points(pa, ProfileArrays.from_vector(fitted))
    err = np.abs(pred["energy_per_output_token_j"] / df["energy_per_output_token_j"] - 1)
    assert float(np.median(err)) < 0.05


def test_validate_on_shared_subset(shared_data: Path, catalog):
    pts = load_mlenergy(shared_data / "calibration/mlenergy_v2_llm_runs.csv", catalog)
    assert pts.n_skipped > 0 and len(pts.table) > 100
    sub = pts.table[pts.table["model"].isin(["llama-3.1-8b", "mistral-7b"])]
    report = validation_report(sub.reset_index(drop=True), catalog, "batch", pts.n_skipped,
                               pts.source)
    assert set(report) >= {"n_points", "n_skipped", "mape", "by_gpu"}
    assert set(report["mape"]) == {"energy_per_token", "tpot", "throughput"}
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
    f.write_text('[[profile]]\nid = "t4-mine"\ngpu = "t4"\nsource = "my fit"\neff_compute = 0.3\n'
                 'eff_memory = 0.6\nstep_overhead_s = 0.02\nseq_overhead_s = 0.0001\n'
                 'idle_w = 15\npeak_w = 65\npower_exponent = 1.0\n')
    cat = load_catalog([f])
    rec = predict_records(cat, cat.model("llama-3.2-1b"), cat.gpu("t4"), [1], 128, 32)[0]
    assert rec["calibrated"] is True and "my fit" in rec["calibration"]
