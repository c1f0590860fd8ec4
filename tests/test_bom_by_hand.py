"""What a card's bill of materials says about each witness, by hand (``carbon/bom.py``): the
basis a user reads beside every number (``tokenprint catalog show``, ``bom_dict``), the rule each
part was reconciled by, which cards count as assessed, and the module/PCIe split of the
teardown's board medians. The numbers themselves are derived in ``test_embodied_bom.py``."""

from __future__ import annotations

import pytest

from tokenprint.carbon.bom import Witness, _module, _reconcile_part, bom_dict, reconcile_card


def _bases(gpu: str, catalog) -> dict[tuple[str, str], str]:
    bom = reconcile_card(catalog.gpu(gpu), catalog)
    return {(p, w.source_id): w.basis for p, v in bom.parts.items() for w in v.witnesses}


def test_the_vendor_footprint_of_the_covered_card(catalog):
    """NVIDIA's HGX H100 footprint: 1,312 kg over 8 GPUs, split by its own parts; transport is
    inside its cradle-to-gate total."""
    bom = reconcile_card(catalog.gpu("h100-sxm"), catalog)
    pcf = catalog.pcf_for("h100-sxm")
    assert bom.vendor == pcf.id and bom.gpu == "h100-sxm"
    for part, g in (("die", 332_000 / 8), ("memory", 546_000 / 8), ("thermal", 230_000 / 8),
                    ("board", 204_000 / 8), ("transport", 0.0)):
        (w,) = [w for w in bom.parts[part].witnesses if w.source_id == "vendor-pcf"]
        assert (w.source, w.value_g, w.vendor) == (f"{pcf.name} ({pcf.source})", g, True)
        assert w.basis == ("inside the vendor's cradle-to-gate total" if part == "transport"
                           else "this card's footprint, 1312 kg / 8 GPUs")
        assert bom.parts[part].rule == "vendor footprint of this card"
        assert bom.parts[part].central_g == g


def test_the_factors_calibrated_on_it_for_other_cards(catalog):
    """MI300X (OAM, 1,017 mm², 192 GB HBM3, 750 W): the IC factor on ACT's die, thermal per
    watt, the other board parts of a module, HBM per GB; its sources say so."""
    b = _bases("mi300x", catalog)
    assert b[("die", "vendor-pcf")] == "ACT die 28.25 kg x IC factor 1.84"
    assert b[("thermal", "vendor-pcf")] == "41.1 g/W x 750 W"
    assert b[("board", "vendor-pcf")] == "other board parts per module"
    assert b[("memory", "vendor-pcf")] == "853 g/GB x 192 GB"
    bom = reconcile_card(catalog.gpu("mi300x"), catalog)
    cal_source = bom.parts["die"].witnesses[0].source
    assert cal_source.startswith("calibrated on NVIDIA HGX H100")
    mem = catalog.memory_factor(catalog.gpu("mi300x").memory_type)
    (w,) = [w for w in bom.parts["memory"].witnesses if w.source_id == "vendor-pcf"]
    assert w.source == f"{cal_source}; {mem.g_per_gb.source}"
    assert bom.vendor is None and bom.parts["die"].rule == "median of 3 boundary-matched witnesses"
    assert bom.parts["transport"].rule == "the only boundary-matched witness"
    # a PCIe card has no module board from the vendor's calibration
    assert ("board", "vendor-pcf") not in _bases("t4", catalog)


def test_acts_witnesses_name_the_die_the_package_and_the_materials(catalog):
    b = _bases("t4", catalog)
    assert b[("die", "act")] == "logic die 545 mm² at 14nm + 1 x 150 g package"
    assert b[("thermal", "act")] == "heatsink and PCB by mass x ACT material factors"
    assert b[("memory", "act")] == "140 g/GB x 16 GB"          # GDDR6: ACT's planar DRAM
    bom = reconcile_card(catalog.gpu("t4"), catalog)
    t4 = catalog.gpu("t4")
    by = {(p, w.source_id): w for p, v in bom.parts.items() for w in v.witnesses}
    assert by[("thermal", "act")].source == (f"ACT (Gupta et al. ISCA 2022) materials: "
                                             f"{t4.board_g.source}")
    mem = catalog.memory_factor(t4.memory_type)
    assert by[("memory", "act")].source == f"ACT (Gupta et al. ISCA 2022): {mem.g_per_gb.source}"
    assert ("memory", "act") not in _bases("h100-sxm", catalog)    # HBM is not ACT's DRAM


def test_the_teardowns_own_card_and_its_medians_for_the_others(catalog):
    lca = catalog.lcas["ademe-hubblo-2026"]
    l4 = reconcile_card(catalog.gpu("l4"), catalog)
    for part in ("die", "memory", "board", "thermal", "transport"):
        (w,) = [w for w in l4.parts[part].witnesses if w.source_id == lca.id]
        assert (w.source, w.basis) == (f"{lca.name} ({lca.source})",
                                       "this card, as assessed (NVIDIA L4)")
    assert l4.outside_g == {"end_of_life": Witness(lca.id, f"{lca.name} ({lca.source})",
                                                   "end_of_life", 256.0,
                                                   "this card, as assessed (NVIDIA L4)")}
    t4, mi = _bases("t4", catalog), _bases("mi300x", catalog)
    assert t4[("die", lca.id)] == "median of its 9 cards like this one: 89.79 g per mm²"
    assert t4[("transport", lca.id)] == "median of its 9 cards like this one: 253 g per card"
    # boards: a PCIe card from the teardown's PCIe cards, a module (OAM too) from its modules
    assert t4[("board", lca.id)] == "median of its 7 cards like this one: 40.8 g per W of TDP"
    assert mi[("board", lca.id)] == "median of its 2 cards like this one: 49.95 g per W of TDP"
    assert _module("sxm") and _module("oam") and not _module("pcie")


def test_a_per_unit_factor_says_its_unit_amount_and_note(catalog):
    b = _bases("t4", catalog)
    assert b[("memory", "llmcarbon-2024")] == "400 g per GB x 16; Micron 18 nm DRAM, 0.4 kg/GB"
    assert b[("die", "llmcarbon-2024")] == ("12 g per mm² x 545; V100 TSMC 12nm: 1.2 kg/cm2 of "
                                            "die; the bare die, no package: not the packaged "
                                            "GPU's boundary")
    assert b[("die", "llmcarbon-2024")] != _bases("h100-sxm", catalog)[("die", "llmcarbon-2024")]


def test_which_cards_are_assessed(catalog):
    """A vendor footprint or a teardown of the very card: either is enough."""
    got = {g: reconcile_card(catalog.gpu(g), catalog).assessed for g in catalog.gpus}
    assert got["h100-sxm"] and got["l4"] and got["gh200"]   # vendor only; teardown only
    assert not got["t4"] and not got["mi300x"] and not got["h200"]


def test_the_rule_for_none_one_and_several_witnesses():
    def w(g: float, matched: bool = True, vendor: bool = False) -> Witness:
        return Witness("s", "S", "die", g, "b", vendor=vendor, matched=matched)

    none = _reconcile_part("die", [w(5.0, matched=False)], False)
    assert (none.central_g, none.low_g, none.high_g, none.rule) == (0.0, 0.0, 0.0, "no witness")
    one = _reconcile_part("die", [w(5.0)], False)
    assert (one.central_g, one.rule) == (5.0, "the only boundary-matched witness")
    two = _reconcile_part("die", [w(4.0), w(8.0)], False)
    assert (two.central_g, two.low_g, two.high_g, two.rule) == (
        6.0, 4.0, 8.0, "median of 2 boundary-matched witnesses")
    # a vendor value decides only where the vendor's footprint covers the card
    calibrated = _reconcile_part("die", [w(4.0, vendor=True), w(8.0), w(9.0)], False)
    assert calibrated.central_g == 8.0
    covered = _reconcile_part("die", [w(4.0, vendor=True), w(8.0), w(9.0)], True)
    assert (covered.central_g, covered.rule) == (4.0, "vendor footprint of this card")


def test_the_json_view_by_its_keys(catalog):
    d = bom_dict(reconcile_card(catalog.gpu("l4"), catalog))
    assert list(d) == ["gpu", "boundary", "vendor_footprint", "card_g", "device_g",
                       "source_totals_g", "parts", "outside_boundary_g", "rule"]
    assert d["gpu"] == "l4" and d["vendor_footprint"] is None
    assert list(d["parts"]) == ["die", "memory", "board", "thermal", "transport"]
    die = d["parts"]["die"]
    assert list(die) == ["central_g", "low_g", "high_g", "rule", "witnesses"]
    assert list(die["witnesses"][0]) == ["source_id", "source", "value_g", "basis", "vendor",
                                         "boundary_matched"]
    assert d["outside_boundary_g"] == {"end_of_life": {
        "source_id": "ademe-hubblo-2026", "value_g": 256.0,
        "basis": "this card, as assessed (NVIDIA L4)"}}
    assert d["rule"].startswith("per part, the boundary-matched witnesses; central: the vendor")
    assert d["device_g"]["mid"] == pytest.approx(die["central_g"]
                                                 + d["parts"]["memory"]["central_g"])
