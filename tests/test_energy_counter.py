"""One energy-counter interface (``tokenprint.measure.counter``) for the gateway and ``watch``:
RAPL read cumulatively with wrap-around, every counter conforming, and ``watch --energy rapl``
charging what the counter read."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from test_measure import _fake_rapl
from tokenprint.fleet.watch import ExporterEnergy
from tokenprint.measure.base import MeterError
from tokenprint.measure.counter import EnergyCounter, RaplCounter
from tokenprint.measure.nvml import NvmlEnergySource


def test_rapl_counter_is_cumulative_through_a_wrap(tmp_path: Path):
    paths = _fake_rapl(tmp_path, {"package-0": [900_000], "dram": [10]}, max_uj=1_000_000)
    c = RaplCounter(root=tmp_path)
    assert c.read_j() == 0.0 and c.method == "rapl"
    paths["package-0"].write_text("100000")     # wrapped: +200,001 µJ
    paths["dram"].write_text("500010")          # +500,000 µJ
    assert c.read_j() == pytest.approx(0.200001 + 0.5)
    paths["package-0"].write_text("400000")     # +300,000 µJ more
    assert c.read_j() == pytest.approx(0.500001 + 0.5)
    with pytest.raises(MeterError, match="no readable RAPL domain"):
        RaplCounter(root=tmp_path / "none")


def test_every_counter_speaks_the_one_interface(tmp_path: Path):
    _fake_rapl(tmp_path, {"package-0": [1]}, max_uj=10)
    with httpx.Client() as client:
        for counter in (RaplCounter(root=tmp_path),
                        ExporterEnergy("dcgm", "http://127.0.0.1:9/metrics", client)):
            assert isinstance(counter, EnergyCounter)
    assert NvmlEnergySource.method == "nvml" and callable(NvmlEnergySource.read_j)


def test_watch_energy_rapl_is_refused_clearly_without_powercap(capsys, monkeypatch):
    from conftest import run_cli
    from tokenprint.measure import counter

    monkeypatch.setattr(counter, "POWERCAP", Path("/nonexistent-powercap"))
    monkeypatch.setattr(counter.RaplCounter.__init__, "__defaults__",
                        (Path("/nonexistent-powercap"),))
    code, _, err = run_cli(capsys, "watch", "--metrics", "http://127.0.0.1:9/metrics",
                           "--model", "llama-3.1-8b", "--gpu", "l4", "--region", "FR",
                           "--energy", "rapl", "--iterations", "1")
    assert code == 2 and "--energy rapl: no readable RAPL domain" in err
    assert err.count("\n") == 1


def test_watch_charges_what_the_rapl_counter_read(tmp_path: Path, catalog):
    pytest.importorskip("fastapi")
    from conftest import serve_in_thread
    from test_fleet import _Exporters, vllm
    from tokenprint.carbon.charge import charge
    from tokenprint.fleet.watch import Watcher, WatchLedger, WatchMetrics

    paths = _fake_rapl(tmp_path / "rapl", {"package-0": [0]}, max_uj=10**12)
    ex = _Exporters()
    with serve_in_thread(ex.app) as port:
        w = Watcher(catalog, endpoints=[f"http://127.0.0.1:{port}/engine"], model="tiny",
                    gpu="l4", gpus=1, region="FR", energy=RaplCounter(root=tmp_path / "rapl"),
                    ledger=WatchLedger(tmp_path), metrics=WatchMetrics(), deployment="cpu")
        assert w.step(now=100.0) is None
        ex.engine = vllm(40, 10, 1)
        paths["package-0"].write_text(str(90 * 10**6))      # 90 J over the interval
        row = w.step(now=130.0)
        w.close()
        w.ledger.close()
    assert row is not None and row.energy_method == "rapl"
    assert row.energy_j == pytest.approx(90.0)
    ci = catalog.region("FR").intensity_g_per_kwh.value
    assert row.operational_g == pytest.approx(float(charge(90.0, ci).operational_g))
