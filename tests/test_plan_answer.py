"""``PlanAnswer.to_dict`` is plan.json: its keys, their order and what each case adds are a
contract users script against."""

from __future__ import annotations

from tokenprint.plan.answer import Infeasible, PlanAnswer, PlanHeader, RegionSplit

HEADER = PlanHeader(trace="t", n_requests=3, targets={"percentile": "p95"},
                    candidates_simulated=2, skipped=["x"], scope="device", lifetime_years=5.0,
                    pue=1.2, intensity="annual averages", intensity_basis="annual",
                    trace_duration_s=60.0)
HEAD_KEYS = ["trace", "n_requests", "targets", "candidates_simulated", "skipped", "scope",
             "lifetime_years", "pue", "intensity", "intensity_basis", "trace_duration_s",
             "feasible"]
BEST_KEYS = ["best", "tie_break", "total_range_g", "sources", "home_region", "baselines",
             "baseline_configs", "savings_pct", "savings_pct_same_region", "pareto", "table",
             "all_feasible"]


def test_infeasible_answer():
    a = PlanAnswer(HEADER, infeasible=Infeasible(["ttft"], {"gpu": "l4"}, "no candidate"))
    d = a.to_dict()
    assert not a.feasible and list(d) == [*HEAD_KEYS, "best", "failing_targets", "closest",
                                          "message"]
    assert (d["best"], d["failing_targets"], d["closest"], d["message"]) == (
        None, ["ttft"], {"gpu": "l4"}, "no candidate")
    assert (d["trace"], d["n_requests"], d["pue"], d["skipped"], d["feasible"]) == (
        "t", 3, 1.2, ["x"], False)


def test_feasible_answer_with_and_without_a_split_and_a_shift():
    a = PlanAnswer(HEADER, best={"gpu": "l4"}, home_region="FR", baselines={"b": 1.0},
                   pareto=[{"p": 1}], table=[{"t": 1}], all_feasible=[{"a": 1}])
    d = a.to_dict()
    assert a.feasible and list(d) == [*HEAD_KEYS, *BEST_KEYS]
    assert (d["best"], d["home_region"], d["baselines"], d["pareto"], d["table"],
            d["all_feasible"], d["feasible"]) == ({"gpu": "l4"}, "FR", {"b": 1.0}, [{"p": 1}],
                                                  [{"t": 1}], [{"a": 1}], True)
    split = RegionSplit({"split": {}}, {"region_capacity_gpus": {}}, "multi-region", "none fit")
    d = PlanAnswer(HEADER, best={}, split=split, time_shift={"saving_g": 1.0}).to_dict()
    assert list(d)[-5:] == ["multi_region", "constraints", "best_kind", "message", "time_shift"]
    assert (d["multi_region"], d["constraints"], d["best_kind"], d["message"],
            d["time_shift"]) == ({"split": {}}, {"region_capacity_gpus": {}}, "multi-region",
                                 "none fit", {"saving_g": 1.0})
    quiet = PlanAnswer(HEADER, best={}, split=RegionSplit({}, {})).to_dict()
    assert "best_kind" not in quiet and "message" not in quiet and "time_shift" not in quiet
    assert list(quiet)[-2:] == ["multi_region", "constraints"]
