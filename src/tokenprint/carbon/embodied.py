"""Embodied carbon of GPUs and host servers by scope, with low/mid/high.

* ``die``: the seed study's bottom-up logic die (ACT, Gupta et al. ISCA 2022):
  ``C_die = area_cm2 × (CI_fab × EPA + GPA + MPA) / yield``.
* ``device`` (packaged GPU + memory: the seed's "chip area and memory size") and ``card`` (+ board,
  thermal, upstream transport): the card's bill of materials reconciled across every public
  life-cycle assessment by one rule (:mod:`tokenprint.carbon.bom`): the vendor footprint's value
  where one covers the card (NVIDIA's HGX H100), else the median of the boundary-matched
  witnesses; the sources' envelope as range.
* ``server`` adds the host's share: a manufacturer's server footprint (plus the archetype's extra
  DRAM and SSD) over its GPU slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenprint.carbon.bom import PartValue, reconcile_card
from tokenprint.carbon.die import (  # noqa: F401 - die_carbon_g, vendor_calibration: public here
    VendorCalibration,
    die_carbon_g,
    die_estimate,
    vendor_calibration,
)
from tokenprint.catalog import Catalog, Gpu, Host
from tokenprint.errors import TokenprintError
from tokenprint.ranges import Estimate

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


@dataclass(frozen=True)
class EmbodiedBreakdown:
    """Embodied carbon of one GPU at a scope: per component and total, with sources.

    ``gpu_range_g``, where set, is the range of the GPU's own components (without the host)
    from the reconciliation: the envelope of the sources' totals, narrower than the sum of the
    components' own envelopes.
    """

    scope: str
    components_g: dict[str, Estimate]
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)
    gpu_range_g: tuple[float, float] | None = None

    @property
    def total_g(self) -> Estimate:
        """Sum over the components in scope."""
        total = Estimate.exact(0.0)
        for name in COMPONENTS:
            total = total + self.components_g[name]
        if self.gpu_range_g is None:
            return total
        host = self.components_g["host"]
        return Estimate(self.gpu_range_g[0] + host.low, total.mid,
                        self.gpu_range_g[1] + host.high)

    def scaled(self, factor: float) -> EmbodiedBreakdown:
        """The same breakdown times ``factor`` (GPU count × amortized share)."""
        rng = self.gpu_range_g
        return EmbodiedBreakdown(
            self.scope, {k: v.scale(factor) for k, v in self.components_g.items()},
            self.sources, self.notes,
            None if rng is None else (rng[0] * factor, rng[1] * factor),
        )


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


# bill-of-materials parts → the components a breakdown reports (the package is inside ``die``)
_COMPONENT_PARTS = {"die": ("die",), "memory": ("memory",), "board": ("board", "thermal",
                                                                          "transport")}


def _die_scope(gpu: Gpu, catalog: Catalog) -> tuple[dict[str, Estimate], dict[str, str]]:
    """The logic die alone by ACT, the seed study's bottom-up model."""
    node = catalog.fab_node(gpu.act_node)
    fab_grid = catalog.fab.fab_intensity_g_per_kwh.source
    return ({"die": die_estimate(gpu.die_area_mm2.estimate, node, catalog)},
            {"die": f"ACT logic model (Gupta et al. ISCA 2022) at {node.id}: "
                    f"{gpu.die_area_mm2.source}; fab grid {fab_grid}"})


def _part_source(part: PartValue) -> str:
    """One line naming a reconciled part's rule and witnesses (the vendor's name if central)."""
    ids = ", ".join(sorted({w.source_id for w in part.witnesses if w.matched}))
    vendor = next((w.source for w in part.witnesses if w.vendor), None)
    if part.rule.startswith("vendor") and vendor:
        return f"{part.part}: {part.rule}, {vendor}; witnesses {ids}"
    return f"{part.part}: {part.rule} ({ids})"


def _bom_scope(gpu: Gpu, catalog: Catalog, scope: str
               ) -> tuple[dict[str, Estimate], dict[str, str], list[str], tuple[float, float]]:
    """Device or card components from the reconciled bill of materials, overrides applied."""
    bom = reconcile_card(gpu, catalog)
    comps_in = ("die", "memory") if scope == "device" else ("die", "memory", "board")
    parts = tuple(p for c in comps_in for p in _COMPONENT_PARTS[c])
    comps: dict[str, Estimate] = {}
    sources: dict[str, str] = {}
    for c in comps_in:
        vals = [bom.parts[p] for p in _COMPONENT_PARTS[c]]
        comps[c] = Estimate(sum(v.low_g for v in vals), sum(v.central_g for v in vals),
                            sum(v.high_g for v in vals))
        sources[c] = "; ".join(_part_source(v) for v in vals)
    comps["packaging"] = Estimate.exact(0.0)
    sources["packaging"] = "inside the packaged GPU (die)"
    overrides = {k: q for k, q in gpu.embodied_overrides_g.items() if k in (*comps_in,
                                                                             "packaging")}
    totals = []
    for per_part in bom.source_parts_g(parts).values():
        by_comp = {c: sum(per_part[p] for p in _COMPONENT_PARTS[c]) for c in comps_in}
        by_comp.update({k: q.value for k, q in overrides.items()})
        totals.append(sum(by_comp.values()))
    for name, q in overrides.items():
        comps[name] = q.estimate
        sources[name] = f"override: {q.source}"
    central = sum(float(v.mid) for v in comps.values())
    rng = (min([*totals, central]), max([*totals, central]))
    notes = []
    if bom.vendor is not None:
        notes.append(f"{scope} scope central from the vendor footprint {bom.vendor} (measured by "
                     f"the vendor, allocated per GPU); range: the other sources' totals")
    if not bom.assessed:
        notes.append(f"no public life-cycle assessment of the {gpu.name}: the rule's value from "
                     f"per-unit witnesses, the sources' envelope as range")
    notes.append("reconciled across public life-cycle assessments (tokenprint.carbon.bom): "
                 "see `tokenprint catalog show gpu ID --embodied`")
    return comps, sources, notes, rng


def gpu_embodied(gpu: Gpu, catalog: Catalog, scope: str = "device",
                 host: Host | None = None) -> EmbodiedBreakdown:
    """Embodied carbon of one GPU at ``scope`` (components out of scope are zero).

    ``die``: ACT's logic die alone. ``device`` (packaged GPU + memory), ``card`` (+ board,
    thermal, upstream transport) and ``server`` (+ the host's share): the bill of materials
    reconciled across every public life-cycle assessment (:mod:`tokenprint.carbon.bom`).
    Figures in ``gpu.embodied_overrides_g`` replace the component they name.
    """
    check_scope(scope)
    in_scope = _IN_SCOPE[scope]
    notes: list[str] = []
    rng: tuple[float, float] | None = None
    if scope == "die":
        comps, sources = _die_scope(gpu, catalog)
        if "die" in gpu.embodied_overrides_g:
            comps["die"] = gpu.embodied_overrides_g["die"].estimate
            sources["die"] = f"override: {gpu.embodied_overrides_g['die'].source}"
    else:
        comps, sources, notes, rng = _bom_scope(gpu, catalog, scope)
    if "host" in in_scope:
        h = host or catalog.host(gpu.default_host)
        host_total, host_sources = host_embodied_g(h, catalog)
        comps["host"] = host_total.scale(1.0 / h.gpu_slots)
        sources["host"] = f"{h.name}, shared by {h.gpu_slots} GPUs"
        sources.update(host_sources)
    for name in COMPONENTS:
        if name not in in_scope:
            sources.pop(name, None)
    ordered = {n: comps.get(n, Estimate.exact(0.0)) if n in in_scope else Estimate.exact(0.0)
               for n in COMPONENTS}
    return EmbodiedBreakdown(scope, ordered, sources, notes, rng)
