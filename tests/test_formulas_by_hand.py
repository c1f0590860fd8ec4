"""Embodied carbon, footprints and the performance model recomputed by hand from their parts.

Each test rebuilds a number from the catalog entries and the documented formula, so that a
changed operator, constant or key fails here (scripts/mutation_check.sh measures how many do).
"""

from __future__ import annotations

import numpy as np
import pytest

from tokenprint.carbon.embodied import (
    die_estimate,
    gpu_embodied,
    host_embodied_g,
)
from tokenprint.carbon.footprint import compute_footprint
from tokenprint.carbon.intensity import ConstantIntensity, IntensitySeries
from tokenprint.errors import TokenprintError
from tokenprint.predict.model import (
    gpu_power_w,
    pass_time,
    power_levels,
    power_w,
    predict_serving,
    predict_static,
)
from tokenprint.predict.params import ProfileArrays, hardware_arrays, resolve_profile
from tokenprint.predict.predictor import resolve_dtype
from tokenprint.predict.shapes import MEMORY_FRACTION, ShapeArrays
from tokenprint.ranges import Estimate
from tokenprint.units import J_PER_KWH, S_PER_YEAR

H = 3600.0
T0 = 1688169600.0


def _close(a: Estimate, b: Estimate) -> None:
    assert (a.low, a.mid, a.high) == pytest.approx((b.low, b.mid, b.high), rel=1e-12)


# ---- hosts and vendor footprints --------------------------------------------------------------

def test_host_from_its_pcf_plus_extra_memory_by_hand(catalog):
    h = catalog.host("1s-pcie-4gpu")          # R7515 PCF + (512 − 8) GB DDR5 + (7680 − 960) GB SSD
    total, src = host_embodied_g(h, catalog)
    dram = catalog.memory_factor("ddr5").g_per_gb
    ssd = catalog.memory_factor("ssd").g_per_gb
    want = (h.pcf_manufacturing_g.estimate + dram.estimate.scale(504.0)
            + ssd.estimate.scale(6720.0))
    _close(total, want)
    assert src == {"host.server": h.pcf_manufacturing_g.source,
                   "host.extra_dram": f"504 GB over the assessed server: {dram.source}",
                   "host.extra_ssd": f"6720 GB over the assessed server: {ssd.source}"}
    small = h.model_copy(update={"dram_gb": h.dram_gb.model_copy(update={"value": 4.0}),
                                 "ssd_gb": h.ssd_gb.model_copy(update={"value": 100.0,
                                                                       "low": None,
                                                                       "high": None})})
    t2, s2 = host_embodied_g(small, catalog)      # less than assessed: nothing added, not less
    _close(t2, h.pcf_manufacturing_g.estimate)
    assert s2["host.extra_dram"].startswith("0 GB over") and s2["host.extra_ssd"].startswith("0 GB")


def test_host_bottom_up_and_override_by_hand(catalog):
    base = catalog.host("2s-t4-inference")
    h = base.model_copy(update={"pcf_manufacturing_g": None})
    total, src = host_embodied_g(h, catalog)
    node = catalog.fab_node(h.cpu_act_node)
    cpu = die_estimate(h.cpu_die_area_mm2.estimate, node, catalog).scale(2) + \
        2 * catalog.fab.packaging_g_per_ic.value
    dram_f = catalog.memory_factor("ddr4").g_per_gb
    ssd_f = catalog.memory_factor("ssd").g_per_gb
    want = (cpu + h.dram_gb.estimate.times(dram_f.estimate)
            + h.ssd_gb.estimate.times(ssd_f.estimate) + h.chassis_g.estimate)
    _close(total, want)
    assert src == {
        "host.cpu": f"ACT logic model at {node.id}; {h.cpu_die_area_mm2.source}",
        "host.dram": f"{h.dram_gb.source}; {dram_f.source}",
        "host.ssd": f"{h.ssd_gb.source}; {ssd_f.source}",
        "host.chassis": h.chassis_g.source,
    }
    q = base.chassis_g.model_copy(update={"value": 123.0, "low": 100.0, "high": 150.0,
                                          "source": "a measured server"})
    t3, s3 = host_embodied_g(base.model_copy(update={"embodied_override_g": q}), catalog)
    assert (t3.low, t3.mid, t3.high) == (100.0, 123.0, 150.0)
    assert s3 == {"host": "a measured server"}



def test_server_scope_adds_the_host_share(catalog):
    g = catalog.gpu("h100-sxm")
    card = gpu_embodied(g, catalog, "card")
    server = gpu_embodied(g, catalog, "server")
    h = catalog.host(g.default_host)
    host_total, _ = host_embodied_g(h, catalog)
    _close(server.components_g["host"], host_total.scale(1.0 / h.gpu_slots))
    _close(server.total_g, card.total_g + host_total.scale(1.0 / h.gpu_slots))
    assert server.sources["host"] == f"{h.name}, shared by {h.gpu_slots} GPUs"
    assert card.components_g["host"].mid == 0.0 and "host" not in card.sources
    die_only = gpu_embodied(g, catalog, "die")
    assert set(die_only.sources) == {"die"}
    assert die_only.total_g.mid == die_only.components_g["die"].mid
    _close(die_only.scaled(3.0).total_g, die_only.total_g.scale(3.0))


# ---- footprints -------------------------------------------------------------------------------

def test_footprint_by_hand_with_ranges_gpus_and_utilization(catalog):
    fp = compute_footprint(catalog, gpu="t4", region="FR", energy_j=3.6e6, duration_s=H,
                           gpu_count=2, scope="device", lifetime_years=4.0, pue=1.2,
                           energy_range_j=(1.8e6, 7.2e6), utilization=0.5,
                           energy_kind="measured")
    ci = catalog.region("FR").intensity_g_per_kwh.estimate
    assert (fp.operational_g.low, fp.operational_g.mid, fp.operational_g.high) == pytest.approx(
        (0.5 * 1.2 * ci.low, 1.0 * 1.2 * ci.mid, 2.0 * 1.2 * ci.high))
    one = gpu_embodied(catalog.gpu("t4"), catalog, "device").total_g
    share = H / (4.0 * S_PER_YEAR) / 0.5 * 2         # held 2 h (50 % busy) on 2 GPUs
    _close(fp.embodied.total_g, one.scale(share))
    d = fp.to_dict()
    assert d["energy_kind"] == "measured" and d["gpu_count"] == 2 and d["utilization"] == 0.5
    assert d["pue"] == 1.2 and d["lifetime_years"] == 4.0 and d["region"] == "FR"
    r = catalog.region("FR")
    assert fp.intensity_source == (f"FR annual ({r.basis}, {r.year}): "
                                   f"{r.intensity_g_per_kwh.source}")
    assert fp.sources["intensity"] == fp.intensity_source
    assert fp.sources["lifetime"].startswith("4 years, provisioned time; ")
    assert ("embodied charged for 7200 s of provisioned time: the work ran 3600 s at 50% "
            "utilization") in fp.notes
    full = compute_footprint(catalog, gpu="t4", region="FR", energy_j=3.6e6, duration_s=H)
    assert not any(n.startswith("embodied charged") for n in full.notes)
    assert full.energy_kind == "given" and full.gpu_count == 1
    assert full.operational_g.low == full.operational_g.high or ci.low != ci.high


def test_footprint_with_a_series_and_a_host(catalog):
    s = IntensitySeries(T0, H, np.array([100.0, 300.0]), source="FR.csv [plain]")
    fp = compute_footprint(catalog, gpu="l4", region="FR", energy_j=7.2e6, duration_s=H,
                           intensity=s, start_s=T0 + 0.5 * H, scope="server",
                           host="hgx-8gpu")
    assert fp.operational_g.mid == pytest.approx(2.0 * 200.0)    # 2 kWh at the 200 mean
    assert fp.operational_g.low == fp.operational_g.mid == fp.operational_g.high
    assert fp.intensity_source == "FR.csv [plain] (lifecycle)"
    assert "energy spread evenly over the run, integrated against hourly intensity" in fp.notes
    h = catalog.host("hgx-8gpu")
    assert fp.sources["host"] == f"{h.name}, shared by 8 GPUs"
    const = compute_footprint(catalog, gpu="l4", region="FR", energy_j=3.6e6, duration_s=H,
                              intensity=ConstantIntensity(50.0, source="given"))
    assert const.operational_g.mid == pytest.approx(50.0)
    assert not any("hourly" in n for n in const.notes)
    with pytest.raises(TokenprintError) as exc:
        compute_footprint(catalog, gpu="l4", region="FR", energy_j=1.0, duration_s=1.0,
                          intensity=s)
    assert str(exc.value) == "an hourly intensity file needs a start time (--start)"


@pytest.mark.parametrize("kw, message", [
    ({"energy_j": -1.0}, "energy -1.0 is invalid; it must be a number >= 0"),
    ({"energy_j": float("nan")}, "energy nan is invalid; it must be a number >= 0"),
    ({"duration_s": float("inf")}, "duration inf is invalid; it must be a number >= 0"),
    ({"duration_s": -2.0}, "duration -2.0 is invalid; it must be a number >= 0"),
    ({"utilization": 0.0}, "utilization 0.0 is invalid; it must be a number from 0.001 to 1 "
                           "(the share of provisioned time the GPUs serve)"),
    ({"utilization": 1.5}, "utilization 1.5 is invalid; it must be a number from 0.001 to 1 "
                           "(the share of provisioned time the GPUs serve)"),
    ({"gpu_count": 0}, "GPU count 0 is invalid; it must be >= 1"),
    ({"amortization": "weekly"}, "unknown amortization 'weekly'; valid: busy, provisioned"),
])
def test_footprint_refuses_bad_numbers_naming_them(catalog, kw, message):
    args = {"gpu": "t4", "region": "FR", "energy_j": 1.0, "duration_s": 1.0, **kw}
    with pytest.raises(TokenprintError) as exc:
        compute_footprint(catalog, **args)
    assert str(exc.value) == message


# ---- the performance model --------------------------------------------------------------------

def _parts(catalog, model: str = "llama-3.1-8b", gpu: str = "h100-sxm"):
    m, g = catalog.model(model), catalog.gpu(gpu)
    dt = resolve_dtype("auto", g)
    prof = ProfileArrays.from_values(resolve_profile(g, catalog, "vllm-2025").values)
    return ShapeArrays.of([m], [dt]), hardware_arrays([g], [dt]), prof


def test_power_formulas_by_hand(catalog):
    # base 100 → mem 200 → peak 300 W; 10 % of the pass fixed overhead, a quarter compute-bound
    assert gpu_power_w(100.0, 200.0, 300.0, 0.5, 1.0, 0.25, 0.1) == pytest.approx(
        100.0 + 100.0 * 0.9 + 100.0 * 0.5)
    assert gpu_power_w(100.0, 200.0, 300.0, 1.0, 2.0, 2.0, 0.0) == pytest.approx(300.0)
    _, hw, prof = _parts(catalog)
    base, mem, peak = power_levels(hw, prof)
    idle, tdp = float(hw.idle_w[0]), float(hw.tdp_w[0])
    b = idle + float(prof.base_frac) * (tdp - idle)
    m = b + float(prof.mem_frac) * (tdp - b)
    assert float(base[0]) == pytest.approx(b) and float(mem[0]) == pytest.approx(m)
    assert float(peak[0]) == pytest.approx(m + float(prof.peak_frac) * (tdp - m))


@pytest.mark.parametrize("batch, li, lo, tp", [(4, 200, 9, 1), (2, 100, 1, 1), (2, 64, 2, 1),
                                              (8, 512, 65, 2)])
def test_static_prediction_rebuilt_from_passes(catalog, batch, li, lo, tp):
    shape, hw, prof = _parts(catalog)
    out = {k: float(np.asarray(v).reshape(-1)[0])
           for k, v in predict_static(shape, hw, prof, batch, li, lo, tp).items()}
    pre = pass_time(shape, hw, prof, batch, li, 0.0, tp)
    n_dec = max(lo - 1, 0)
    ctx = (li, li + 0.5 * max(n_dec - 1, 0), li + max(n_dec - 1, 0))   # first, middle, last step
    steps = [pass_time(shape, hw, prof, batch, 1.0, c, tp) for c in ctx]
    tpot = (steps[0].total_s + 4 * steps[1].total_s + steps[2].total_s) / 6   # Simpson
    p_dec = (power_w(hw, prof, steps[0]) * steps[0].total_s
             + 4 * power_w(hw, prof, steps[1]) * steps[1].total_s
             + power_w(hw, prof, steps[2]) * steps[2].total_s) / (6 * tpot) * tp
    ttft = float(pre.total_s[0])
    e_pre = float(power_w(hw, prof, pre)[0]) * tp * ttft
    e_dec = float(p_dec[0]) * n_dec * float(tpot[0])
    e2e = ttft + n_dec * float(tpot[0])
    assert out["ttft_s"] == pytest.approx(ttft)
    assert out["tpot_s"] == pytest.approx(float(tpot[0]))
    assert out["e2e_s"] == pytest.approx(e2e)
    assert out["prefill_power_w"] == pytest.approx(float(power_w(hw, prof, pre)[0]) * tp)
    assert out["decode_power_w"] == pytest.approx(float(p_dec[0]))
    assert out["prefill_energy_j"] == pytest.approx(e_pre)
    assert out["decode_energy_j"] == pytest.approx(e_dec)
    assert out["throughput_tok_s"] == pytest.approx(batch * lo / e2e)
    assert out["mean_power_w"] == pytest.approx((e_pre + e_dec) / e2e)
    assert out["energy_per_input_token_j"] == pytest.approx(e_pre / (batch * li))
    assert out["energy_per_token_total_j"] == pytest.approx((e_pre + e_dec) / (batch * lo))
    per_out = e_dec / (batch * lo) if n_dec > 0 else e_pre / (batch * lo)
    assert out["energy_per_output_token_j"] == pytest.approx(per_out)


def test_serving_prediction_rebuilt_from_passes(catalog):
    shape, hw, prof = _parts(catalog)
    li, lo, tp = 1000.0, 200.0, 1
    free = MEMORY_FRACTION * tp * float(hw.mem_bytes[0]) - float(shape.weight_bytes[0])
    cap = free / (float(shape.kv_bytes_per_token[0]) * (li + 0.5 * lo))
    for requested in (16.0, 1e6):
        out = {k: float(np.asarray(v).reshape(-1)[0])
               for k, v in predict_serving(shape, hw, prof, requested, li, lo, tp).items()}
        b = min(requested, cap)
        step = pass_time(shape, hw, prof, b, 1.0, li + 0.5 * lo, tp)
        pre = pass_time(shape, hw, prof, 1.0, li, 0.0, tp)
        share = b / lo * float(pre.total_s[0])
        it = float(step.total_s[0]) + share
        e_it = (float(power_w(hw, prof, step)[0]) * float(step.total_s[0])
                + float(power_w(hw, prof, pre)[0]) * share) * tp
        assert out["running_batch"] == pytest.approx(b)
        assert out["tpot_s"] == pytest.approx(float(step.total_s[0]))
        assert out["ttft_s"] == pytest.approx(float(pre.total_s[0] + step.total_s[0]))
        assert out["iteration_s"] == pytest.approx(it)
        assert out["throughput_tok_s"] == pytest.approx(b / it)
        assert out["mean_power_w"] == pytest.approx(e_it / it)
        assert out["energy_per_output_token_j"] == pytest.approx(e_it / b)
    assert cap < 1e6                                  # the second case is capped by memory


def test_units_the_formulas_rest_on():
    assert J_PER_KWH == 3.6e6
    assert S_PER_YEAR == 365.25 * 86400
    assert MEMORY_FRACTION == 0.9


def test_serving_on_a_group_and_when_memory_holds_less_than_one_request(catalog):
    shape, hw, prof = _parts(catalog)
    two = {k: float(np.asarray(v).reshape(-1)[0])
           for k, v in predict_serving(shape, hw, prof, 1e6, 1000.0, 200.0, 2).items()}
    free = MEMORY_FRACTION * 2 * float(hw.mem_bytes[0]) - float(shape.weight_bytes[0])
    assert two["running_batch"] == pytest.approx(
        free / (float(shape.kv_bytes_per_token[0]) * 1100.0))
    big = _parts(catalog, "llama-3.1-70b")
    tight = predict_serving(*big, 8.0, 100_000.0, 1000.0, 2)
    assert float(np.asarray(tight["running_batch"]).reshape(-1)[0]) == 1.0   # at least one


def test_footprint_per_unit_and_arrays_by_hand(catalog):
    from tokenprint.carbon.footprint import footprint_arrays

    fp = compute_footprint(catalog, gpu="t4", region="FR", energy_j=3.6e6, duration_s=H)
    per = fp.per_unit(4.0)
    assert per == {"operational_g": pytest.approx(fp.operational_g.mid / 4),
                   "embodied_g": pytest.approx(fp.embodied_g.mid / 4),
                   "total_g": pytest.approx(fp.total_g.mid / 4)}
    assert fp.per_1k_tokens(500.0)["total_g"] == pytest.approx(fp.total_g.mid * 2)
    assert fp.per_unit(0.5)["total_g"] == pytest.approx(fp.total_g.mid * 2)
    with pytest.raises(TokenprintError) as exc:
        fp.per_unit(0)
    assert str(exc.value) == "cannot normalise by 0 units; need > 0"
    arr = footprint_arrays([3.6e6, 7.2e6], H, [100.0, 200.0], 8766.0 * 3.6, lifetime_years=1.0,
                           pue=1.5)
    assert set(arr) == {"operational_g", "embodied_g", "total_g"}
    np.testing.assert_allclose(arr["operational_g"], [150.0, 600.0])
    np.testing.assert_allclose(arr["embodied_g"], [3.6 * 8766.0 * H / S_PER_YEAR] * 2)
    np.testing.assert_allclose(arr["total_g"], arr["operational_g"] + arr["embodied_g"])


def test_constant_and_series_take_any_numbers():
    c = ConstantIntensity(250.0)
    assert c.mean_over(np.zeros(3), 10.0).shape == (3,)
    assert c.mean_over(0.0, np.ones((2, 2))).shape == (2, 2)
    s = IntensitySeries(T0, 0.5, [1, 3])          # a list of ints, half-second steps
    assert s.values.dtype == np.float64 and s.end_s == T0 + 1.0
    assert float(s.mean_over(T0, T0 + 1.0)) == pytest.approx(2.0)


def test_upstream_model_asks_its_own_stack_and_the_nominal_request(catalog):
    from tokenprint.gateway.accounting import UpstreamModel

    m = UpstreamModel(catalog, "llama-3.1-8b", "l4", 1, "device", 5.0, stack="hf-transformers")
    prof = resolve_profile(catalog.gpu("l4"), catalog, "hf-transformers")
    s = m.serving       # the predicted serving energy watch uses too
    assert m.stack == "hf-transformers" and s.calibration == prof.calibration
    out = predict_static(s.shape, s.hw, s.prof, 8.0, 512.0, 128.0, 1)
    assert m.cost_per_token() == (pytest.approx(float(out["energy_per_input_token_j"][0])),
                                  pytest.approx(float(out["energy_per_output_token_j"][0])))


def test_embodied_sources_notes_and_calibrated_boards_by_hand(catalog):
    from tokenprint.carbon.embodied import vendor_calibration

    cal = vendor_calibration(catalog)
    assert cal is not None
    pcf = catalog.pcf_for("h100-sxm")
    h100 = catalog.gpu("h100-sxm")
    act = die_estimate(h100.die_area_mm2.estimate, catalog.fab_node(h100.act_node), catalog).mid
    assert cal.ic_factor == pytest.approx(332000 / 8 / act)
    assert cal.thermal_g_per_w == pytest.approx(230000 / 8 / h100.tdp_w.value)
    assert cal.other_board_g == pytest.approx(204000 / 8)
    assert cal.source == (
        f"calibrated on {pcf.name} ({pcf.source}): IC factor {332000 / 8 / 1e3:.1f} kg / "
        f"ACT die {act / 1e3:.1f} kg = {332000 / 8 / act:.2f}; thermal "
        f"{230000 / 8 / h100.tdp_w.value:.1f} g/W of TDP; other board parts "
        f"{204000 / 8 / 1e3:.1f} kg per GPU")
    # a card scope carries the reconciliation's notes; device scope the same parts
    l4 = catalog.gpu("l4")
    dev, card = gpu_embodied(l4, catalog, "device"), gpu_embodied(l4, catalog, "card")
    assert dev.components_g["die"] == card.components_g["die"]
    assert card.components_g["packaging"].mid == 0.0
    assert dev.sources["packaging"] == "inside the packaged GPU (die)"
    assert dev.sources["die"] == ("die: median of 3 boundary-matched witnesses "
                                  "(act, ademe-hubblo-2026, vendor-pcf)")
    assert card.sources["board"].startswith("board: the only boundary-matched witness")
    assert dev.scope == "device" and card.scope == "card"
    assert dev.components_g["host"].mid == 0.0 and dev.components_g["board"].mid == 0.0
    assert card.notes[-1].startswith("reconciled across public life-cycle assessments")
    h100_card = gpu_embodied(h100, catalog, "card")
    assert h100_card.notes[0] == ("card scope central from the vendor footprint nvidia-hgx-h100 "
                                  "(measured by the vendor, allocated per GPU); range: the other "
                                  "sources' totals")
    server = gpu_embodied(l4, catalog, "server")
    assert server.components_g["packaging"].mid == 0.0 and "host" in server.sources
    scaled = dev.scaled(2.0)
    assert scaled.sources == dev.sources and scaled.notes == dev.notes
    assert scaled.scope == "device"
    assert scaled.total_g.low == pytest.approx(2 * dev.total_g.low)
    assert scaled.total_g.high == pytest.approx(2 * dev.total_g.high)


def test_module_boards_from_the_vendor_split(catalog):
    from tokenprint.carbon.bom import reconcile_card
    from tokenprint.carbon.embodied import vendor_calibration

    cal = vendor_calibration(catalog)
    assert cal is not None
    for gid in ("h200", "b200", "mi300x"):
        g = catalog.gpu(gid)
        bom = reconcile_card(g, catalog)
        card = gpu_embodied(g, catalog, "card")
        b = card.components_g["board"]
        parts = [bom.parts[p] for p in ("board", "thermal", "transport")]
        assert b.mid == pytest.approx(sum(p.central_g for p in parts))
        # the module's board: the vendor's other parts per module and the teardown's per-W median
        # over its module cards; the thermal: the vendor per W, ACT's heatsink, the teardown
        assert {w.source_id for w in parts[0].witnesses} == {"vendor-pcf", "ademe-hubblo-2026"}
        vendor = [w.value_g for w in parts[1].witnesses if w.source_id == "vendor-pcf"]
        assert vendor == pytest.approx([cal.thermal_g_per_w * g.tdp_w.value])


def test_fab_yield_bounds():
    from tokenprint.carbon.embodied import die_carbon_g

    # 100 mm² = 1 cm² × (500 g/kWh × 2 kWh/cm² + 100 + 50 g/cm²) / 0.5
    assert float(die_carbon_g(100.0, 2.0, 100.0, 50.0, 500.0, 0.5)) == pytest.approx(2300.0)
    assert float(die_carbon_g(100.0, 2.0, 100.0, 50.0, 500.0, 1.0)) == pytest.approx(1150.0)
    for y in (0.0, -0.5, 1.01):
        with pytest.raises(TokenprintError) as exc:
            die_carbon_g(100.0, 2.0, 100.0, 50.0, 500.0, y)
        assert str(exc.value) == "fab yield must be in (0, 1]"


def test_footprint_json_keys_and_units(catalog):
    fp = compute_footprint(catalog, gpu="t4", region="FR", energy_j=7.2e6, duration_s=H)
    d = fp.to_dict()
    assert d["energy_kwh"] == pytest.approx(2.0)
    assert {"intensity_range_g_per_kwh", "operational_range_g", "embodied_range_g",
            "intensity_source", "notes", "embodied_breakdown_g"} <= set(d)
    ci = catalog.region("FR").intensity_g_per_kwh.estimate
    assert d["intensity_range_g_per_kwh"] == {"low": ci.low, "high": ci.high}
    assert d["operational_range_g"] == {"low": pytest.approx(2 * ci.low),
                                        "high": pytest.approx(2 * ci.high)}
    e = fp.embodied_g
    assert d["embodied_range_g"] == {"low": pytest.approx(e.low), "high": pytest.approx(e.high)}
    assert d["intensity_source"] == fp.intensity_source and d["notes"] == fp.notes


def test_estimate_meter_by_hand(monkeypatch):
    """P = P_idle + (P_tdp − P_idle) × u over the window; CPU defaults 10 W a core, idle 30 %."""
    from tokenprint.measure import estimate
    from tokenprint.measure.estimate import EstimateMeter

    cpu = EstimateMeter(cores=4)
    assert (cpu.name, cpu.device, cpu.cores, cpu.tdp_w, cpu.idle_w) == (
        "estimate", "cpu", 4, 40.0, pytest.approx(12.0))
    gpu = EstimateMeter(device="gpu")
    assert (gpu.tdp_w, gpu.idle_w) == (300.0, pytest.approx(90.0))
    assert EstimateMeter(tdp_w=50.0, idle_w=5.0, cores=2).idle_w == 5.0
    assert cpu.utilization(2.0, 4.0) == 0.5 and cpu.utilization(1.0, 9.0) == 1.0
    assert cpu.utilization(0.0, 1.0) == 0.0 and cpu.utilization(1.0, -1.0) == 0.0
    assert gpu.utilization(2.0, 0.0) == 1.0                # a GPU without NVML: busy (bound)
    clock = {"wall": 100.0, "cpu": 10.0}
    monkeypatch.setattr(estimate.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(estimate.time, "process_time", lambda: clock["cpu"])
    cpu.begin_window("w")
    clock.update(wall=102.0, cpu=12.0)                     # 2 s of wall, 2 s of CPU on 4 cores
    m = cpu.end_window("w")
    power = 12.0 + (40.0 - 12.0) * 0.25
    assert (m.duration_s, m.energy_j, m.peak_power_w) == (2.0, pytest.approx(power * 2.0),
                                                          pytest.approx(power))
    assert (m.meter, m.kind, m.per_device_j) == ("estimate", "estimated",
                                                 {"cpu": pytest.approx(power * 2.0)})


def test_serving_energy_of_an_interval_by_hand(catalog):
    """Per-token joules at the running batch (rounded, at least 1) times the tokens, never
    below the deployment's idle floor over the interval."""
    from tokenprint.predict.params import idle_w
    from tokenprint.predict.serving import ServingEnergy

    s = ServingEnergy(catalog, "llama-3.1-8b", "h100-sxm", 2)
    assert s.idle_w == pytest.approx(2 * idle_w(catalog.gpu("h100-sxm")))
    assert s.gpus == 2 and s.max_context == catalog.model("llama-3.1-8b").max_context
    e_in, e_out = s.per_token_j(2)
    assert s.interval_j(1000, 500, 2.4, 1.0) == pytest.approx(1000 * e_in + 500 * e_out)
    assert s.interval_j(1000, 500, 0.0, 1.0) == pytest.approx(
        1000 * s.per_token_j(1)[0] + 500 * s.per_token_j(1)[1])
    assert s.interval_j(0, 0, 3.0, 60.0) == pytest.approx(s.idle_w * 60.0)
    pre, dec = s.request_j(512, 1, 1)
    assert pre > 0 and dec == 0.0                          # one token comes from the prefill


def test_time_shift_by_hand():
    """The deferrable share (half of 2 kWh = 1 kWh) goes to the cleanest hours with spare room,
    every hour being as busy as the trace: half busy, a later hour has room 0.5 for work that
    takes 0.25 of the cluster, so all of it moves; 80 % busy, a later hour has room 0.2 for
    work taking 0.4, so half of it fits in each; fully busy, nothing can move."""
    from types import SimpleNamespace

    from tokenprint.plan.shift import time_shift

    def shift(values: list[float], busy_share: float) -> dict:
        s = IntensitySeries(36_000.0, 3600.0, np.array(values))
        res = SimpleNamespace(busy_s=busy_share * 100.0, duration_s=50.0,
                              busy_energy_j=7.2e6)
        best = SimpleNamespace(config=SimpleNamespace(result=res, replicas=2))
        inp = SimpleNamespace(trace=SimpleNamespace(start_s=36_000.0), deadline_h=2.0,
                              deferrable=0.5, pue=1.5)
        return time_shift(best, inp, s)  # type: ignore[arg-type]

    half = shift([400.0, 100.0, 300.0], 0.5)
    assert half["hours_utc"] == [10, 11, 12] and half["intensity_g_per_kwh"] == [400, 100, 300]
    assert half["placement"] == pytest.approx([0.0, 1.0, 0.0])
    assert half["deferrable_operational_g"]["as_arrived"] == pytest.approx(400.0 * 1.5)
    assert half["deferrable_operational_g"]["shifted"] == pytest.approx(100.0 * 1.5)
    assert half["saving_g"] == pytest.approx(300.0 * 1.5)
    busy = shift([300.0, 100.0, 200.0], 0.8)
    assert busy["placement"] == pytest.approx([0.0, 0.5, 0.5])
    assert busy["saving_g"] == pytest.approx((300.0 - (0.5 * 100.0 + 0.5 * 200.0)) * 1.5)
    full = shift([300.0, 100.0, 200.0], 1.0)
    assert full["placement"] == pytest.approx([1.0, 0.0, 0.0])
    assert full["saving_g"] == pytest.approx(0.0)
    assert time_shift(None, None, None)["note"].startswith(  # type: ignore[arg-type]
        "time shifting needs")


def test_region_split_by_hand(catalog):
    """Four replicas of one L4 each; the cleaner region (FR) holds only two GPUs, so it takes
    half the load on two replicas and PL the other half on two: each share pays its busy
    energy (less the idle it displaces) at its region's intensity, each replica its idle power
    and its GPU's embodied carbon over the trace."""
    from types import SimpleNamespace

    from tokenprint.plan.shift import split_regions
    from tokenprint.units import J_PER_KWH as J

    dur, reps = 3600.0, 4
    res = SimpleNamespace(duration_s=dur, idle_energy_j=2.0e5, idle_s=4000.0, hourly_span={},
                          hourly={}, busy_energy_j=3.6e6, busy_s=10_000.0)
    best = SimpleNamespace(config=SimpleNamespace(result=res, replicas=reps, tp=1, gpu="l4"))
    inp = SimpleNamespace(scope="device", lifetime_years=5.0, pue=1.2,
                          region_capacity={"FR": 2, "PL": 64})
    out = split_regions(best, inp, catalog, ["FR", "PL"], {"FR": None, "PL": None})  # type: ignore[arg-type]
    idle_w = 2.0e5 / 4000.0                                  # 50 W a replica
    emb_rep = gpu_embodied(catalog.gpu("l4"), catalog, "device").total_g.mid * dur / (
        5.0 * S_PER_YEAR)
    ci = {r: catalog.region(r).intensity_g_per_kwh.value for r in ("FR", "PL")}
    assert ci["FR"] < ci["PL"]
    busy = {r: (3.6e6 - 10_000.0 * idle_w) / J * 1.2 * ci[r] for r in ci}
    rep = {r: idle_w * dur * reps / reps / J * 1.2 * ci[r] + emb_rep for r in ci}
    assert out["split"] == {"FR": {"share": pytest.approx(0.5), "replicas": 2},
                            "PL": {"share": pytest.approx(0.5), "replicas": 2}}
    assert out["total_g"] == pytest.approx(0.5 * busy["FR"] + 2 * rep["FR"]
                                           + 0.5 * busy["PL"] + 2 * rep["PL"])
    roomy = split_regions(best, SimpleNamespace(**{**inp.__dict__, "region_capacity": {}}),
                          catalog, ["FR", "PL"], {"FR": None, "PL": None})  # type: ignore[arg-type]
    assert roomy["split"] == {"FR": {"share": pytest.approx(1.0), "replicas": 4}}
    assert roomy["total_g"] == pytest.approx(busy["FR"] + 4 * rep["FR"])
    assert roomy["solver"] == "HiGHS MILP" and "replicas per region" in roomy["note"]
