"""A cluster simulation and its carbon, worked out by hand on a flat cost model.

Every iteration takes 10 ms at 100 W (memory-bound on the weights alone); a GPU idles at 10 W.
Two replicas, round-robin; requests at 0, 0, 1 and 1 s (10 tokens in, 2 out) and a fifth too long
for the model's context. Each replica serves one request in [0, 0.02] and one in [1, 1.02]:
first tokens 10 ms after arrival, finishes 20 ms after it.
"""

from __future__ import annotations

import numpy as np
import pytest

from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries
from tokenprint.errors import TokenprintError
from tokenprint.simulate import cluster
from tokenprint.simulate.cluster import (
    MAX_REPLICAS,
    ClusterSpec,
    Percentiles,
    assign,
    carbon_of,
    simulate,
    summary,
)
from tokenprint.simulate.replica import ReplicaCosts
from tokenprint.traces import Trace
from tokenprint.units import S_PER_YEAR

T0 = 1688169600.0   # an hour boundary
FLAT = ReplicaCosts(flops_per_s=1e30, bytes_per_s=1.0, matmul_flops_per_token=0.0,
                    attn_flops_per_ctx=0.0, dense_weight_bytes=0.01, expert_bytes=0.0,
                    n_experts=0.0, experts_per_token=0.0, kv_bytes_per_token=0.0,
                    step_overhead_s=0.0, seq_overhead_s=0.0, comm_s_per_token=0.0,
                    comm_fixed_s=0.0, idle_w=10.0, base_w=50.0, mem_w=100.0, peak_w=200.0,
                    power_exponent=1.0, kv_budget_tokens=10_000)
INFO = {"stack": "test-stack", "profile": "flat", "calibrated": False,
        "calibration": "flat costs", "kv_budget_tokens": 10_000}


@pytest.fixture
def flat(monkeypatch):
    monkeypatch.setattr(cluster, "step_costs", lambda *a, **k: (FLAT, dict(INFO)))


def _trace(start_s: float = 0.0) -> Trace:
    return Trace(np.array([0.0, 0.0, 1.0, 1.0, 1.0]), np.array([10, 10, 10, 10, 10**6]),
                 np.array([2, 2, 2, 2, 2]), "hand", start_s)


def _spec(**kw) -> ClusterSpec:
    return ClusterSpec(model="llama-3.1-8b", gpu="l4", replicas=2, balance="round-robin", **kw)


def test_simulation_by_hand(catalog, flat):
    res = simulate(_trace(), catalog, _spec())
    served = res.served
    assert served.tolist() == [True, True, True, True, False]
    np.testing.assert_allclose(res.ttft_s[:4], 0.01)
    np.testing.assert_allclose(res.tpot_s[:4], 0.01)
    np.testing.assert_allclose(res.e2e_s[:4], 0.02)
    assert res.duration_s == pytest.approx(1.02)
    assert res.busy_s == pytest.approx(0.08) and res.busy_energy_j == pytest.approx(8.0)
    assert res.idle_s == pytest.approx(2 * 1.02 - 0.08)
    assert res.idle_energy_j == pytest.approx((2 * 1.02 - 0.08) * 10.0)
    assert res.energy_j == pytest.approx(8.0 + 19.6)
    assert res.output_tokens == 8 and res.n_requests == 5
    assert res.info["n_too_long"] == 1 and res.info["n_rejected"] == 1
    assert res.info["iterations"] == 8 and res.info["stack"] == "test-stack"
    assert res.slo_mask(0.0101, 0.0101).tolist() == [True] * 4 + [False]
    assert not res.slo_mask(0.009, 1.0).any() and not res.slo_mask(1.0, 0.009).any()
    assert res.hourly == {} and res.hourly_span == {}


def test_summary_by_hand(catalog, flat):
    res = simulate(_trace(), catalog, _spec())
    c = carbon_of(res, catalog, "FR")
    s = summary(res, c, slo_ttft_s=0.0101, slo_tpot_s=0.0101, region="FR")
    d = s.to_dict()
    assert (d["n_requests"], d["n_served"], d["n_rejected"], d["n_too_long"]) == (5, 4, 1, 1)
    assert d["ttft_s"] == {"p50": pytest.approx(0.01), "p95": pytest.approx(0.01),
                           "p99": pytest.approx(0.01), "mean": pytest.approx(0.01)}
    assert d["slo_attainment"] == pytest.approx(0.8)
    assert d["throughput_tok_s"] == pytest.approx(8 / 1.02)
    assert d["g_per_1k_slo_tokens"] == pytest.approx(c.total_g.mid / 8 * 1000)
    assert d["g_per_1k_tokens"] == pytest.approx(c.total_g.mid / 8 * 1000)
    assert d["region"] == "FR" and d["source"] == "predicted" and d["iterations"] == 8
    assert (d["stack"], d["profile"], d["calibrated"], d["calibration"]) == \
        ("test-stack", "flat", False, "flat costs")
    strict = summary(res, c, slo_ttft_s=0.001, slo_tpot_s=0.01).to_dict()
    assert strict["slo_attainment"] == 0.0 and strict["g_per_1k_slo_tokens"] is None
    assert "region" not in strict
    assert Percentiles.of(np.array([np.nan, np.inf])) == Percentiles(None, None, None, None)
    p = Percentiles.of(np.array([1.0, 2.0, 3.0, 4.0, np.nan]))
    assert (p.p50, p.mean) == (2.5, 2.5) and p.p99 == pytest.approx(3.97)


def test_carbon_with_annual_intensity_by_hand(catalog, flat):
    res = simulate(_trace(), catalog, _spec())
    c = carbon_of(res, catalog, "FR", scope="card", lifetime_years=4.0, pue=1.5)
    reg = catalog.region("FR")
    ci = reg.intensity_g_per_kwh.estimate
    kwh = 27.6 / 3.6e6
    assert (c.operational_g.low, c.operational_g.mid, c.operational_g.high) == pytest.approx(
        (kwh * 1.5 * ci.low, kwh * 1.5 * ci.mid, kwh * 1.5 * ci.high))
    one = gpu_embodied(catalog.gpu("l4"), catalog, "card").total_g
    share = 1.02 / (4.0 * S_PER_YEAR) * 2
    assert (c.embodied_g.low, c.embodied_g.mid, c.embodied_g.high) == pytest.approx(
        (one.low * share, one.mid * share, one.high * share))
    d = c.to_dict()
    assert d["total_g"] == pytest.approx(d["operational_g"] + d["embodied_g"])
    assert d["total_range_g"]["low"] == pytest.approx(c.operational_g.low + c.embodied_g.low)
    assert d["total_range_g"]["high"] == pytest.approx(c.operational_g.high + c.embodied_g.high)
    assert d["operational_range_g"] == {"low": pytest.approx(kwh * 1.5 * ci.low),
                                        "high": pytest.approx(kwh * 1.5 * ci.high)}
    assert d["intensity_g_per_kwh"] == ci.mid and d["scope"] == "card" and d["pue"] == 1.5
    assert d["sources"]["intensity"] == (f"FR annual ({reg.basis}, {reg.year}): "
                                         f"{reg.intensity_g_per_kwh.source}")
    assert d["sources"]["lifetime"] == "4 years over provisioned time (2 GPUs × 1 s)"
    assert "die" in d["sources"]


def test_carbon_hour_by_hour_by_hand(catalog, flat):
    """The trace starts half a second before the hour: each replica's first request and half a
    second of its provisioned time fall in the earlier hour. Earlier hour: 4 J busy + (1.0 −
    0.04) s × 10 W idle = 13.6 J at 100 g/kWh; later hour: 4 J + (1.04 − 0.04) × 10 = 14 J at
    300 g/kWh."""
    res = simulate(_trace(T0 - 0.5), catalog, _spec(), hourly=True)
    h0 = int(T0 // 3600)
    assert res.hourly_span == {h0 - 1: pytest.approx(1.0), h0: pytest.approx(1.04)}
    assert res.hourly[h0 - 1] == pytest.approx((0.04, 4.0))
    assert res.hourly[h0] == pytest.approx((0.04, 4.0))
    series = IntensitySeries(T0 - 3600.0, 3600.0, np.array([100.0, 300.0]), source="s.csv")
    c = carbon_of(res, catalog, "FR", pue=1.1, intensity=series)
    want = (13.6 * 100.0 + 14.0 * 300.0) / 3.6e6 * 1.1
    assert c.operational_g.low == c.operational_g.mid == c.operational_g.high
    assert c.operational_g.mid == pytest.approx(want)
    assert c.intensity_g_per_kwh == pytest.approx((13.6 * 100 + 14.0 * 300) / 27.6)
    assert c.sources["intensity"] == "s.csv (lifecycle), hour by hour"
    plain = simulate(_trace(T0 - 0.5), catalog, _spec())
    with pytest.raises(TokenprintError) as exc:
        carbon_of(plain, catalog, "FR", intensity=series)
    assert str(exc.value) == ("hourly intensity needs the simulation run with hourly=True "
                              "(give --start)")


def test_assignment_by_hand(catalog, flat):
    # work per request: 1 ms per input token (compute) + 1/16 s per output token (weights)
    costs = ReplicaCosts(**{**FLAT.__dict__, "flops_per_s": 1000.0,
                            "matmul_flops_per_token": 1.0, "dense_weight_bytes": 1.0})
    tr = Trace(np.array([0.0, 0.0, 0.0, 5.0]), np.array([10_000, 1_000, 1_000, 1_000]),
               np.array([1, 1, 1, 1]), "w")
    # weights 10.06, 1.06, 1.06, 1.06: r0 takes the big one; r1 the next two (free at 1.06,
    # then 2.12); at t = 5 r1 is free again before r0 (10.06)
    assert assign(tr, 2, "least-work", costs).tolist() == [0, 1, 1, 1]
    assert assign(tr, 3, "least-work", costs).tolist() == [0, 1, 2, 1]
    assert assign(tr, 3, "round-robin", costs).tolist() == [0, 1, 2, 0]
    assert assign(tr, 1, "least-work", costs).tolist() == [0, 0, 0, 0]
    # replica indices are integers whatever the balancer (a float index cannot select one)
    for reps, balance in ((1, "least-work"), (2, "least-work"), (3, "round-robin")):
        assert assign(tr, reps, balance, costs).dtype == np.int64
    with pytest.raises(TokenprintError) as exc:
        assign(tr, 2, "random", costs)
    assert str(exc.value) == "unknown balancer 'random'; valid: round-robin, least-work"


@pytest.mark.parametrize("kw, message", [
    ({"replicas": 0}, f"replicas 0 is invalid; it must be >= 1 and <= {MAX_REPLICAS:,}"),
    ({"replicas": MAX_REPLICAS + 1},
     f"replicas {MAX_REPLICAS + 1} is invalid; it must be >= 1 and <= {MAX_REPLICAS:,}"),
    ({"max_batch": 0}, "max batch 0 is invalid; it must be >= 1"),
])
def test_cluster_limits_named(catalog, flat, kw, message):
    spec = ClusterSpec(model="llama-3.1-8b", gpu="l4", **kw)
    with pytest.raises(TokenprintError) as exc:
        simulate(_trace(), catalog, spec)
    assert str(exc.value) == message


def test_json_keys_are_the_contract(catalog, flat):
    res = simulate(_trace(), catalog, _spec())
    c = carbon_of(res, catalog, "FR")
    assert set(c.to_dict()) == {
        "operational_g", "embodied_g", "total_g", "operational_range_g", "embodied_range_g",
        "total_range_g", "intensity_g_per_kwh", "g_per_1k_tokens", "scope", "pue", "sources"}
    for k in ("operational_range_g", "embodied_range_g", "total_range_g"):
        assert set(c.to_dict()[k]) == {"low", "high"}
    emb = c.to_dict()["embodied_range_g"]
    assert (emb["low"], emb["high"]) == pytest.approx((c.embodied_g.low, c.embodied_g.high))
    s = summary(res, c, 1.0, 1.0).to_dict()
    assert {"trace", "e2e_s", "kv_budget_tokens", "tpot_s", "ttft_s", "slo", "n_rejected",
            "throughput_tok_s", "gpu_busy_s", "gpu_idle_s", "busy_energy_j",
            "idle_energy_j", "energy_j"} <= set(s)
    assert s["trace"] == "hand" and s["kv_budget_tokens"] == 10_000
    assert s["e2e_s"]["p50"] == pytest.approx(0.02)
    assert carbon_of(res, catalog, "FR").to_dict() == \
        carbon_of(res, catalog, "FR", lifetime_years=5.0, pue=1.0).to_dict()   # the defaults


def test_edges_of_a_simulation(catalog, monkeypatch):
    roomy = ReplicaCosts(**{**FLAT.__dict__, "kv_budget_tokens": 10**7})
    monkeypatch.setattr(cluster, "step_costs", lambda *a, **k: (roomy, dict(INFO)))
    # one request per replica, the first arriving at 5 s; the second replica's request is one
    # token long (TPOT 0) and exactly fills the context
    ctx = catalog.model("llama-3.1-8b").max_context
    tr = Trace(np.array([5.0, 5.0]), np.array([10, ctx - 1]), np.array([3, 1]), "edge")
    res = simulate(tr, catalog, ClusterSpec(model="llama-3.1-8b", gpu="l4", replicas=2,
                                            max_batch=1, balance="round-robin"))
    assert res.served.tolist() == [True, True]                 # input + output == context fits
    assert res.duration_s == pytest.approx(0.03)                # from the first arrival
    assert res.tpot_s[1] == 0.0 and res.tpot_s[0] == pytest.approx(0.01)
    assert res.idle_s == pytest.approx(2 * 0.03 - 0.04)
    one = Trace(np.array([0.0]), np.array([ctx]), np.array([1]), "long")
    assert simulate(one, catalog, ClusterSpec(model="llama-3.1-8b", gpu="l4")).info[
        "n_too_long"] == 1
    big = ClusterSpec(model="llama-3.1-8b", gpu="l4", replicas=MAX_REPLICAS,
                      balance="round-robin")
    assert simulate(Trace(np.array([0.0]), np.array([5]), np.array([2]), "x"), catalog,
                    big).served.all()


def test_hours_without_work_are_charged_idle(catalog, flat):
    """Requests at 0 s and 7,200 s from half a second before the hour: the hour after it holds
    only idle time (3,600 s × 2 replicas × 10 W); the run ends 7,199.52 s into the next."""
    tr = Trace(np.array([0.0, 0.0, 7200.0, 7200.0]), np.array([10] * 4), np.array([2] * 4),
               "gap", T0 - 0.5)
    res = simulate(tr, catalog, _spec(), hourly=True)
    h0 = int(T0 // 3600)
    assert h0 not in res.hourly and res.hourly_span[h0] == pytest.approx(7200.0)
    series = IntensitySeries(T0 - 3600.0, 3600.0, np.array([100.0, 200.0, 300.0, 400.0]))
    c = carbon_of(res, catalog, "FR", intensity=series)
    e = [4.0 + (1.0 - 0.04) * 10.0, 7200.0 * 10.0, 4.0 + (2 * 3599.52 - 0.04) * 10.0]
    want = (e[0] * 100 + e[1] * 200 + e[2] * 300) / 3.6e6
    assert c.operational_g.mid == pytest.approx(want, rel=1e-6)


def test_least_work_weighs_prefill_and_decode(catalog):
    # prefill 1 ms per input token; decode 1/16 s per output token
    costs = ReplicaCosts(**{**FLAT.__dict__, "flops_per_s": 1000.0,
                            "matmul_flops_per_token": 1.0, "dense_weight_bytes": 1.0})
    # r0 takes a (1 s of prefill), r1 takes b (10 × 1/16 s of decode = 0.625 s); c goes to r1,
    # the one that frees first
    tr = Trace(np.array([0.0, 0.0, 0.0]), np.array([1000, 1, 1]), np.array([1, 10, 1]), "w")
    assert assign(tr, 2, "least-work", costs).tolist() == [0, 1, 1]
    # at t = 0.5 both are still busy with nothing queued: equal backlogs go to the first
    late = Trace(np.array([0.0, 0.0, 0.5]), np.array([1000, 1000, 1]), np.array([1, 1, 1]), "l")
    assert assign(late, 2, "least-work", costs).tolist() == [0, 1, 0]
    assert assign(tr, 2, "least-work", costs).dtype == np.int64


def test_closed_form_sum_on_exact_crossings():
    from tokenprint.simulate.replica import _sum_max_linear

    def loop(a0, a1, b0, b1, k):
        return sum(max(a0 + a1 * j, b0 + b1 * j) for j in range(k))

    cases = [(1.0, 0.5, 1.0, 0.5, 7), (2.0, 0.5, 1.0, 0.5, 7), (1.0, 0.5, 2.0, 0.5, 7),
             (0.0, 1.0, 3.0, 0.0, 8), (3.0, 0.0, 0.0, 1.0, 8), (0.0, 1.0, 3.0, 0.0, 3),
             (0.0, 1.0, 3.0, 0.0, 4), (5.0, 1.0, 0.0, 2.0, 1), (0.0, 2.0, 5.0, 1.0, 0),
             (1.0, 2.0, 0.0, 1.0, 6), (0.0, 1.0, 1.0, 0.0, 1)]
    for a0, a1, b0, b1, k in cases:
        assert _sum_max_linear(a0, a1, b0, b1, k) == pytest.approx(loop(a0, a1, b0, b1, k)), \
            (a0, a1, b0, b1, k)


def test_a_request_that_exactly_fills_the_kv_budget_runs():
    from tokenprint.simulate.replica import simulate_replica

    tight = ReplicaCosts(**{**FLAT.__dict__, "kv_budget_tokens": 20})
    res = simulate_replica(np.array([0.0, 0.0]), np.array([15, 16]), np.array([5, 5]),
                           tight, max_batch=8)
    assert res.finish_s[0] == pytest.approx(0.05)               # 15 + 5 = 20: fits exactly
    assert np.isnan(res.finish_s[1])                             # 16 + 5 = 21: never fits
    two = simulate_replica(np.array([0.0, 0.0]), np.array([5, 5]), np.array([5, 5]),
                           tight, max_batch=8)
    assert two.first_token_s.tolist() == pytest.approx([0.01, 0.01])   # 10 + 10 = 20: together


def test_percentiles_and_targets_at_their_edges(catalog, flat):
    p = Percentiles.of(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (p.p95, p.p99) == pytest.approx((3.85, 3.97))
    res = simulate(_trace(), catalog, _spec())
    assert res.slo_mask(0.01, 1.0)[:2].all()          # a TTFT equal to its target meets it
    assert res.slo_mask(1.0, 0.01)[:2].all()
