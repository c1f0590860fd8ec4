"""ACT's logic-die model and the vendor calibration built on it: the pieces of embodied carbon
that both the bill of materials (:mod:`tokenprint.carbon.bom`) and the scopes
(:mod:`tokenprint.carbon.embodied`) use.

Per logic die (Gupta et al. ISCA 2022): ``C_die = area_cm2 × (CI_fab × EPA + GPA + MPA) / yield``.
The vendor calibration relates NVIDIA's HGX H100 footprint split to ACT's die of the same GPU:
an IC factor, thermal grams per watt of TDP, and the other board parts per module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.catalog import Catalog, FabNode
from tokenprint.errors import TokenprintError
from tokenprint.ranges import Estimate
from tokenprint.units import MM2_PER_CM2


def die_carbon_g(area_mm2: ArrayLike, epa_kwh_per_cm2: ArrayLike, gpa_g_per_cm2: ArrayLike,
                 mpa_g_per_cm2: ArrayLike, fab_intensity_g_per_kwh: ArrayLike,
                 yield_fraction: ArrayLike) -> NDArray[np.float64]:
    """ACT's logic-die carbon in grams: ``area_cm2 × (CI_fab × EPA + GPA + MPA) / yield``."""
    area_cm2 = np.asarray(area_mm2, dtype=np.float64) / MM2_PER_CM2
    y = np.asarray(yield_fraction, dtype=np.float64)
    if np.any((y <= 0) | (y > 1)):
        raise TokenprintError("fab yield must be in (0, 1]")
    per_cm2 = (np.asarray(fab_intensity_g_per_kwh) * np.asarray(epa_kwh_per_cm2)
               + np.asarray(gpa_g_per_cm2) + np.asarray(mpa_g_per_cm2))
    return np.asarray(area_cm2 * per_cm2 / y, dtype=np.float64)


def die_estimate(area: Estimate, node: FabNode, catalog: Catalog) -> Estimate:
    """Die carbon as low/mid/high: 99 % vs mean vs 95 % gas abatement, fab grid low/mid/high."""
    fab = catalog.fab
    ci = fab.fab_intensity_g_per_kwh.estimate
    y = fab.yield_fraction.value
    gpa95, gpa99 = node.gpa95_g_per_cm2.value, node.gpa99_g_per_cm2.value
    epa, mpa = node.epa_kwh_per_cm2.value, node.mpa_g_per_cm2.value
    return Estimate(
        float(die_carbon_g(area.low, epa, gpa99, mpa, ci.low, y)),
        float(die_carbon_g(area.mid, epa, 0.5 * (gpa95 + gpa99), mpa, ci.mid, y)),
        float(die_carbon_g(area.high, epa, gpa95, mpa, ci.high, y)),
    )


@dataclass(frozen=True)
class VendorCalibration:
    """Bottom-up factors calibrated on a vendor footprint's component split."""

    ic_factor: float            # vendor IC share per GPU / ACT die of the same GPU
    thermal_g_per_w: float      # vendor thermal share per GPU / its TDP
    other_board_g: float        # vendor's remaining board parts per GPU
    source: str


def vendor_calibration(catalog: Catalog) -> VendorCalibration | None:
    """Factors from the first vendor footprint with an IC and thermal split (None: none loaded)."""
    for pcf in catalog.pcfs.values():
        if not {"ics", "thermal", "other"} <= set(pcf.breakdown_g):
            continue
        ref = catalog.gpu(pcf.applies_to[0])
        act_die = die_estimate(ref.die_area_mm2.estimate, catalog.fab_node(ref.act_node),
                               catalog).mid
        ics = pcf.per_gpu_g("ics")
        return VendorCalibration(
            ic_factor=ics / act_die,
            thermal_g_per_w=pcf.per_gpu_g("thermal") / ref.tdp_w.value,
            other_board_g=pcf.per_gpu_g("other"),
            source=(f"calibrated on {pcf.name} ({pcf.source}): IC factor {ics / 1e3:.1f} kg / "
                    f"ACT die {act_die / 1e3:.1f} kg = {ics / act_die:.2f}; thermal "
                    f"{pcf.per_gpu_g('thermal') / ref.tdp_w.value:.1f} g/W of TDP; other board "
                    f"parts {pcf.per_gpu_g('other') / 1e3:.1f} kg per GPU"),
        )
    return None
