"""Hand-derived tests of moving load in space and time (``plan/shift.py``): when a split across
regions takes the headline, what the split charges hour by hour, and the time shift's edges."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries
from tokenprint.plan import shift
from tokenprint.plan.answer import RegionSplit
from tokenprint.units import J_PER_KWH, S_PER_YEAR

CAPS = {"FR": 2, "PL": 64}


def _headline(monkeypatch: pytest.MonkeyPatch, total_g: float | None, single_ok: bool,
              best_g: float = 100.0, tokens: int = 5000) -> tuple[RegionSplit, Any]:
    split = {"split": {"FR": {"share": 0.5, "replicas": 2}, "PL": {"share": 0.5, "replicas": 3}},
             "total_g": total_g}
    monkeypatch.setattr(shift, "split_regions", lambda *a, **k: split)
    base = SimpleNamespace(
        to_dict=lambda: {"gpu": "l4", "region": "FR", "operational_g": 1.0, "embodied_g": 2.0,
                         "total_range_g": [1.0, 4.0], "total_g": 3.0},
        config=SimpleNamespace(tp=2), carbon=SimpleNamespace(output_tokens=tokens))
    return shift.split_headline(base, single_ok, CAPS, best_g, None, None, ["FR", "PL"],  # type: ignore[arg-type]
                                {})


def test_split_takes_the_headline_only_where_it_beats_the_best_single_region(monkeypatch):
    constraints = {"region_capacity_gpus": CAPS, "single_region_plan_within_capacity": True}
    for total in (100.0, 100.0 * (1 - 0.5e-9), 250.0):       # ties (to 1e-9) keep the single
        rs, head = _headline(monkeypatch, total, single_ok=True)
        assert head is None and rs == RegionSplit(rs.multi_region, constraints, None, None)
    rs, head = _headline(monkeypatch, None, single_ok=False)  # nothing fits, no split either
    assert head is None and rs.message == "no plan keeps the region capacities"
    assert rs.constraints["single_region_plan_within_capacity"] is False
    rs, head = _headline(monkeypatch, 80.0, single_ok=True)
    assert rs.best_kind == "multi-region split within the capacities" and rs.message is None
    assert rs.constraints == constraints
    assert head == {"gpu": "l4", "region": "FR+PL", "total_g": 80.0, "replicas": 5,
                    "split": {"FR": {"share": 0.5, "replicas": 2},
                              "PL": {"share": 0.5, "replicas": 3}},
                    "gpus_total": 10, "g_per_1k_tokens": 80.0 / 5000 * 1000}
    rs, head = _headline(monkeypatch, 120.0, single_ok=False)  # no single plan fits: split leads
    assert head["total_g"] == 120.0 and rs.best_kind is not None
    _, head = _headline(monkeypatch, 80.0, single_ok=True, tokens=0)
    assert head["g_per_1k_tokens"] is None


def _best(res: SimpleNamespace, reps: int, tp: int) -> Any:
    return SimpleNamespace(config=SimpleNamespace(result=res, replicas=reps, tp=tp, gpu="l4"))


def test_split_by_the_hour_by_hand(catalog):
    """Two replicas of two L4s over two trace hours (hour 11 had no busy work recorded); FR
    from an hourly file (50 then 150 g/kWh), PL at its annual figure. The capacity is looked up
    in lower case too, and counted in GPUs: 3 GPUs hold one replica of two."""
    res = SimpleNamespace(duration_s=7200.0, idle_energy_j=0.0, idle_s=0.0,
                          hourly_span={10: 7200.0, 11: 7200.0}, hourly={10: (3000.0, 2.0e6)},
                          busy_energy_j=2.0e6, busy_s=3000.0)
    fr = IntensitySeries(36_000.0, 3600.0, np.array([50.0, 150.0]))
    inp = SimpleNamespace(scope="card", lifetime_years=4.0, pue=1.0, region_capacity={"fr": 3})
    out = shift.split_regions(_best(res, 2, 2), inp, catalog, ["FR", "PL"],  # type: ignore[arg-type]
                              {"FR": fr, "PL": None})
    emb_rep = 2 * gpu_embodied(catalog.gpu("l4"), catalog, "card").total_g.mid * 7200.0 / (
        4.0 * S_PER_YEAR)
    pl = catalog.region("PL").intensity_g_per_kwh.value
    # no idle power, so the busy energy displaces none
    busy = {"FR": 2.0e6 / J_PER_KWH * 50.0, "PL": 2.0e6 / J_PER_KWH * pl}
    assert out["split"] == {"FR": {"share": pytest.approx(0.5), "replicas": 1},
                            "PL": {"share": pytest.approx(0.5), "replicas": 1}}
    assert out["total_g"] == pytest.approx(0.5 * busy["FR"] + 0.5 * busy["PL"] + 2 * emb_rep)
    assert out["capacity_gpus"] == {"fr": 3}
    assert out["note"] == ("replicas per region scale with the load share; latency per replica "
                           "as in the single-region simulation")
    # with no capacity named a region holds a million GPUs: 100 replicas all go to the cleaner
    many = shift.split_regions(_best(res, 100, 1), SimpleNamespace(**{  # type: ignore[arg-type]
        **inp.__dict__, "region_capacity": {}}), catalog, ["FR", "PL"], {"FR": fr, "PL": None})
    assert many["split"] == {"FR": {"share": pytest.approx(1.0), "replicas": 100}}


def test_time_shift_edges_by_hand():
    """A zero deadline leaves the load where it arrived; the record says what was asked; the
    hour of arrival's spare room is 1 − busy share × (1 − deferrable) of a load."""
    s = IntensitySeries(36_000.0, 3600.0, np.array([400.0, 100.0, 300.0]))

    def run(deadline_h: float, busy_s: float, deferrable: float) -> dict:
        res = SimpleNamespace(busy_s=busy_s, duration_s=50.0, busy_energy_j=7.2e6)
        best = SimpleNamespace(config=SimpleNamespace(result=res, replicas=2))
        inp = SimpleNamespace(trace=SimpleNamespace(start_s=37_800.0), deadline_h=deadline_h,
                              deferrable=deferrable, pue=1.0)
        return shift.time_shift(best, inp, s)  # type: ignore[arg-type]

    now = run(0.0, 50.0, 0.5)
    assert now["hours_utc"] == [10] and now["placement"] == pytest.approx([1.0])
    assert now["saving_g"] == pytest.approx(0.0)
    assert (now["deferrable"], now["deadline_h"], now["solver"]) == (0.5, 0.0, "HiGHS LP")
    # busy a quarter of the replica-time, a quarter deferrable: the next hour (100 g) has room
    # 0.75 for work taking 0.0625 of the cluster, so it takes it all
    later = run(1.0, 25.0, 0.25)
    assert later["placement"] == pytest.approx([0.0, 1.0])
    assert later["saving_g"] == pytest.approx(7.2e6 * 0.25 / J_PER_KWH * 300.0)
    # more busy seconds than replica-seconds (a rounding of the simulation) count as fully busy
    over = run(1.0, 150.0, 0.25)
    assert over["placement"] == pytest.approx([1.0, 0.0])
    # where nothing moves the answer says why (plan.json and the terminal alike)
    assert now["why_no_saving"] == ("the hour it arrived is already the cleanest before the "
                                    "deadline")
    assert over["why_no_saving"] == "later hours have no spare room (the cluster is 100% busy)"
    assert "why_no_saving" not in later
