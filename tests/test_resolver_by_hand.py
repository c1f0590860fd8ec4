"""The intensity resolver by hand, in one process: Electricity Maps' and WattTime's APIs answered
by an ``httpx.MockTransport`` (the documented paths, parameters and headers checked on every
call), then each rule of a live source to the letter — the cache and when it goes stale, the
plausible range and its bounds, the history kept for a persistence forecast, a forecast's hourly
means, and the reason every fallback gives."""

from __future__ import annotations

import asyncio
import json
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
