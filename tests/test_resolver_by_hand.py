"""The intensity resolver by hand, in one process: Electricity Maps' and WattTime's APIs answered
by an ``httpx.MockTransport`` (the documented paths, parameters and headers checked on every
call), then each rule of a live source to the letter — the cache and when it goes stale, the
plausible range and its bounds, the history kept for a persistence forecast, a forecast's hourly
means, and the reason every fallback gives."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from tokenprint.carbon.resolver import (
    G_PER_KWH_PER_LB_PER_MWH,
    STALE_AFTER_S,
    ElectricityMapsSource,
    IntensityResolver,
    Reading,
    WattTimeSource,
)
from tokenprint.errors import TokenprintError

HOUR = 3600.0
T0 = 1_000 * HOUR          # an hour boundary


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[httpx.Request], Any]],
                                                      list[httpx.Request]]:
    """Route every ``httpx.AsyncClient`` to ``handler``; returns the requests it saw."""
    def install(handler: Callable[[httpx.Request], Any]) -> list[httpx.Request]:
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            out = handler(request)
            return out if isinstance(out, httpx.Response) else httpx.Response(200, json=out)

        real = httpx.AsyncClient
        monkeypatch.setattr(httpx, "AsyncClient", lambda **kw: real(
            transport=httpx.MockTransport(answer), **kw))
        return seen
    return install


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def em(value: Any = 123.0) -> Callable[[httpx.Request], Any]:
    return lambda req: {"zone": req.url.params["zone"], "carbonIntensity": value}


# ---- Electricity Maps -------------------------------------------------------------------------

def test_electricity_maps_is_asked_as_documented(api, monkeypatch):
    monkeypatch.setenv("EM_TOKEN", "tok")
    seen = api(em(123.0))
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test/v3/", cache_s=60.0)
    r = run(src.fetch("FR", T0))
    assert r == Reading(123.0, "live (electricitymaps)", "average")
    (req,) = seen
    assert str(req.url) == "https://em.test/v3/carbon-intensity/latest?zone=FR"
    assert req.headers["auth-token"] == "tok"
    assert src.why == {} and src.history == {"FR": {1000: 123.0}}


def test_a_live_answer_is_cached_then_stale_then_given_up(api, monkeypatch):
    monkeypatch.setenv("EM_TOKEN", "tok")
    seen = api(em(123.0))
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test", cache_s=60.0)
    assert src.cached("FR", T0) is None and src.why["FR"] == "not fetched yet"
    run(src.fetch("FR", T0))
    assert run(src.fetch("FR", T0 + 59)) == Reading(123.0, "live (electricitymaps, cached)")
    assert len(seen) == 1                                     # no second call within 60 s
    assert src.cached("FR", T0 + 59) == Reading(123.0, "live (electricitymaps, cached)")
    assert src.cached("FR", T0 + 60) == Reading(123.0,
                                                "live (electricitymaps, stale, 60 s old)")
    assert src.cached("FR", T0 + STALE_AFTER_S - 1) is not None
    assert src.cached("FR", T0 + STALE_AFTER_S) is None
    assert src.why["FR"] == "stale: the last answer is 3600 s old"
    assert src.cached("FR", T0 + STALE_AFTER_S) is None
    assert src.why["FR"] == "stale: the last answer is 3600 s old"   # not "not fetched yet"
    run(src.fetch("FR", T0 + 60))                             # expired: asked again
    assert len(seen) == 2
    long = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test", cache_s=2 * HOUR)
    run(long.fetch("FR", T0))
    assert long.cached("FR", T0 + 1.5 * HOUR) is not None     # its own cache outlives an hour


@pytest.mark.parametrize(("value", "ok"), [(0.0, True), (2000.0, True), (-0.5, False),
                                           (2000.5, False), (float("nan"), False)])
def test_only_plausible_intensities_are_taken(api, monkeypatch, value, ok):
    monkeypatch.setenv("EM_TOKEN", "tok")
    api(lambda req: httpx.Response(200, content=json.dumps({"carbonIntensity": value})))
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test")
    r = run(src.fetch("FR", T0))
    if ok:
        assert r is not None and r.g_per_kwh == value
    else:
        assert r is None and src.why["FR"] == (f"rejected: {value!r} g/kWh is outside "
                                               "[0, 2000]")
        assert src.cached("FR", T0) is None and src.history == {}


@pytest.mark.parametrize(("answer", "why"), [
    (httpx.Response(200, json={"carbonIntensity": "300"}), "unavailable: TypeError"),
    (httpx.Response(200, json={"carbonIntensity": True}), "unavailable: TypeError"),
    (httpx.Response(200, json={"zone": "FR"}), "unavailable: KeyError"),
    (httpx.Response(503, json={}), "unavailable: HTTPStatusError")])
def test_a_broken_answer_falls_back_with_its_reason(api, monkeypatch, catalog, answer, why):
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", "tok")
    api(lambda req: answer)
    res = IntensityResolver(catalog, "electricitymaps", base_url="https://em.test")
    v, how = run(res.current("fr", now_s=T0))
    annual = catalog.region("FR")
    assert v == annual.intensity_g_per_kwh.value
    assert how == f"annual average {annual.year} ({annual.basis}) (live {why})"


def test_no_token_is_said_and_nothing_is_asked(api, monkeypatch, catalog):
    monkeypatch.delenv("EM_TOKEN", raising=False)
    seen = api(em())
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test")
    assert run(src.fetch("FR", T0)) is None and src.why["FR"] == "unavailable: $EM_TOKEN not set"
    assert run(src.forecast("FR", T0, 3)) is None
    assert src.why["FR"] == "no forecast: $EM_TOKEN not set" and seen == []


def test_the_history_keeps_two_days_for_a_persistence_forecast(api, monkeypatch):
    monkeypatch.setenv("EM_TOKEN", "tok")
    values = iter(float(v) for v in range(100, 200))
    api(lambda req: {"carbonIntensity": next(values)})
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test", cache_s=1.0)
    for h in range(50):                       # hourly readings 100, 101, … for 50 hours
        run(src.fetch("FR", T0 + h * HOUR + 10))
    kept = src.history["FR"]
    assert sorted(kept) == list(range(1001, 1050))   # hour 1000 is past the 48 kept before 1049
    assert kept[1049] == 149.0
    # from hour 1049: now as read now, then each hour as it was a day earlier, NaN past that
    p = src.persistence("FR", T0 + 49 * HOUR, 4)
    assert p is not None
    np.testing.assert_array_equal(p, [149.0, 126.0, 127.0, 128.0])
    q = src.persistence("FR", T0 + 60 * HOUR, 30)      # hour 1060: a day earlier is 1036…
    assert q is not None and q[0] == 136.0 and np.isnan(q[-1])
    assert np.isnan(q[14]) and q[13] == 149.0       # 1060 + 13 − 24 = 1049, the last read
    assert src.persistence("FR", T0 + 200 * HOUR, 5) is None
    assert src.persistence("DE", T0, 5) is None


def _em_forecast(points: list[tuple[str, Any]]) -> Callable[[httpx.Request], Any]:
    return lambda req: {"zone": req.url.params["zone"], "forecast": [
        {"datetime": t, "carbonIntensity": v} for t, v in points]}


def test_a_forecast_is_the_mean_of_its_points_in_each_hour(api, monkeypatch):
    monkeypatch.setenv("EM_TOKEN", "tok")
    seen = api(_em_forecast([("1970-02-11T16:00:00Z", 100.0), ("1970-02-11T16:30:00Z", 200.0),
                             ("1970-02-11T18:00:00Z", 50.0), ("1970-02-11T23:00:00Z", 9.0),
                             ("1970-02-11T15:00:00Z", 1.0)]))
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test")
    f = run(src.forecast("FR", T0 + 10, 4))                 # hour 1000 is 1970-02-11T16:00
    assert f is not None
    np.testing.assert_array_equal(f[[0, 2]], [150.0, 50.0])
    assert np.isnan(f[1]) and np.isnan(f[3])
    assert str(seen[0].url) == "https://em.test/carbon-intensity/forecast?zone=FR"
    assert seen[0].headers["auth-token"] == "tok"


@pytest.mark.parametrize(("points", "why"), [
    ([("1970-02-11T16:00:00Z", -1.0)], "no forecast: -1.0 g/kWh is outside the plausible range"),
    ([("1970-02-11T16:00:00Z", 2500.0)],
     "no forecast: 2500.0 g/kWh is outside the plausible range"),
    ([("1970-02-12T16:00:00Z", 100.0)], "no forecast: none of its points falls in the window"),
    ([("1970-02-11T16:00:00Z", "x")], "no forecast: TypeError")])
def test_a_forecast_that_cannot_be_used_says_why(api, monkeypatch, points, why):
    monkeypatch.setenv("EM_TOKEN", "tok")
    api(_em_forecast(points))
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test")
    assert run(src.forecast("FR", T0, 4)) is None and src.why["FR"] == why


def test_a_forecast_point_outside_the_window_is_not_judged(api, monkeypatch):
    monkeypatch.setenv("EM_TOKEN", "tok")
    api(_em_forecast([("1970-02-11T16:00:00Z", 80.0), ("1970-02-12T16:00:00Z", -5.0)]))
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test")
    f = run(src.forecast("FR", T0, 2))
    assert f is not None and f[0] == 80.0


# ---- WattTime ---------------------------------------------------------------------------------

def _watttime(moer: Any = 882.0, units: str = "lbs_co2_per_mwh", expire: list[bool] | None = None
              ) -> Callable[[httpx.Request], Any]:
    def handler(req: httpx.Request) -> Any:
        if req.url.path == "/login":
            return {"token": f"jwt-{req.headers['authorization'][-4:]}"}
        if expire:
            expire.pop()
            return httpx.Response(401, json={})
        h = int(req.url.params["horizon_hours"])
        data = [{"point_time": "1970-02-11T16:00:00Z", "value": moer}]
        if h:
            data.append({"point_time": "1970-02-11T17:05:00Z", "value": 2 * moer})
        return {"meta": {"units": units}, "data": data}
    return handler


def test_watttime_logs_in_once_and_maps_zones_to_its_regions(api, monkeypatch):
    monkeypatch.setenv("WT_U", "ada")
    monkeypatch.setenv("WT_P", "pw")
    seen = api(_watttime())
    src = WattTimeSource("WT_U", "WT_P", base_url="https://wt.test", regions={"fr": "FR_X"},
                         cache_s=1.0)
    assert src.regions["FR"] == "FR_X" and src.regions["US-CAL-CISO"] == "CAISO_NORTH"
    r = run(src.fetch("FR", T0))
    assert r == Reading(882.0 * G_PER_KWH_PER_LB_PER_MWH, "live (watttime)", "marginal")
    run(src.fetch("FR", T0 + 5))
    paths = [(q.url.path, dict(q.url.params)) for q in seen]
    asked = {"region": "FR_X", "signal_type": "co2_moer", "horizon_hours": "0"}
    assert paths == [("/login", {}), ("/v3/forecast", asked), ("/v3/forecast", asked)]
    assert seen[1].headers["authorization"] == f"Bearer jwt-{seen[0].headers['authorization'][-4:]}"


def test_watttime_logs_in_again_after_a_401(api, monkeypatch):
    monkeypatch.setenv("WT_U", "ada")
    monkeypatch.setenv("WT_P", "pw")
    seen = api(_watttime(expire=[True]))
    src = WattTimeSource("WT_U", "WT_P", base_url="https://wt.test", cache_s=1.0)
    assert run(src.fetch("US-CAL-CISO", T0)) is None
    assert src.why["US-CAL-CISO"] == "unavailable: HTTPStatusError"
    assert run(src.fetch("US-CAL-CISO", T0 + 5)) is not None
    assert [q.url.path for q in seen] == ["/login", "/v3/forecast", "/login", "/v3/forecast"]


def test_watttime_refuses_other_units_and_unmapped_zones(api, monkeypatch):
    monkeypatch.setenv("WT_U", "ada")
    monkeypatch.setenv("WT_P", "pw")
    api(_watttime(units="kg_co2_per_mwh"))
    src = WattTimeSource("WT_U", "WT_P", base_url="https://wt.test")
    assert run(src.fetch("US-CAL-CISO", T0)) is None
    assert src.why["US-CAL-CISO"] == "unavailable: TypeError"
    assert run(src.fetch("DE", T0)) is None
    assert src.why["DE"] == "unavailable: no WattTime region for DE (give watttime_regions)"


def test_watttime_forecast_over_a_day(api, monkeypatch):
    monkeypatch.setenv("WT_U", "ada")
    monkeypatch.setenv("WT_P", "pw")
    seen = api(_watttime(moer=500.0))
    src = WattTimeSource("WT_U", "WT_P", base_url="https://wt.test")
    f = run(src.forecast("US-CAL-CISO", T0, 3))
    assert f is not None
    np.testing.assert_allclose(f[:2], [500.0 * G_PER_KWH_PER_LB_PER_MWH,
                                       1000.0 * G_PER_KWH_PER_LB_PER_MWH])
    assert np.isnan(f[2])
    assert dict(seen[-1].url.params) == {"region": "CAISO_NORTH", "signal_type": "co2_moer",
                                         "horizon_hours": "24"}


# ---- the resolver -------------------------------------------------------------------------------

def test_the_resolver_reads_the_cache_on_the_request_path_and_refreshes_it(api, monkeypatch,
                                                                         catalog):
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", "tok")
    seen = api(em(77.0))
    res = IntensityResolver(catalog, "electricitymaps", base_url="https://em.test")
    v, how = res.latest("fr")
    annual = catalog.region("FR")
    assert (v, how) == (annual.intensity_g_per_kwh.value,
                        f"annual average {annual.year} ({annual.basis}) (live not fetched yet)")
    run(res.refresh(["fr", "FR", "pl"]))
    assert [q.url.params["zone"] for q in seen] == ["FR", "PL"]
    assert res.latest("FR") == (77.0, "live (electricitymaps, cached)")
    assert res.latest_reading("pl").signal == "average"
    assert res.annual("FR") == (annual.intensity_g_per_kwh.value,
                                f"annual average {annual.year} ({annual.basis})")


def test_the_annual_and_file_sources_never_ask(api, catalog):
    seen = api(em())
    res = IntensityResolver(catalog, "annual")
    run(res.refresh(["FR"]))
    assert seen == [] and res.latest("FR")[1].startswith("annual average")
    files = IntensityResolver(catalog, "file", {})
    annual = catalog.region("PL")
    assert files.latest("pl") == (annual.intensity_g_per_kwh.value,
                                  f"annual average {annual.year} ({annual.basis}) "
                                  "(no hourly file for the region)")
    with pytest.raises(TokenprintError, match="unknown intensity source 'x'; valid: annual, "
                                              "file, electricitymaps, watttime"):
        IntensityResolver(catalog, "x")


# ---- defaults, boundaries and what each call passes on -------------------------------------------

def test_the_documented_endpoints_and_defaults(api, monkeypatch):
    """Without options each provider asks its documented host, caches 5 minutes and gives up on
    a call after 3 s (the client's timeout)."""
    timeouts: list[Any] = []
    real = httpx.AsyncClient

    def client(**kw: Any) -> httpx.AsyncClient:
        timeouts.append(kw.get("timeout"))
        return real(transport=httpx.MockTransport(lambda req: httpx.Response(
            200, json={"carbonIntensity": 10.0})), **kw)

    monkeypatch.setattr(httpx, "AsyncClient", client)
    em_ = ElectricityMapsSource()
    wt = WattTimeSource()
    assert (em_.base_url, em_.cache_s, em_.timeout_s) == ("https://api.electricitymap.org/v3",
                                                          300.0, 3.0)
    assert (wt.base_url, wt.cache_s, wt.timeout_s) == ("https://api.watttime.org", 300.0, 3.0)
    assert (em_.token_env, wt.user_env, wt.password_env) == (
        "ELECTRICITYMAPS_TOKEN", "WATTTIME_USER", "WATTTIME_PASSWORD")
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", "t")
    run(em_.fetch("FR", T0))
    run(ElectricityMapsSource(timeout_s=0.5).fetch("FR", T0))
    assert timeouts == [3.0, 0.5]
    assert WattTimeSource(timeout_s=0.25, cache_s=9.0).timeout_s == 0.25


def test_a_number_must_be_one():
    from tokenprint.carbon.resolver import _number

    assert _number(3, "x") == 3.0 and isinstance(_number(3, "x"), float)
    for raw in ("300", True, None, [1]):
        with pytest.raises(TypeError) as err:
            _number(raw, "carbonIntensity")
        assert str(err.value) == f"carbonIntensity is {raw!r}, not a number"


def test_a_success_clears_the_last_failures_reason(api, monkeypatch):
    monkeypatch.setenv("EM_TOKEN", "tok")
    answers = iter([httpx.Response(503, json={}), httpx.Response(200, json={
        "carbonIntensity": 50.0})])
    api(lambda req: next(answers))
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test", cache_s=1.0)
    assert run(src.fetch("FR", T0)) is None and "FR" in src.why
    assert run(src.fetch("FR", T0 + 5)) is not None and src.why == {}


def test_a_marginal_signal_stays_marginal_from_the_cache(api, monkeypatch):
    monkeypatch.setenv("WT_U", "ada")
    monkeypatch.setenv("WT_P", "pw")
    api(_watttime())
    src = WattTimeSource("WT_U", "WT_P", base_url="https://wt.test", cache_s=60.0)
    run(src.fetch("US-CAL-CISO", T0))
    assert run(src.fetch("US-CAL-CISO", T0 + 1)).signal == "marginal"
    assert src.cached("US-CAL-CISO", T0 + 1).signal == "marginal"
    assert src.cached("US-CAL-CISO", T0 + 100).signal == "marginal"       # stale, still


def test_watttime_needs_both_credentials_and_reads_units_as_documented(api, monkeypatch):
    monkeypatch.setenv("WT_U", "ada")
    monkeypatch.delenv("WT_P", raising=False)
    seen = api(lambda req: {"token": "t"} if req.url.path == "/login" else {
        "data": [{"point_time": "1970-02-11T16:00:00Z", "value": 1000.0}]})   # no meta
    src = WattTimeSource("WT_U", "WT_P", base_url="https://wt.test")
    assert run(src.fetch("US-CAL-CISO", T0)) is None and seen == []
    assert src.why["US-CAL-CISO"] == "unavailable: $WT_U and $WT_P not set"
    monkeypatch.setenv("WT_P", "pw")
    r = run(src.fetch("US-CAL-CISO", T0))             # without meta: lbs/MWh, the API's unit
    assert r is not None and r.g_per_kwh == pytest.approx(1000.0 * G_PER_KWH_PER_LB_PER_MWH)


def test_a_forecast_takes_its_bounds_and_leaves_the_hour_after_its_window(api, monkeypatch):
    monkeypatch.setenv("EM_TOKEN", "tok")
    api(_em_forecast([("1970-02-11T16:00:00Z", 0.0), ("1970-02-11T17:00:00Z", 2000.0),
                      ("1970-02-11T18:00:00Z", 5.0)]))
    src = ElectricityMapsSource("EM_TOKEN", base_url="https://em.test")
    f = run(src.forecast("FR", T0, 2))                # the 18:00 point is past the two hours
    assert f is not None and f.tolist() == [0.0, 2000.0]


def test_a_source_without_a_forecast_says_so(api):
    from tokenprint.carbon.resolver import LiveSource

    class Plain(LiveSource):
        name = "plain"

    src = Plain("https://p.test")
    assert run(src.forecast("FR", T0, 2)) is None
    assert src.why["FR"] == "no forecast: plain has no forecast endpoint here"


def test_a_file_source_covers_its_span_start_included_end_excluded(catalog, tmp_path):
    from tokenprint.carbon.intensity import parse_time

    f = tmp_path / "fr.csv"
    f.write_text("timestamp,intensity_g_per_kwh\n2023-07-01T00:00:00Z,40\n"
                 "2023-07-01T01:00:00Z,60\n")
    res = IntensityResolver(catalog, "file", {"fr": str(f)})
    start = parse_time("2023-07-01T00:00:00Z")
    assert res.latest("FR", start) == (40.0, "hourly file")
    assert res.latest("FR", start + 2 * HOUR - 1)[0] == 60.0
    assert res.latest("FR", start + 2 * HOUR)[1].endswith("(hourly file does not cover now)")
    assert run(res.reading("fr", start + HOUR)) == Reading(60.0, "hourly file")
    gap = tmp_path / "gap.csv"
    gap.write_text("timestamp,intensity_g_per_kwh\n2023-07-01T00:00:00Z,40\n"
                   "2023-07-01T01:00:00Z,50\n2023-07-01T03:00:00Z,60\n")
    with pytest.raises(TokenprintError, match="gap"):  # refused, never interpolated
        IntensityResolver(catalog, "file", {"FR": str(gap)})
    other = tmp_path / "de.csv"
    other.write_text("Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (LCA)\n"
                     "2023-07-01T00:00:00Z,DE,400\n2023-07-01T01:00:00Z,DE,410\n")
    with pytest.raises(TokenprintError, match="holds zone DE, not region FR"):
        IntensityResolver(catalog, "file", {"fr": str(other)})


def test_a_source_that_gives_no_reason_and_the_clock_it_is_asked_at(catalog):
    from tokenprint.carbon.resolver import SOURCES, Source

    asked: list[float] = []

    class Silent(Source):
        name = "silent-test"

        def cached(self, zone: str, now_s: float) -> Reading | None:
            asked.append(now_s)
            return None

    SOURCES["silent-test"] = Silent
    try:
        res = IntensityResolver(catalog, "silent-test")
        annual = catalog.region("FR")
        base = f"annual average {annual.year} ({annual.basis})"
        assert res.latest("FR", 5.0) == (annual.intensity_g_per_kwh.value, f"{base} (no answer)")
        assert run(res.current("FR", 7.0)) == (annual.intensity_g_per_kwh.value,
                                               f"{base} (no answer)")
        before = time.time()
        res.latest("FR")
        run(res.reading("FR"))
        assert asked[:2] == [5.0, 7.0] and all(before <= t <= time.time() for t in asked[2:])
    finally:
        del SOURCES["silent-test"]
    default = IntensityResolver(catalog)
    assert (default.mode, default.catalog) == ("annual", catalog)
    assert run(default.reading("fr")) == Reading(annual.intensity_g_per_kwh.value, base)
