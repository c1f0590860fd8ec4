"""--csv wherever there is --json: the same records, one per row, nested fields as dotted
columns, readable by pandas."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli


def _both(capsys, *args: str) -> tuple[pd.DataFrame, object]:
    code, out, err = run_cli(capsys, *args, "--csv")
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return table, json.loads(out)


def test_predict_csv_equals_json(capsys):
    table, recs = _both(capsys, "predict", "--model", "llama-3.1-8b", "--gpu", "h100,l4",
                        "--batch", "1,8,64")
    assert len(table) == len(recs) == 6
    for row, rec in zip(table.to_dict("records"), recs, strict=True):
        assert row["run_id"] == rec["run_id"]
        for key in ("energy_per_output_token_j", "tpot_s", "energy_per_output_token_j_high"):
            assert row[key] == pytest.approx(rec[key], rel=1e-12)


def test_simulate_csv_flattens_nested_fields(capsys):
    table, out = _both(capsys, "simulate", "--synthetic", "200,4", "--model", "llama-3.2-1b",
                       "--gpu", "l4,h100", "--region", "FR")
    assert len(table) == len(out) == 2
    assert {"ttft_s.p95", "queue.grows", "total_range_g.low"} <= set(table.columns)
    assert list(table["gpu"]) == [o["gpu"] for o in out]
    assert table["ttft_s.p95"].tolist() == pytest.approx([o["ttft_s"]["p95"] for o in out])


def test_plan_csv_lists_the_candidates(capsys, tmp_path: Path):
    table, answer = _both(capsys, "plan", "--synthetic", "200,4", "--models", "llama-3.2-1b",
                          "--gpus", "l4,h100", "--regions", "FR,PL", "--max-batch", "16",
                          "--out", str(tmp_path / "p"))
    assert len(table) == len(answer["table"]) > 0
    assert table.iloc[0]["total_g"] == pytest.approx(answer["table"][0]["total_g"])
    assert table["total_g"].is_monotonic_increasing
