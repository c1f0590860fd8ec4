"""Embodied carbon of GPUs and host servers by scope, with low/mid/high.

Two methods, side by side:

* **bottom-up (ACT)**, the seed study's "chip area and memory size": per logic die (Gupta et al.
  ISCA 2022) ``C_die = area_cm2 × (CI_fab × EPA + GPA + MPA) / yield``, plus 150 g per packaged
  IC, plus memory at a per-GB factor by type. Scopes ``die`` and ``device``.
* **vendor-anchored**, scopes ``card`` and ``server``: where a vendor product carbon footprint
  covers the GPU (NVIDIA's HGX H100), its total allocated per GPU, split as the vendor splits it.
  Elsewhere the bottom-up model calibrated on that split: the logic die times the IC factor
  (the vendor's IC share per GPU over ACT's die for the same GPU: packages, interposers and the
  board's other ICs), memory by type, and for SXM/OAM modules the vendor's thermal share per
  watt of TDP plus its other board parts per GPU. ``server`` adds the host's share: a
  manufacturer's server footprint (plus the archetype's extra DRAM and SSD) over its GPU slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenprint.catalog import Catalog, FabNode, Gpu, Host, Pcf
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


def _pcf_components(pcf: Pcf) -> tuple[dict[str, Estimate], dict[str, str]]:
    """A vendor footprint allocated to one GPU, mapped onto tokenprint's components."""
    def part(*names: str) -> float:
        return sum(pcf.per_gpu_g(n) for n in names if n in pcf.breakdown_g)

    known = {"ics", "memory", "thermal", "other"}
    if not pcf.breakdown_g or set(pcf.breakdown_g) - known:
        comps = {"die": Estimate.exact(pcf.per_gpu_g()), "memory": Estimate.exact(0.0),
                 "board": Estimate.exact(0.0)}
    else:
        comps = {"die": Estimate.exact(part("ics")), "memory": Estimate.exact(part("memory")),
                 "board": Estimate.exact(part("thermal", "other"))}
    comps["packaging"] = Estimate.exact(0.0)
    src = (f"{pcf.name}: {pcf.total_g.value / 1e3:g} kg {pcf.boundary}, allocated 1/{pcf.gpus} "
           f"per GPU ({pcf.source})")
    return comps, {k: src for k in ("die", "memory", "board", "packaging")}


def host_embodied_g(host: Host, catalog: Catalog) -> tuple[Estimate, dict[str, str]]:
    """Embodied carbon of a whole host server (excluding its GPUs) and the sources used."""
    if host.embodied_override_g is not None:
        return host.embodied_override_g.estimate, {"host": host.embodied_override_g.source}
    if host.pcf_manufacturing_g is not None:
        dram_f = catalog.memory_factor(host.dram_type).g_per_gb
        ssd_f = catalog.memory_factor("ssd").g_per_gb
        extra_dram = max(host.dram_gb.value - host.pcf_dram_gb, 0.0)
        extra_ssd = max(host.ssd_gb.value - host.pcf_ssd_gb, 0.0)
        total = (host.pcf_manufacturing_g.estimate + dram_f.estimate.scale(extra_dram)
                 + ssd_f.estimate.scale(extra_ssd))
        return total, {
            "host.server": host.pcf_manufacturing_g.source,
            "host.extra_dram": f"{extra_dram:g} GB over the assessed server: {dram_f.source}",
            "host.extra_ssd": f"{extra_ssd:g} GB over the assessed server: {ssd_f.source}",
        }
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

    ``die``/``device``: the bottom-up ACT model. ``card``/``server``: the vendor's footprint
    where one covers the GPU, else the bottom-up model calibrated on it. Figures in
    ``gpu.embodied_overrides_g`` replace the component they name.
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
    pcf = catalog.pcf_for(gpu.id)
    cal = vendor_calibration(catalog)
    if scope in ("card", "server") and pcf is not None:
        vendor, vsrc = _pcf_components(pcf)
        comps.update(vendor)
        sources.update(vsrc)
        notes.append(f"card scope from the vendor footprint {pcf.id} (measured by the vendor, "
                     f"allocated per GPU), not the bottom-up model")
    elif scope in ("card", "server") and cal is not None:
        # the IC factor covers packages and interposers: no separate 150 g per IC here
        comps["die"] = comps["die"].times(Estimate(1.0, cal.ic_factor, cal.ic_factor))
        comps["packaging"] = Estimate.exact(0.0)
        sources["die"] += f"; × IC factor ({cal.source}); low: the ACT die alone"
        if gpu.form_factor in ("sxm", "oam"):
            board = cal.other_board_g + cal.thermal_g_per_w * gpu.tdp_w.value
            comps["board"] = Estimate(min(gpu.board_g.value, board), board, board)
            sources["board"] = (f"vendor-calibrated module board: {cal.source}; at "
                                f"{gpu.tdp_w.value:g} W TDP; low: {gpu.board_g.source}")
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
