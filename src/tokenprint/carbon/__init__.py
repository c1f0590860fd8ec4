"""Pure carbon accounting: intensity, operational, embodied (ACT-style), amortization."""

from tokenprint.carbon.amortize import amortized_g, amortized_share
from tokenprint.carbon.charge import Charge, charge
from tokenprint.carbon.die import die_carbon_g
from tokenprint.carbon.embodied import (
    COMPONENTS,
    SCOPES,
    EmbodiedBreakdown,
    gpu_embodied,
    host_embodied_g,
)
from tokenprint.carbon.footprint import Footprint, compute_footprint, footprint_arrays
from tokenprint.carbon.intensity import (
    ConstantIntensity,
    Intensity,
    IntensitySeries,
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

__all__ = [
    "COMPONENTS", "SCOPES", "Charge", "ConstantIntensity", "EmbodiedBreakdown", "Footprint",
    "Intensity", "IntensitySeries", "amortized_g", "amortized_share", "charge",
    "compute_footprint", "crossover_intensity", "die_carbon_g", "footprint_arrays",
    "gpu_embodied", "host_embodied_g", "load_intensity_csv", "operational_g",
    "operational_g_energy_timeline", "operational_g_over", "operational_g_power_timeline",
    "parse_time",
]
