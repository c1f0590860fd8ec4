from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from tokenprint.measure import EstimateMeter, MeterError, make_meter
from tokenprint.measure.base import Measurement, check_positive
from tokenprint.measure.integrate import energy_in_window
from tokenprint.measure.rapl import RaplMeter


def test_energy_in_window_interpolates_the_edges():
    t = [0.0, 1.0, 2.0, 3.0]
    assert energy_in_window(t, [100, 100, 100, 200], 0.5, 2.5) == pytest.approx(
        100 * 1.5 + (100 + 150) / 2 * 0.5)


def _fake_rapl(root: Path, values: dict[str, list[int]], max_uj: int) -> dict[str, Path]:
    paths = {}
    for i, (name, _) in enumerate(values.items()):
        z = root / f"intel-rapl:{i}"
        z.mkdir(parents=True)
        (z / "name").write_text(name)
        (z / "max_energy_range_uj").write_text(str(max_uj))
        (z / "energy_uj").write_text(str(values[name][0]))
        paths[name] = z / "energy_uj"
    return paths


def test_rapl_meter_over_fake_sysfs_with_wrap(tmp_path: Path):
    paths = _fake_rapl(tmp_path, {"package-0": [900_000], "dram": [10]}, max_uj=1_000_000)
    meter = RaplMeter(root=tmp_path, poll_s=60)
    try:
        meter.begin_window("w")
        paths["package-0"].write_text("100000")   # wrapped: +200,001 µJ
        paths["dram"].write_text("500010")        # +500,000 µJ
        m = meter.end_window("w")
    finally:
        meter.close()
    assert m.kind == "measured" and m.meter == "rapl"
    assert m.energy_j == pytest.approx(0.200001 + 0.5)


def test_rapl_absent_is_an_error(tmp_path: Path):
    with pytest.raises(MeterError, match="no readable RAPL domain"):
        RaplMeter(root=tmp_path)


class _FakeNvml(types.ModuleType):
    """pynvml stand-in replaying a recorded counter sequence (mJ) and power (mW)."""

    def __init__(self, counters: list[float], has_counter: bool = True) -> None:
        super().__init__("pynvml")
        self.counters = list(counters)
        self.has_counter = has_counter
        self.i = 0

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> float:
        if not self.has_counter:
            raise RuntimeError("not supported")
        v = self.counters[min(self.i, len(self.counters) - 1)]
        self.i += 1
        return v

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 250_000  # 250 W


def _nvml_window(seconds: float):
    """One measurement window of ``seconds`` with an NvmlMeter over the faked pynvml."""
    from tokenprint.measure.nvml import NvmlMeter

    meter = NvmlMeter(sample_hz=50)
    try:
        meter.begin_window("w")
        time.sleep(seconds)
        return meter.end_window("w")
    finally:
        meter.close()


def test_nvml_meter_counter_path(monkeypatch):
    fake = _FakeNvml([1_000_000.0, 1_000_000.0, 1_012_500.0])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    m = _nvml_window(0.2)
    assert m.energy_j == pytest.approx(12.5)       # counter delta: 12,500 mJ
    assert m.sampled_energy_j == pytest.approx(250 * m.duration_s, rel=0.15)
    assert m.peak_power_w == pytest.approx(250.0)


def test_nvml_meter_power_fallback(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml([0.0], has_counter=False))
    m = _nvml_window(0.3)
    assert m.energy_j == pytest.approx(250 * m.duration_s, rel=0.15)


def test_zero_reading_is_an_error():
    with pytest.raises(MeterError, match="reads nothing"):
        check_positive(Measurement(1.0, 0.0, "x", "measured"))


def test_estimate_meter_and_auto_on_cpu():
    meter, reason = make_meter("auto", "cpu")
    assert meter.kind == "estimated" or "rapl" in reason
    est = EstimateMeter("cpu", tdp_w=100.0, idle_w=20.0, cores=2)
    est.begin_window("w")
    x = 0.0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.2:
        x += 1.0
    m = est.end_window("w")
    assert m.kind == "estimated"
    # by hand: 0.5 CPU-seconds over 1 s of wall time on 2 cores is 25 % utilization, so
    # 20 W + (100 - 20) W × 0.25 = 40 W
    assert est.utilization(1.0, 0.5) == pytest.approx(0.25)
    est._windows["h"] = (time.perf_counter() - 1.0, time.process_time() - 0.5)
    h = est.end_window("h")
    assert h.mean_power_w == pytest.approx(40.0, abs=1.0)
    assert 20.0 <= m.mean_power_w <= 100.0
    with pytest.raises(MeterError, match="unknown meter"):
        make_meter("joulescope", "cpu")
