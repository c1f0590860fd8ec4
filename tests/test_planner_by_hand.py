"""Hand-derived tests of the planner's choices on rows whose carbon and latency are written
out: the tie-break, the baselines, the savings, the Pareto front, the closest infeasible
candidate, the replica search, and the inputs it refuses."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tokenprint.errors import TokenprintError
from tokenprint.plan import planner


def _row(name: str, total_g: float, e2e_s: float, gpus: int = 1, energy_j: float = 1.0,
         region: str = "FR") -> Any:
    return SimpleNamespace(name=name, total_g=total_g, e2e_s=e2e_s, gpus_total=gpus,
                           energy_j=energy_j, region=region, to_dict=lambda: {"name": name})


def test_choose_breaks_near_ties_by_latency_then_gpus():
    low = _row("low", 100.0, 2.0, gpus=4)
    fast = _row("fast", 100.5, 1.5, gpus=8)          # within 1 %: 25 % faster
    lean = _row("lean", 100.5, 1.5, gpus=2)          # as fast, fewer GPUs
    far = _row("far", 102.0, 0.5)                    # 2 % dearer: outside the tolerance
    pick, why = planner._choose([low, fast, lean, far], 0.01)
    assert pick is lean
    assert why == {"tolerance_pct": 1.0, "lowest_carbon": {"name": "low"},
                   "carbon_above_lowest_pct": pytest.approx(0.5),
                   "p95_latency_below_lowest_pct": pytest.approx(25.0),
                   "rule": "within 1 % of the lowest carbon, the lowest p95 latency, then the "
                           "fewest GPUs"}
    assert planner._choose([low, far], 0.01) == (low, None)
    assert planner._choose([low, far], 0.02)[0] is far      # 2 % is within a 2 % tolerance
    zero = _row("zero", 100.0, 0.0)
    assert planner._choose([_row("z", 99.9, 0.0), zero], 0.01)[1] is None
    _, tied = planner._choose([_row("slow0", 99.9, 0.0, gpus=9), _row("q", 100.0, 0.0)], 0.01)
    assert tied["p95_latency_below_lowest_pct"] == 0.0         # no latency to compare against


def test_baselines_savings_and_front():
    a = _row("a", 50.0, 3.0, gpus=2, energy_j=9.0)
    b = _row("b", 80.0, 1.0, gpus=4, energy_j=5.0)
    c = _row("c", 90.0, 1.0, gpus=1, energy_j=5.0)
    base = planner._baselines([a, b, c])
    assert base == {"latency-optimal": b, "energy-optimal": b, "fewest-GPUs": c}
    assert planner._savings(40.0, base) == {"latency-optimal": pytest.approx(50.0),
                                            "energy-optimal": pytest.approx(50.0),
                                            "fewest-GPUs": pytest.approx(100 * (1 - 40 / 90))}
    assert planner._savings(40.0, {"x": _row("free", 0.0, 1.0)}) == {"x": 0.0}
    d = _row("d", 50.0, 4.0)                         # as clean as a, slower: dominated
    e = _row("e", 60.0, 3.0)                         # dearer and no faster than a: dominated
    assert planner.pareto([c, e, b, d, a]) == [a, b]


def test_the_closest_infeasible_candidate_is_named():
    inp = SimpleNamespace(slo_ttft_s=1.0, slo_tpot_s=0.1, percentile="p99", max_replicas=16)

    def row(ttft: float, tpot: float, reps: int) -> Any:
        cfg = SimpleNamespace(ttft_q=ttft, tpot_q=tpot, replicas=reps, gpu="l4", max_batch=32)
        return SimpleNamespace(config=cfg, to_dict=lambda: {"replicas": reps})

    rows = [row(3.0, 0.05, 1), row(1.5, 0.12, 4), row(0.5, 0.4, 8)]
    out = planner._infeasible(rows, inp)  # type: ignore[arg-type]
    assert out.closest == {"replicas": 4} and out.failing_targets == ["ttft", "tpot"]
    assert out.message == ("no candidate meets the p99 targets within 16 replicas; ttft and "
                           "tpot cannot be met; closest: 4 × l4 (batch 32) with p99 TTFT 1.5 s, "
                           "TPOT 0.12 s")
    only = planner._infeasible([row(2.0, 0.1, 2)], inp)  # type: ignore[arg-type]
    assert only.failing_targets == ["ttft"]               # a TPOT exactly at its target passes


@pytest.mark.parametrize(("need", "cap", "tried"), [
    (5, 64, [1, 2, 4, 5, 6, 8, 10]),    # double to 8, bisect to 5, one larger (10) for the front
    (5, 6, [1, 2, 4, 5, 6]),            # capped at 6: bisect below it; 10 is out of bounds
    (1, 64, [1, 2]),                    # one replica does: and one larger
    (99, 6, [1, 2, 4, 6]),              # none does within the cap
    (7, 64, [1, 2, 4, 6, 7, 8, 14]),    # bisecting past an infeasible 6
    (5, 12, [1, 2, 4, 5, 6, 8, 10]),    # the larger size (10) within the cap
    (5, 10, [1, 2, 4, 5, 6, 8, 10]),    # ... and at it
])
def test_replica_search_by_hand(monkeypatch, need: int, cap: int, tried: list[int]):
    calls: list[int] = []

    def fake(inp: Any, catalog: Any, model: str, gpu: str, tp: int, mb: int, r: int,
             hourly: bool) -> Any:
        calls.append(r)
        return SimpleNamespace(replicas=r, feasible=r >= need)

    monkeypatch.setattr(planner, "evaluate", fake)
    out = planner.search_replicas(SimpleNamespace(max_replicas=cap), None, "m", "g", 1, 8,  # type: ignore[arg-type]
                                  False)
    assert [e.replicas for e in out] == tried
    assert all(type(r) is int for r in calls)                 # replicas are whole
    assert len(calls) == len(set(calls))                  # each size simulated once


def test_min_tp_by_hand(catalog):
    assert planner.min_tp(catalog, "llama-3.1-8b", "l4") == 1        # 16 GB in 24 GB
    assert planner.min_tp(catalog, "llama-3.1-70b", "h100-sxm") == 2  # 141 GB in 2 × 80 GB
    assert planner.min_tp(catalog, "llama-3.1-405b", "l4") is None    # 811 GB > 8 × 24 GB
    assert planner.min_tp(catalog, "llama-3.1-70b", "l40s") == 4      # 141 GB in 4 × 48 GB
    assert planner.min_tp(catalog, "llama-3.1-405b", "h200") == 8     # 811 GB in 8 × 141 GB


def test_percentile_of_nothing_is_unbounded():
    import numpy as np

    assert planner._q(np.array([]), 95.0) == float("inf")
    assert planner._q(np.array([np.inf, 2.0, 4.0]), 50.0) == 3.0       # unserved left out


def test_evaluate_meets_a_target_exactly_at_it(catalog):
    """A configuration whose p95 TTFT and TPOT equal the targets meets them."""
    import numpy as np

    from tokenprint.simulate import Trace

    rng = np.random.default_rng(0)
    arr = np.cumsum(rng.exponential(1 / 3.0, 60))
    tr = Trace(arr - arr[0], rng.integers(50, 800, 60), rng.integers(5, 200, 60), "t")
    inp = SimpleNamespace(trace=tr, stack="vllm-2025", percentile="p95", slo_ttft_s=10.0,
                          slo_tpot_s=10.0)
    one = planner.evaluate(inp, catalog, "llama-3.2-1b", "l4", 1, 1, 1, False)  # type: ignore[arg-type]
    wide = planner.evaluate(inp, catalog, "llama-3.2-1b", "l4", 1, 64, 1, False)  # type: ignore[arg-type]
    assert (one.model, one.gpu, one.tp, one.max_batch, one.replicas) == (
        "llama-3.2-1b", "l4", 1, 1, 1)
    assert wide.max_batch == 64 and wide.e2e_q < one.e2e_q      # batching serves the queue
    at = SimpleNamespace(**{**inp.__dict__, "slo_ttft_s": wide.ttft_q,
                            "slo_tpot_s": wide.tpot_q})
    assert planner.evaluate(at, catalog, "llama-3.2-1b", "l4", 1, 64, 1, False).feasible  # type: ignore[arg-type]


def test_hourly_files_are_found_by_region_name(tmp_path: Path):
    (tmp_path / "FR.csv").write_text("timestamp,intensity_g_per_kwh\n2023-01-01T00:00:00Z,50\n")
    (tmp_path / "pl_2023.csv").write_text("timestamp,intensity_g_per_kwh\n"
                                          "2023-01-01T00:00:00Z,700\n")
    inp = SimpleNamespace(intensity_dir=tmp_path)
    assert planner._intensity_for(inp, "FR").values.tolist() == [50.0]  # type: ignore[arg-type]
    assert planner._intensity_for(inp, "pl").values.tolist() == [700.0]  # type: ignore[arg-type]
    assert planner._intensity_for(inp, "fr").values.tolist() == [50.0]  # type: ignore[arg-type]
    (tmp_path / "DE_2023.csv").write_text("timestamp,intensity_g_per_kwh\n"
                                          "2023-01-01T00:00:00Z,300\n"
                                          "2023-01-01T01:00:00Z,400\n"
                                          "2023-01-01T03:00:00Z,600\n")
    # a missing hour is interpolated, not refused
    assert planner._intensity_for(inp, "de").values.tolist() == [300.0, 400.0, 500.0, 600.0]  # type: ignore[arg-type]
    (tmp_path / "IT.csv").write_text("Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh "
                                     "(LCA)\n2023-01-01 00:00:00,PL,700\n")
    with pytest.raises(TokenprintError, match="PL"):
        planner._intensity_for(inp, "IT")  # type: ignore[arg-type]
    with pytest.raises(TokenprintError) as err:
        planner._intensity_for(inp, "SE")  # type: ignore[arg-type]
    assert str(err.value) == (f"no hourly intensity file for region SE in {str(tmp_path)!r} "
                              "(expected SE.csv)")
    assert planner._intensity_for(SimpleNamespace(intensity_dir=None), "FR") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "error"), [
    ({"percentile": "p90"}, "unknown percentile 'p90'; valid: p95, p99"),
    ({"gpus": []}, "models, GPUs, regions and max batch sizes must be non-empty"),
    ({"max_batches": []}, "models, GPUs, regions and max batch sizes must be non-empty"),
    ({"deferrable": 1.5}, "deferrable share 1.5 must be within 0..1"),
    ({"deferrable": -0.1}, "deferrable share -0.1 must be within 0..1"),
])
def test_inputs_no_plan_can_use(change: dict[str, Any], error: str):
    inp = SimpleNamespace(**{"percentile": "p95", "models": ["m"], "gpus": ["g"],
                             "regions": ["FR"], "max_batches": [8], "deferrable": 0.0,
                             **change})
    with pytest.raises(TokenprintError) as err:
        planner._check(inp)  # type: ignore[arg-type]
    assert str(err.value) == error
    planner._check(SimpleNamespace(**{**inp.__dict__, **{  # type: ignore[arg-type]
        "percentile": "p99", "gpus": ["g"], "max_batches": [8], "deferrable": 1.0}}))


def _small_trace(n: int = 80) -> Any:
    import numpy as np

    from tokenprint.simulate import Trace

    rng = np.random.default_rng(1)
    arr = np.cumsum(rng.exponential(1 / 3.0, n))
    return Trace(arr - arr[0], rng.integers(50, 800, n), rng.integers(5, 200, n), "small")


def test_plan_answer_composed_by_hand(catalog):
    """One model on L4 at two batch limits in two regions (and a model that fits nowhere):
    the header echoes the inputs, baselines come from the home region's rows, savings and the
    same-region savings are recomputed from the rows the answer lists."""
    from tokenprint.plan import PlanInputs

    ticks: list[int] = []
    inp = PlanInputs(_small_trace(), ["llama-3.2-1b", "llama-3.1-405b"], ["l4"], ["pl", "FR"],
                     max_batches=[4, 16], slo_ttft_s=5.0, slo_tpot_s=0.5, max_replicas=4,
                     scope="card", lifetime_years=4.0, pue=1.1)
    a = planner.plan(inp, catalog, progress=lambda: ticks.append(1))
    d = a.to_dict()
    assert len(ticks) == 2                                   # one tick per candidate searched
    assert (d["trace"], d["n_requests"], d["scope"], d["lifetime_years"], d["pue"]) == (
        "small", 80, "card", 4.0, 1.1)
    assert d["targets"] == {"percentile": "p95", "ttft_s": 5.0, "tpot_s": 0.5}
    assert d["skipped"] == ["llama-3.1-405b does not fit 8 × l4"]
    assert d["candidates_simulated"] >= len({(r["max_batch"], r["replicas"])
                                             for r in d["all_feasible"]})
    assert (d["intensity"], d["intensity_basis"]) == (
        "annual averages", "each region's annual average intensity")
    assert d["home_region"] == "PL" and d["tie_break"] is None
    assert d["total_range_g"] == d["best"]["total_range_g"]
    assert d["sources"] and all(isinstance(v, str) for v in d["sources"].values())
    rows = d["table"]
    assert {r["region"] for r in rows} == {"PL", "FR"} and len(rows) <= 50
    assert [r["total_g"] for r in rows] == sorted(r["total_g"] for r in rows)
    assert set(d["all_feasible"][0]) == {"gpu", "replicas", "max_batch", "region", "e2e_s",
                                         "total_g"}
    assert len(d["all_feasible"]) == len(rows)
    home = [r for r in rows if r["region"] == "PL"]
    lat = min(home, key=lambda r: (r["e2e_s"], r["total_g"]))
    assert d["baselines"]["latency-optimal"] == lat["total_g"]
    assert d["baseline_configs"]["latency-optimal"] == lat
    assert d["savings_pct"]["latency-optimal"] == pytest.approx(
        (1 - d["best"]["total_g"] / lat["total_g"]) * 100)
    same = [r for r in rows if r["region"] == d["best"]["region"]]
    few = min(same, key=lambda r: (r["gpus_total"], r["total_g"]))
    assert d["savings_pct_same_region"]["fewest-GPUs"] == pytest.approx(
        (1 - d["best"]["total_g"] / few["total_g"]) * 100)
    best = d["best"]
    assert {"model", "gpu", "tp", "replicas", "max_batch", "gpus_total", "ttft_s", "tpot_s",
            "e2e_s", "region", "feasible", "energy_j"} <= set(best)
    assert best["gpus_total"] == best["replicas"] * best["tp"] and best["region"] == "FR"
    assert "time_shift" not in d and "multi_region" not in d
    with pytest.raises(TokenprintError) as err:
        planner.plan(PlanInputs(_small_trace(), ["llama-3.1-405b"], ["l4"], ["FR"]), catalog)
    assert str(err.value) == ("no candidate can hold the model: llama-3.1-405b does not fit "
                              "8 × l4")


def test_plan_within_capacities_by_hand(catalog, tmp_path: Path):
    """A capacity (named in lower case) that the best region cannot hold moves the headline:
    only placements within their region's GPUs are chosen; and hourly files need a start."""
    from tokenprint.plan import PlanInputs

    inp = PlanInputs(_small_trace(), ["llama-3.2-1b"], ["l4"], ["PL", "FR"], max_batches=[4],
                     slo_ttft_s=5.0, slo_tpot_s=0.5, max_replicas=4)
    free = planner.plan(inp, catalog).to_dict()
    assert free["best"]["region"] == "FR"
    need = free["best"]["gpus_total"]
    capped = planner.plan(PlanInputs(**{**inp.__dict__, "region_capacity": {
        "fr": need - 1}}), catalog).to_dict()
    assert capped["constraints"]["region_capacity_gpus"] == {"FR": need - 1}
    # FR's feasible placements all need more GPUs than it holds: the best fitting one is in PL
    assert capped["best"]["region"] == "PL" and "multi_region" in capped
    exact = planner.plan(PlanInputs(**{**inp.__dict__, "region_capacity": {"FR": need}}),
                         catalog).to_dict()
    assert exact["best"]["region"] == "FR"                     # at its capacity: it fits
    (tmp_path / "PL.csv").write_text("timestamp,intensity_g_per_kwh\n2023-01-01T00:00:00Z,700\n")
    (tmp_path / "FR.csv").write_text("timestamp,intensity_g_per_kwh\n2023-01-01T00:00:00Z,50\n")
    with pytest.raises(TokenprintError, match=r"^hourly intensity needs the trace placed on the "
                                              r"calendar \(--start\)$"):
        planner.plan(PlanInputs(**{**inp.__dict__, "intensity_dir": tmp_path}), catalog)
