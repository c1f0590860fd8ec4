"""Hand-derived tests of ``tokenprint watch``'s pieces: the interval it charges from two
scrapes (restarts, counter resets, gaps, measured and predicted energy, file and live
intensity), the ledger's columns and queries, its own /metrics, and its loop."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import generate_latest

from test_fleet import vllm
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries
from tokenprint.errors import TokenprintError
from tokenprint.fleet import watch as wt
from tokenprint.fleet.watch import Watcher, WatchInterval, WatchLedger, WatchMetrics
from tokenprint.units import J_PER_KWH, S_PER_YEAR


class Pages:
    """One scripted engine page per endpoint; ``down`` makes every scrape fail."""

    def __init__(self, n: int) -> None:
        self.pages = [vllm(0, 0, 0)] * n
        self.down = False

    def client(self) -> httpx.Client:
        def answer(req: httpx.Request) -> httpx.Response:
            if self.down:
                return httpx.Response(503, text="down")
            return httpx.Response(200, text=self.pages[int(req.url.host[-1])])

        return httpx.Client(transport=httpx.MockTransport(answer))


class Meter:
    """An energy counter reading scripted joules."""

    method = "dcgm"

    def __init__(self) -> None:
        self.j = 0.0

    def read_j(self) -> float:
        return self.j


def _watcher(catalog: Any, tmp_path: Path, pages: Pages, energy: Any, **kw: Any) -> Watcher:
    return Watcher(catalog, endpoints=[f"http://e{i}/metrics" for i in range(len(pages.pages))],
                   model="llama-3.1-8b", gpu="l4", gpus=2, region="FR", energy=energy,
                   ledger=WatchLedger(tmp_path), metrics=WatchMetrics(), client=pages.client(),
                   team="search", lifetime_years=4.0, pue=1.5, scope="card", **kw)


def test_an_interval_charged_by_hand(catalog, tmp_path: Path):
    """Two engines behind one deployment and a DCGM-like meter: 2 kWh over an hour at FR's
    annual intensity × PUE 1.5, and 2 L4s' embodied carbon for the hour."""
    pages, meter = Pages(2), Meter()
    w = _watcher(catalog, tmp_path, pages, meter)
    pages.pages = [vllm(100, 50, 1), vllm(10, 5, 0)]
    meter.j = 1000.0
    assert w.step(now=3600.0) is None                       # the baseline
    pages.pages = [vllm(300, 1050, 2), vllm(30, 55, 1)]
    meter.j = 1000.0 + 2 * J_PER_KWH
    row = w.step(now=7200.0)
    assert row is not None and row.status == "ok"
    ci = catalog.region("FR").intensity_g_per_kwh.value
    emb = 2 * gpu_embodied(catalog.gpu("l4"), catalog, "card").total_g.mid * 3600.0 / (
        4.0 * S_PER_YEAR)
    assert (row.prompt_tokens, row.generation_tokens, row.running) == (220.0, 1050.0, 3.0)
    assert row.energy_j == pytest.approx(2 * J_PER_KWH) and row.energy_method == "dcgm"
    assert row.operational_g == pytest.approx(2 * 1.5 * ci)
    assert row.embodied_g == pytest.approx(emb)
    assert row.total_g == pytest.approx(2 * 1.5 * ci + emb)
    assert row.g_per_1k_tokens == pytest.approx((2 * 1.5 * ci + emb) / 1050 * 1000)
    assert (row.engine, row.note, row.team, row.project, row.gpus, row.region) == (
        "vllm", "", "search", None, 2, "FR")
    assert row.intensity_source.startswith("FR annual (")
    assert (row.start_utc, row.end_utc, row.deployment) == (3600.0, 7200.0, "llama-3.1-8b@l4")
    assert WatchLedger(tmp_path).rows() == [row]
    # one engine restarted and the meter reset: counted from zero, with a note each
    pages.pages = [vllm(10, 20, 0), vllm(40, 65, 0)]
    meter.j = 500.0
    again = w.step(now=10800.0)
    assert again is not None and (again.prompt_tokens, again.generation_tokens) == (20.0, 30.0)
    assert again.energy_j == 500.0
    assert again.note == ("http://e0/metrics: token counters went backwards (engine "
                          "restarted); counted from zero; dcgm energy counter went backwards; "
                          "counted from zero")
    sample = w.metrics.registry.get_sample_value
    labels = {"deployment": "llama-3.1-8b@l4", "model": "llama-3.1-8b", "gpu": "l4",
              "region": "FR", "team": "search", "project": ""}
    assert sample("tokenprint_watch_counter_resets_total", labels) == 2.0
    # no tokens: no per-token figure
    idle = w.step(now=14400.0)
    assert idle is not None and idle.generation_tokens == 0 and idle.g_per_1k_tokens is None


def test_a_failed_scrape_is_a_gap_and_the_next_interval_spans_it(catalog, tmp_path: Path):
    pages = Pages(1)
    w = _watcher(catalog, tmp_path, pages, wt.PredictedEnergy(catalog, "llama-3.1-8b", "l4", 2))
    with pytest.raises(TokenprintError):
        pages.down = True
        w.step(now=0.0)                                     # no baseline yet: an error
    pages.down = False
    pages.pages = [vllm(0, 0, 0)]
    assert w.step(now=100.0) is None
    pages.down = True
    gap = w.step(now=160.0)
    assert gap is not None and gap.status == "gap" and gap.start_utc == 100.0
    assert gap.energy_j is None and gap.total_g is None and "503" in gap.note
    pages.down = False
    pages.pages = [vllm(100, 200, 1)]
    row = w.step(now=220.0)
    assert row is not None and row.start_utc == 100.0 and row.energy_method == "predicted"
    assert row.note == "spans a gap of 120 s (1 failed scrape(s))"
    assert row.energy_j == pytest.approx(w.energy.joules(100.0, 200.0, 1.0, 120.0))
    sample = w.metrics.registry.get_sample_value
    labels = {"deployment": "llama-3.1-8b@l4", "model": "llama-3.1-8b", "gpu": "l4",
              "region": "FR", "team": "search", "project": ""}
    assert sample("tokenprint_watch_gaps_total", labels) == 1.0
    assert w.ledger_gaps_since(100.0) == [100.0] and w.ledger_gaps_since(101.0) == []


def test_intensity_from_a_file_or_live_by_hand(catalog, tmp_path: Path):
    series = IntensitySeries(0.0, 3600.0, np.array([100.0, 300.0]), source="f.csv")
    pages = Pages(1)
    w = _watcher(catalog, tmp_path, pages, wt.PredictedEnergy(catalog, "llama-3.1-8b", "l4", 2),
                 intensity=series)
    ci, src = w._intensity(1800.0, 5400.0)
    assert ci == pytest.approx(float(series.mean_over(1800.0, 5400.0)))
    assert src == f"f.csv ({series.basis}), interval mean"

    class Live:
        def __init__(self) -> None:
            self.asked: list[tuple[str, float]] = []

        async def current(self, region: str, t: float) -> tuple[float, str]:
            self.asked.append((region, t))
            return 42.0, "electricitymaps"

    live = Live()
    w2 = _watcher(catalog, tmp_path / "b", pages, wt.PredictedEnergy(
        catalog, "llama-3.1-8b", "l4", 2), live=live)
    assert w2._intensity(0.0, 60.0) == (42.0, "electricitymaps, at the interval's end")
    assert live.asked == [("FR", 60.0)]
    with pytest.raises(TokenprintError, match=r"^--metrics needs at least one URL$"):
        Watcher(catalog, endpoints=[], model="llama-3.1-8b", gpu="l4", gpus=1, region="FR",
                energy=Meter(), ledger=w.ledger, metrics=WatchMetrics())
    with pytest.raises(TokenprintError, match=r"^--gpus 0 is invalid; it must be >= 1$"):
        Watcher(catalog, endpoints=["http://e0"], model="llama-3.1-8b", gpu="l4", gpus=0,
                region="FR", energy=Meter(), ledger=w.ledger, metrics=WatchMetrics())


def test_ledger_columns_and_queries(tmp_path: Path):
    led = WatchLedger(tmp_path / "new" / "dir")
    with sqlite3.connect(tmp_path / "new" / "dir" / wt.DB_NAME) as con:
        types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(intervals)")}
    assert (types["deployment"], types["gpus"], types["start_utc"], types["engine"],
            types["team"], types["note"]) == ("TEXT", "INTEGER", "REAL", "TEXT", "TEXT", "TEXT")

    def iv(dep: str, t0: float, status: str = "ok") -> WatchInterval:
        return WatchInterval(dep, "m", "g", 1, "FR", t0, t0 + 60.0, status)

    for row in (iv("b", 60.0), iv("a", 60.0), iv("a", 0.0, "gap"), iv("a", 120.0, "gap")):
        led.add(row)
    assert [(r.deployment, r.start_utc) for r in led.rows()] == [
        ("a", 0.0), ("a", 60.0), ("b", 60.0), ("a", 120.0)]
    assert [r.start_utc for r in led.rows(120.0, 120.0)] == [60.0, 60.0]   # ends at 120
    assert led.gaps_since("a", 60.0) == [120.0] and led.gaps_since("b", 0.0) == []
    led.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(TokenprintError, match=r"cannot open the watch ledger in .*file"):
        WatchLedger(tmp_path / "file")


def test_watch_metrics_exposition_by_hand():
    m = WatchMetrics()
    row = WatchInterval("d", "m", "g", 1, "FR", 0.0, 60.0, "ok", prompt_tokens=10.0,
                        generation_tokens=20.0, energy_j=300.0, operational_g=1.5,
                        embodied_g=0.5, g_per_1k_tokens=100.0, project="p")
    m.record(row, 0)
    m.record(WatchInterval("d", "m", "g", 1, "FR", 60.0, 120.0, "ok"), 0)   # nothing counted
    text = generate_latest(m.registry).decode()
    lab = 'deployment="d",gpu="g",model="m",project="p",region="FR",team=""'
    for line in (
            "# HELP tokenprint_watch_energy_joules_total Energy of the deployment's GPUs",
            "# HELP tokenprint_watch_operational_grams_total Operational carbon",
            "# HELP tokenprint_watch_embodied_grams_total Embodied carbon of the provisioned GPUs",
            "# HELP tokenprint_watch_tokens_total Tokens served",
            "# HELP tokenprint_watch_grams_per_1k_tokens Total carbon per 1,000 generated tokens "
            "over the last interval",
            "# HELP tokenprint_watch_gaps_total Intervals lost to failed scrapes",
            "# HELP tokenprint_watch_counter_resets_total Source counters seen going backwards "
            "(restarts)",
            f"tokenprint_watch_energy_joules_total{{{lab}}} 300.0",
            f"tokenprint_watch_operational_grams_total{{{lab}}} 1.5",
            f"tokenprint_watch_embodied_grams_total{{{lab}}} 0.5",
            f"tokenprint_watch_grams_per_1k_tokens{{{lab}}} 100.0"):
        assert line in text.splitlines(), line
    get = m.registry.get_sample_value
    labels = {"deployment": "d", "model": "m", "gpu": "g", "region": "FR", "team": "",
              "project": "p"}
    assert get("tokenprint_watch_tokens_total", {**labels, "kind": "prompt"}) == 10.0
    assert get("tokenprint_watch_tokens_total", {**labels, "kind": "generation"}) == 20.0
    m.record(WatchInterval("d", "m", "g", 1, "FR", 120.0, 180.0, "gap", project="p"), 3)
    assert get("tokenprint_watch_gaps_total", labels) == 1.0
    assert get("tokenprint_watch_counter_resets_total", labels) == 3.0
    assert get("tokenprint_watch_energy_joules_total", labels) == 300.0   # a gap adds nothing


def test_run_loop_by_hand():
    class Steps:
        def __init__(self) -> None:
            self.n = 0

        def step(self) -> WatchInterval | None:
            self.n += 1
            return None if self.n == 1 else WatchInterval("d", "m", "g", 1, "FR", 0, 1, "ok")

    seen: list[WatchInterval] = []
    s = Steps()
    assert wt.run_loop(s, 0.01, 2, lambda: False, seen.append) == 2  # type: ignore[arg-type]
    assert s.n == 3 and len(seen) == 2                      # the baseline records nothing
    calls = iter(range(100))
    # asked before each step and while waiting: the 4th answer stops it after one row
    assert wt.run_loop(Steps(), 0.0, 0, lambda: next(calls) >= 3, seen.append) == 1  # type: ignore[arg-type]
