"""Scope 2 market-based accounting and SCI, derived by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tokenprint.carbon.scope2 import Contract, market_based, sci_g_per_unit
from tokenprint.errors import TokenprintError

H = 3600.0
MONTH = (0.0, 30 * 24 * H)


def _hours(kwh_per_hour: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    t = np.arange(kwh_per_hour.size) * H + 1.0
    return kwh_per_hour, t, ["FR"] * kwh_per_hour.size


def test_half_a_month_at_zero_and_the_rest_at_the_residual_mix():
    """720 kWh over a month (1 kWh an hour); a PPA of 0.36 MWh at 0 g/kWh covers half; the
    other 360 kWh at a residual mix of 400 g/kWh: 144,000 g, by hand."""
    e, t, reg = _hours(np.ones(720))
    ppa = Contract("ppa", "FR", *MONTH, g_per_kwh=0.0, mwh=0.36)
    got = market_based(e, t, reg, [ppa], {"FR": 400.0}, MONTH, "annual")
    assert got.grams.sum() == pytest.approx(360 * 400.0)
    assert got.covered_kwh.sum() == pytest.approx(360.0)
    assert got.grams == pytest.approx(np.full(720, 200.0))      # pro rata: 0.5 kWh × 400
    assert got.cfe_share_247 is None


def test_hourly_matching_and_the_247_share_by_hand():
    """The same 0.36 MWh spread evenly over the month is 0.5 kWh an hour. Energy of 2 kWh an
    hour in the 12 daytime hours only (720 kWh): annual matching covers 360 kWh, hourly only
    0.5 of each daytime hour's 2 (180 kWh) — the night's contract volume has no energy to
    match — so the 24/7 carbon-free share is 180 / 720 = 25 %."""
    day = np.tile(np.r_[np.zeros(6), np.full(12, 2.0), np.zeros(6)], 30)
    e, t, reg = _hours(day)
    ppa = Contract("ppa", "FR", *MONTH, g_per_kwh=0.0, mwh=0.36)
    annual = market_based(e, t, reg, [ppa], {"FR": 400.0}, MONTH, "annual")
    hourly = market_based(e, t, reg, [ppa], {"FR": 400.0}, MONTH, "hourly")
    assert annual.grams.sum() == pytest.approx((720 - 360) * 400.0)
    assert hourly.covered_kwh.sum() == pytest.approx(180.0)
    assert hourly.grams.sum() == pytest.approx((720 - 180) * 400.0)
    assert hourly.cfe_share_247 == pytest.approx(0.25)


def test_instruments_apply_in_order_and_only_in_their_region():
    """Certificates first (100 kWh at 0), then the supplier's factor for the rest (250 g/kWh);
    a certificate for another region covers nothing here."""
    e, t, reg = _hours(np.full(10, 30.0))                   # 300 kWh in FR
    certs = Contract("certificate", "FR", *MONTH, g_per_kwh=0.0, mwh=0.1)
    supplier = Contract("supplier", "FR", *MONTH, g_per_kwh=250.0)
    elsewhere = Contract("certificate", "DE", *MONTH, g_per_kwh=0.0, mwh=10.0)
    got = market_based(e, t, reg, [supplier, elsewhere, certs], {"FR": 500.0}, MONTH)
    assert got.grams.sum() == pytest.approx(200 * 250.0)
    assert got.covered_kwh.sum() == pytest.approx(300.0)
    with pytest.raises(TokenprintError, match="no residual mix for region FR"):
        market_based(e, t, reg, [certs], {"DE": 300.0}, MONTH)
    with pytest.raises(TokenprintError, match="needs its volume"):
        Contract("ppa", "FR", *MONTH, g_per_kwh=0.0)


def test_sci_is_operational_plus_embodied_per_unit():
    """SCI = (E × I + M) / R per 1,000 tokens: (0.2 kWh × 300 g/kWh + 12 g) / 4 = 18 g."""
    got = sci_g_per_unit([0.2 * 300.0, 5.0], [12.0, 1.0], [4.0, 0.0])
    assert got[0] == pytest.approx(18.0)
    assert np.isnan(got[1])
