"""One intensity resolver for every surface: sources, fallback with its reason, caching, and a
new live provider (WattTime) tested against a local stand-in of its documented v3 API."""

from __future__ import annotations

import asyncio
import base64

import pytest
from fastapi import FastAPI, Header, HTTPException

from conftest import serve_in_thread
from tokenprint.carbon.resolver import (
    G_PER_KWH_PER_LB_PER_MWH,
    SOURCES,
    IntensityResolver,
    Source,
    WattTimeSource,
)
from tokenprint.errors import TokenprintError


def _watttime(calls: list[str], moer_lbs: float = 882.0) -> FastAPI:
    """WattTime v3 as documented: GET /login with HTTP Basic returns a token; GET /v3/forecast
    with a bearer token returns data points in lbs_co2_per_mwh."""
    app = FastAPI()

    @app.get("/login")
    def login(authorization: str = Header(default="")) -> dict:
        calls.append("login")
        user, _, password = base64.b64decode(authorization.split()[-1]).decode().partition(":")
        if (user, password) != ("ada", "s3cret"):
            raise HTTPException(401)
        return {"token": "jwt-1"}

    @app.get("/v3/forecast")
    def forecast(region: str, signal_type: str, authorization: str = Header(default="")
                 ) -> dict:
        calls.append(f"forecast {region} {signal_type}")
        if authorization != "Bearer jwt-1":
            raise HTTPException(401)
        return {"meta": {"region": region, "signal_type": signal_type,
                         "units": "lbs_co2_per_mwh", "generated_at": "2026-12-06T12:00:00+00:00"},
                "data": [{"point_time": "2026-12-06T12:00:00+00:00", "value": moer_lbs},
                         {"point_time": "2026-12-06T12:05:00+00:00", "value": 900.0}]}

    return app


def test_watttime_against_its_documented_api(catalog, monkeypatch):
    calls: list[str] = []
    monkeypatch.setenv("WATTTIME_USER", "ada")
    monkeypatch.setenv("WATTTIME_PASSWORD", "s3cret")
    with serve_in_thread(_watttime(calls)) as port:
        res = IntensityResolver(catalog, "watttime", base_url=f"http://127.0.0.1:{port}",
                                cache_s=60)
        r = asyncio.run(res.reading("US-CAL-CISO", now_s=1000.0))
        # 882 lbs/MWh is 400 g/kWh; a marginal signal, and the reading says so
        assert r.g_per_kwh == pytest.approx(882.0 * G_PER_KWH_PER_LB_PER_MWH)
        assert r.g_per_kwh == pytest.approx(400.07, abs=0.01)
        assert r.signal == "marginal" and r.source == "live (watttime)"
        assert calls == ["login", "forecast CAISO_NORTH co2_moer"]
        # cached: no second call; the request path reads it without the network
        again = asyncio.run(res.reading("US-CAL-CISO", now_s=1030.0))
        assert again.source == "live (watttime, cached)" and len(calls) == 2
        assert res.latest("US-CAL-CISO", now_s=1030.0)[0] == pytest.approx(r.g_per_kwh)
        # a zone WattTime has no region for falls back, saying why
        v, how = asyncio.run(res.current("FR", now_s=1000.0))
        assert v == catalog.region("FR").intensity_g_per_kwh.value
        assert "no WattTime region for FR" in how and how.startswith("annual average")
    # wrong credentials: the annual average, and why
    monkeypatch.setenv("WATTTIME_PASSWORD", "wrong")
    with serve_in_thread(_watttime(calls)) as port:
        res = IntensityResolver(catalog, "watttime", base_url=f"http://127.0.0.1:{port}")
        v, how = asyncio.run(res.current("US-CAL-CISO", now_s=0.0))
        assert v == catalog.region("US-CAL-CISO").intensity_g_per_kwh.value
        assert "live unavailable: HTTPStatusError" in how


def test_watttime_without_credentials_says_so(catalog, monkeypatch):
    monkeypatch.delenv("WATTTIME_USER", raising=False)
    res = IntensityResolver(catalog, "watttime", base_url="http://127.0.0.1:9")
    _v, how = asyncio.run(res.current("US-CAL-CISO", now_s=0.0))
    assert "$WATTTIME_USER and $WATTTIME_PASSWORD not set" in how


def test_a_new_provider_is_one_class_and_one_config_value(catalog, tmp_path):
    """Registering a source makes it a valid `intensity` in gateway.toml: nothing else."""
    from tokenprint.gateway.config import load_config

    class Constant(Source):
        name = "constant-test"

        def cached(self, zone, now_s):
            from tokenprint.carbon.resolver import Reading

            return Reading(111.0, "constant test source")

    cfg = tmp_path / "gateway.toml"
    body = ('[[upstream]]\nname = "a"\nurl = "http://127.0.0.1:9"\nmodel = "llama-3.1-8b"\n'
            'gpu = "h100-sxm"\nregion = "FR"\n')
    cfg.write_text(f'intensity = "constant-test"\n{body}')
    with pytest.raises(TokenprintError, match="unknown intensity source 'constant-test'"):
        load_config(cfg)
    SOURCES["constant-test"] = Constant
    try:
        assert load_config(cfg).intensity == "constant-test"
        res = IntensityResolver(catalog, "constant-test")
        assert res.latest("FR") == (111.0, "constant test source")
    finally:
        del SOURCES["constant-test"]


def test_file_source_falls_back_outside_its_span(catalog, tmp_path):
    f = tmp_path / "FR.csv"
    f.write_text("timestamp,intensity_g_per_kwh\n2023-07-01T00:00:00Z,40\n"
                 "2023-07-01T01:00:00Z,60\n")
    res = IntensityResolver(catalog, "file", {"FR": str(f)})
    from tokenprint.carbon import parse_time

    assert res.latest("FR", parse_time("2023-07-01T00:30:00Z")) == (40.0, "hourly file")
    v, how = res.latest("FR", parse_time("2024-01-01T00:00:00Z"))
    assert v == catalog.region("FR").intensity_g_per_kwh.value
    assert "hourly file does not cover now" in how
    with pytest.raises(TokenprintError, match="unknown intensity source"):
        IntensityResolver(catalog, "nope")
    assert isinstance(SOURCES["watttime"](), WattTimeSource)


def test_watttime_forecast_is_the_hourly_mean_of_its_points(catalog, monkeypatch):
    import numpy as np

    from tokenprint.carbon.intensity import parse_time

    calls: list[str] = []
    monkeypatch.setenv("WATTTIME_USER", "ada")
    monkeypatch.setenv("WATTTIME_PASSWORD", "s3cret")
    with serve_in_thread(_watttime(calls)) as port:
        src = WattTimeSource(base_url=f"http://127.0.0.1:{port}")
        f = asyncio.run(src.forecast("US-CAL-CISO", parse_time("2026-12-06T11:30:00Z"), 3))
    # the stand-in's two 5-minute points (882 and 900 lbs/MWh) fall in the 12:00 hour
    assert f is not None and np.isnan(f[0]) and np.isnan(f[2])
    assert f[1] == pytest.approx((882.0 + 900.0) / 2 * G_PER_KWH_PER_LB_PER_MWH)
    assert calls[-1] == "forecast CAISO_NORTH co2_moer"
