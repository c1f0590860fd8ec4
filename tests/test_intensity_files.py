"""Intensity files, series arithmetic and operational carbon, pinned by hand.

Error messages are part of the contract (one line naming the value and what is valid), so each
bad file is checked against its whole message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tokenprint.carbon.intensity import (
    ConstantIntensity,
    IntensitySeries,
    iso,
    load_intensity_csv,
    parse_time,
)
from tokenprint.carbon.operational import (
    crossover_intensity,
    operational_g,
    operational_g_energy_timeline,
    operational_g_over,
    operational_g_power_timeline,
)
from tokenprint.errors import TokenprintError

H = 3600.0
T0 = 1688169600.0  # 2023-07-01T00:00:00Z
EM_HEAD = ("Datetime (UTC),Country,Carbon Intensity gCO₂eq/kWh (direct),"
           "Carbon Intensity gCO₂eq/kWh (LCA)\n")


def _csv(tmp_path: Path, text: str, name: str = "ci.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _err(path: Path, **kw) -> str:
    with pytest.raises(TokenprintError) as exc:
        load_intensity_csv(path, **kw)
    return str(exc.value)


PLAIN = "timestamp,intensity_g_per_kwh\n"


@pytest.mark.parametrize("body, message", [
    ("", "has no rows"),
    ("2023-07-01T00:00Z,100\nyesterday,90\n", "row 3: cannot read time 'yesterday'"),
    ("2023-07-01T00:00Z,100\n2023-07-01T01:00Z,NA\n", "row 3: intensity 'NA' is not a number"),
    ("2023-07-01T00:00Z,100\n2023-07-01T01:00Z,-5\n", "row 3: intensity -5 is negative"),
    ("2023-07-01T00:00Z,100\n2023-07-01T00:00Z,90\n",
     "row 3: duplicate time 2023-07-01T00:00:00+00:00"),
    ("2023-07-01T01:00Z,100\n2023-07-01T00:00Z,90\n",
     "row 3: time 2023-07-01T00:00:00+00:00 is before the row above it; rows must be sorted "
     "by time"),
    ("2023-07-01T00:00Z,1\n2023-07-01T01:00Z,2\n2023-07-01T02:30Z,3\n",
     "row 4: time 2023-07-01T02:30:00+00:00 is off the regular 3600 s grid"),
    ("2023-07-01T00:00Z,1\n2023-07-01T01:00Z,2\n2023-07-01T03:00Z,3\n",
     ": missing data at 2023-07-01T02:00:00+00:00 (between rows 3 and 4); fill the gap in the "
     "file or use the fill option to interpolate"),
])
def test_bad_plain_files_name_the_row_and_the_fix(tmp_path: Path, body: str, message: str):
    p = _csv(tmp_path, PLAIN + body)
    assert _err(p) == f"intensity file {str(p)!r}{'' if message[0] == ':' else ' '}{message}"


def test_file_level_errors(tmp_path: Path):
    p = _csv(tmp_path, PLAIN + "2023-07-01T00:00Z,1\n")
    with pytest.raises(TokenprintError) as exc:
        load_intensity_csv(p, basis="market")
    assert str(exc.value) == "unknown intensity basis 'market'; valid: lifecycle, direct"
    assert _err(tmp_path / "none.csv") == \
        f"intensity file {str(tmp_path / 'none.csv')!r} does not exist"
    assert _err(tmp_path) == f"intensity file {str(tmp_path)!r} is a directory, not a file"
    odd = _csv(tmp_path, "when,value\n1,2\n")
    assert _err(odd) == (
        f"intensity file {str(odd)!r} has columns ['when', 'value']; expected an Electricity "
        "Maps export ('Datetime (UTC)', 'Carbon Intensity gCO₂eq/kWh (direct)/(LCA)'), EIA-930 "
        "form ('timestamp', 'avg_CI') or 'timestamp,intensity_g_per_kwh'")
    eia = _csv(tmp_path, "timestamp,avg_CI\n2023-07-01T00:00Z,300\n")
    assert _err(eia, basis="direct") == (
        f"intensity file {str(eia)!r} (EIA-930 form) holds lifecycle intensity only; use basis "
        "'lifecycle'")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81timestamp")
    assert _err(binary).startswith(f"intensity file {str(binary)!r} is not a readable CSV: ")
    em_direct_only = _csv(tmp_path, "Datetime (UTC),Carbon Intensity gCO₂eq/kWh (direct)\n"
                                    "2023-07-01 00:00:00,50\n")
    assert _err(em_direct_only) == \
        "Electricity Maps file has no (LCA) carbon intensity column"


def test_fill_interpolates_gaps_and_bad_values(tmp_path: Path):
    p = _csv(tmp_path, PLAIN + "2023-07-01T00:00Z,100\n2023-07-01T01:00Z,oops\n"
                               "2023-07-01T02:00Z,200\n2023-07-01T05:00Z,500\n")
    s = load_intensity_csv(p, fill=True)
    assert (s.start_s, s.step_s) == (T0, H)
    np.testing.assert_allclose(s.values, [100, 150, 200, 300, 400, 500])
    allbad = _csv(tmp_path, PLAIN + "2023-07-01T00:00Z,x\n2023-07-01T01:00Z,y\n", "bad.csv")
    assert _err(allbad, fill=True) == \
        f"intensity file {str(allbad)!r} row 2: intensity 'x' is not a number"


def test_formats_bases_and_sources(tmp_path: Path):
    em = _csv(tmp_path, EM_HEAD + "2023-07-01 00:00:00,FR, 20 ,50\n2023-07-01 01:00:00,FR,30,60\n",
              "FR.csv")
    lca, direct = load_intensity_csv(em), load_intensity_csv(em, basis="direct")
    np.testing.assert_allclose(lca.values, [50, 60])
    np.testing.assert_allclose(direct.values, [20, 30])
    assert (lca.basis, direct.basis) == ("lifecycle", "direct")
    assert lca.source == "FR.csv [Electricity Maps (lifecycle)]"
    assert direct.source == "FR.csv [Electricity Maps (direct)]"
    eia = _csv(tmp_path, "\ufefftimestamp , avg_CI\n2023-07-01T00:00Z,300\n", "eia.csv")
    one = load_intensity_csv(eia)
    assert (one.start_s, one.step_s, one.basis) == (T0, H, "lifecycle")   # one row: an hour
    assert one.source == "eia.csv [EIA-930 avg_CI (lifecycle)]"
    plain = _csv(tmp_path, PLAIN + "2023-07-01T00:00Z,7\n2023-07-01T00:15Z,9\n", "p.csv")
    q = load_intensity_csv(plain, basis="direct")
    assert (q.step_s, q.basis, q.source) == (900.0, "direct", "p.csv [plain (direct)]")


def test_series_arithmetic_by_hand():
    s = IntensitySeries(T0, H, np.array([100.0, 200.0, 400.0]))
    assert s.end_s == T0 + 3 * H
    np.testing.assert_allclose(s.times_s(), [T0, T0 + H, T0 + 2 * H])
    # 13:40-14:20 style: 20 min at 100 and 20 min at 200 → 150; an empty interval → point value
    np.testing.assert_allclose(s.mean_over([T0 + 40 * 60, T0 + H], [T0 + 80 * 60, T0 + H]),
                               [150.0, 200.0])
    np.testing.assert_allclose(s.integral([T0, T0 + 1.5 * H, T0 + 3 * H]),
                               [0.0, 100 * H + 200 * 0.5 * H, 700 * H])
    np.testing.assert_allclose(s.at([T0, T0 + H - 1, T0 + H, T0 + 3 * H]), [100, 100, 200, 400])
    with pytest.raises(TokenprintError) as exc:
        s.at([T0 - 1])
    assert str(exc.value) == ("time 2023-06-30T23:59:59+00:00 is outside the intensity series, "
                              "which covers 2023-07-01T00:00:00+00:00 to "
                              "2023-07-01T03:00:00+00:00")
    with pytest.raises(TokenprintError, match="time 2023-07-01T03:00:01"):
        s.integral([T0, T0 + 3 * H + 1])
    with pytest.raises(TokenprintError, match=r"^an interval ends before it starts$"):
        s.mean_over([T0 + 10], [T0])
    assert s.at(np.array([])).size == 0
    with pytest.raises(TokenprintError, match=r"^an intensity series needs at least one value$"):
        IntensitySeries(T0, H, np.array([]))
    with pytest.raises(TokenprintError, match=r"^intensity series step 0 s must be > 0$"):
        IntensitySeries(T0, 0, np.array([1.0]))
    with pytest.raises(TokenprintError, match=r"^intensity series step -1 s must be > 0$"):
        IntensitySeries(T0, -1, np.array([1.0]))


def test_hour_of_day_mean_by_hand():
    # 27 hours from 22:00: hour 22 sees 1 and 25 (mean 13), hour 23 2 and 26, hour 0 3 and 27;
    # hour 21 only 24
    vals = np.arange(1.0, 28.0)
    s = IntensitySeries(T0 - 2 * H, H, vals)
    m = s.hour_of_day_mean()
    assert m.shape == (24,)
    assert m[22] == pytest.approx(13.0) and m[23] == pytest.approx(14.0)
    assert m[0] == pytest.approx(15.0) and m[21] == pytest.approx(24.0)
    short = IntensitySeries(T0, H, np.array([5.0, 7.0]))
    hm = short.hour_of_day_mean()
    assert (hm[0], hm[1]) == (5.0, 7.0) and np.isnan(hm[2:]).all()


def test_constant_intensity_and_times():
    c = ConstantIntensity(250.0)
    np.testing.assert_allclose(c.mean_over([0.0, 5.0], 10.0), [250.0, 250.0])
    assert c.mean_over(0.0, 1.0).shape == ()
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(TokenprintError) as exc:
            ConstantIntensity(bad)
        assert str(exc.value) == f"intensity {bad!r} g/kWh is invalid; it must be a number >= 0"
    assert ConstantIntensity(0.0).g_per_kwh == 0.0
    assert iso(T0) == "2023-07-01T00:00:00+00:00"
    assert parse_time("2023-07-01T02:00:00+02:00") == T0
    assert parse_time("2023-07-01 00:00") == T0
    for bad in ("soon", ""):
        with pytest.raises(TokenprintError) as exc:
            parse_time(bad)
        assert str(exc.value).startswith(f"cannot read time {bad!r}; use ISO 8601")


def test_operational_formulas_by_hand():
    assert operational_g(3.6e6, 400.0, 1.25) == pytest.approx(500.0)   # 1 kWh × 1.25 × 400
    np.testing.assert_allclose(operational_g([0.0, 7.2e6], [100.0, 50.0]), [0.0, 100.0])
    for pue in (0.99, float("nan"), float("inf")):
        with pytest.raises(TokenprintError) as exc:
            operational_g(1.0, 1.0, pue)
        assert str(exc.value) == f"PUE {pue!r} is invalid; it must be a number from 1.0 to 10"
    with pytest.raises(TokenprintError, match=r"^energy must be >= 0 J$"):
        operational_g([1.0, -1.0], 100.0)
    s = IntensitySeries(T0, H, np.array([100.0, 300.0]))
    # 3.6 MJ spread over 00:30-01:30: half at 100, half at 300 → 200 g; at PUE 1.5 → 300 g
    assert operational_g_over(3.6e6, T0 + 0.5 * H, H, s, 1.5) == pytest.approx(300.0)
    with pytest.raises(TokenprintError, match=r"^duration must be >= 0 s$"):
        operational_g_over(1.0, T0, -1.0, s)
    # a counter: 1 kWh in hour 0, 2 kWh in hour 1 → 100 + 600 g
    got = operational_g_energy_timeline([T0, T0 + H, T0 + 2 * H], [0.0, 3.6e6, 1.08e7], s)
    assert got == pytest.approx(700.0)
    with pytest.raises(TokenprintError, match=r"^a cumulative energy timeline must not decrease$"):
        operational_g_energy_timeline([T0, T0 + H], [5.0, 1.0], s)
    with pytest.raises(TokenprintError, match=r"^timeline times must increase strictly$"):
        operational_g_energy_timeline([T0, T0], [0.0, 1.0], s)
    with pytest.raises(TokenprintError, match=r"^an energy timeline needs matching times and "
                                              "energies, 2 or more$"):
        operational_g_energy_timeline([T0], [0.0], s)
    # 1000 W for 2 h across the step: 1 kWh at 100 + 1 kWh at 300 = 400 g; a ramp 0→2000 W
    # over hour 0 only is 1 kWh at 100 g/kWh
    assert operational_g_power_timeline([T0, T0 + 2 * H], [1000.0, 1000.0], s) == \
        pytest.approx(400.0)
    assert operational_g_power_timeline([T0, T0 + H], [0.0, 2000.0], s) == pytest.approx(100.0)
    # a ramp 0 → 2000 W over 2 h: hour 0 holds 0.5 kWh (at 100), hour 1 1.5 kWh (at 300)
    assert operational_g_power_timeline([T0, T0 + 2 * H], [0.0, 2000.0], s, 2.0) == \
        pytest.approx(2.0 * (50.0 + 450.0))
    c = ConstantIntensity(100.0)
    assert operational_g_power_timeline([0.0, H], [500.0, 1500.0], c) == pytest.approx(100.0)
    with pytest.raises(TokenprintError, match=r"^power must be >= 0 W$"):
        operational_g_power_timeline([T0, T0 + 1], [1.0, -1.0], s)
    with pytest.raises(TokenprintError, match=r"^timeline times must increase strictly$"):
        operational_g_power_timeline([T0 + 1, T0], [1.0, 1.0], s)
    with pytest.raises(TokenprintError, match=r"^a power timeline needs matching times and "
                                              "powers, 2 or more$"):
        operational_g_power_timeline([T0, T0 + 1], [1.0], s)
    with pytest.raises(TokenprintError, match="outside the intensity series"):
        operational_g_power_timeline([T0, T0 + 3 * H], [1.0, 1.0], s)


def test_crossover_intensity_by_hand():
    # old: 2 kWh + 100 g, new: 1 kWh + 300 g → equal at 200 g/kWh (PUE 1); at PUE 2 → 100
    assert crossover_intensity(2.0, 100.0, 1.0, 300.0) == pytest.approx(200.0)
    assert crossover_intensity(2.0, 100.0, 1.0, 300.0, pue=2.0) == pytest.approx(100.0)
    assert crossover_intensity(1.0, 100.0, 1.0, 300.0) is None    # same energy: never equal
    assert crossover_intensity(2.0, 300.0, 1.0, 100.0) is None    # crosses below zero
    assert crossover_intensity(2.0, 100.0, 1.0, 100.0) == 0.0


def test_edge_cases_of_files_and_timelines(tmp_path: Path):
    ok = _csv(tmp_path, PLAIN + "2023-07-01T00:00Z,0\n2023-07-01T01:00Z,0.5\n", "zero.csv")
    np.testing.assert_allclose(load_intensity_csv(ok).values, [0.0, 0.5])   # zero is valid
    fine = _csv(tmp_path, PLAIN + "2023-07-01T00:00:00.000Z,1\n"
                                  "2023-07-01T00:00:00.500Z,2\n", "f.csv")
    assert load_intensity_csv(fine).step_s == 0.5                          # sub-second steps
    one = _csv(tmp_path, PLAIN + "2023-07-01T00:00Z,5\n", "one.csv")
    assert load_intensity_csv(one, basis="direct").basis == "direct"
    dup = _csv(tmp_path, PLAIN + "2023-07-01T00:00Z,1\n2023-07-01T00:00Z,2\n"
                                 "2023-07-01T01:00Z,3\n", "dup.csv")
    assert _err(dup).endswith("row 3: duplicate time 2023-07-01T00:00:00+00:00")
    back = _csv(tmp_path, PLAIN + "2023-07-01T02:00Z,1\n2023-07-01T01:00Z,2\n"
                                  "2023-07-01T03:00Z,3\n", "back.csv")
    assert _err(back).endswith("row 3: time 2023-07-01T01:00:00+00:00 is before the row above "
                               "it; rows must be sorted by time")
    half = _csv(tmp_path, "timestamp,value\n2023-07-01T00:00Z,1\n", "half.csv")
    assert " has columns ['timestamp', 'value']; expected " in _err(half)


def test_short_intervals_and_counters():
    s = IntensitySeries(T0, H, np.array([100.0, 300.0]))
    # half a second across the step: a quarter second at each value
    assert float(s.mean_over(T0 + H - 0.25, T0 + H + 0.25)) == pytest.approx(200.0)
    # a counter that stands still, then moves by half a joule: both are valid
    got = operational_g_energy_timeline([T0, T0 + 10, T0 + H + 10], [0.0, 0.0, 0.5], s, 2.0)
    assert got == pytest.approx(0.5 / 3.6e6 * 2.0 * (100.0 * 3590 + 300.0 * 10) / H)
    with pytest.raises(TokenprintError, match=r"^an energy timeline needs matching times"):
        operational_g_energy_timeline([T0, T0 + 1, T0 + 2], [0.0, 1.0], s)


def test_power_timeline_across_several_steps():
    s = IntensitySeries(T0, H, np.array([100.0, 300.0, 200.0]))
    # a ramp 0 → 3000 W over three hours, sampled at its ends and at 1.5 h: hour k holds
    # (k + 0.5) kWh; 0.5 × 100 + 1.5 × 300 + 2.5 × 200 = 1000 g
    t = [T0, T0 + 1.5 * H, T0 + 3 * H]
    assert operational_g_power_timeline(t, [0.0, 1500.0, 3000.0], s) == pytest.approx(1000.0)
    with pytest.raises(TokenprintError, match="outside the intensity series"):
        operational_g_power_timeline([T0, T0 + 3 * H + 1], [1.0, 1.0], s)

    class HalfOfConstant:
        basis, source = "lifecycle", "test"

        def mean_over(self, start_s, end_s):
            return np.where(np.asarray(start_s) < T0 + H, 100.0, 50.0)

    # any other Intensity is asked for each piece's mean: 1 kWh at 100, then 1 kWh at 50
    assert operational_g_power_timeline([T0, T0 + H, T0 + 2 * H], [1000.0] * 3,
                                        HalfOfConstant()) == pytest.approx(150.0)


def test_the_error_names_the_time_outside_the_series():
    s = IntensitySeries(T0, H, np.array([1.0, 2.0]))
    with pytest.raises(TokenprintError, match="time 2023-06-30T23:59:59"):
        s.at([T0 - 1, T0 + H])


# ---- the loader's refusals and notes, each by its words (hand-written files) ---------------------

def _written(tmp_path, rows: list[str], head: str = "timestamp,intensity_g_per_kwh",
         name: str = "i.csv"):
    f = tmp_path / name
    f.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    return f


def test_the_loader_reads_a_byte_order_mark_and_keeps_the_files_zone(tmp_path):
    from tokenprint.carbon import load_intensity_csv

    bom = _written(tmp_path, ["2023-07-01T00:00:00Z,40", "2023-07-01T01:00:00Z,60"],
               head="\ufefftimestamp,intensity_g_per_kwh")
    assert load_intensity_csv(bom).values.tolist() == [40.0, 60.0]
    em = _written(tmp_path, ["2023-07-01T00:00:00Z,DE,400", "2023-07-01T01:00:00Z,DE,410"],
              head="Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (LCA)", name="de.csv")
    assert load_intensity_csv(em).zone == "DE" and load_intensity_csv(em, fill=True).zone == "DE"
    one = _written(tmp_path, ["2023-07-01T00:00:00Z,DE,400"],
               head="Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (LCA)", name="d1.csv")
    assert load_intensity_csv(one).zone == "DE"
    with pytest.raises(TokenprintError) as err:
        load_intensity_csv(em, region="fr")
    assert str(err.value) == (f"intensity file {str(em)!r} holds zone DE, not region FR: give "
                              "--region DE or FR's own file")
    both = _written(tmp_path, ["2023-07-01T00:00:00Z,DE,400", "2023-07-01T01:00:00Z,FR,50"],
                head="Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (LCA)", name="x.csv")
    assert load_intensity_csv(both, region="fr").zone is None    # no single zone: not refused


@pytest.mark.parametrize(("rows", "why"), [
    (["1970-01-01T00:00:00Z,40", "1969-12-31T23:00:00Z,40"],
     "row 3: time '1969-12-31T23:00:00Z' is outside 1970-2200"),
    (["2201-01-01T00:00:00Z,40"], "row 2: time '2201-01-01T00:00:00Z' is outside 1970-2200"),
    (["2023-07-01T00:00:00Z,inf"], "row 2: intensity 'inf' is not a finite number up to 5000 "
                                   "g/kWh"),
    (["2023-07-01T00:00:00Z,40", "2023-07-01T01:00:00Z,5000.5"],
     "row 3: intensity '5000.5' is not a finite number up to 5000 g/kWh"),
    (["2023-07-01T00:00:00Z,40", "2023-07-01T01:00:00Z,x"], "row 3: intensity 'x' is not a "
                                                             "number")])
def test_the_loader_refuses_naming_the_row(tmp_path, rows, why):
    from tokenprint.carbon import load_intensity_csv

    f = _written(tmp_path, rows)
    with pytest.raises(TokenprintError) as err:
        load_intensity_csv(f)
    assert str(err.value) == f"intensity file {str(f)!r} {why}"


def test_the_loaders_bounds_are_valid(tmp_path):
    from tokenprint.carbon import load_intensity_csv

    f = _written(tmp_path, ["1970-01-01T00:00:00Z,0", "1970-01-01T01:00:00Z,5000"])
    assert load_intensity_csv(f).values.tolist() == [0.0, 5000.0]
    late = _written(tmp_path, ["2200-12-31T23:00:00Z,1"], name="late.csv")
    assert load_intensity_csv(late).values.tolist() == [1.0]


def test_interpolation_is_counted_in_the_source(tmp_path):
    """One value missing in a row and two hours missing from the grid: three interpolated."""
    from tokenprint.carbon import load_intensity_csv

    f = _written(tmp_path, ["2023-07-01T00:00:00Z,10", "2023-07-01T01:00:00Z,",
                            "2023-07-01T02:00:00Z,30", "2023-07-01T05:00:00Z,60"])
    s = load_intensity_csv(f, fill=True)
    assert s.values.tolist() == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert s.source == "i.csv [plain (lifecycle); 3 missing value(s) interpolated]"
    whole = _written(tmp_path, ["2023-07-01T00:00:00Z,10", "2023-07-01T01:00:00Z,30"], name="w.csv")
    assert load_intensity_csv(whole, fill=True).source == "w.csv [plain (lifecycle)]"


def test_units_and_the_facilitys_share_by_hand():
    from tokenprint.carbon.operational import MAX_PUE, facility_kwh, joules, kwh

    assert kwh(7.2e6) == 2.0 and joules(0.5) == 1.8e6
    assert facility_kwh(3.6e6) == 1.0 and facility_kwh(3.6e6, 1.5) == 1.5
    assert facility_kwh(3.6e6, MAX_PUE) == 10.0                       # the bound is valid
    for bad in (0.99, MAX_PUE + 0.01, float("nan")):
        with pytest.raises(TokenprintError, match=r"must be a number from 1\.0 to 10$"):
            facility_kwh(1.0, bad)
    # a request that took no time is charged at the intensity of its instant
    series = IntensitySeries(0.0, H, np.array([100.0, 300.0]))
    assert float(operational_g_over(3.6e6, 1.5 * H, 0.0, series)) == pytest.approx(300.0)


def test_a_power_timeline_across_an_intensity_step_and_past_the_series(tmp_path):
    """100 W from 0.5 h to 1.5 h over hourly steps of 100 and 300 g/kWh: half an hour at each,
    0.05 kWh × 100 + 0.05 kWh × 300 = 20 g; samples exactly on a step's edge add nothing."""
    series = IntensitySeries(0.0, H, np.array([100.0, 300.0]))
    assert operational_g_power_timeline([0.5 * H, 1.5 * H], [100.0, 100.0],
                                        series) == pytest.approx(20.0)
    assert operational_g_power_timeline([0.0, H, 2 * H], [100.0, 100.0, 100.0],
                                        series) == pytest.approx(40.0)
    with pytest.raises(TokenprintError):         # the run leaves the series: refused
        operational_g_power_timeline([0.5 * H, 2.5 * H], [100.0, 100.0], series)
    with pytest.raises(TokenprintError):
        operational_g_power_timeline([-0.5 * H, 0.5 * H], [100.0, 100.0], series)
