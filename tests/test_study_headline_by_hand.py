"""The study's title and headline sentences, from a table of best configurations written out
by hand (the study's own numbers are pinned elsewhere), and the inputs it states."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tokenprint.report import headline as hl
from tokenprint.report.config import CHAT_MIX, StudyConfig


def _res(models: list[str], gpus: list[str], regions: list[str]) -> Any:
    return SimpleNamespace(config=SimpleNamespace(models=models, gpus=gpus, regions=regions,
                                                  utilization=0.6))


def _row(model: str, gpu: str, region: str, g: float, low: float, high: float,
         share: float, ci: float, batch: int = 8) -> dict[str, Any]:
    return {"model": model, "gpu": gpu, "region": region, "total_g_per_1k": g,
            "total_g_per_1k_low": low, "total_g_per_1k_high": high, "embodied_share": share,
            "intensity_g_per_kwh": ci, "batch": batch}


def test_title_names_the_inputs():
    assert hl.title(_res(["m"], ["t4"], ["fr"])) == "Carbon of serving m on t4 in FR"
    assert hl.title(_res(["a", "b", "c"], ["t4", "l4"], ["fr", "pl"])) == (
        "Carbon of serving a, b and c on t4 and l4 in FR and PL")


def test_headline_from_a_table_by_hand(monkeypatch):
    best = pd.DataFrame([
        _row("m", "t4", "FR", 0.002, 0.0015, 0.0025, 0.30, 50.0),
        _row("m", "t4", "PL", 0.010, 0.008, 0.012, 0.05, 700.0),
        _row("m", "l4", "FR", 0.0022, 0.0020, 0.0030, 0.40, 50.0),    # overlaps t4's range
        _row("m", "a10", "FR", 0.004, 0.003, 0.005, 0.20, 50.0)])     # clearly dearer
    monkeypatch.setattr(hl, "best_rows", lambda res: best)
    lines = hl.headline(_res(["m"], ["t4", "l4", "a10"], ["FR", "PL"]))
    assert lines == [
        "Lowest carbon: m on the t4 in FR, 2 mg CO2e per 1,000 output tokens (range 1.5–2.5 mg) "
        "at batch 8; the same deployment in PL emits 5× as much (10 mg).",
        "For m in FR, the l4 (2.2 mg) is indistinguishable within the model's uncertainty; the "
        "a10 emits 2× as much (4 mg; the t4 cuts 50%).",
        "Embodied carbon is 5%–40% of the total across these configurations (GPUs serving 60% "
        "of their provisioned time); the largest share is m on the l4 in FR (50 g/kWh)."]


def test_headline_of_one_configuration(monkeypatch):
    one = pd.DataFrame([_row("m", "t4", "FR", 0.002, 0.0015, 0.0025, 0.301, 50.0, batch=4)])
    monkeypatch.setattr(hl, "best_rows", lambda res: one)
    assert hl.headline(_res(["m"], ["t4"], ["FR"])) == [
        "Lowest carbon: m on the t4 in FR, 2 mg CO2e per 1,000 output tokens (range 1.5–2.5 mg) "
        "at batch 4.",
        "Embodied carbon is 30% of the total across these configurations (GPUs serving 60% of "
        "their provisioned time); the largest share is m on the t4 in FR (50 g/kWh)."]
    monkeypatch.setattr(hl, "best_rows", lambda res: one.iloc[:0])
    assert hl.headline(_res(["m"], ["t4"], ["FR"])) == [
        "No configuration meets the TPOT target: see the findings."]


def test_study_config_states_its_inputs():
    d = StudyConfig(utilization=0.5).to_dict()
    assert d["length_mix"] == [{"input_len": i, "output_len": o, "share": w}
                               for i, o, w in CHAT_MIX]
    assert d["amortization"] == ("provisioned time: the GPUs serve 50% of it, so embodied "
                                 "carbon per token is the busy-time share / utilization")
    assert d["embodied_boundaries"] == {"seed (packaged GPU + memory)": "device",
                                        "card + host share": "server"}
    assert (d["intensity_file"], d["measured_records_available"], d["stack"], d["utilization"],
            d["scope"], d["pue"], d["lifetime_years"], d["tpot_target_s"]) == (
        None, 0, "hf-transformers", 0.5, "device", 1.0, 5.0, pytest.approx(0.2))
    assert d["models"] == ["llama-3.2-1b", "llama-3.2-3b", "llama-2-7b"]
    assert d["gpus"] == ["t4", "rtx-6000-ada"] and d["batches"] == [1, 2, 4, 8, 16, 32, 64]
    assert d["regions"] == ["US-CAL-CISO", "US-MIDW-MISO", "CA-QC"]
    assert d["functional_unit"].startswith("1,000 output tokens")
    assert d["utilization_source"].startswith("Azure LLM inference trace 2023")
