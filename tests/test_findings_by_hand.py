"""The study's findings from performance and carbon tables written out by hand: each sentence
claims a difference only where the ranges allow it, and names the basis it rests on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.report import findings as fd
from tokenprint.report.config import StudyConfig
from tokenprint.units import J_PER_KWH, S_PER_YEAR


def _c(model: str, gpu: str, region: str, batch: int, g: float, lo: float, hi: float,
       ok: bool = True, ci: float = 50.0, share: float = 0.2) -> dict[str, Any]:
    return {"model": model, "gpu": gpu, "region": region, "batch": batch,
            "meets_tpot_target": ok, "total_g_per_1k": g, "total_g_per_1k_low": lo,
            "total_g_per_1k_high": hi, "intensity_g_per_kwh": ci, "embodied_share": share,
            "embodied_share_at_full_utilization": share / 2, "embodied_share_seed": share,
            "embodied_share_vendor": share * 3}


def _p(model: str, gpu: str, batch: int = 1, calibrated: bool = True, e: float = 1.0,
       ok: bool = True) -> dict[str, Any]:
    return {"model": model, "gpu": gpu, "batch": batch, "calibrated": calibrated,
            "source": "predicted", "memory_rule": "90 % of memory", "meets_tpot_target": ok,
            "energy_j_per_output_token": e, "energy_j_per_output_token_low": e * 0.9,
            "energy_j_per_output_token_high": e * 1.1, "seconds_per_output_token": 0.01}


CFG = StudyConfig(models=["m"], gpus=["t4", "l4"], regions=["FR", "PL"], stack="vllm-2025")


def test_separable_and_percent():
    assert fd.separable(1, 2, 3, 4) and fd.separable(3, 4, 1, 2)
    assert not fd.separable(1, 3, 3, 4) and not fd.separable(1, 5, 2, 3)
    assert fd._pct(1.0, 4.0) == 75.0 and fd._pct(1.0, 0.0) == 0.0


def test_best_under_target_keeps_the_least_carbon_row_meeting_it():
    carbon = pd.DataFrame([_c("m", "t4", "FR", 1, 3e-3, 2e-3, 4e-3),
                           _c("m", "t4", "FR", 8, 1e-3, 0.5e-3, 2e-3),
                           _c("m", "t4", "FR", 32, 0.5e-3, 0.4e-3, 0.6e-3, ok=False)])
    assert fd._best_under_target(carbon)["batch"].tolist() == [8]
    assert fd._best_under_target(carbon[carbon["batch"] == 32]).empty


def test_gpu_choice_by_hand():
    best = pd.DataFrame([_c("m", "t4", "FR", 8, 1.0e-3, 0.9e-3, 1.2e-3),
                         _c("m", "l4", "FR", 16, 2.0e-3, 1.8e-3, 2.4e-3),
                         _c("m", "t4", "PL", 8, 5.0e-3, 4.0e-3, 6.0e-3),
                         _c("m", "l4", "PL", 16, 5.5e-3, 4.5e-3, 6.5e-3),
                         _c("m", "t4", "SE", 8, 1.0e-3, 0.9e-3, 1.2e-3)])   # one GPU: skipped
    perf = pd.DataFrame([_p("m", "t4"), _p("m", "l4", calibrated=False)])
    f = fd._gpu_choice(perf, best, CFG, "m")
    assert f is not None and f.kind == "gpu_choice"
    assert f.sentence == (
        "m, per 1k output tokens, each GPU at its lowest-carbon batch meeting TPOT ≤ 200 ms: "
        "in FR the t4 emits 50 % less (0.9–1.2 vs 1.8–2.4 mg); in PL the two are "
        "indistinguishable within the model's uncertainty (t4 4–6 vs l4 4.5–6.5 mg). "
        "[predicted, vllm-2025 stack; l4 not calibrated under it (the stack's prior)]")
    fr, pl = f.numbers["regions"]
    assert fr == {"region": "FR", "winner": "t4", "loser": "l4", "winner_g_per_1k": 1.0e-3,
                  "loser_g_per_1k": 2.0e-3, "winner_range_g_per_1k": [0.9e-3, 1.2e-3],
                  "loser_range_g_per_1k": [1.8e-3, 2.4e-3], "separable": True,
                  "saving_pct": pytest.approx(50.0), "winner_batch": 8, "loser_batch": 16}
    assert pl["separable"] is False and f.numbers["separable"] is False
    assert f.numbers["calibrated"] == {"t4": True, "l4": False}
    assert f.numbers["stack"] == "vllm-2025" and f.numbers["sources"] == ["predicted"]
    assert fd._gpu_choice(perf, best[best["region"] == "SE"], CFG, "m") is None
    assert f.to_dict() == {"kind": "gpu_choice", "sentence": f.sentence, "numbers": f.numbers}


def test_batch_choices_by_hand():
    carbon = pd.DataFrame([
        # separable: batch 8 at 1 mg vs batch 1 at 4 mg, batches up to 32 fit
        _c("m", "t4", "FR", 1, 4e-3, 3.5e-3, 4.5e-3),
        _c("m", "t4", "FR", 8, 1.234e-3, 0.8e-3, 1.2e-3),
        _c("m", "t4", "FR", 32, 0.5e-3, 0.4e-3, 0.6e-3, ok=False),
        _c("m", "t4", "PL", 8, 1e-3, 0.8e-3, 1.2e-3),                    # not the home region
        # overlapping ranges
        _c("m", "l4", "FR", 1, 2e-3, 1.234e-3, 2.5e-3),
        _c("m", "l4", "FR", 4, 1.8e-3, 1.434e-3, 2.234e-3),
        # only batch 1 fits
        _c("n", "t4", "FR", 1, 3.234e-3, 2e-3, 4e-3),
        # batch 1 already best of two
        _c("n", "l4", "FR", 1, 1e-3, 0.9e-3, 1.1e-3), _c("n", "l4", "FR", 2, 2e-3, 1.9e-3, 2.1e-3),
        # none meets the target
        _c("o", "t4", "FR", 1, 1e-3, 0.9e-3, 1.1e-3, ok=False)])
    perf = pd.DataFrame([{**_p(m, g), "memory_rule": f"rule {m}/{g}"}
                         for m in ("m", "n", "o") for g in ("t4", "l4")])
    got = {(f.numbers["model"], f.numbers["gpu"]): f for f in fd._batch_choices(
        perf, carbon, CFG, "FR")}
    assert sorted(got) == [("m", "l4"), ("m", "t4"), ("n", "l4"), ("n", "t4"), ("o", "t4")]
    basis = " [predicted, vllm-2025 stack]"
    assert got[("m", "t4")].sentence == (
        "m on the t4 in FR: batch 8 minimizes carbon per token under TPOT ≤ 200 ms, at 1.23 mg "
        "per 1k tokens, 69 % below batch 1 (batches up to 32 fit)." + basis)
    assert got[("m", "t4")].kind == "batch_choice"
    assert got[("m", "t4")].numbers == {
        "model": "m", "gpu": "t4", "region": "FR", "batch": 8, "g_per_1k": 1.234e-3,
        "batch_1_g_per_1k": 4e-3, "separable": True, "largest_batch_fitting": 32,
        "memory_rule": "rule m/t4", "stack": "vllm-2025", "calibrated": {"t4": True},
        "sources": ["predicted"]}
    assert got[("m", "t4")].numbers["largest_batch_fitting"] == 32
    assert got[("m", "t4")].numbers["batch_1_g_per_1k"] == 4e-3
    assert got[("m", "l4")].sentence == (
        "m on the l4 in FR: batch 4 and batch 1 are indistinguishable within the model's "
        "uncertainty (1.43–2.23 vs 1.23–2.5 mg per 1k tokens)." + basis)
    assert got[("n", "t4")].sentence == (
        "n on the t4 in FR: only batch 1 fits memory (rule n/t4) and meets TPOT ≤ 200 ms, "
        "at 3.23 mg per 1k tokens." + basis)
    assert got[("n", "l4")].sentence == (
        "n on the l4 in FR: batch 1 already gives the least carbon per token under TPOT ≤ "
        "200 ms." + basis)
    assert got[("o", "t4")].sentence == (
        "o on the t4 in FR: no batch size meets TPOT ≤ 200 ms." + basis)
    assert got[("o", "t4")].kind == "batch_choice" and got[("o", "t4")].numbers == {
        "model": "o", "gpu": "t4", "region": "FR", "stack": "vllm-2025",
        "calibrated": {"t4": True}, "sources": ["predicted"]}


def test_embodied_share_and_boundary_by_hand():
    carbon = pd.DataFrame([
        _c("m", "l4", "FR", 1, 1e-3, 1e-3, 1e-3, ci=30.0, share=0.8),
        _c("m", "l4", "FR", 16, 1e-3, 1e-3, 1e-3, ci=30.0, share=0.6),
        _c("m", "l4", "PL", 1, 1e-3, 1e-3, 1e-3, ci=700.0, share=0.7),
        _c("m", "l4", "PL", 16, 1e-3, 1e-3, 1e-3, ci=700.0, share=0.5),
        _c("m", "t4", "FR", 1, 1e-3, 1e-3, 1e-3, ci=30.0, share=0.9)])   # fewer batches: not shown
    perf = pd.DataFrame([_p("m", "l4"), _p("m", "t4", calibrated=False), _p("n", "l4")])
    share, boundary = fd._embodied(perf, carbon, CFG, "m")
    assert share.kind == "embodied_share" and boundary.kind == "embodied_boundary"
    assert share.sentence == (
        "m on the l4, GPUs serving 60% of provisioned time: the embodied share of total carbon "
        "is 80 % at batch 1 and 60 % at batch 16 in FR (30 g/kWh), against 70 % and 50 % in PL "
        "(700 g/kWh); busy 100 % of the time (the seed study's assumption, a lower bound) it "
        "would be 40 % and 30 % in FR. [predicted, vllm-2025 stack]")
    assert share.numbers == {
        "model": "m", "gpu": "l4", "clean_region": "FR", "dirty_region": "PL",
        "utilization": 0.6, "share_clean": {1: 0.8, 16: 0.6}, "share_dirty": {1: 0.7, 16: 0.5},
        "share_clean_at_full_utilization": {1: 0.4, 16: 0.3}, "stack": "vllm-2025",
        "calibrated": {"l4": True}, "sources": ["predicted"]}
    assert boundary.sentence == (
        "m on the l4 in FR at batch 16: the embodied share is 60 % counting the packaged GPU "
        "and its memory (the seed's boundary) and 180 % counting the whole card and the host's "
        "share — the answer depends on the boundary by 3.0×.")
    assert boundary.numbers == {
        "model": "m", "gpu": "l4", "region": "FR", "batch": 16,
        "share_seed_boundary": 0.6, "share_vendor_boundary": pytest.approx(1.8),
        "seed_scope": "device", "vendor_scope": "server"}
    assert fd._embodied(perf, carbon, CFG, "other") == []
    # a GPU of the study with no rows at all is passed over, not drawn from
    only_t4 = fd._embodied(perf, carbon[carbon["gpu"] == "t4"], CFG, "m")
    assert only_t4[0].numbers["gpu"] == "t4" and "t4 not calibrated" in only_t4[0].sentence


def test_crossover_by_hand(catalog):
    """t4 (2018) against l4 (2023) at their most efficient batches: 2 J and 1 J per token,
    0.01 s a token each; the lines of carbon against intensity (× PUE 1.5) cross where the
    energy saved pays for the embodied difference (card scope, 4 years, 50 % utilization)."""
    cfg = StudyConfig(models=["m"], gpus=["l4", "t4"], regions=["FR"], stack="vllm-2025",
                      pue=1.5, scope="card", lifetime_years=4.0, utilization=0.5)
    perf = pd.DataFrame([_p("m", "t4", batch=4, e=2.0), _p("m", "t4", batch=1, e=3.0),
                         _p("m", "l4", batch=8, e=1.0), _p("m", "l4", batch=16, e=0.5,
                                                           ok=False)])
    (f,) = fd._crossovers(perf, cfg, catalog)
    e = {"t4": 2.0 * 1000 / J_PER_KWH, "l4": 1.0 * 1000 / J_PER_KWH}
    m = {g: gpu_embodied(catalog.gpu(g), catalog, "card").total_g.mid * 10.0
         / (4.0 * S_PER_YEAR) / 0.5 for g in e}
    ci = (m["l4"] - m["t4"]) / ((e["t4"] - e["l4"]) * 1.5)
    assert f.kind == "crossover" and ci > 0
    assert f.numbers == {
        "model": "m", "old_gpu": "t4", "new_gpu": "l4", "separable": True,
        "stack": "vllm-2025", "calibrated": {"t4": True, "l4": True}, "sources": ["predicted"],
        "old_kwh_per_1k": pytest.approx(e["t4"]), "new_kwh_per_1k": pytest.approx(e["l4"]),
        "old_embodied_g_per_1k": pytest.approx(m["t4"]),
        "new_embodied_g_per_1k": pytest.approx(m["l4"]), "old_batch": 4, "new_batch": 8,
        "crossover_g_per_kwh": pytest.approx(ci)}
    assert f.sentence == (
        f"For m, the t4 and the l4 emit the same per token at a grid intensity of {ci:.0f} "
        "g/kWh: below it the t4 (less embodied carbon per token) is lower-carbon, above it the "
        "l4 (less energy per token). [predicted, vllm-2025 stack]")
    close = pd.DataFrame([_p("m", "t4", e=1.05), _p("m", "l4", e=1.0)])
    (g,) = fd._crossovers(close, CFG, catalog)
    assert g.sentence.startswith(
        "For m, the energy per token of the t4 and the l4 is indistinguishable within the "
        "model's uncertainty, so no crossover intensity can be claimed (t4: 0.292 Wh, l4: "
        "0.278 Wh per 1k tokens, ranges overlapping). [predicted")
    assert g.numbers["separable"] is False and g.sentence.count("[") == 1
    assert fd._crossovers(perf, StudyConfig(models=["m"], gpus=["t4"]), catalog) == []
    assert fd._crossovers(perf[perf["gpu"] == "t4"], CFG, catalog) == []
    assert fd._crossovers(perf, StudyConfig(models=["m"], gpus=["l4", "l4"]), catalog) == []


def test_lines_that_never_cross_by_hand(catalog, monkeypatch):
    """Where one GPU needs less energy and less embodied carbon per token, it wins at every
    intensity: the sentence names it and both lines' figures."""
    perf = pd.DataFrame([_p("m", "t4", e=3.6), _p("m", "l4", e=1.8)])
    emb = {"t4": 100.0, "l4": 50.0}                       # the l4 made with less, here
    monkeypatch.setattr(fd, "gpu_embodied", lambda gpu, cat, scope: SimpleNamespace(
        total_g=SimpleNamespace(mid=emb[gpu.id])))
    (f,) = fd._crossovers(perf, CFG, catalog)
    mg = {g: v * 10.0 / (5.0 * S_PER_YEAR) / 0.6 * 1e3 for g, v in emb.items()}
    assert f.numbers["crossover_g_per_kwh"] is None
    assert f.sentence == (
        "For m, the l4 emits less per token at every grid intensity: its lines of carbon "
        f"against intensity never cross (t4: 1 Wh and {mg['t4']:.3g} mg embodied per 1k "
        f"tokens; l4: 0.5 Wh and {mg['l4']:.3g} mg). [predicted, vllm-2025 stack]")
    emb.update(t4=40.0)                                   # now the t4 is lighter and thirstier
    (g,) = fd._crossovers(perf, CFG, catalog)
    assert "below it the t4 (less embodied carbon per token) is lower-carbon" in g.sentence
    emb.update(t4=50.0, l4=100.0)
    (h,) = fd._crossovers(pd.DataFrame([_p("m", "t4", e=1.8), _p("m", "l4", e=3.6)]), CFG,
                          catalog)
    assert h.sentence.startswith("For m, the t4 emits less per token at every grid intensity")


def test_hourly_findings_by_hand():
    rows = [{"hour_utc": h, "intensity_g_per_kwh": ci, "model": "m", "gpu": "l4",
             "total_g_per_1k": ci / 100} for h, ci in enumerate([300, 100, 400, 200, 150])]
    (f,) = fd.hourly_findings(pd.DataFrame(rows), StudyConfig(intensity_region="FR"))
    assert f.sentence == ("With the hourly intensity of FR, the cleanest hours of the day are "
                          "01:00, 04:00, 03:00 UTC (100 g/kWh at best, 400 at 02:00); serving m "
                          "on the l4 then emits 75 % less per token than at the worst hour.")
    assert f.numbers == {"region": "FR", "best_hours_utc": [1, 4, 3], "worst_hour_utc": 2,
                         "best_g_per_kwh": 100.0, "worst_g_per_kwh": 400.0,
                         "saving_pct": 75.0}
    assert f.kind == "best_hours"
    assert fd.hourly_findings(pd.DataFrame(rows).iloc[:0], StudyConfig()) == []
    # another configuration in the table does not enter the first one's saving
    other = [{**r, "model": "n", "gpu": "t4", "total_g_per_1k": 1.0} for r in rows]
    (g,) = fd.hourly_findings(pd.DataFrame(other[:1] + rows + other[1:]), StudyConfig())
    assert "serving n on the t4 then emits 0 % less" in g.sentence
    assert g.sentence.startswith("With the hourly intensity of the given grid,")


def test_findings_in_order_by_hand(catalog):
    """Two GPUs: which one per region, the crossover, the embodied share and boundary of the
    GPU with most batches, the batch choice per GPU in the home region; one GPU: no
    comparisons."""
    carbon = pd.DataFrame([_c("m", g, r, b, 1e-3 * b, 0.9e-3 * b, 1.1e-3 * b, ci=ci)
                           for g in ("t4", "l4") for r, ci in (("FR", 30.0), ("PL", 700.0))
                           for b in (1, 2)])
    perf = pd.DataFrame([_p("m", "t4", e=2.0), _p("m", "l4", e=1.0)])
    kinds = [f.kind for f in fd.findings(perf, carbon, CFG, catalog)]
    assert kinds == ["gpu_choice", "crossover", "embodied_share", "embodied_boundary",
                     "batch_choice", "batch_choice"]
    one = StudyConfig(models=["m"], gpus=["t4"], regions=["PL"], stack="vllm-2025")
    got = fd.findings(perf, carbon[carbon["gpu"] == "t4"], one, catalog)
    assert [f.kind for f in got] == ["embodied_share", "embodied_boundary", "batch_choice"]
    assert got[-1].numbers["region"] == "PL"                 # the home region is the first
