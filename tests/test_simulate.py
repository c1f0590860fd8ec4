from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tokenprint.errors import TokenprintError
from tokenprint.plan import PlanInputs, plan
from tokenprint.plan.milp import LinearProgram
from tokenprint.simulate import ClusterSpec, Trace, carbon_of, load_trace, simulate, summary
from tokenprint.simulate.replica import ReplicaCosts, _sum_max_linear, simulate_replica


def _flat_costs(step_s: float = 0.01, budget: int = 10_000) -> ReplicaCosts:
    """Every iteration takes exactly ``step_s`` (memory-bound on the weights alone), drawing
    the memory-bound level (100 W: no fixed overhead, no compute)."""
    return ReplicaCosts(flops_per_s=1e30, bytes_per_s=1.0, matmul_flops_per_token=0.0,
                        attn_flops_per_ctx=0.0, dense_weight_bytes=step_s, expert_bytes=0.0,
                        n_experts=0.0, experts_per_token=0.0, kv_bytes_per_token=0.0,
                        step_overhead_s=0.0, seq_overhead_s=0.0, comm_s_per_token=0.0,
                        comm_fixed_s=0.0, idle_w=10.0, base_w=50.0, mem_w=100.0, peak_w=200.0,
                        power_exponent=1.0, kv_budget_tokens=budget)


def test_two_requests_one_replica_by_hand():
    # A: t=0, 10 in / 3 out.  B: t=0.015, 5 in / 2 out.  Every iteration: 10 ms.
    # it1 [0, .01]: A prefill → A token 1.  it2 [.01, .02]: A token 2.
    # it3 [.02, .03]: B admitted (arrived .015) → B token 1, A token 3 (done at .03).
    # it4 [.03, .04]: B token 2 (done at .04).
    res = simulate_replica(np.array([0.0, 0.015]), np.array([10, 5]), np.array([3, 2]),
                           _flat_costs(), max_batch=8)
    assert res.first_token_s.tolist() == pytest.approx([0.01, 0.03])
    assert res.finish_s.tolist() == pytest.approx([0.03, 0.04])
    assert res.iterations == 4
    assert res.busy_s == pytest.approx(0.04)
    assert res.busy_energy_j == pytest.approx(100.0 * 0.04)  # memory-bound all along: mem level


def test_batch_limit_queues_fcfs():
    # max batch 1: B waits for A to finish
    res = simulate_replica(np.array([0.0, 0.0]), np.array([4, 4]), np.array([2, 2]),
                           _flat_costs(), max_batch=1)
    assert res.finish_s.tolist() == pytest.approx([0.02, 0.04])
    assert res.first_token_s.tolist() == pytest.approx([0.01, 0.03])


def test_kv_budget_and_rejection():
    # budget 20 tokens: A (10+5) runs; B (10+5) must wait; C (30+1) can never fit
    res = simulate_replica(np.array([0.0, 0.0, 0.0]), np.array([10, 10, 30]),
                           np.array([5, 5, 1]), _flat_costs(budget=20), max_batch=8)
    assert res.finish_s[0] == pytest.approx(0.05)
    assert res.first_token_s[1] == pytest.approx(0.06)
    assert np.isnan(res.finish_s[2])


def test_closed_form_sum_matches_loop():
    rng = np.random.default_rng(3)
    for _ in range(200):
        a0, a1, b0, b1 = rng.uniform(0, 1, 4) * [1, 0.1, 1, 0.1]
        k = int(rng.integers(0, 50))
        loop = sum(max(a0 + a1 * j, b0 + b1 * j) for j in range(k))
        assert _sum_max_linear(a0, a1, b0, b1, k) == pytest.approx(loop, rel=1e-9, abs=1e-12)


def _trace(n=200, rate=5.0, seed=0) -> Trace:
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1 / rate, n))
    return Trace(arr - arr[0], rng.integers(50, 800, n), rng.integers(5, 200, n), "test")


def test_conservation(catalog):
    tr = _trace()
    res = simulate(tr, catalog, ClusterSpec("llama-3.1-8b", "a100-sxm4-80gb", replicas=3,
                                            max_batch=16))
    assert res.served.all()                                  # every request finishes once
    assert np.all(res.ttft_s > 0) and np.all(res.e2e_s >= res.ttft_s)
    assert res.output_tokens == int(tr.output_len.sum())
    # idle energy = provisioned time not busy × the GPU's idle floor (10 % of the A100's 400 W),
    # busy energy between the idle floor and the TDP for the busy time
    assert res.busy_s + res.idle_s == pytest.approx(res.duration_s * 3)
    assert res.idle_energy_j == pytest.approx(res.idle_s * 40.0)
    assert res.busy_s * 40.0 < res.busy_energy_j < res.busy_s * 400.0
    s = summary(res, carbon_of(res, catalog, "FR"), 1.0, 0.2).to_dict()
    for key in ("n_requests", "ttft_s", "tpot_s", "slo_attainment", "energy_j", "operational_g",
                "embodied_g", "total_g", "g_per_1k_tokens"):
        assert key in s
    assert set(s["ttft_s"]) >= {"p50", "p95", "p99"}
    assert s["total_g"] == pytest.approx(s["operational_g"] + s["embodied_g"])


def test_more_replicas_lower_latency(catalog):
    tr = _trace(400, rate=20.0)
    lat = [np.percentile(simulate(tr, catalog, ClusterSpec("llama-3.1-8b", "l4", replicas=r,
                                                           max_batch=32)).e2e_s, 95)
           for r in (1, 4)]
    assert lat[1] < lat[0]


@pytest.mark.parametrize("text,needle", [
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,10,-1\n",
     "row 2: GeneratedTokens -1 is not a whole number of tokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:01,10,5\n"
     "2023-11-16 18:00:00,10,5\n", "row 3: timestamp is earlier"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,10,5\n"
     "2023-11-16 18:00:00,10,5\n", "row 3: duplicate timestamp"),
    ("time,in,out\n1,2,3\n", "Azure format needs"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,ten,5\n", "row 2: Context"),
])
def test_bad_trace_rows(tmp_path: Path, text, needle):
    f = tmp_path / "t.csv"
    f.write_text(text)
    with pytest.raises(TokenprintError) as exc:
        load_trace(f)
    assert needle in str(exc.value)


def test_mooncake_bad_row(tmp_path: Path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 1}\n')
    with pytest.raises(TokenprintError, match="row 2"):
        load_trace(f)


def test_shared_traces_load(shared_data: Path):
    az = load_trace(shared_data / "traces/AzureLLMInferenceTrace_code.csv")
    assert az.n == 8819 and 3000 < az.duration_s < 3700 and az.start_s > 1.6e9
    mc = load_trace(shared_data / "traces/mooncake_fast25/conversation_trace.jsonl")
    assert mc.n > 10_000


def test_planner_finds_known_optimum(catalog):
    """Same load, two regions: the clean grid wins; more replicas than needed never win."""
    tr = _trace(150, rate=3.0)
    inp = PlanInputs(tr, ["llama-3.2-1b"], ["l4"], ["PL", "SE"], max_batches=[16],
                     slo_ttft_s=2.0, slo_tpot_s=0.2, max_replicas=8)
    a = plan(inp, catalog).to_dict()
    assert a["feasible"] and a["best"]["region"] == "SE"
    min_feasible = min(r["replicas"] for r in a["table"])
    assert a["best"]["replicas"] == min_feasible
    assert a["savings_pct"]["fewest-GPUs"] > 80  # PL (581-726 g/kWh) vs SE (23-41)
    assert {"latency-optimal", "energy-optimal", "fewest-GPUs"} == set(a["baselines"])
    assert a["pareto"] and all(p["feasible"] for p in a["pareto"])
    json.dumps(a)


def test_planner_reports_infeasibility(catalog):
    tr = _trace(100, rate=50.0)
    inp = PlanInputs(tr, ["llama-3.1-8b"], ["t4"], ["FR"], max_batches=[8],
                     slo_ttft_s=0.001, slo_tpot_s=0.2, max_replicas=2)
    a = plan(inp, catalog).to_dict()
    assert a["feasible"] is False and a["best"] is None
    assert "ttft" in a["failing_targets"]
    assert "closest" in a and "cannot be met" in a["message"]


def test_multi_region_split_respects_capacity(catalog):
    tr = _trace(300, rate=30.0)
    inp = PlanInputs(tr, ["llama-3.2-1b"], ["l4"], ["SE", "PL"], max_batches=[16],
                     slo_ttft_s=5.0, slo_tpot_s=0.5, max_replicas=16,
                     region_capacity={"SE": 1, "PL": 64})
    a = plan(inp, catalog).to_dict()
    split = a["multi_region"]["split"]
    assert split.get("SE", {"replicas": 0})["replicas"] <= 1
    assert sum(v["share"] for v in split.values()) == pytest.approx(1.0)


def test_milp_small():
    lp = LinearProgram()
    x = lp.var(1.0, 0, 10, integer=True)
    y = lp.var(3.0, 0, 10)
    lp.row(2.5, float("inf"), {x: 1.0, y: 1.0})
    sol = lp.solve()
    assert sol[x] == pytest.approx(3.0) and sol[y] == pytest.approx(0.0)


def test_simulate_cli_json(capsys, shared_data: Path):
    from tokenprint.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--trace", str(shared_data / "traces/AzureLLMInferenceTrace_code.csv"),
              "--model", "llama-3.1-8b", "--gpu", "h100", "--replicas", "4", "--region",
              "US-CAL-CISO", "--json"])
    assert exc.value.code in (0, None)
    d = json.loads(capsys.readouterr().out)
    assert d["n_requests"] == 8819 and 0 <= d["slo_attainment"] <= 1
    assert d["total_g"] > 0 and d["g_per_1k_tokens"] > 0


def test_time_shift_moves_deferrable_work_to_clean_hours(tmp_path: Path, catalog):
    from tokenprint.carbon import parse_time

    d = tmp_path / "hourly"
    d.mkdir()
    rows = ["timestamp,intensity_g_per_kwh"]
    for h in range(24):  # dirty at noon, clean from 15:00
        rows.append(f"2023-07-01T{h:02d}:00:00Z,{600 if h < 15 else 50}")
    for region in ("FR", "PL"):
        (d / f"{region}.csv").write_text("\n".join(rows) + "\n")
    tr = _trace(150, rate=3.0).shifted(parse_time("2023-07-01T12:00:00Z"))
    inp = PlanInputs(tr, ["llama-3.2-1b"], ["l4"], ["FR", "PL"], max_batches=[16],
                     slo_ttft_s=2.0, slo_tpot_s=0.2, max_replicas=8, intensity_dir=d,
                     deferrable=0.3, deadline_h=6)
    a = plan(inp, catalog).to_dict()
    shift = a["time_shift"]
    assert shift["solver"] == "HiGHS LP"
    assert sum(shift["placement"]) == pytest.approx(1.0)
    # the clean hours (15:00 to 18:00) take as much as their spare room holds, each as busy as
    # the trace: (1 - b) of the cluster for work taking b x 0.3 of it; the rest stays at noon
    b = shift["busy_share"]
    room = (1 - b) / (b * 0.3)
    late = sum(p for h, p in zip(shift["hours_utc"], shift["placement"], strict=True) if h >= 15)
    assert 0 < b < 1 and late == pytest.approx(min(1.0, 4 * room))
    assert shift["placement"][0] == pytest.approx(1.0 - late)
    assert shift["saving_g"] > 0
    assert a["intensity"] == "hourly files"


def test_plan_headline_keeps_the_capacities_and_breaks_near_ties(tmp_path, capsys):
    from conftest import run_cli

    base = ["plan", "--synthetic", "400,20", "--models", "llama-3.1-8b", "--gpus",
            "h100-sxm,l4", "--regions", "CA-QC,FR,PL", "--max-batch", "16,64", "--out",
            str(tmp_path / "p"), "--json"]
    code, out, _ = run_cli(capsys, *base)
    free = json.loads(out)
    code, out, _ = run_cli(capsys, *base, "--region-capacity", "CA-QC=1,FR=1")
    assert code == 0
    a = json.loads(out)
    b = a["best"]
    caps = {"CA-QC": 1, "FR": 1}
    if "split" in b:
        for region, part in b["split"].items():
            assert part["replicas"] * b["tp"] <= caps.get(region, 10**9)
    else:
        assert b["gpus_total"] <= caps.get(b["region"], 10**9)
    # savings are computed against the headline itself
    for k, base_g in a["baselines"].items():
        assert a["savings_pct"][k] == pytest.approx((1 - b["total_g"] / base_g) * 100)
    # a tie-break is explained, and the chosen plan is within the tolerance of the lowest
    tb = free["tie_break"]
    if tb is not None:
        assert tb["carbon_above_lowest_pct"] <= 1.0 + 1e-9
        assert free["best"]["e2e_s"] <= tb["lowest_carbon"]["e2e_s"]
    code, out, _ = run_cli(capsys, *base, "--tie-tolerance", "0")
    zero = json.loads(out)
    assert zero["tie_break"] is None
    assert zero["best"]["total_g"] == min(r["total_g"] for r in zero["all_feasible"])


def test_summary_keys_carry_the_result(catalog):
    tr = _trace()
    res = simulate(tr, catalog, ClusterSpec("llama-3.1-8b", "a100-sxm4-80gb", replicas=2,
                                            max_batch=16))
    c = carbon_of(res, catalog, "FR", pue=1.2).to_dict()
    s = summary(res, carbon_of(res, catalog, "FR", pue=1.2), 1.0, 0.2).to_dict()
    assert s["n_requests"] == tr.n and s["n_served"] == int(res.served.sum())
    assert s["n_rejected"] == tr.n - s["n_served"] and s["n_too_long"] == 0
    assert (s["model"], s["gpu"], s["replicas"], s["tp"], s["max_batch"]) == \
        ("llama-3.1-8b", "a100-sxm4-80gb", 2, 1, 16)
    assert s["energy_j"] == res.energy_j and s["busy_energy_j"] == res.busy_energy_j
    assert s["idle_energy_j"] == res.idle_energy_j and s["duration_s"] == res.duration_s
    assert s["gpu_busy_s"] == res.busy_s and s["gpu_idle_s"] == res.idle_s
    assert s["output_tokens"] == res.output_tokens
    assert s["throughput_tok_s"] == pytest.approx(res.output_tokens / res.duration_s)
    assert s["ttft_s"]["p50"] == pytest.approx(float(np.percentile(res.ttft_s, 50)))
    assert s["tpot_s"]["p99"] == pytest.approx(float(np.percentile(res.tpot_s, 99)))
    ok = res.slo_mask(1.0, 0.2)
    assert s["slo_attainment"] == pytest.approx(ok.sum() / tr.n)
    assert s["slo"] == {"ttft_s": 1.0, "tpot_s": 0.2}
    assert s["total_g"] == c["total_g"] and s["pue"] == 1.2
    assert s["total_range_g"]["low"] <= s["total_g"] <= s["total_range_g"]["high"]
    assert s["g_per_1k_slo_tokens"] == pytest.approx(
        c["total_g"] / int(res.output_len[ok].sum()) * 1000)
    assert s["source"] == "predicted" and s["stack"] == "vllm-2025"


def test_plan_gives_one_total_per_placement_with_its_basis(tmp_path: Path, catalog):
    """The capacity split charges each region over the trace's own hours, as the single-region
    rows do: keeping the whole load in one region costs what that region's row says (it was
    charged at the file's yearly mean before: 6.31 g against 5.01 g for the same placement)."""
    from tokenprint.carbon import parse_time

    d = tmp_path / "hourly"
    d.mkdir()
    rows = ["timestamp,intensity_g_per_kwh"]
    for day in (1, 2):
        for h in range(24):   # clean at noon of day 1, dirty the rest of the file
            rows.append(f"2023-07-{day:02d}T{h:02d}:00:00Z,{40 if day == 1 and h == 12 else 700}")
    for region in ("FR", "PL"):
        (d / f"{region}.csv").write_text("\n".join(rows) + "\n")
    tr = _trace(150, rate=3.0).shifted(parse_time("2023-07-01T12:00:00Z"))
    inp = PlanInputs(tr, ["llama-3.2-1b"], ["l4"], ["FR", "PL"], max_batches=[16],
                     slo_ttft_s=2.0, slo_tpot_s=0.2, max_replicas=8, intensity_dir=d,
                     region_capacity={"FR": 64, "PL": 64})
    a = plan(inp, catalog).to_dict()
    best = a["best"]
    row = next(r for r in a["table"] if r["region"] == best["region"]
               and r["replicas"] == best["replicas"] and r["max_batch"] == best["max_batch"])
    split = a["multi_region"]
    assert [v["share"] for v in split["split"].values()] == pytest.approx([1.0])
    assert split["total_g"] == pytest.approx(row["total_g"], rel=1e-9)
    assert best["total_g"] == pytest.approx(row["total_g"], rel=1e-9)
    # the basis is said, and the per-token figure comes with it
    assert "over the trace's own hours" in a["intensity_basis"]
    assert best["g_per_1k_tokens"] > 0 and a["trace_duration_s"] > 0


def test_summary_says_when_the_queue_grows_without_bound(catalog):
    """One L4 against 40 requests a second falls further behind with every arrival: the latest
    tenth waits far longer than the earliest, and the summary (and simulate's terminal) says so;
    eight keep up and it does not."""
    tr = _trace(2000, rate=40.0)
    out = {}
    for reps in (1, 8):
        res = simulate(tr, catalog, ClusterSpec("llama-3.2-1b", "l4", replicas=reps,
                                                max_batch=32))
        s = summary(res, carbon_of(res, catalog, "FR"), 1.0, 0.2)
        out[reps] = s
        assert s.to_dict()["queue"]["grows"] == s.queue_grows
    slow, fast = out[1], out[8]
    assert slow.queue_grows and slow.ttft_last_tenth_s > 4 * slow.ttft_first_tenth_s
    assert not fast.queue_grows
    json.dumps(slow.to_dict())
