"""``tokenprint.carbon.charge``: the one composition every surface charges through, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tokenprint.carbon.charge import charge
from tokenprint.errors import TokenprintError
from tokenprint.units import S_PER_YEAR


def test_a_charge_by_hand():
    # 1 kWh at 500 g/kWh and PUE 1.5 = 750 g; 1,000 kg of GPUs busy 1 h at 50 % utilization
    # are provisioned 2 h of a 5-year life
    c = charge(3.6e6, 500.0, 1.0e6, 3600.0, pue=1.5, lifetime_years=5.0, utilization=0.5,
               intensity_source="FR annual")
    assert float(c.operational_g) == pytest.approx(750.0)
    assert float(c.embodied_g) == pytest.approx(1.0e6 * 7200.0 / (5.0 * S_PER_YEAR))
    assert float(c.total_g) == pytest.approx(750.0 + 1.0e6 * 7200.0 / (5.0 * S_PER_YEAR))
    assert (c.intensity_source, c.pue, c.lifetime_years, c.utilization) == \
        ("FR annual", 1.5, 5.0, 0.5)


def test_charges_broadcast_over_ranges_hours_and_steps():
    lo_mid_hi = charge([1.0e6, 2.0e6, 3.0e6], [100.0, 200.0, 300.0], [10.0, 20.0, 30.0],
                       [S_PER_YEAR] * 3, lifetime_years=1.0)
    assert lo_mid_hi.operational_g == pytest.approx(np.array([1, 4, 9]) * 1e8 / 3.6e6)
    assert lo_mid_hi.embodied_g == pytest.approx([10.0, 20.0, 30.0])
    hours = charge(np.full((2, 24), 3.6e6), np.arange(24.0))        # two loads × 24 hours
    assert hours.operational_g.shape == (2, 24) and hours.operational_g[1, 5] == 5.0
    assert float(charge(3.6e6, 100.0).embodied_g) == 0.0            # no hardware given


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"pue": 0.9}, "PUE"), ({"pue": float("nan")}, "PUE"),
    ({"lifetime_years": 60.0}, "lifetime"), ({"lifetime_years": 0.0}, "lifetime"),
    ({"utilization": 0.0}, "utilization"), ({"utilization": 1.5}, "utilization")])
def test_the_bounds_are_checked_once_here(kwargs, needle):
    with pytest.raises(TokenprintError, match=needle):
        charge(1.0, 100.0, 1.0, 1.0, **kwargs)


def test_a_charge_keeps_its_inputs_as_float_arrays():
    c = charge(3_600_000, 250, intensity_source="x")       # integers in, no hardware given
    assert float(c.embodied_g) == 0.0 and float(c.total_g) == 250.0
    for arr in (c.operational_g, c.embodied_g, c.intensity_g_per_kwh):
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64
    assert float(c.intensity_g_per_kwh) == 250.0
    per_hour = charge([3.6e6, 7.2e6], [100, 200])
    assert per_hour.intensity_g_per_kwh.tolist() == [100.0, 200.0]
    assert per_hour.operational_g.tolist() == [100.0, 400.0]


def test_hardware_without_busy_time_and_no_source_charge_nothing_more():
    c = charge(3.6e6, 100.0, 1.0e6)              # hardware given, no busy time: no embodied
    assert float(c.embodied_g) == 0.0 and c.intensity_source == ""


def test_busy_time_without_embodied_carbon_adds_nothing():
    c = charge(3.6e6, 100.0, busy_s=1000.0)
    assert float(c.embodied_g) == 0.0 and float(c.operational_g) == 100.0
