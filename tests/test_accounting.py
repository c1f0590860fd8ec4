"""The gateway's arithmetic without a server: energy attribution, request carbon, routing order.

Every expected figure is derived by hand in the comments, so a changed formula fails here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.gateway.accounting import (
    RequestEnergy,
    UpstreamModel,
    WorkShareAttributor,
    carbon_of_request,
)
from tokenprint.gateway.config import UpstreamConfig
from tokenprint.gateway.ledger import COLUMNS, RequestOutcome
from tokenprint.gateway.routing import Router, UpstreamState
from tokenprint.predict.params import idle_w
from tokenprint.units import S_PER_YEAR


class _FakeCounter:
    def __init__(self) -> None:
        self.j = 0.0

    def read_j(self) -> float:
        return self.j


def test_work_share_attribution_by_hand():
    src = _FakeCounter()
    att = WorkShareAttributor(prefill_cost_j=0.001, decode_cost_j=0.01, source=src)
    att.start("a", 100, now=0.0, ttft_guess_s=1.0)   # a: prefill 100 tokens during [0, 1]
    src.j = 50.0
    att.tick(now=1.0)                             # only a in flight: all 50 J to a's prefill
    att.progress("a", 1, now=1.0)
    att.start("b", 100, now=1.0, ttft_guess_s=1.0)   # b joins; its prefill spans [1, 2]
    src.j = 80.0
    att.progress("a", 11, now=2.0)                # a: 10 decode tokens in [1, 2]
    att.progress("b", 1, now=2.0)
    att.tick(now=2.0)                             # 30 J: a 10 × 0.01 = 0.1, b 100 × 0.001 = 0.1
    ea = att.finish("a", 11, now=2.0)
    eb = att.finish("b", 1, now=2.0)
    assert ea.prefill_j == pytest.approx(50.0)
    assert ea.decode_j == pytest.approx(15.0)
    assert eb.prefill_j == pytest.approx(15.0)
    assert eb.decode_j == pytest.approx(0.0)
    assert ea.energy_j + eb.energy_j == pytest.approx(80.0)   # nothing lost, nothing twice
    src.j = 90.0
    att.tick(now=3.0)                             # nobody in flight: idle, unattributed
    assert att.idle_j == pytest.approx(10.0)
    assert ea.method == "measured"


def test_guessed_and_streamed_requests_share_by_hand():
    """a is not streamed (its first token placed at the TTFT guess, decode at the TPOT guess);
    b streams. Interval [0, 2], 100 J:
    a: prefill 0.001 J × 100 tokens × 1 s of its 1 s prefill = 0.1; decode (2 − 1) / 0.1 = 10
       tokens × 0.01 = 0.1.  b: prefill 0.001 × 300 × 0.5 / 0.5 = 0.3; decode 6 − 1 = 5 tokens
       × 0.01 = 0.05.  Total work 0.55."""
    src = _FakeCounter()
    att = WorkShareAttributor(prefill_cost_j=0.001, decode_cost_j=0.01, source=src)
    att.start("a", 100, now=0.0, ttft_guess_s=1.0, tpot_guess_s=0.1)
    att.start("b", 300, now=0.0)
    att.progress("b", 1, now=0.5)
    att.progress("b", 6, now=2.0)
    src.j = 100.0
    att.tick(now=2.0)
    ea = att.finish("a", 0, now=2.0)
    eb = att.finish("b", 6, now=2.0)
    assert ea.prefill_j == pytest.approx(100 * 0.1 / 0.55)
    assert ea.decode_j == pytest.approx(100 * 0.1 / 0.55)
    assert eb.prefill_j == pytest.approx(100 * 0.3 / 0.55)
    assert eb.decode_j == pytest.approx(100 * 0.05 / 0.55)


def test_interval_inside_a_prefill_counts_only_the_overlap():
    """a's guessed prefill spans [0, 4]; the interval [1, 2] holds a quarter of it:
    0.001 × 400 × 1 / 4 = 0.1. b streams 3 decode tokens in it: 0.03. 13 J → 10 and 3."""
    src = _FakeCounter()
    att = WorkShareAttributor(prefill_cost_j=0.001, decode_cost_j=0.01, source=src)
    att.start("a", 400, now=0.0, ttft_guess_s=4.0)
    att.start("b", 0, now=0.0)
    att.progress("b", 1, now=0.0)
    src.j = 7.0
    att.tick(now=1.0)                  # [0, 1]: a 0.1 of prefill, b no work → all 7 J to a
    att.progress("b", 4, now=2.0)
    src.j = 20.0
    att.tick(now=2.0)
    ea = att.finish("a", 0, now=2.0)
    eb = att.finish("b", 4, now=2.0)
    assert ea.prefill_j == pytest.approx(7.0 + 10.0)
    assert ea.decode_j == pytest.approx(0.0)
    assert eb.decode_j == pytest.approx(3.0)
    assert eb.prefill_j == pytest.approx(0.0)


def test_interval_without_work_is_shared_evenly_as_prefill():
    src = _FakeCounter()
    att = WorkShareAttributor(0.001, 0.01, src)
    att.start("a", 0, now=0.0)
    att.start("b", 0, now=0.0)
    src.j = 10.0
    att.tick(now=0.1)                  # before either guessed first token: no work at all
    ea, eb = att.finish("a", 0, now=0.1), att.finish("b", 0, now=0.1)
    assert (ea.prefill_j, eb.prefill_j) == pytest.approx((5.0, 5.0))
    assert (ea.decode_j, eb.decode_j) == (0.0, 0.0)


def test_finish_uses_the_reported_prompt_and_unknown_ids_get_nothing():
    src = _FakeCounter()
    att = WorkShareAttributor(0.001, 0.01, src)
    att.start("a", 10, now=0.0, ttft_guess_s=1.0)
    att.start("b", 10, now=0.0, ttft_guess_s=1.0)
    src.j = 40.0
    ea = att.finish("a", 0, now=1.0, prompt_tokens=30)   # a really had 30 tokens: 3 to 1
    assert ea.prefill_j == pytest.approx(30.0)
    assert att.finish("nobody", 5, now=1.0) == RequestEnergy(0.0, 0.0, "measured")
    assert att.idle_j == 0.0


def test_idle_spread_mode():
    src = _FakeCounter()
    att = WorkShareAttributor(0.001, 0.01, src, idle_mode="spread")
    src.j = 10.0
    att.tick(now=1.0)                             # idle: pooled
    att.start("a", 10, now=1.0)
    src.j = 15.0
    e = att.finish("a", 0, now=2.0)
    assert e.energy_j == pytest.approx(15.0) and att.idle_j == 0.0


def test_a_counter_going_backwards_adds_nothing():
    src = _FakeCounter()
    src.j = 100.0
    att = WorkShareAttributor(0.001, 0.01, src)
    att.start("a", 10, now=0.0)
    src.j = 40.0                                  # counter reset: no negative energy
    assert att.finish("a", 1, now=1.0).energy_j == 0.0


def test_carbon_of_request_by_hand():
    """1 kWh (3.6 MJ) at 500 g/kWh and PUE 1.5 is 750 g; embodied 0.01 g/s × 10 s shared by 4
    is 0.025 g; a concurrency under 1 counts as 1."""
    e = RequestEnergy(prefill_j=1.0e6, decode_j=2.6e6, method="predicted")
    rate = 0.01 * 5.0 * S_PER_YEAR                     # 0.01 g/s over a 5-year lifetime
    c = carbon_of_request(e, 500.0, 1.5, rate, 5.0, 10.0, 4.0, "annual", "FR").to_dict()
    assert c["energy_j"] == pytest.approx(3.6e6)
    assert (c["prefill_j"], c["decode_j"]) == (1.0e6, 2.6e6)
    assert c["operational_g"] == pytest.approx(750.0)
    assert c["embodied_g"] == pytest.approx(0.025)
    assert c["total_g"] == pytest.approx(750.025)
    assert c["intensity_g_per_kwh"] == 500.0
    assert (c["method"], c["intensity_source"], c["region"]) == ("predicted", "annual", "FR")
    assert carbon_of_request(e, 500.0, 1.5, rate, 5.0, 10.0, 0.5).embodied_g == \
        pytest.approx(0.1)


def test_ledger_row_puts_every_value_in_its_column(tmp_path):
    e = RequestEnergy(prefill_j=1.0, decode_j=2.0, method="measured")
    fp = carbon_of_request(e, 100.0, 1.0, 0.0, 5.0, 1.0, 1.0, "live", "FR")
    rec = RequestOutcome(id="r", time_utc=5.0, upstream="u", model="m", region="FR",
                         endpoint="completions", status=200, prompt_tokens=7,
                         completion_tokens=3, footprint=fp, note="n")
    row = dict(zip(COLUMNS, rec.row("run-1"), strict=True))
    assert row["run_id"] == "run-1" and row["id"] == "r" and row["prompt_tokens"] == 7
    assert (row["energy_j"], row["prefill_j"], row["decode_j"]) == (3.0, 1.0, 2.0)
    assert row["method"] == "measured" and row["intensity_source"] == "live"
    assert row["total_g"] == pytest.approx(3.0 / 3.6e6 * 100.0) and row["note"] == "n"
    bare = dict(zip(COLUMNS, RequestOutcome("x", 1.0, "u", "m", "FR", "chat", 502)
                    .row("run-1"), strict=True))
    assert bare["energy_j"] is None and bare["method"] is None and bare["status"] == 502


def test_upstream_model_costs_by_hand(catalog):
    m = UpstreamModel(catalog, "llama-3.1-8b", "h100-sxm", 2, "card", 5.0)
    g = catalog.gpu("h100-sxm")
    emb_g = gpu_embodied(g, catalog, "card").total_g.mid * 2
    assert m.embodied_g_per_s == pytest.approx(emb_g / (5.0 * S_PER_YEAR))
    assert m.idle_w == pytest.approx(2 * idle_w(g))
    assert m.tp == 2 and m.stack == "vllm-2025"
    one, eight = m.energy(512, 128, 1), m.energy(512, 128, 8)
    assert one.method == "predicted" and one.prefill_j > 0 and one.decode_j > 0
    assert eight.energy_j < one.energy_j               # batching shares the weight reads
    assert m.energy(512, 128, 2.4) == m.energy(512, 128, 2)   # rounded to whole requests
    assert m.energy(512, 128, 0.2) == m.energy(512, 128, 1)
    assert m.energy(512, 1, 1).decode_j == 0.0          # the one token comes from the prefill
    assert m.energy(1024, 128, 1).prefill_j > one.prefill_j
    pre_j, dec_j = m.cost_per_token()
    assert 0 < pre_j < dec_j                           # a decode token re-reads the weights


@dataclass
class _FakeModel:
    energy_j: float = 3.6e6
    embodied_g: float = 0.0
    lifetime_years: float = 5.0
    asked: list[float] = field(default_factory=list)
    calls: list[tuple[int, int, float]] = field(default_factory=list)

    def energy(self, prompt_tokens: int, completion_tokens: int, concurrency: float
               ) -> RequestEnergy:
        self.asked.append(concurrency)
        self.calls.append((prompt_tokens, completion_tokens, concurrency))
        return RequestEnergy(self.energy_j, 0.0, "predicted")


def _state(name: str, intensity: float = 100.0, capacity: int = 64, inflight: int = 0,
           p95_s: float | None = None, model: _FakeModel | None = None) -> UpstreamState:
    cfg = UpstreamConfig(name=name, url="http://127.0.0.1:1/v1", model="tiny", gpu="l4",
                         region="FR", capacity=capacity)
    s = UpstreamState(cfg=cfg, model=model or _FakeModel(), inflight=inflight)  # type: ignore[arg-type]
    s.intensity = intensity
    if p95_s is not None:
        s.latencies.append((time.monotonic(), p95_s))
    return s


def test_expected_carbon_by_hand():
    """1 kWh at 200 g/kWh and PUE 1.2 = 240 g; embodied 0.5 g/s over the nominal 6.6 s request
    shared by the 3 in flight with it (2 + itself) = 1.1 g."""
    fake = _FakeModel(embodied_g=0.5 * 5.0 * S_PER_YEAR)   # 0.5 g/s over 5 years
    s = _state("a", intensity=200.0, inflight=2, model=fake)
    assert s.expected_carbon_g(1.2) == pytest.approx(240.0 + 0.5 * 6.6 / 3)
    assert fake.asked == [3]
    _state("b", inflight=5000, model=fake).expected_carbon_g(1.0)
    assert fake.asked[-1] == 1024                      # the prediction's concurrency is capped


def test_carbon_policy_order():
    clean, dirty = _state("clean", 50.0), _state("dirty", 400.0)
    slow_clean = _state("slow", 10.0, p95_s=9.0)   # misses the 2 s target: goes after those that do
    full = _state("full", 1.0, capacity=1, inflight=1)
    down = _state("down", 1.0)
    down.healthy = False
    r = Router("carbon", latency_target_s=2.0, pue=1.1)
    order = [u.name for u in r.order([dirty, down, full, slow_clean, clean])]
    assert order == ["clean", "dirty", "slow", "full", "down"]


def test_latency_and_round_robin_orders():
    fast, slow = _state("fast", p95_s=0.1), _state("slow", p95_s=1.0)
    assert [u.name for u in Router("latency", 2.0, 1.0).order([slow, fast])] == ["fast", "slow"]
    busy, idle = _state("busy", inflight=5), _state("idle", inflight=0)   # no latency yet: by load
    assert [u.name for u in Router("latency", 2.0, 1.0).order([busy, idle])] == ["idle", "busy"]
    a, b, c = _state("a"), _state("b"), _state("c")
    rr = Router("round-robin", 2.0, 1.0)
    assert [[u.name for u in rr.order([a, b, c])] for _ in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    held = _state("held")
    held.open_until = time.monotonic() + 60
    assert [u.name for u in rr.order([held, a])] == ["a", "held"]


def test_breaker_and_p95():
    s = _state("a")
    s.record_failure(threshold=3, open_s=30.0)
    s.record_failure(threshold=3, open_s=30.0)
    assert s.available(time.monotonic()) and s.failures == 2
    s.record_success(0.5)
    assert s.failures == 0                              # a success resets the count
    for _ in range(3):
        s.record_failure(threshold=3, open_s=30.0)
    now = time.monotonic()
    assert not s.available(now) and s.available(now + 31.0) and s.failures == 0
    t = _state("t")
    t.latencies.append((time.monotonic() - 1000.0, 99.0))   # outside the 300 s window
    for lat in range(1, 101):
        t.latencies.append((time.monotonic(), float(lat)))
    assert t.p95_latency_s() == pytest.approx(95.05)
    assert _state("empty").p95_latency_s() is None
    cfg = UpstreamConfig(name="n", url="http://h/v1", model="m", served_model="served",
                         gpu="l4", region="FR")
    assert UpstreamState(cfg=cfg, model=_FakeModel()).served_names() == {"m", "served"}  # type: ignore[arg-type]


def test_an_interval_that_ends_where_it_began_keeps_its_tokens():
    """Tokens seen at the instant of the last close stay for the next interval with energy."""
    src = _FakeCounter()
    att = WorkShareAttributor(0.0, 0.01, src)
    for rid in ("a", "b"):
        att.start(rid, 0, now=0.0)
        att.progress(rid, 1, now=0.0)
    att.tick(now=1.0)                     # [0, 1]: no work, no energy
    att.progress("a", 11, now=1.0)        # a's 10 tokens seen at that same instant
    att.tick(now=1.0)                     # an empty interval: must not spend them
    att.progress("b", 11, now=2.0)        # b decodes 10 in [1, 2]
    src.j = 20.0
    att.tick(now=2.0)
    ea, eb = att.finish("a", 11, now=2.0), att.finish("b", 11, now=2.0)
    assert (ea.decode_j, eb.decode_j) == pytest.approx((10.0, 10.0))


def test_decode_over_several_intervals_and_pooled_idle():
    src = _FakeCounter()
    att = WorkShareAttributor(0.0, 0.01, src)
    att.start("a", 0, now=0.0)
    att.start("b", 0, now=0.0)
    att.progress("a", 1, now=0.0)
    att.progress("b", 1, now=0.0)
    att.progress("a", 4, now=1.0)         # a: 3 tokens, b: 1 → 3 : 1 of 8 J
    att.progress("b", 2, now=1.0)
    src.j = 8.0
    att.tick(now=1.0)
    att.progress("a", 5, now=2.0)         # a: 1 more, b: 3 more → 1 : 3 of 4 J
    att.progress("b", 5, now=2.0)
    src.j = 12.0
    ea, eb = att.finish("a", 5, now=2.0), att.finish("b", 5, now=2.0)
    assert (ea.decode_j, eb.decode_j) == pytest.approx((6.0 + 1.0, 2.0 + 3.0))
    src.j = 15.0
    att.tick(now=3.0)
    src.j = 19.0
    att.tick(now=4.0)
    assert att.idle_j == pytest.approx(7.0)           # both idle intervals, not the last one
    spread = WorkShareAttributor(0.0, 0.01, src, idle_mode="spread")
    src.j = 22.0
    spread.tick(now=1.0)
    src.j = 26.0
    spread.tick(now=2.0)                               # 3 + 4 J pooled
    spread.start("c", 0, now=2.0)
    src.j = 27.0
    assert spread.finish("c", 0, now=3.0).energy_j == pytest.approx(8.0)


def test_no_work_intervals_add_up_and_real_time_ticks():
    src = _FakeCounter()
    att = WorkShareAttributor(0.001, 0.01, src)
    att.start("a", 0, now=0.0)
    att.start("b", 0, now=0.0)
    src.j = 10.0
    att.tick(now=0.05)
    src.j = 14.0
    att.tick(now=0.1)
    assert att.finish("a", 0, now=0.1).prefill_j == pytest.approx(7.0)
    live = WorkShareAttributor(0.001, 0.01, src)       # the sampler's clock: monotonic time
    live.start("x", 10)
    src.j = 20.0
    live.tick()
    assert live.finish("x", 0).energy_j == pytest.approx(6.0)


def test_prefill_split_by_the_first_token_seen():
    """b's first token arrives at 1.5 s (its guess said 0.2 s): the interval [0, 1] holds two
    thirds of its prefill: 0.001 × 300 × 2/3 = 0.2 against a's guessed full prefill 0.1."""
    src = _FakeCounter()
    att = WorkShareAttributor(0.001, 0.01, src)
    att.start("a", 100, now=0.0, ttft_guess_s=1.0, tpot_guess_s=1e9)
    att.start("b", 300, now=0.0)
    att.progress("b", 1, now=1.5)
    src.j = 30.0
    att.tick(now=1.0)
    ea = att.finish("a", 0, now=1.0)
    assert ea.prefill_j == pytest.approx(10.0)


def test_policies_with_missing_latencies_ties_and_full_upstreams():
    new, known = _state("new"), _state("known", p95_s=0.5)
    assert [u.name for u in Router("latency", 2.0, 1.0).order([known, new])] == ["new", "known"]
    r = Router("carbon", latency_target_s=0.4, pue=1.0)
    assert [u.name for u in r.order([known, new])] == ["new", "known"]   # no data yet: meets
    at_target = _state("edge", 500.0, p95_s=2.0)
    cleaner_slow = _state("slow", 1.0, p95_s=2.5)
    r2 = Router("carbon", latency_target_s=2.0, pue=1.0)
    assert [u.name for u in r2.order([cleaner_slow, at_target])] == ["edge", "slow"]
    slow_b, slow_a = _state("b", p95_s=9.0), _state("a", p95_s=5.0)
    assert [u.name for u in r2.order([slow_b, slow_a])] == ["a", "b"]
    f1 = _state("f1", capacity=1, inflight=3)
    f2 = _state("f2", capacity=1, inflight=1)
    assert [u.name for u in r2.order([f1, f2])] == ["f2", "f1"]
    assert [u.name for u in Router("round-robin", 2.0, 1.0).order([f1, f2])] == ["f2", "f1"]


def test_defaults_and_zero_token_progress():
    src = _FakeCounter()
    att = WorkShareAttributor(0.001, 0.01, src)
    att.start("a", 5, now=0.0)
    assert (att.live["a"].tpot_guess_s, att.live["a"].ttft_guess_s) == (0.02, 0.2)
    att.progress("a", 0, now=0.5)
    assert att.live["a"].first_token_s is None        # no token yet: no first-token time
    att.progress("a", 1, now=0.7)
    assert att.live["a"].first_token_s == 0.7
    fake = _FakeModel()
    _state("s", model=fake).expected_carbon_g(1.0)
    assert fake.calls == [(512, 128, 1)]


def test_an_upstream_without_latencies_yet_counts_as_meeting_the_target():
    unknown_clean = _state("unknown", 10.0)              # no request finished yet
    known_dirty = _state("known", 500.0, p95_s=0.1)
    r = Router("carbon", latency_target_s=0.4, pue=1.0)
    assert [u.name for u in r.order([known_dirty, unknown_clean])] == ["unknown", "known"]


def test_latencies_recorded_and_single_requests_costed(catalog):
    s = _state("a")
    s.record_success(0.5)
    assert s.p95_latency_s() == pytest.approx(0.5)
    m = UpstreamModel(catalog, "llama-3.1-8b", "l4", 1, "device", 5.0)
    assert m.energy(512, 128, 1) != m.energy(512, 128, 2)   # alone is not the same as in two


def test_an_upstreams_footprint_by_hand(catalog):
    """3,600 J at 250 g/kWh and PUE 1.2 is 0.3 g; 10 s shared by 4 requests on two L4s is
    2.5 s of their embodied grams over 4 years; the intensity's source and region are kept."""
    m = UpstreamModel(catalog, "llama-3.1-8b", "l4", 2, "device", 4.0)
    emb_g = 2 * gpu_embodied(catalog.gpu("l4"), catalog, "device").total_g.mid
    assert m.embodied_g == pytest.approx(emb_g, rel=1e-12)
    assert m.embodied_g_per_s == pytest.approx(emb_g / (4.0 * S_PER_YEAR), rel=1e-12)
    assert m.max_context == catalog.model("llama-3.1-8b").max_context > 0
    fp = m.footprint(RequestEnergy(1000.0, 2600.0, "measured"), 250.0, 1.2, 10.0, 4.0,
                     "live (electricitymaps)", "FR")
    assert fp.operational_g == pytest.approx(0.3, rel=1e-12)
    assert fp.embodied_g == pytest.approx(emb_g * 2.5 / (4.0 * S_PER_YEAR), rel=1e-12)
    assert (fp.intensity_g_per_kwh, fp.intensity_source, fp.region) == (
        250.0, "live (electricitymaps)", "FR")
    assert fp.total_g == pytest.approx(fp.operational_g + fp.embodied_g, rel=1e-12)
    alone = m.footprint(RequestEnergy(0.0, 0.0, "predicted"), 250.0, 1.0, 10.0, 0.5)
    assert alone.embodied_g == pytest.approx(emb_g * 10.0 / (4.0 * S_PER_YEAR), rel=1e-12)
    assert (alone.intensity_source, alone.region) == ("", "")
