"""RunRecord: one declaration of the run record that bench, predict, datasets and study share."""

from __future__ import annotations

import pytest

from tokenprint.errors import TokenprintError
from tokenprint.predict.datasets import points_from_records
from tokenprint.predict.predictor import predict_records
from tokenprint.records import RunRecord, run_record


def test_predicted_records_are_valid_run_records(catalog):
    recs = predict_records(catalog, catalog.model("llama-3.1-8b"), catalog.gpu("h100-sxm"),
                           [1, 4096], 512, 128)
    assert [r["status"] for r in recs] == ["ok", "oom"]
    for r in recs:
        assert set(r) <= set(RunRecord.__annotations__)
        assert r["source"] == "predicted" and r["ttft_s_low"] <= r["ttft_s"] <= r["ttft_s_high"]


def test_a_record_with_an_unknown_key_or_a_wrong_type_is_refused():
    with pytest.raises(TokenprintError) as exc:
        run_record({"run_id": "r", "ttft_ms": 5.0})
    assert str(exc.value) == "run record field 'ttft_ms': Extra inputs are not permitted"
    with pytest.raises(TokenprintError) as exc:
        run_record({"run_id": "r", "status": "fine"})
    assert str(exc.value).startswith("run record field 'status': Input should be 'ok' or 'oom'")
    with pytest.raises(TokenprintError, match="'batch'"):
        run_record({"batch": "eight"})
    assert run_record({"batch": 8, "tpot_s": None}) == {"batch": 8, "tpot_s": None}


def test_a_measured_record_without_a_decode_step_is_skipped_with_its_reason(catalog):
    base: RunRecord = {"source": "measured", "status": "ok", "model": "llama-3.1-8b",
                       "hardware_id": "h100-sxm", "engine": "hf", "batch": 1, "input_len": 8,
                       "output_len": 1, "tp": 1, "dtype": "bf16", "ttft_s": 0.01,
                       "tpot_s": None, "throughput_tok_s": 100.0}
    full: RunRecord = {**base, "output_len": 4, "tpot_s": 0.01,
                       "energy_per_output_token_j": 0.5}
    pts = points_from_records([base, full], catalog, "test")
    assert pts.n_skipped == 1 and len(pts.table) == 1
    assert pts.skipped_reasons == {"no decode step measured (output length 1) or no energy": 1}
