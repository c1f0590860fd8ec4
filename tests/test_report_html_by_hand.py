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


def test_the_page_reads_back_by_hand(tmp_path, catalog, monkeypatch):
    """The study page's findings, figures, workload, calibration and sources, each written
    where and as the page says."""
    from dataclasses import replace

    from tokenprint.carbon.embodied import gpu_embodied
    from tokenprint.report.config import StudyConfig
    from tokenprint.report.study import run_study

    res = run_study(StudyConfig(models=["llama-3.2-1b", "llama-2-7b"], gpus=["t4", "h100-sxm"],
                                regions=["fr"], batches=[1, 8, 64],
                                mix=[(256, 64, 0.25), (512, 128, 0.75)]), catalog)
    figures = [tmp_path / "carbon_by_hour.png", tmp_path / "extra.png"]
    for f in figures:
        f.write_bytes(b"\x89PNG\r\n\x1a\n")
    page = rh.write_report(res, catalog, figures, tmp_path).read_text()
    assert len(res.findings) >= 2
    listed = "".join(f"<li>{rh.html.escape(f.sentence)}<details><summary>numbers</summary><table>"
                     f"{rh._numbers(f.numbers)}</table></details></li>" for f in res.findings)
    assert f'<ol class="findings" id="findings">{listed}</ol>' in page
    assert "</td></tr><tr><td>t4</td>" in page          # the sources' rows follow each other
    for f in res.findings:
        start = page.index(f"<li>{rh.html.escape(f.sentence)}<details><summary>numbers"
                           "</summary><table>")
        assert page[start:].index(f"{rh._numbers(f.numbers)}</table></details></li>") > 0
    assert ("<figcaption>The same load's carbon by hour of day with hourly grid intensity."
            "</figcaption></figure><figure>") in page.replace("&#x27;", "'")
    assert "<figcaption>extra.png</figcaption></figure>" in page     # no caption: its name
    assert ("Models llama-3.2-1b, llama-2-7b; GPUs t4, h100-sxm; batch sizes\n1, 8, 64; length "
            "mix 256 in / 64 out tokens (25%), 512 in / 128 out tokens (75%).") in page
    assert "meeting TPOT ≤\n200 ms;" in page
    fr = catalog.region("fr")
    est = fr.intensity_g_per_kwh.estimate
    assert (f"<tr><td>FR</td><td>{fr.intensity_g_per_kwh.value:g} g/kWh ({est.low:g}–"
            f"{est.high:g}), {fr.basis}, {fr.year}; ") in page
    points = res.to_json(catalog)["points"]
    assert (f"{len(res.performance)} configurations\n({points['measured']} measured, "
            f"{points['predicted']} predicted, {points['mixed']} mixed)") in page
    calib = "; ".join(sorted(set(res.performance["calibration"].astype(str))))
    assert f"<b>Calibration used:</b> {rh.html.escape(calib)}.</li>" in page
    bare = replace(res, performance=res.performance.drop(columns=["calibration"]))
    assert "<b>Calibration used:</b> measured data only.</li>" in rh.write_report(
        bare, catalog, [], tmp_path).read_text()
    for gid in ("t4", "h100-sxm"):
        e = gpu_embodied(catalog.gpu(gid), catalog, "device")
        row = (f"<tr><td>{gid}</td><td>device scope embodied {e.total_g.mid / 1e3:.3g} kg "
               f"({e.total_g.low / 1e3:.3g}–{e.total_g.high / 1e3:.3g})</td><td>")
        assert row in page, gid
        cell = rh.html.escape("; ".join(f"{k}: {v}" for k, v in e.sources.items()))
        assert f"{row}{cell} — {rh.html.escape('; '.join(e.notes))}</td></tr>" in page, gid
    from tokenprint.report import study as rs

    with_notes = rs._sources

    def no_notes(cfg: Any, cat: Any) -> dict[str, Any]:
        out = with_notes(cfg, cat)
        for g in out["gpus"].values():
            g["notes"] = []
        return out

    monkeypatch.setattr(rs, "_sources", no_notes)
    plain = rh.write_report(res, catalog, [], tmp_path).read_text()
    cell = plain[plain.index("<tr><td>t4</td>"):].split("</td></tr>")[0]
    assert " — " not in cell and "device scope embodied" in cell
    rule = rh._memory_rule(res)
    assert rule.startswith("static batches, each length class padded to its own length; the "
                           "largest batch of each length class — llama-3.2-1b on t4: 256/64: ≤ ")
    assert ")" not in rule and rh.html.escape(rule) in page
    assert rule.count("llama-3.2-1b on t4") == 1      # each model and GPU once, not per batch


def test_a_memory_rule_per_model_where_the_stack_pages(catalog):
    from tokenprint.report.config import StudyConfig
    from tokenprint.report.study import run_study

    res = run_study(StudyConfig(models=["llama-3.2-1b", "llama-2-7b"], gpus=["t4"],
                                regions=["fr"], batches=[1, 8], stack="vllm-2025"), catalog)
    parts = rh._memory_rule(res).split("; ")
    assert [p.split(": paged KV, batch × ")[0] for p in parts] == ["llama-3.2-1b on t4",
                                                                 "llama-2-7b on t4"]
    assert all(p.endswith(" KV tokens") for p in parts)
