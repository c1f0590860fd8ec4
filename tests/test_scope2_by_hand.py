"""Market-based Scope 2 by hand, past the cases ``test_scope2.py`` works through: every refusal of
a contract and of a contracts file by its words and bounds, a volume prorated to a period,
the running market of the gateway (first come within a span, each hour's share, the worker's
share of every volume, the supplier's factor on the rest, the hours it forgets), and the same
energy charged by ``market_based`` in pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tokenprint.carbon.contracts import load_contracts
from tokenprint.carbon.scope2 import (
    Contract,
    RunningMarket,
    _volume_kwh,
    market_based,
    sci_g_per_unit,
)
from tokenprint.errors import TokenprintError

H = 3600.0
DAY = (0.0, 24 * H)


@pytest.mark.parametrize(("kw", "why"), [
    ({"kind": "rec"}, "contract kind 'rec' is invalid; valid: certificate, ppa, supplier"),
    ({"end_s": 0.0}, "contract for FR ends before it starts"),
    ({"end_s": -1.0}, "contract for FR ends before it starts"),
    ({"g_per_kwh": -0.1}, "contract factor -0.1 g/kWh is invalid; it must be 0 to 2000"),
    ({"g_per_kwh": 2000.1}, "contract factor 2000.1 g/kWh is invalid; it must be 0 to 2000"),
    ({"mwh": -1.0}, "contract volume -1.0 MWh is invalid"),
    ({"mwh": 1e9}, "contract volume 1000000000.0 MWh is invalid"),
    ({"mwh": None}, "a ppa needs its volume (mwh)")])
def test_a_contract_is_refused_by_name(kw, why):
    args = {"kind": "ppa", "region": "FR", "start_s": 0.0, "end_s": H, "g_per_kwh": 0.0,
            "mwh": 1.0, **kw}
    with pytest.raises(TokenprintError) as err:
        Contract(**args)
    assert str(err.value) == why


def test_the_bounds_of_a_contract_are_valid():
    for g in (0.0, 2000.0):
        Contract("certificate", "FR", 0.0, 1e-3, g_per_kwh=g, mwh=0.0)
    Contract("supplier", "FR", 0.0, H, g_per_kwh=300.0)          # no volume: all the rest
    Contract("ppa", "FR", 0.0, H, g_per_kwh=0.0, mwh=999_999_999.0)


def test_a_volume_is_prorated_to_the_period():
    c = Contract("ppa", "FR", 10 * H, 20 * H, 0.0, mwh=1.0)       # 100 kWh an hour
    assert _volume_kwh(c, 0.0, 15 * H) == pytest.approx(500.0)
    assert _volume_kwh(c, 12 * H, 13 * H) == pytest.approx(100.0)
    assert _volume_kwh(c, 0.0, 5 * H) == 0.0 and _volume_kwh(c, 30 * H, 40 * H) == 0.0
    assert _volume_kwh(c, 0.0, 100 * H) == pytest.approx(1000.0)


def test_market_based_refuses_what_it_cannot_charge():
    with pytest.raises(TokenprintError, match=r"^matching 'daily' is invalid; valid: annual, "
                                              "hourly$"):
        market_based([1.0], [0.0], ["FR"], [], {"FR": 1.0}, DAY, "daily")
    with pytest.raises(TokenprintError, match=r"^energy must be >= 0 kWh$"):
        market_based([1.0, -1e-9], [0.0, 1.0], ["FR", "FR"], [], {"FR": 1.0}, DAY)


def test_market_based_by_hand_across_regions_and_hours():
    """FR: 30 kWh in hour 0 (two rows, 10 and 20), nothing in hour 1, 40 kWh in hour 2; a
    certificate of 48 kWh over the day (2 kWh an hour) at 0 and a supplier at 100 g/kWh on the
    rest. pl (residual given in lower case): 5 kWh, no instrument, at 700 g/kWh."""
    e = [10.0, 20.0, 0.0, 40.0, 5.0]
    t = [0.0, 10.0, H + 1, 2 * H + 1, 0.0]
    reg = ["fr", "FR", "FR", "FR", "pl"]
    cert = Contract("certificate", "fr", *DAY, 0.0, mwh=0.048)
    supplier = Contract("supplier", "FR", *DAY, 100.0)
    mix = {"FR": 500.0, "pl": 700.0}
    annual = market_based(e, t, reg, [supplier, cert], mix, DAY, "annual")
    # 70 kWh in FR; 48 certified, 22 at the supplier's 100: rows pro rata of 2,200 g
    np.testing.assert_allclose(annual.grams, [2200 * 10 / 70, 2200 * 20 / 70, 0.0,
                                              2200 * 40 / 70, 3500.0])
    np.testing.assert_allclose(annual.covered_kwh, [10.0, 20.0, 0.0, 40.0, 0.0])
    assert annual.cfe_share_247 is None
    hourly = market_based(e, t, reg, [supplier, cert], mix, DAY, "hourly")
    # each hour 2 kWh certified: hour 0 28 kWh at 100, hour 2 38 kWh at 100
    np.testing.assert_allclose(hourly.grams, [2800 / 3, 5600 / 3, 0.0, 3800.0, 3500.0])
    assert hourly.cfe_share_247 == pytest.approx(4.0 / 75.0)   # of all 75 kWh, PL's too
    nothing = market_based([0.0], [0.0], ["FR"], [cert], mix, DAY, "hourly")
    assert nothing.cfe_share_247 is None and nothing.grams.tolist() == [0.0]


def test_sci_per_unit_by_hand():
    np.testing.assert_allclose(sci_g_per_unit([3.0, 1.0], [1.0, 2.0], [2.0, 0.5]), [2.0, 6.0])
    assert np.isnan(sci_g_per_unit(1.0, 1.0, 0.0))


# ---- the running market (gateway /metrics) ------------------------------------------------------

def test_running_market_consumes_each_volume_first_come():
    """A 1 MWh PPA at 0 over 10 hours, then the residual 400 g/kWh; requests arrive in turn."""
    ppa = Contract("ppa", "FR", 0.0, 10 * H, 0.0, mwh=1.0)
    m = RunningMarket([ppa], {"fr": 400.0})
    assert m.grams(600.0, H, "fr") == 0.0
    assert m.grams(600.0, 2 * H, "FR") == pytest.approx(200 * 400.0)    # 400 kWh left
    assert m.grams(10.0, 3 * H, "FR") == pytest.approx(4000.0)          # spent
    assert m.grams(10.0, 10 * H, "FR") == pytest.approx(4000.0)         # past its end
    with pytest.raises(TokenprintError, match=r"^no residual mix for region DE: give its factor$"):
        m.grams(1.0, H, "de")


def test_running_market_by_the_hour_and_by_worker_share():
    """Hourly: the same PPA is 100 kWh an hour; a worker of two gets 50 of each hour."""
    ppa = Contract("ppa", "FR", 0.0, 10 * H, 0.0, mwh=1.0)
    m = RunningMarket([ppa], {"FR": 400.0}, "hourly", share=0.5)
    assert m.grams(40.0, 0.0, "FR") == 0.0
    assert m.grams(40.0, 0.5 * H, "FR") == pytest.approx(30 * 400.0)    # 10 of 50 left
    assert m.grams(40.0, 1.5 * H, "FR") == 0.0                          # a new hour
    whole = RunningMarket([ppa], {"FR": 400.0}, "annual", share=0.5)
    assert whole.grams(600.0, H, "FR") == pytest.approx(100 * 400.0)    # 500 of 1,000 kWh


def test_running_market_applies_the_guidance_order_and_the_region():
    cert = Contract("certificate", "FR", 0.0, 10 * H, 0.0, mwh=0.01)      # 10 kWh
    supplier = Contract("supplier", "FR", 0.0, 10 * H, 250.0)
    other = Contract("ppa", "DE", 0.0, 10 * H, 0.0, mwh=100.0)
    m = RunningMarket([supplier, other, cert], {"FR": 400.0, "DE": 300.0})
    assert m.grams(30.0, H, "FR") == pytest.approx(20 * 250.0)
    assert m.grams(30.0, 11 * H, "FR") == pytest.approx(30 * 400.0)     # every span is over


def test_running_market_refuses_regions_without_a_residual_mix():
    with pytest.raises(TokenprintError, match=r"^matching 'weekly' is invalid; valid: annual, "
                                              "hourly$"):
        RunningMarket([], {}, "weekly")
    m = RunningMarket([], {"fr": 1.0, "DE": 2.0})
    m.check_regions(["FR", "de"])
    with pytest.raises(TokenprintError) as err:
        m.check_regions(["pl", "FR", "us-cal-ciso", "PL"])
    assert str(err.value) == ("no residual mix for region(s) PL, US-CAL-CISO: give their "
                              "factors under [residual_mix] in the contracts file")


def test_running_market_forgets_hours_long_past():
    ppa = Contract("ppa", "FR", 0.0, 60_000 * H, 0.0, mwh=60_000.0)      # 1,000 kWh an hour
    m = RunningMarket([ppa], {"FR": 400.0}, "hourly")
    for h in range(50_001):
        m.grams(1.0, h * H, "FR")
    assert len(m._used) == 49                      # only the last 48 hours and this one kept
    assert min(k[1] for k in m._used) == 50_000 - 48
    assert m.grams(1.0, 50_000 * H, "FR") == 0.0   # this hour's use is still counted
    assert m._used[(0, 50_000.0)] == pytest.approx(2.0)


def test_over_a_whole_span_the_running_market_equals_market_based():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 24 * H, 300))
    e = rng.uniform(0, 2.0, 300)
    cs = [Contract("ppa", "FR", *DAY, 0.0, mwh=0.12), Contract("supplier", "FR", *DAY, 90.0)]
    for matching in ("annual", "hourly"):
        m = RunningMarket(cs, {"FR": 400.0}, matching)
        running = sum(m.grams(float(x), float(s), "FR") for x, s in zip(e, t, strict=True))
        batch = market_based(e, t, ["FR"] * 300, cs, {"FR": 400.0}, DAY, matching)
        assert running == pytest.approx(float(batch.grams.sum()), rel=1e-9), matching


# ---- the contracts file -------------------------------------------------------------------------

GOOD = """matching = "hourly"
[residual_mix]
fr = 60
DE = 380.5
[[contract]]
kind = "ppa"
region = "fr"
start = "2026-01-01T00:00:00Z"
end = "2026-01-02T00:00:00Z"
mwh = 2.4
g_per_kwh = 0.0
[[contract]]
kind = "supplier"
region = "DE"
start = "2026-01-01T00:00:00Z"
end = "2027-01-01T00:00:00Z"
g_per_kwh = 210
"""


def test_a_contracts_file_by_hand(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text(GOOD)
    c = load_contracts(f)
    day0 = 1767225600.0                                   # 2026-01-01T00:00:00Z
    assert c.matching == "hourly" and c.residual_g_per_kwh == {"FR": 60.0, "DE": 380.5}
    assert c.contracts == (Contract("ppa", "FR", day0, day0 + 24 * H, 0.0, 2.4),
                           Contract("supplier", "DE", day0, day0 + 365 * 24 * H, 210.0, None))
    f.write_text("")
    assert load_contracts(f).matching == "annual" and load_contracts(f).contracts == ()


@pytest.mark.parametrize(("text", "why"), [
    ('matching = "daily"\n', "matching 'daily' is invalid; valid: annual, hourly"),
    ("residual_mix = 5\n", "[residual_mix] must map regions to g/kWh from 0 to 2000"),
    ('[residual_mix]\nFR = "60"\n', "[residual_mix] must map regions to g/kWh from 0 to 2000"),
    ("[residual_mix]\nFR = 2000.5\n", "[residual_mix] must map regions to g/kWh from 0 to 2000"),
    ("[residual_mix]\nFR = -1\n", "[residual_mix] must map regions to g/kWh from 0 to 2000"),
    (GOOD.replace('end = "2026-01-02T00:00:00Z"\n', ""), "contract 1: missing 'end'"),
    (GOOD.replace('kind = "supplier"', 'kind = "rec"'),
     "contract 2: contract kind 'rec' is invalid; valid: certificate, ppa, supplier")])
def test_a_contracts_file_is_refused_naming_the_entry(tmp_path: Path, text, why):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(TokenprintError) as err:
        load_contracts(f)
    assert str(err.value) == f"contracts file {str(f)!r}: {why}" or str(err.value) == (
        f"contracts file {str(f)!r}, {why}")


def test_the_bounds_of_a_residual_mix_are_valid(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text("[residual_mix]\nFR = 0\nDE = 2000\n")
    assert load_contracts(f).residual_g_per_kwh == {"FR": 0.0, "DE": 2000.0}
