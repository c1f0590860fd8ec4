"""One bill of materials per GPU card, reconciled across every public life-cycle assessment.

A card is five parts: the packaged GPU (``die``: logic die, substrate, interposer), ``memory``,
``board`` (PCB, power delivery, other parts), ``thermal`` (heatsink, cold plate, casing) and
upstream ``transport``; the boundary is cradle-to-gate (distribution and end of life are shown
apart). Each public source is a *witness* for the parts it gives, with its boundary:

* NVIDIA's product carbon footprint (``pcf.toml``): the covered card's own split; for other cards
  the factors calibrated on it (IC factor on the ACT die, thermal per W, board per module) and
  its HBM3 share per GB scaled by die density (``memory.toml``, HBM types).
* ACT: the logic die plus 150 g per packaged IC, planar DRAM per GB plus packaging
  (``memory.toml``), heatsink and PCB from ACT's material factors (each GPU's ``board_g``).
* Life-cycle assessments in ``lca.toml``: a teardown's own cards, or its medians per unit for the
  cards it did not assess; other sources' per-unit factors.

**The rule**, here and nowhere else: per part, the witnesses whose boundary matches the part;
the central value is the vendor's where a vendor footprint covers the card, else the median of
the witnesses; a part's range is their envelope. A card's range is the envelope of the sources'
own totals (each source's parts, the central value for the parts it does not give), so every
boundary-matched public total of the card lies inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokenprint.carbon.die import die_estimate, vendor_calibration
from tokenprint.catalog import Catalog, Gpu
from tokenprint.catalog.schema import BOM_PARTS, LCA_OUTSIDE, Lca, LcaCard, memory_family
from tokenprint.ranges import Estimate

VENDOR_ID = "vendor-pcf"
ACT_ID = "act"
_PER_UNIT = {"mm2": "mm²", "gb": "GB", "w": "W of TDP", "card": "card"}


@dataclass(frozen=True)
class Witness:
    """One source's grams for one part of one card, and how they were obtained."""

    source_id: str
    source: str
    part: str
    value_g: float
    basis: str
    vendor: bool = False
    matched: bool = True  # the source's boundary is the part's


@dataclass(frozen=True)
class PartValue:
    """A reconciled part: central value, envelope, the rule that chose it and its witnesses."""

    part: str
    central_g: float
    low_g: float
    high_g: float
    rule: str
    witnesses: tuple[Witness, ...]


@dataclass(frozen=True)
class CardBom:
    """A card's reconciled bill of materials, with every witness kept."""

    gpu: str
    parts: dict[str, PartValue]
    vendor: str | None
    assessed: bool   # a vendor footprint or a teardown covers this very card
    outside_g: dict[str, Witness] = field(default_factory=dict)

    def source_parts_g(self, parts: tuple[str, ...] = BOM_PARTS) -> dict[str, dict[str, float]]:
        """Each source's grams per part: its own values, the central one where it gives none
        (only sources with at least one boundary-matched value among ``parts``)."""
        ids = {w.source_id for p in parts for w in self.parts[p].witnesses if w.matched}
        found: dict[str, dict[str, float]] = {}
        for sid in sorted(ids):
            found[sid] = {}
            for p in parts:
                own = [w.value_g for w in self.parts[p].witnesses if w.source_id == sid
                       and w.matched]
                found[sid][p] = own[0] if own else self.parts[p].central_g
        return found

    def source_totals_g(self, parts: tuple[str, ...] = BOM_PARTS) -> dict[str, float]:
        """Each source's card total over ``parts`` (see :meth:`source_parts_g`)."""
        return {sid: sum(v.values()) for sid, v in self.source_parts_g(parts).items()}

    def total(self, parts: tuple[str, ...] = BOM_PARTS) -> Estimate:
        """Central sum over ``parts``; range: the envelope of the sources' totals."""
        central = sum(self.parts[p].central_g for p in parts)
        totals = [*self.source_totals_g(parts).values(), central]
        return Estimate(min(totals), central, max(totals))


def _median(values: list[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def _vendor_witnesses(gpu: Gpu, catalog: Catalog) -> tuple[list[Witness], str | None]:
    """NVIDIA's footprint: the covered card's own split, else the factors calibrated on it."""
    pcf = catalog.pcf_for(gpu.id)
    if pcf is not None:
        name = f"{pcf.name} ({pcf.source})"
        per = f"{pcf.total_g.value / 1e3:g} kg / {pcf.gpus} GPUs"
        if {"ics", "memory", "thermal", "other"} <= set(pcf.breakdown_g):
            split = {"die": pcf.per_gpu_g("ics"), "memory": pcf.per_gpu_g("memory"),
                     "thermal": pcf.per_gpu_g("thermal"), "board": pcf.per_gpu_g("other"),
                     "transport": 0.0}
        else:
            split = {"die": pcf.per_gpu_g(), "memory": 0.0, "thermal": 0.0, "board": 0.0,
                     "transport": 0.0}
        basis = {p: f"this card's footprint, {per}" for p in split}
        basis["transport"] = "inside the vendor's cradle-to-gate total"
        return [Witness(VENDOR_ID, name, p, v, basis[p], vendor=True)
                for p, v in split.items()], pcf.id
    cal = vendor_calibration(catalog)
    if cal is None:
        return [], None
    name = cal.source
    act_die = die_estimate(gpu.die_area_mm2.estimate, catalog.fab_node(gpu.act_node), catalog).mid
    found = [
        Witness(VENDOR_ID, name, "die", act_die * cal.ic_factor,
                f"ACT die {act_die / 1e3:.2f} kg x IC factor {cal.ic_factor:.2f}"),
        Witness(VENDOR_ID, name, "thermal", cal.thermal_g_per_w * gpu.tdp_w.value,
                f"{cal.thermal_g_per_w:.1f} g/W x {gpu.tdp_w.value:g} W"),
    ]
    if gpu.form_factor in ("sxm", "oam"):
        found.append(Witness(VENDOR_ID, name, "board", cal.other_board_g,
                             "other board parts per module"))
    mem = catalog.memory_factor(gpu.memory_type)
    if memory_family(gpu.memory_type) == "hbm":
        found.append(Witness(VENDOR_ID, f"{name}; {mem.g_per_gb.source}", "memory",
                             mem.g_per_gb.value * gpu.memory_gb.value,
                             f"{mem.g_per_gb.value:g} g/GB x {gpu.memory_gb.value:g} GB"))
    return found, None


def _act_witnesses(gpu: Gpu, catalog: Catalog) -> list[Witness]:
    """ACT: the packaged logic die, planar DRAM per GB, heatsink and PCB from its materials."""
    node = catalog.fab_node(gpu.act_node)
    pkg = gpu.n_packages * catalog.fab.packaging_g_per_ic.value
    die = die_estimate(gpu.die_area_mm2.estimate, node, catalog).mid + pkg
    name = "ACT (Gupta et al. ISCA 2022)"
    found = [
        Witness(ACT_ID, f"{name}: {catalog.fab.fab_intensity_g_per_kwh.source}", "die", die,
                f"logic die {gpu.die_area_mm2.value:g} mm² at {node.id} + "
                f"{gpu.n_packages} x {catalog.fab.packaging_g_per_ic.value:g} g package"),
        Witness(ACT_ID, f"{name} materials: {gpu.board_g.source}", "thermal",
                gpu.board_g.value, "heatsink and PCB by mass x ACT material factors"),
    ]
    mem = catalog.memory_factor(gpu.memory_type)
    if memory_family(gpu.memory_type) != "hbm":
        found.append(Witness(ACT_ID, f"{name}: {mem.g_per_gb.source}", "memory",
                             mem.g_per_gb.value * gpu.memory_gb.value,
                             f"{mem.g_per_gb.value:g} g/GB x {gpu.memory_gb.value:g} GB"))
    return found


def _unit_amount(gpu: Gpu, per: str) -> float:
    return {"mm2": gpu.die_area_mm2.value, "gb": gpu.memory_gb.value,
            "w": gpu.tdp_w.value, "card": 1.0}[per]


def _card_unit(card: LcaCard, per: str) -> float:
    return {"mm2": card.die_area_mm2, "gb": card.memory_gb, "w": card.tdp_w,
            "card": 1.0}[per]


# a teardown's per-unit medians for cards it did not assess: what each part scales with
_TEARDOWN_UNITS = {"die": "mm2", "memory": "gb", "board": "w", "thermal": "w",
                   "transport": "card"}


def _module(form_factor: str) -> bool:
    return form_factor in ("sxm", "oam")


def _teardown_witnesses(lca: Lca, gpu: Gpu) -> tuple[list[Witness], dict[str, Witness]]:
    """A teardown's own card, or its medians per unit over the cards like this one."""
    name = f"{lca.name} ({lca.source})"
    own = next((c for c in lca.cards if c.gpu == gpu.id), None)
    found: list[Witness] = []
    outside: dict[str, Witness] = {}
    for part in BOM_PARTS:
        value = own.part_g(part) if own is not None else None
        if own is not None and value is not None:
            basis = f"this card, as assessed ({own.name})"
            if part == "memory" and own.memory_gb != gpu.memory_gb.value:
                value = value / own.memory_gb * gpu.memory_gb.value
                basis = (f"this card's {value / gpu.memory_gb.value:.0f} g/GB (assessed at "
                         f"{own.memory_gb:g} GB) x {gpu.memory_gb.value:g} GB")
            found.append(Witness(lca.id, name, part, value, basis))
            continue
        per = _TEARDOWN_UNITS[part]
        like = [c for c in lca.cards if c.part_g(part) is not None
                and (part != "memory" or memory_family(c.memory_type)
                     == memory_family(gpu.memory_type))
                and (part != "board" or _module(c.form_factor) == _module(gpu.form_factor))]
        if not like:
            continue
        rate = _median([c.part_g(part) / _card_unit(c, per) for c in like])  # type: ignore[operator]
        found.append(Witness(lca.id, name, part, rate * _unit_amount(gpu, per),
                             f"median of its {len(like)} cards like this one: {rate:.4g} g per "
                             f"{_PER_UNIT[per]}"))
    if own is not None:
        for key in LCA_OUTSIDE:
            if key in own.parts_g:
                outside[key] = Witness(lca.id, name, key, own.parts_g[key],
                                       f"this card, as assessed ({own.name})")
    return found, outside


def _factor_witnesses(lca: Lca, gpu: Gpu) -> list[Witness]:
    """Every per-unit factor of a source that covers this card."""
    found = []
    for f in lca.factors:
        if not f.applies(gpu.memory_type, gpu.act_node, gpu.form_factor):
            continue
        amount = _unit_amount(gpu, f.per)
        note = f"; {f.note}" if f.note else ""
        found.append(Witness(lca.id, f"{lca.name} ({lca.source})", f.part, f.value * amount,
                             f"{f.value:g} g per {_PER_UNIT[f.per]} x {amount:g}{note}",
                             matched=f.boundary_matched))
    return found


def _reconcile_part(part: str, witnesses: list[Witness], vendor_covers: bool) -> PartValue:
    """The rule: vendor's value where it covers the card, else the median; envelope as range."""
    matched = [w for w in witnesses if w.matched]
    vendor = [w for w in matched if w.vendor] if vendor_covers else []
    values = [w.value_g for w in matched]
    if vendor:
        central, rule = vendor[0].value_g, "vendor footprint of this card"
    elif values:
        central = _median(values)
        rule = (f"median of {len(values)} boundary-matched witnesses" if len(values) > 1
                else "the only boundary-matched witness")
    else:
        central, rule = 0.0, "no witness"
    span = [*values, central]
    return PartValue(part, central, min(span), max(span), rule, tuple(witnesses))


def reconcile_card(gpu: Gpu, catalog: Catalog) -> CardBom:
    """The card's bill of materials, every part reconciled from every witness."""
    vendor, pcf_id = _vendor_witnesses(gpu, catalog)
    witnesses = [*vendor, *_act_witnesses(gpu, catalog)]
    outside: dict[str, Witness] = {}
    for lca in catalog.lcas.values():
        if lca.method == "teardown":
            own, out = _teardown_witnesses(lca, gpu)
            witnesses += own
            outside.update(out)
        witnesses += _factor_witnesses(lca, gpu)
    parts = {p: _reconcile_part(p, [w for w in witnesses if w.part == p], pcf_id is not None)
             for p in BOM_PARTS}
    assessed = pcf_id is not None or any(c.gpu == gpu.id for lca in catalog.lcas.values()
                                         for c in lca.cards)
    return CardBom(gpu.id, parts, pcf_id, assessed, outside)


def bom_dict(bom: CardBom) -> dict[str, object]:
    """A JSON-ready view: every part with its witnesses, the rule's choice and the totals."""
    total, device = bom.total(), bom.total(("die", "memory"))
    return {
        "gpu": bom.gpu,
        "boundary": "cradle-to-gate: manufacturing + upstream transport",
        "vendor_footprint": bom.vendor,
        "card_g": total.as_dict(),
        "device_g": device.as_dict(),
        "source_totals_g": bom.source_totals_g(),
        "parts": {
            p: {"central_g": v.central_g, "low_g": v.low_g, "high_g": v.high_g, "rule": v.rule,
                "witnesses": [{"source_id": w.source_id, "source": w.source, "value_g": w.value_g,
                               "basis": w.basis, "vendor": w.vendor,
                               "boundary_matched": w.matched} for w in v.witnesses]}
            for p, v in bom.parts.items()},
        "outside_boundary_g": {k: {"source_id": w.source_id, "value_g": w.value_g,
                                   "basis": w.basis} for k, w in bom.outside_g.items()},
        "rule": RULE,
    }


RULE = ("per part, the boundary-matched witnesses; central: the vendor footprint's value where one "
        "covers the card, else their median; range: the envelope of the sources' card totals")
