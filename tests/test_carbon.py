from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenprint.carbon import (
    ConstantIntensity,
    IntensitySeries,
    compute_footprint,
    die_carbon_g,
    footprint_arrays,
    gpu_embodied,
    load_intensity_csv,
    operational_g,
    operational_g_energy_timeline,
    operational_g_over,
    operational_g_power_timeline,
    parse_time,
)
from tokenprint.carbon.amortize import amortized_g
from tokenprint.errors import TokenprintError
from tokenprint.units import S_PER_YEAR

# (CI_fab × EPA + mean(GPA95, GPA99) + MPA) / 0.875 per cm², worked by hand with Taiwan 583 g/kWh
HAND_CPA_G_PER_CM2 = {
    "28nm": (583 * 0.90 + (175 + 100) / 2 + 500) / 0.875,   # 1328.2
    "14nm": (583 * 1.20 + (200 + 125) / 2 + 500) / 0.875,   # 1556.7
    "10nm": (583 * 1.475 + (240 + 150) / 2 + 500) / 0.875,  # 1777.2
    "7nm": (583 * 2.15 + (350 + 200) / 2 + 500) / 0.875,    # 2318.2
    "5nm": (583 * 2.75 + (430 + 225) / 2 + 500) / 0.875,    # 2778.0
    "3nm": (583 * 3.25 + (470 + 275) / 2 + 500) / 0.875,    # 3163.1
}


@pytest.mark.parametrize("node,expected", list(HAND_CPA_G_PER_CM2.items()))
def test_act_die_formula_per_node(catalog, node, expected):
    n = catalog.fab_node(node)
    gpa_mean = (n.gpa95_g_per_cm2.value + n.gpa99_g_per_cm2.value) / 2
    got = die_carbon_g(100.0, n.epa_kwh_per_cm2.value, gpa_mean, n.mpa_g_per_cm2.value, 583, 0.875)
    assert got == pytest.approx(expected, rel=1e-9)


def test_act_cpa_matches_published_derivation(catalog):
    # tokenprint's die model for 1 cm² at ACT's defaults (Taiwan 583 g/kWh, mean abatement,
    # yield 0.875) gives the rounded figures of shared embodied_parameters.csv "CPA_derived"
    for node, rounded in {"28nm": 1328, "14nm": 1557, "10nm": 1777, "7nm": 2318, "5nm": 2778,
                          "3nm": 3163}.items():
        n = catalog.fab_node(node)
        gpa = (n.gpa95_g_per_cm2.value + n.gpa99_g_per_cm2.value) / 2
        got = die_carbon_g(100.0, n.epa_kwh_per_cm2.value, gpa, n.mpa_g_per_cm2.value, 583.0,
                           catalog.fab.yield_fraction.value)
        assert round(float(got)) == rounded, node


def test_t4_device_scope_figure(catalog):
    """T4 device scope = the reconciled packaged GPU + memory (tests/test_embodied_bom.py derives
    each part by hand); the seed's ACT die alone is the ``die`` scope, ≈ 8.5 kg."""
    die = gpu_embodied(catalog.gpu("t4"), catalog, "die")
    assert die.total_g.mid == pytest.approx(5.45 * HAND_CPA_G_PER_CM2["14nm"], rel=1e-9)
    b = gpu_embodied(catalog.gpu("t4"), catalog, "device")
    assert b.components_g["memory"].mid == pytest.approx(16 * 1388)   # the Dell R740 LCA median
    assert b.components_g["packaging"].mid == 0.0 and b.components_g["board"].mid == 0.0
    # the range's low end is ACT's own device total: the die + one 150 g package + 140 g/GB
    assert b.total_g.low == pytest.approx(die.total_g.mid + 150 + 16 * 140)


def test_hbm_factors_follow_the_vendor_split(catalog):
    pcf = catalog.pcfs["nvidia-hgx-h100"]
    per_gb = pcf.breakdown_g["memory"].value / pcf.memory_gb          # 546 kg / 640 GB
    assert per_gb == pytest.approx(853.125)
    assert catalog.memory_factor("hbm3").g_per_gb.value == pytest.approx(per_gb, rel=1e-3)
    assert catalog.memory_factor("hbm2e").g_per_gb.value == pytest.approx(per_gb, rel=1e-3)
    # density scaling: 8 Gb HBM2 dies take twice the wafer per GB, 24 Gb HBM3e dies two thirds
    assert catalog.memory_factor("hbm2").g_per_gb.value == pytest.approx(2 * per_gb, rel=1e-3)
    assert catalog.memory_factor("hbm3e").g_per_gb.value == pytest.approx(per_gb * 16 / 24,
                                                                        rel=1e-3)
    for t in ("hbm2", "hbm2e", "hbm3", "hbm3e"):  # high: Boavizta's effective-area method
        assert catalog.memory_factor(t).g_per_gb.high == 2849


def test_h100_card_is_the_vendor_footprint(catalog):
    b = gpu_embodied(catalog.gpu("h100-sxm"), catalog, "card")
    assert b.total_g.mid == pytest.approx(1_312_000 / 8)
    assert b.components_g["memory"].mid == pytest.approx(546_000 / 8)
    assert b.components_g["die"].mid == pytest.approx(332_000 / 8)
    assert b.components_g["board"].mid == pytest.approx((230_000 + 204_000) / 8)
    assert any("HGX H100" in s for s in b.sources.values())
    # device scope: the vendor's ICs and HBM3 share
    d = gpu_embodied(catalog.gpu("h100-sxm"), catalog, "device")
    assert d.total_g.mid == pytest.approx((332_000 + 546_000) / 8)


def test_bottom_up_card_calibrated_on_the_vendor_split(catalog):
    from tokenprint.carbon.bom import reconcile_card
    from tokenprint.carbon.embodied import vendor_calibration

    cal = vendor_calibration(catalog)
    h100_die = 8.14 * HAND_CPA_G_PER_CM2["5nm"]
    assert cal.ic_factor == pytest.approx(41_500 / h100_die)
    assert cal.thermal_g_per_w == pytest.approx(230_000 / 8 / 700)
    assert cal.other_board_g == pytest.approx(204_000 / 8)
    # B200 (no PCF): the vendor's witnesses are two dies × IC factor, 180 GB HBM3e at the
    # density-scaled share, a 1000 W module's thermal and the module's other board parts
    bom = reconcile_card(catalog.gpu("b200"), catalog)
    vendor = {p: next(w.value_g for w in v.witnesses if w.source_id == "vendor-pcf")
              for p, v in bom.parts.items() if p != "transport"}
    die = 16.0 * HAND_CPA_G_PER_CM2["5nm"]
    assert vendor == pytest.approx({"die": die * cal.ic_factor,
                                    "memory": 180 * 853.125 * 16 / 24,
                                    "thermal": 230_000 / 8 / 700 * 1000,
                                    "board": 204_000 / 8}, rel=1e-3)
    # applied to the H100 itself the calibrated witnesses give back the vendor's total
    assert (h100_die * cal.ic_factor + 80 * 853.125 + 204_000 / 8 + 230_000 / 8
            == pytest.approx(164_000, rel=1e-3))


def test_card_ordering_follows_memory_and_die(catalog):
    card = {g: gpu_embodied(catalog.gpu(g), catalog, "card").total_g.mid
            for g in ("a100-sxm4-40gb", "h100-sxm", "b200")}
    assert card["a100-sxm4-40gb"] < card["h100-sxm"] < card["b200"]


def test_host_from_manufacturer_footprint(catalog):
    from tokenprint.carbon.embodied import host_embodied_g

    host = catalog.host("2s-t4-inference")
    total, sources = host_embodied_g(host, catalog)
    # Dell R740: 8640 kg × 15.2 % manufacturing, + (384 - 32) GB DDR4 at 65 g/GB + 3.84 TB SSD
    assert total.mid == pytest.approx(8640_000 * 0.152 + 352 * 65 + 3840 * 10, rel=1e-3)
    assert "R740" in sources["host.server"]
    t4 = gpu_embodied(catalog.gpu("t4"), catalog, "server")
    assert t4.components_g["host"].mid == pytest.approx(total.mid / 4)


def test_h100_die_alone(catalog):
    b = gpu_embodied(catalog.gpu("h100-sxm"), catalog, "die")
    assert 22_000 < b.total_g.mid < 23_000  # DESIGN: an 814 mm² 5nm die ≈ 22-23 kg


def test_scopes_nest(catalog):
    gpu = catalog.gpu("a100-sxm4-80gb")
    totals = [gpu_embodied(gpu, catalog, s).total_g.mid for s in ("die", "device", "card",
                                                                   "server")]
    assert totals == sorted(totals) and len(set(totals)) == 4
    server = gpu_embodied(gpu, catalog, "server")
    assert server.components_g["host"].mid > 0
    assert gpu_embodied(gpu, catalog, "device").components_g["board"].mid == 0


def test_vendor_override_replaces_component(tmp_path: Path):
    from tokenprint.catalog import load_catalog

    f = tmp_path / "v.toml"
    f.write_text('[[gpu]]\nid = "h100-sxm"\nembodied_overrides_g = { die = { value = 14650, '
                 'source = "LLMCarbon" } }\n')
    cat = load_catalog([f])
    for scope in ("device", "card"):  # overrides win over the vendor footprint too
        b = gpu_embodied(cat.gpu("h100-sxm"), cat, scope)
        assert b.components_g["die"].mid == 14650
    b = gpu_embodied(cat.gpu("h100-sxm"), cat, "device")
    assert b.components_g["die"].mid == 14650
    assert b.sources["die"].startswith("override")


def test_bad_scope(catalog):
    with pytest.raises(TokenprintError, match="valid scopes: die, device, card, server"):
        gpu_embodied(catalog.gpu("t4"), catalog, "rack")


def test_operational_basic():
    # 1 kWh at 400 g/kWh, PUE 1.2 → 480 g
    assert operational_g(3.6e6, 400, 1.2) == pytest.approx(480.0)
    with pytest.raises(TokenprintError, match="PUE"):
        operational_g(1.0, 1.0, 0.9)


def _series(values, start="2023-07-01T00:00:00Z"):
    return IntensitySeries(parse_time(start), 3600.0, np.array(values, dtype=float))


def test_hourly_integration_across_boundary():
    s = _series([100.0, 300.0, 50.0])
    t0 = parse_time("2023-07-01T00:40:00Z")
    # 13:40-14:20 style: 20 min at 100 then 20 min at 300 → mean 200
    assert float(s.mean_over(t0, t0 + 2400)) == pytest.approx(200.0)
    # 3.6e6 J spread evenly over those 40 min → 1 kWh × 200 g/kWh
    assert float(operational_g_over(3.6e6, t0, 2400, s)) == pytest.approx(200.0)
    # across three hours: 20 min @100, 60 @300, 10 @50 → (2000+18000+500)/90
    assert float(s.mean_over(t0, t0 + 90 * 60)) == pytest.approx(20500 / 90)


def test_energy_timeline_and_power_timeline_agree_for_constant_power():
    s = _series([100.0, 300.0])
    t = parse_time("2023-07-01T00:30:00Z") + np.array([0.0, 1800.0, 3600.0])
    # 1000 W for an hour: 0.5 kWh in each hour
    expected = 0.5 * 100 + 0.5 * 300
    assert operational_g_energy_timeline(t, [0, 1.8e6, 3.6e6], s) == pytest.approx(expected)
    assert operational_g_power_timeline(t, [1000.0, 1000.0, 1000.0], s) == pytest.approx(expected)


def test_power_timeline_exact_for_linear_power():
    s = _series([0.0, 1000.0])
    t0 = parse_time("2023-07-01T00:00:00Z")
    # power ramps 0 → 7200 W over two hours; only the second hour carries carbon.
    # energy in hour 2 = ∫_{3600}^{7200} t dt W·s = (7200² − 3600²)/2 J = 19.44e6 J = 5.4 kWh
    g = operational_g_power_timeline(t0 + np.array([0.0, 7200.0]), [0.0, 7200.0], s)
    assert g == pytest.approx(5.4 * 1000.0)


def test_time_outside_series_named():
    s = _series([100.0])
    with pytest.raises(TokenprintError, match=r"2023-07-01T02:30:00.* is outside the intensity"):
        s.mean_over(parse_time("2023-07-01T02:00:00Z"), parse_time("2023-07-01T02:30:00Z"))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ci.csv"
    p.write_text(text)
    return p


def test_plain_csv_with_timezones(tmp_path: Path):
    p = _write(tmp_path, "timestamp,intensity_g_per_kwh\n2023-07-01T02:00:00+02:00,100\n"
                         "2023-07-01T03:00:00+02:00,200\n")
    s = load_intensity_csv(p)
    assert s.start_s == parse_time("2023-07-01T00:00:00Z")
    assert list(s.values) == [100.0, 200.0]


@pytest.mark.parametrize("rows,needle", [
    (["2023-01-01 00:00,100", "2023-01-01 01:00,abc"], "row 3: intensity 'abc' is not a number"),
    (["2023-01-01 00:00,100", "2023-01-01 01:00,-5"], "row 3: intensity -5 is negative"),
    (["2023-01-01 00:00,100", "2023-01-01 00:00,120"], "row 3: duplicate time"),
    (["2023-01-01 01:00,100", "2023-01-01 00:00,120"], "row 3: time"),
    (["2023-01-01 00:00,100", "2023-01-01 01:00,100", "2023-01-01 03:00,100"],
     "missing data at 2023-01-01T02:00:00"),
    (["not-a-time,100"], "row 2: cannot read time"),
])
def test_bad_intensity_rows(tmp_path: Path, rows, needle):
    p = _write(tmp_path, "timestamp,intensity_g_per_kwh\n" + "\n".join(rows) + "\n")
    with pytest.raises(TokenprintError) as exc:
        load_intensity_csv(p)
    assert needle in str(exc.value)


def test_fill_interpolates_empty_value(tmp_path: Path):
    p = _write(tmp_path, "timestamp,intensity_g_per_kwh\n2023-01-01 00:00,100\n"
                         "2023-01-01 01:00,\n2023-01-01 02:00,200\n")
    with pytest.raises(TokenprintError, match="row 3"):
        load_intensity_csv(p)
    assert list(load_intensity_csv(p, fill=True).values) == [100.0, 150.0, 200.0]


def test_fill_interpolates_gap(tmp_path: Path):
    p = _write(tmp_path, "timestamp,intensity_g_per_kwh\n2023-01-01 00:00,100\n"
                         "2023-01-01 01:00,100\n2023-01-01 03:00,200\n")
    s = load_intensity_csv(p, fill=True)
    assert list(s.values) == [100.0, 100.0, 150.0, 200.0]


def test_wrong_columns(tmp_path: Path):
    p = _write(tmp_path, "when,value\n2023-01-01,1\n")
    with pytest.raises(TokenprintError, match="expected an Electricity Maps export"):
        load_intensity_csv(p)


def test_shared_electricitymaps_and_eia_files(shared_data: Path):
    em = load_intensity_csv(shared_data / "grid/electricitymaps_hourly/US-CAL-CISO_2023.csv",
                            basis="direct")
    assert em.values.size == 8760 and em.step_s == 3600
    assert 150 < em.values.mean() < 250  # 194 g/kWh direct, annual mean 2023
    lca = load_intensity_csv(shared_data / "grid/electricitymaps_hourly/US-CAL-CISO_2023.csv")
    assert lca.values.mean() > em.values.mean()
    with pytest.raises(TokenprintError, match=r"row \d+: intensity '' is not a number"):
        load_intensity_csv(shared_data / "grid/CISO_NG_&_avgCI.csv")  # the 2022 file has holes
    eia = load_intensity_csv(shared_data / "grid/CISO_NG_&_avgCI.csv", fill=True)
    assert np.all(np.isfinite(eia.values))
    assert eia.basis == "lifecycle" and eia.values.size == 8760
    with pytest.raises(TokenprintError, match="lifecycle intensity only"):
        load_intensity_csv(shared_data / "grid/CISO_NG_&_avgCI.csv", basis="direct")


def test_footprint_annual_region(catalog):
    fp = compute_footprint(catalog, gpu="t4", region="US-CAL-CISO", energy_j=3.6e6,
                           duration_s=3600.0)
    assert fp.operational_g.mid == pytest.approx(263.0)
    assert fp.operational_g.low == pytest.approx(229.0)
    emb = gpu_embodied(catalog.gpu("t4"), catalog, "device").total_g.mid
    assert fp.embodied_g.mid == pytest.approx(emb * 3600 / (5 * S_PER_YEAR))
    d = fp.to_dict()
    assert set(d["embodied_breakdown_g"]) == {"die", "memory", "packaging", "board", "host"}
    assert d["total_range_g"]["low"] <= d["total_g"] <= d["total_range_g"]["high"]
    assert fp.per_1k_tokens(2000)["total_g"] == pytest.approx(fp.total_g.mid / 2)


def test_footprint_hourly(catalog):
    s = _series([100.0, 300.0])
    fp = compute_footprint(catalog, gpu="t4", region="US-CAL-CISO", energy_j=3.6e6,
                           duration_s=3600.0, intensity=s,
                           start_s=parse_time("2023-07-01T00:30:00Z"))
    assert fp.operational_g.mid == pytest.approx(200.0)


def test_amortization_and_vectorized_footprints():
    assert float(amortized_g(1000.0, S_PER_YEAR, 5)) == pytest.approx(200.0)
    out = footprint_arrays(np.array([3.6e6, 7.2e6]), 3600.0, np.array([100.0, 50.0]), 1e6, 5.0)
    assert out["operational_g"].tolist() == pytest.approx([100.0, 100.0])
    assert np.all(out["total_g"] > out["operational_g"])


@settings(max_examples=60, deadline=None)
@given(e=st.floats(0, 1e9), k=st.floats(0, 100), ci=st.floats(0, 2000))
def test_operational_linear_in_energy(e, k, ci):
    a = float(operational_g(e * k, ci))
    b = k * float(operational_g(e, ci))
    assert a == pytest.approx(b, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(e=st.floats(0, 1e9), ci1=st.floats(0, 2000), ci2=st.floats(0, 2000))
def test_operational_monotone_in_intensity(e, ci1, ci2):
    lo, hi = sorted((ci1, ci2))
    assert float(operational_g(e, lo)) <= float(operational_g(e, hi))


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(0, 1000), min_size=1, max_size=48),
       a=st.floats(0, 1), b=st.floats(0, 1))
def test_series_mean_within_bounds(values, a, b):
    s = IntensitySeries(0.0, 3600.0, np.array(values))
    lo, hi = sorted((a * s.end_s, b * s.end_s))
    m = float(s.mean_over(lo, hi))
    assert min(values) - 1e-6 <= m <= max(values) + 1e-6


def test_constant_intensity_validates():
    with pytest.raises(TokenprintError):
        ConstantIntensity(-1.0)


def test_power_timeline_branches_and_checks():
    from tokenprint.carbon import ConstantIntensity

    c = ConstantIntensity(400.0, "lifecycle", "test")
    # 500 W for 2 h at 400 g/kWh, PUE 1.5 → 1 kWh × 1.5 × 400 = 600 g (constant intensity path)
    assert operational_g_power_timeline([0.0, 7200.0], [500.0, 500.0], c, 1.5) == \
        pytest.approx(600.0)
    # linear ramp 0 → 1000 W over an hour: 0.5 kWh → 200 g
    assert operational_g_power_timeline([0.0, 3600.0], [0.0, 1000.0], c) == pytest.approx(200.0)
    for args, msg in ((([0.0], [1.0]), "2 or more"), (([0.0, 1.0], [1.0]), "matching"),
                      (([0.0, 0.0], [1.0, 1.0]), "increase strictly"),
                      (([0.0, 1.0], [1.0, -1.0]), "power must be >= 0")):
        with pytest.raises(TokenprintError, match=msg):
            operational_g_power_timeline(*args, c)
    for args, msg in ((([0.0, 1.0], [5.0, 2.0]), "must not decrease"),
                      (([1.0, 0.0], [0.0, 1.0]), "increase strictly"),
                      (([0.0], [0.0]), "2 or more")):
        with pytest.raises(TokenprintError, match=msg):
            operational_g_energy_timeline(*args, c)
    # energy counter: 2 kWh over one interval at 400 g/kWh
    assert operational_g_energy_timeline([0.0, 10.0], [0.0, 7.2e6], c) == pytest.approx(800.0)


def test_footprint_to_dict_carries_every_part(catalog):
    fp = compute_footprint(catalog, gpu="h100", region="FR", energy_j=7.2e6, duration_s=3600,
                           gpu_count=2, scope="card", pue=1.1, utilization=0.5)
    d = fp.to_dict()
    assert d["operational_g"] == pytest.approx(2 * 1.1 * fp.intensity_g_per_kwh.mid)
    assert d["embodied_g"] == pytest.approx(float(fp.embodied_g.mid))
    assert d["total_g"] == pytest.approx(d["operational_g"] + d["embodied_g"])
    assert d["total_range_g"] == {"low": pytest.approx(float(fp.total_g.low)),
                                  "high": pytest.approx(float(fp.total_g.high))}
    assert d["scope"] == "card" and d["gpu"] == "h100-sxm" and d["region"] == "FR"
    assert d["utilization"] == 0.5 and d["pue"] == 1.1 and d["amortization"] == "provisioned"
    assert set(d["embodied_breakdown_g"]) == {"die", "memory", "packaging", "board", "host"}
    assert d["embodied_breakdown_g"]["host"] == 0
    assert d["energy_j"] == 7.2e6 and d["duration_s"] == 3600
    assert d["embodied_share"] == pytest.approx(d["embodied_g"] / d["total_g"])
    per = fp.per_1k_tokens(2000)
    assert per["total_g"] == pytest.approx(d["total_g"] / 2)
    with pytest.raises(TokenprintError, match="normalise"):
        fp.per_unit(0)


def test_series_mean_over_a_subnormal_window_is_the_point_value():
    """Hypothesis found it: [0, 5e-324 h] gave 1.28111 between two values of 1.28125."""
    s = IntensitySeries(0.0, 3600.0, np.array([1.28125]))
    assert float(s.mean_over(0.0, 5e-324 * 3600.0)) == 1.28125
    two = IntensitySeries(0.0, 3600.0, np.array([100.0, 300.0]))
    assert float(two.mean_over(1800.0, 5400.0)) == pytest.approx(200.0)
