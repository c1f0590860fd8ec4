"""The study page's tables by hand: how each cell is written, the findings' numbers, and the key
table's units, range and order (the study's own numbers are pinned elsewhere)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd

from tokenprint.report import html as rh


def test_table_cells_by_hand():
    df = pd.DataFrame({"a<b": [1234.5, 0.012345], "source": ["measured", "predicted"],
                       "note": ["x<y", "mixed"], "n": [3, 4]})
    assert rh._table(df) == (
        "<table><thead><tr><th>a&lt;b</th><th>source</th><th>note</th><th>n</th></tr></thead>"
        "<tbody><tr><td>1234</td><td><span class=\"tag measured\">measured</span></td>"
        "<td>x&lt;y</td><td>3</td></tr>"
        "<tr><td>0.0123</td><td><span class=\"tag predicted\">predicted</span></td>"
        "<td><span class=\"tag mixed\">mixed</span></td><td>4</td></tr></tbody></table>")
    assert "<td>100</td>" in rh._table(pd.DataFrame({"v": [100.4]}))      # 3 figures from 100
    assert "<td>99.4</td>" in rh._table(pd.DataFrame({"v": [99.44]}))


def test_finding_numbers_by_hand():
    assert rh._numbers({"share": 0.123456, "by": {"a": 1.5, "b": [2, 0.333333]},
                        "list": [1.0, "x<"], "name": "m"}) == (
        "<tr><td>share</td><td>0.1235</td></tr>"
        "<tr><td>by</td><td>a: 1.5, b: 2; 0.3333</td></tr>"
        "<tr><td>list</td><td>1; x&lt;</td></tr>"
        "<tr><td>name</td><td>m</td></tr>")


def _res(best: pd.DataFrame, models: list[str], gpus: list[str], regions: list[str]) -> Any:
    perf = pd.DataFrame([{"model": r["model"], "gpu": r["gpu"], "batch": r["batch"],
                          "throughput_tok_s": 1000.0 * r["batch"], "tpot_s": 0.02,
                          "prefill_j_per_token": 0.05, "decode_j_per_token": 0.4}
                         for r in best.to_dict("records")]).drop_duplicates(
        ["model", "gpu", "batch"])
    return SimpleNamespace(performance=perf, config=SimpleNamespace(
        models=models, gpus=gpus, regions=regions))


def test_key_table_by_hand(monkeypatch):
    def row(model: str, gpu: str, region: str, batch: int) -> dict[str, Any]:
        return {"model": model, "gpu": gpu, "region": region, "batch": batch,
                "source": "predicted", "operational_g_per_1k": 0.002,
                "embodied_g_per_1k": 0.0005, "total_g_per_1k": 0.0025,
                "total_g_per_1k_low": 0.00201, "total_g_per_1k_high": 0.003456,
                "embodied_share": 0.2}

    # listed out of order; the table follows the study's own order of models, GPUs, regions
    best = pd.DataFrame([row("b", "t4", "FR", 8), row("a", "l4", "PL", 4),
                         row("a", "t4", "PL", 16), row("a", "t4", "FR", 16)])
    monkeypatch.setattr(rh, "best_rows", lambda res: best)
    t = rh.key_table(_res(best, ["a", "b"], ["t4", "l4"], ["fr", "pl"]))
    assert list(t.columns) == ["model", "GPU", "region", "batch", "source", "tok/s", "TPOT ms",
                               "mJ/in tok", "mJ/out tok", "op mg/1k", "emb mg/1k",
                               "total mg/1k", "range mg/1k", "embodied %"]
    assert list(zip(t["model"], t["GPU"], t["region"], strict=True)) == [
        ("a", "t4", "FR"), ("a", "t4", "PL"), ("a", "l4", "PL"), ("b", "t4", "FR")]
    first = t.iloc[0].to_dict()
    assert first["batch"] == 16 and first["tok/s"] == 16000.0 and first["TPOT ms"] == 20.0
    assert first["mJ/in tok"] == 50.0 and first["mJ/out tok"] == 400.0
    assert (first["op mg/1k"], first["emb mg/1k"], first["total mg/1k"]) == (2.0, 0.5, 2.5)
    assert first["range mg/1k"] == "2.01–3.46" and first["embodied %"] == 20.0
    assert first["source"] == "predicted" and isinstance(first["model"], str)
    assert list(t.index) == [0, 1, 2, 3]
    monkeypatch.setattr(rh, "best_rows", lambda res: best.iloc[:0])
    assert rh.key_table(_res(best, ["a"], ["t4"], ["fr"])).empty
