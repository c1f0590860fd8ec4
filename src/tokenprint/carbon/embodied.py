"""Embodied carbon of GPUs and host servers, ACT-style, by scope, with low/mid/high.

Per logic die (ACT, Gupta et al. ISCA 2022):
``C_die = area_cm2 × (CI_fab × EPA + GPA + MPA) / yield``, plus 150 g per packaged IC.
Memory: GB × a per-GB factor by type. Board: a modeled PCB + heatsink figure. Host: the server's
CPUs, DRAM, SSD and chassis, divided among its GPU slots.

Scopes, each adding to the one before:
``die`` (logic die) → ``device`` (+ memory + packaging: the seed study's "chip area and memory
size") → ``card`` (+ board) → ``server`` (+ the host's share).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.catalog import Catalog, FabNode, Gpu, Host
from tokenprint.errors import TokenprintError
from tokenprint.ranges import Estimate
from tokenprint.units import MM2_PER_CM2

SCOPES = ("die", "device", "card", "server")
COMPONENTS = ("die", "memory", "packaging", "board", "host")
_IN_SCOPE = {
    "die": {"die"},
    "device": {"die", "memory", "packaging"},
    "card": {"die", "memory", "packaging", "board"},
    "server": {"die", "memory", "packaging", "board", "host"},
}


def check_scope(scope: str) -> str:
    """Return the scope if valid, else raise naming the valid ones."""
    if scope not in SCOPES:
        raise TokenprintError(f"unknown scope {scope!r}; valid scopes: {', '.join(SCOPES)}")
    return scope


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
class EmbodiedBreakdown:
    """Embodied carbon of one GPU at a scope: per component and total, with sources."""

    scope: str
    components_g: dict[str, Estimate]
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def total_g(self) -> Estimate:
        """Sum over the components in scope."""
        total = Estimate.exact(0.0)
        for name in COMPONENTS:
            total = total + self.components_g[name]
        return total

    def scaled(self, factor: float) -> EmbodiedBreakdown:
        """The same breakdown times ``factor`` (GPU count × amortized share)."""
        return EmbodiedBreakdown(
            self.scope, {k: v.scale(factor) for k, v in self.components_g.items()},
            self.sources, self.notes,
        )


def host_embodied_g(host: Host, catalog: Catalog) -> tuple[Estimate, dict[str, str]]:
    """Embodied carbon of a whole host server (excluding its GPUs) and the sources used."""
    if host.embodied_override_g is not None:
        return host.embodied_override_g.estimate, {"host": host.embodied_override_g.source}
    node = catalog.fab_node(host.cpu_act_node)
    cpu = die_estimate(host.cpu_die_area_mm2.estimate, node, catalog).scale(host.cpu_count)
    cpu = cpu + host.cpu_count * catalog.fab.packaging_g_per_ic.value
    dram_f = catalog.memory_factor(host.dram_type).g_per_gb
    ssd_f = catalog.memory_factor("ssd").g_per_gb
    dram = host.dram_gb.estimate.times(dram_f.estimate)
    ssd = host.ssd_gb.estimate.times(ssd_f.estimate)
    total = cpu + dram + ssd + host.chassis_g.estimate
    sources = {
        "host.cpu": f"ACT logic model at {node.id}; {host.cpu_die_area_mm2.source}",
        "host.dram": f"{host.dram_gb.source}; {dram_f.source}",
        "host.ssd": f"{host.ssd_gb.source}; {ssd_f.source}",
        "host.chassis": host.chassis_g.source,
    }
    return total, sources


def gpu_embodied(gpu: Gpu, catalog: Catalog, scope: str = "device",
                 host: Host | None = None) -> EmbodiedBreakdown:
    """Embodied carbon of one GPU at ``scope`` (components out of scope are zero).

    Vendor figures in ``gpu.embodied_overrides_g`` replace the modeled component.
    """
    check_scope(scope)
    in_scope = _IN_SCOPE[scope]
    node = catalog.fab_node(gpu.act_node)
    mem = catalog.memory_factor(gpu.memory_type)
    comps: dict[str, Estimate] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    comps["die"] = die_estimate(gpu.die_area_mm2.estimate, node, catalog)
    fab_grid = catalog.fab.fab_intensity_g_per_kwh.source
    sources["die"] = (f"ACT logic model (Gupta et al. ISCA 2022) at {node.id}: "
                      f"{gpu.die_area_mm2.source}; fab grid {fab_grid}")
    comps["memory"] = gpu.memory_gb.estimate.times(mem.g_per_gb.estimate)
    sources["memory"] = f"{gpu.memory_gb.value:g} GB {mem.name}: {mem.g_per_gb.source}"
    if mem.g_per_gb.note:
        notes.append(f"memory: {mem.g_per_gb.note}; range {mem.g_per_gb.estimate.low:g}-"
                     f"{mem.g_per_gb.estimate.high:g} g/GB")
    comps["packaging"] = Estimate.exact(gpu.n_packages * catalog.fab.packaging_g_per_ic.value)
    sources["packaging"] = catalog.fab.packaging_g_per_ic.source
    comps["board"] = gpu.board_g.estimate
    sources["board"] = gpu.board_g.source
    for name, q in gpu.embodied_overrides_g.items():
        comps[name] = q.estimate
        sources[name] = f"override: {q.source}"
    if "host" in in_scope:
        h = host or catalog.host(gpu.default_host)
        host_total, host_sources = host_embodied_g(h, catalog)
        comps["host"] = host_total.scale(1.0 / h.gpu_slots)
        sources["host"] = f"{h.name}, shared by {h.gpu_slots} GPUs"
        sources.update(host_sources)
    else:
        comps["host"] = Estimate.exact(0.0)
    for name in COMPONENTS:
        if name not in in_scope:
            comps[name] = Estimate.exact(0.0)
            sources.pop(name, None)
    return EmbodiedBreakdown(scope, comps, sources, notes)
