"""The study's tables by hand (``report/study.py``): the length mix combined from two records
worked out on paper, each carbon column from the catalog's inputs and the charge's definition
(energy × intensity × PUE / 3.6 MJ per kWh; embodied grams × provisioned seconds / lifetime), the
hourly profile from an intensity series with known hour means, and what ``study.json`` counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries
from tokenprint.errors import TokenprintError
from tokenprint.report import study as rs
from tokenprint.report.config import StudyConfig

J_PER_KWH = 3.6e6
S_PER_YEAR = 365.25 * 86400

MEASURED = {"status": "ok", "source": "measured", "model": "m", "hardware_id": "t4",
            "batch": 2, "input_len": 100, "output_len": 50, "energy_kind": "gpu",
            "prefill_energy_j": 10.0, "prefill_energy_j_p5": 8.0, "prefill_energy_j_p95": 12.0,
            "decode_energy_j": 40.0, "decode_energy_j_p5": 30.0, "decode_energy_j_p95": 50.0,
            "e2e_s": 4.0, "e2e_s_p5": 3.0, "e2e_s_p95": 5.0,
            "ttft_s": 0.1, "ttft_s_p5": 0.08, "ttft_s_p95": 0.12,
            "tpot_s": 0.02, "tpot_s_p5": 0.015, "tpot_s_p95": 0.025}
PREDICTED = {"source": "predicted", "batch": 4, "input_len": 200, "output_len": 100,
             "energy_kind": "gpu", "calibration": "v3 profile", "calibrated": True,
             "prefill_energy_j": 40.0, "prefill_energy_j_low": 30.0,
             "prefill_energy_j_high": 50.0,
             "decode_energy_j": 160.0, "decode_energy_j_low": 120.0, "decode_energy_j_high": 200.0,
             "e2e_s": 8.0, "e2e_s_low": 6.0, "e2e_s_high": 10.0,
             "ttft_s": 0.2, "ttft_s_low": 0.15, "ttft_s_high": 0.3,
             "tpot_s": 0.03, "tpot_s_low": 0.02, "tpot_s_high": 0.04}


def test_only_measured_ok_records_are_looked_up():
    key = ("m", "t4", 2, 100, 50)
    untagged = {k: v for k, v in MEASURED.items() if k != "source"}   # measured by default
    assert rs._measured_lookup([untagged]) == {key: untagged}
    assert rs._measured_lookup([{**MEASURED, "source": "predicted"}]) == {}
    assert rs._measured_lookup([{**MEASURED, "status": "oom"}]) == {}
    # one passed over does not end the look-up
    assert rs._measured_lookup([{**MEASURED, "status": "oom"}, MEASURED]) == {key: MEASURED}


def test_the_length_mix_combined_by_hand():
    """A class at batch 2 (measured: p5/p95) and one at batch 4 (predicted: low/high), a
    quarter and three quarters of the requests. Per request: prefill 5 and 10 J, decode 20 and
    40 J, GPU time 2 and 2 s; weighted output tokens 0.25·50 + 0.75·100 = 87.5, input 175."""
    cfg = StudyConfig(tpot_target_s=0.03)
    row = rs._combine("m", "t4", 4, [MEASURED, PREDICTED], ["measured", "predicted"],
                      np.array([0.25, 0.75]), cfg)
    want = {"model": "m", "gpu": "t4", "batch": 4, "stack": cfg.stack, "source": "mixed",
            "energy_kind": "gpu", "calibration": "measured; v3 profile", "calibrated": True,
            "ttft_s": 0.175, "ttft_s_low": 0.1325, "ttft_s_high": 0.255,
            "tpot_s": 0.0275, "tpot_s_low": 0.01875, "tpot_s_high": 0.03625,
            "prefill_j_per_token": 8.75 / 175, "prefill_j_per_token_low": 6.625 / 175,
            "prefill_j_per_token_high": 10.875 / 175,
            "decode_j_per_token": 35 / 87.5, "decode_j_per_token_low": 26.25 / 87.5,
            "decode_j_per_token_high": 43.75 / 87.5,
            "energy_j_per_output_token": 43.75 / 87.5,
            "energy_j_per_output_token_low": 32.875 / 87.5,
            "energy_j_per_output_token_high": 54.625 / 87.5,
            "seconds_per_output_token": 2 / 87.5, "seconds_per_output_token_low": 1.5 / 87.5,
            "seconds_per_output_token_high": 2.5 / 87.5,
            "throughput_tok_s": 43.75, "throughput_tok_s_low": 35.0,
            "throughput_tok_s_high": 87.5 / 1.5, "meets_tpot_target": True}
    assert row.keys() == want.keys()
    for k, v in want.items():
        assert row[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), k
    assert rs._combine("m", "t4", 4, [MEASURED, PREDICTED], ["measured", "predicted"],
                       np.array([0.25, 0.75]), StudyConfig(tpot_target_s=0.02)
                       )["meets_tpot_target"] is False
    one = rs._combine("m", "t4", 2, [MEASURED], ["measured"], np.array([1.0]), cfg)
    assert (one["source"], one["calibration"], one["calibrated"]) == ("measured", "measured",
                                                                      True)
    guessed = {**PREDICTED}
    del guessed["calibrated"]      # a predicted record that does not say: not calibrated
    assert rs._combine("m", "t4", 4, [guessed], ["predicted"], np.array([1.0]),
                       cfg)["calibrated"] is False


def test_each_class_batch_is_listed(catalog):
    perf = rs.performance_table(StudyConfig(models=["llama-2-7b"], gpus=["t4"], regions=["fr"],
                                            batches=[1, 16]), catalog)
    assert perf["class_batches"].tolist() == ["1/1/1"]        # 16 fits no length class on a T4
    assert perf["memory_rule"].iloc[0].startswith("static batches: each length class padded")


def _perf(e: tuple[float, float, float], t: tuple[float, float, float],
          batch: int = 8) -> dict[str, Any]:
    return {"model": "m", "gpu": "t4", "batch": batch, "source": "predicted",
            "meets_tpot_target": True, "energy_j_per_output_token": e[0],
            "energy_j_per_output_token_low": e[1], "energy_j_per_output_token_high": e[2],
            "seconds_per_output_token": t[0], "seconds_per_output_token_low": t[1],
            "seconds_per_output_token_high": t[2]}


def test_the_carbon_columns_by_hand(catalog):
    cfg = StudyConfig(models=["m"], gpus=["t4"], regions=["fr"], pue=1.2, lifetime_years=4.0,
                      utilization=0.5)
    perf = pd.DataFrame([_perf((0.5, 0.4, 0.7), (0.02, 0.015, 0.03)),
                         _perf((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), batch=16),
                         _perf((0.001, 0.001, 0.001), (0.02, 0.02, 0.02), batch=32)])
    out = rs.carbon_table(perf, cfg, catalog)
    ci = catalog.region("fr").intensity_g_per_kwh.estimate
    gpu = catalog.gpu("t4")
    emb = gpu_embodied(gpu, catalog, "device").total_g
    seed_g = gpu_embodied(gpu, catalog, "device").total_g.mid
    vendor_g = gpu_embodied(gpu, catalog, "server").total_g.mid
    life_s = 4.0 * S_PER_YEAR
    op = [500 * ci.mid * 1.2 / J_PER_KWH, 400 * ci.low * 1.2 / J_PER_KWH,
          700 * ci.high * 1.2 / J_PER_KWH]
    em = [emb.mid * 20 / 0.5 / life_s, emb.low * 15 / 0.5 / life_s,
          emb.high * 30 / 0.5 / life_s]
    full = emb.mid * 20 / life_s                       # the seed study's 100 % busy GPU
    seed, vendor = seed_g * 20 / 0.5 / life_s, vendor_g * 20 / 0.5 / life_s
    r = out.iloc[0]
    want = {"region": "FR", "intensity_g_per_kwh": ci.mid,
            "operational_g_per_1k": op[0], "operational_g_per_1k_low": op[1],
            "operational_g_per_1k_high": op[2], "embodied_g_per_1k": em[0],
            "embodied_g_per_1k_low": em[1], "embodied_g_per_1k_high": em[2],
            "total_g_per_1k": op[0] + em[0], "total_g_per_1k_low": op[1] + em[1],
            "total_g_per_1k_high": op[2] + em[2], "embodied_share": em[0] / (op[0] + em[0]),
            "embodied_share_at_full_utilization": full / (op[0] + full),
            "embodied_seed_g_per_1k": seed, "embodied_share_seed": seed / (op[0] + seed),
            "embodied_vendor_g_per_1k": vendor,
            "embodied_share_vendor": vendor / (op[0] + vendor),
            "sci_g_per_1k_tokens": op[0] + em[0]}
    for k, v in want.items():
        assert r[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), k
    assert 0 < r["total_g_per_1k"] < 1        # a share's guard must not be "total > 1"
    frugal = out.iloc[2]                       # embodied far above operational
    full_3 = emb.mid * 20 / life_s
    op_3 = 1 * ci.mid * 1.2 / J_PER_KWH
    assert op_3 < full_3
    assert frugal["embodied_share_at_full_utilization"] == pytest.approx(
        full_3 / (op_3 + full_3), rel=1e-12)
    zero = out.iloc[1]                         # nothing served: shares 0, never NaN
    for k in ("embodied_share", "embodied_share_at_full_utilization", "embodied_share_seed",
              "embodied_share_vendor", "total_g_per_1k"):
        assert zero[k] == 0.0, k


def test_the_hourly_profile_by_hand(catalog):
    # two days of hourly values 100, 110, ...: hour h averages (100 + 10h + 100 + 10(h + 24)) / 2
    series = IntensitySeries(0.0, 3600.0, 100.0 + 10.0 * np.arange(48))
    cfg = StudyConfig(models=["m"], gpus=["t4"], regions=["fr"], pue=1.1, lifetime_years=5.0,
                      utilization=0.4, intensity=series, scope="server")
    slow = {**_perf((0.1, 0.1, 0.1), (0.02, 0.02, 0.02), batch=64), "meets_tpot_target": False}
    perf = pd.DataFrame([_perf((0.5, 0.5, 0.5), (0.02, 0.02, 0.02), batch=8),
                         _perf((0.4, 0.4, 0.4), (0.03, 0.03, 0.03), batch=16), slow])
    out = rs.hourly_profile(perf, cfg, catalog)
    emb = gpu_embodied(catalog.gpu("t4"), catalog, "server").total_g.mid   # the study's scope
    want_emb = emb * 30 / 0.4 / (5.0 * S_PER_YEAR)
    assert out["hour_utc"].tolist() == list(range(24))
    assert set(out["batch"]) == {16}           # the least energy under the TPOT target
    hours = np.arange(24)
    np.testing.assert_allclose(out["intensity_g_per_kwh"], 220.0 + 10.0 * hours)
    np.testing.assert_allclose(out["operational_g_per_1k"],
                               400 * (220.0 + 10.0 * hours) * 1.1 / J_PER_KWH, rtol=1e-12)
    np.testing.assert_allclose(out["embodied_g_per_1k"], want_emb, rtol=1e-12)
    np.testing.assert_allclose(out["total_g_per_1k"],
                               out["operational_g_per_1k"] + want_emb, rtol=1e-12)
    assert rs.hourly_profile(perf, StudyConfig(), catalog).empty


def _carbon_row(region: str, batch: int, g: float, meets: bool = True) -> dict[str, Any]:
    return {"model": "m", "gpu": "t4", "region": region, "batch": batch,
            "meets_tpot_target": meets, "total_g_per_1k": g, "total_g_per_1k_low": g * 0.8,
            "total_g_per_1k_high": g * 1.5, "sci_g_per_1k_tokens": g}


def test_study_json_counts_the_points_and_names_the_best_configurations(catalog):
    cfg = StudyConfig(models=["llama-3.2-1b"], gpus=["t4"], regions=["fr"])
    perf = pd.DataFrame({"model": "m", "gpu": "t4", "batch": [1, 2, 4, 8, 16],
                         "source": ["measured", "predicted", "predicted", "predicted", "mixed"]})
    carbon = pd.DataFrame([_carbon_row("FR", 1, 0.3), _carbon_row("FR", 2, 0.2),
                           _carbon_row("FR", 4, 0.1, meets=False)])
    out = rs.StudyResult(cfg, perf, carbon, pd.DataFrame(), []).to_json(catalog)
    assert out["points"] == {"measured": 1, "predicted": 3, "mixed": 1}
    assert out["sci"]["best"] == [{"model": "m", "gpu": "t4", "region": "FR", "batch": 2,
                                   "sci_g_per_1k_tokens": 0.2, "range": [0.2 * 0.8, 0.2 * 1.5]}]
    assert out["sci"]["standard"] == "ISO/IEC 21031:2024"
    assert set(out["sources"]["regions"]) == {"FR"}


@pytest.mark.parametrize("empty", ["models", "gpus", "regions", "batches", "mix"])
def test_a_study_of_nothing_is_refused_by_name(catalog, empty):
    with pytest.raises(TokenprintError) as err:
        rs.run_study(StudyConfig(**{empty: []}), catalog)
    assert str(err.value) == "models, GPUs, regions, batch sizes and lengths must be non-empty"


def test_the_memory_rule_of_each_stack_by_hand(catalog):
    """On a T4 (16 GB) llama-2-7b leaves ``budget`` KV tokens. A static stack pads every request
    to its class's length: each class runs at budget // (in + out); a paged stack holds the
    mix's mean tokens in flight, in + out / 2 weighted: (0.25 · (256 + 32) + 0.75 · (512 + 64))
    = 504, and every class runs at budget // 504 (a class longer than the budget at none)."""
    from tokenprint.predict import resolve_dtype
    from tokenprint.predict.shapes import kv_token_budget

    model, gpu = catalog.model("llama-2-7b"), catalog.gpu("t4")
    budget = kv_token_budget(model, gpu.memory_gb.value, resolve_dtype("auto", gpu))
    mix = [(256, 64, 1.0), (512, 128, 3.0)]          # shares need not sum to one
    static, rule = rs.class_batches(StudyConfig(batches=[1, 2, 4, 64], mix=mix), catalog,
                                    "llama-2-7b", "t4")
    caps = [budget // 320, budget // 640]
    assert rule == ("static batches: each length class padded to its own length (256/64: ≤ "
                    f"{caps[0]}, 512/128: ≤ {caps[1]})")
    assert static == {b: [min(b, caps[0]), min(b, caps[1])] for b in (1, 2, 4)
                      if min(b, caps[1]) >= 1 and max(min(b, caps[0]), min(b, caps[1])) >= b}
    paged, prule = rs.class_batches(StudyConfig(batches=[1, 2, 3, 8, 10_000], mix=mix,
                                                stack="vllm-2025"), catalog, "llama-2-7b", "t4")
    cap = int(budget // 504)
    assert prule == f"paged KV: batch × 504 mean tokens in flight ≤ {budget} KV tokens"
    assert paged == {b: [b, b] for b in (1, 2, 3, 8) if b <= cap} and len(paged) >= 2
    assert 10_000 not in paged                       # past what the budget holds: dropped


def test_study_json_states_its_unit_and_the_scope_of_its_sources(catalog):
    cfg = StudyConfig(models=["llama-3.2-1b"], gpus=["t4"], regions=["fr"], scope="server")
    res = rs.run_study(cfg, catalog)
    out = res.to_json(catalog)
    assert out["sci"]["functional_unit"] == "1,000 output tokens"
    assert out["sci"]["boundary"] == rs.SCI_BOUNDARY
    want = gpu_embodied(catalog.gpu("t4"), catalog, "server")
    assert out["sources"]["gpus"]["t4"]["embodied_g"] == want.total_g.as_dict()
    assert out["sources"]["gpus"]["t4"]["embodied_g"] != gpu_embodied(
        catalog.gpu("t4"), catalog, "device").total_g.as_dict()
    fr = catalog.region("fr")
    assert out["sources"]["regions"]["FR"] == {
        "intensity_g_per_kwh": fr.intensity_g_per_kwh.value,
        "range": [fr.intensity_g_per_kwh.estimate.low, fr.intensity_g_per_kwh.estimate.high],
        "basis": fr.basis, "year": fr.year, "mix": fr.mix,
        "source": fr.intensity_g_per_kwh.source}


def test_a_study_reports_its_progress_once_a_row(catalog):
    ticks: list[int] = []
    res = rs.run_study(StudyConfig(models=["llama-3.2-1b"], gpus=["t4"], regions=["fr"],
                                   batches=[1, 2, 4]), catalog, lambda: ticks.append(1))
    assert len(ticks) == len(res.performance) == 3
