"""Market-based Scope 2 as energy arrives (the gateway's ``/metrics``), and routing by one signal
while the accounts keep another: each ledger row names the signal that ranked its upstream."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tokenprint.carbon.scope2 import Contract, RunningMarket, market_based
from tokenprint.errors import TokenprintError

H = 3600.0
T0 = 1_700_000_000.0 - 1_700_000_000.0 % H   # an hour boundary


def test_running_market_annual_by_hand_and_equal_to_the_report_over_the_span():
    # a 1 MWh PPA at 0 g over 100 hours, then a supplier at 200 g; residual mix 400 g/kWh
    ppa = Contract("ppa", "FR", T0, T0 + 100 * H, 0.0, mwh=1.0)
    supplier = Contract("supplier", "FR", T0 + 50 * H, T0 + 100 * H, 200.0)
    meter = RunningMarket([supplier, ppa], {"FR": 400.0})
    # 15 kWh an hour: the PPA covers the first 1,000 kWh (66 hours and 10 kWh of the 67th)
    e = np.full(100, 15.0)
    t = T0 + H * np.arange(100) + 1.0
    got = np.array([meter.grams(x, ti, "fr") for x, ti in zip(e, t, strict=True)])
    assert got[:66].sum() == 0.0
    assert got[66] == pytest.approx(5.0 * 200.0)          # past hour 50: the supplier's factor
    assert got[67:].sum() == pytest.approx(33 * 15.0 * 200.0)
    # over the whole span the report (prorated to the same span) charges the same grams
    report = market_based(e, t, ["FR"] * 100, [ppa, supplier], {"FR": 400.0},
                          (T0, T0 + 100 * H))
    assert got.sum() == pytest.approx(report.grams.sum())
    # outside every instrument's span: the residual mix
    assert meter.grams(2.0, T0 + 200 * H, "FR") == pytest.approx(800.0)


def test_running_market_hourly_matches_each_hour_and_shares_volume_among_workers():
    ppa = Contract("ppa", "FR", T0, T0 + 10 * H, 0.0, mwh=0.1)   # 10 kWh an hour
    meter = RunningMarket([ppa], {"FR": 300.0}, "hourly")
    assert meter.grams(8.0, T0 + 10, "FR") == 0.0
    assert meter.grams(8.0, T0 + 20, "FR") == pytest.approx(6.0 * 300.0)   # 2 kWh left
    assert meter.grams(8.0, T0 + H + 5, "FR") == 0.0                       # a new hour
    half = RunningMarket([ppa], {"FR": 300.0}, "hourly", share=0.5)       # one of 2 workers
    assert half.grams(8.0, T0 + 10, "FR") == pytest.approx(3.0 * 300.0)
    with pytest.raises(TokenprintError, match="no residual mix for region"):
        meter.check_regions(["FR", "DE"])


def _intensity_csv(path: Path, zone: str, value: float) -> None:
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now + dt.timedelta(hours=k) for k in range(-24, 48)]
    path.write_text("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh "
                    "(direct),Carbon Intensity gCO₂eq/kWh (LCA)\n" + "".join(
                        f"{h:%Y-%m-%d %H:%M:%S},France,France,{zone},{value},{value}\n"
                        for h in hours))


def test_gateway_counts_scope2_both_ways_and_names_the_routing_signal(tmp_path: Path, catalog):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from conftest import scripted_upstream
    from tokenprint.gateway.app import create_app
    from tokenprint.gateway.config import GatewayConfig, UpstreamConfig

    deals = tmp_path / "contracts.toml"
    deals.write_text('[residual_mix]\nFR = 80.0\n[[contract]]\nkind = "supplier"\n'
                     'region = "FR"\nstart = "2000-01-01T00:00:00Z"\n'
                     'end = "2100-01-01T00:00:00Z"\ng_per_kwh = 0.0\n')
    marginal = tmp_path / "fr.csv"
    _intensity_csv(marginal, "FR", 777.0)
    with scripted_upstream(4) as url:
        cfg = GatewayConfig(
            upstream=[UpstreamConfig(name="a", url=url, model="tiny", gpu="l4", region="FR",
                                     intensity_file=str(marginal))],
            results=str(tmp_path / "ledger"), health_interval_s=0, contracts=str(deals),
            intensity="annual", routing_intensity="file")
        with TestClient(create_app(cfg, catalog)) as http:
            for _ in range(3):
                r = http.post("/v1/completions", json={"model": "tiny", "prompt": "a b c",
                                                       "max_tokens": 4})
                assert r.status_code == 200, r.text
            text = http.get("/metrics").text
    lines = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines()
             if ln.startswith("tokenprint_scope2_grams_total")}
    location = lines['tokenprint_scope2_grams_total{basis="location",team="none"}']
    market = lines['tokenprint_scope2_grams_total{basis="market",team="none"}']
    assert location > 0 and market == 0.0           # the supplier's 0 g covers every kWh
    con = sqlite3.connect(tmp_path / "ledger" / "ledger.sqlite")
    rows = con.execute("SELECT intensity_g_per_kwh, intensity_source, routing_signal, "
                       "operational_g FROM requests").fetchall()
    con.close()
    annual = catalog.region("FR").intensity_g_per_kwh.value
    assert len(rows) == 3
    for ci, source, signal, _ in rows:
        assert ci == pytest.approx(annual) and "annual" in source     # the accounts
        assert signal.startswith("carbon: 777 g/kWh") and "hourly file" in signal  # routing
    assert sum(r[3] for r in rows) == pytest.approx(location)
    # a region without a residual mix is refused at start
    deals.write_text('[residual_mix]\nDE = 380.0\n')
    with pytest.raises(TokenprintError, match="no residual mix for region"):
        create_app(cfg, catalog)
