from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli


def run(capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, *args)


def test_carbon_json_contract(capsys):
    code, out, _ = run(capsys, "carbon", "--energy-kwh", "2", "--duration-h", "1", "--gpu", "T4",
                       "--count", "2", "--region", "US-MIDW-MISO", "--json")
    assert code == 0
    d = json.loads(out)
    for key in ("operational_g", "embodied_g", "total_g", "embodied_breakdown_g",
                "intensity_g_per_kwh", "total_range_g", "scope", "sources"):
        assert key in d
    assert d["operational_g"] == pytest.approx(2 * 503)
    assert d["scope"] == "device"
    assert d["embodied_breakdown_g"]["host"] == 0
    assert d["total_range_g"]["low"] <= d["total_g"] <= d["total_range_g"]["high"]


def test_carbon_hourly_file(capsys, shared_data: Path):
    f = shared_data / "grid/electricitymaps_hourly/US-CAL-CISO_2023.csv"
    code, out, _ = run(capsys, "carbon", "--energy-kwh", "1", "--duration-h", "1", "--gpu", "h100",
                       "--region", "US-CAL-CISO", "--intensity-file", str(f), "--start",
                       "2023-07-01T12:00:00Z", "--json")
    assert code == 0
    d = json.loads(out)
    assert 0 < d["intensity_g_per_kwh"] < 1000
    assert d["operational_g"] == pytest.approx(d["intensity_g_per_kwh"])


@pytest.mark.parametrize("args,needle", [
    (["--gpu", "t5"], "unknown gpu 't5'"),
    (["--region", "us-cal-cisoo"], "Did you mean: us-cal-ciso"),
    (["--energy-kwh", "-1"], "--energy-kwh '-1' is invalid; it must be a number >= 0 and "
                             "<= 1e+12"),
    (["--energy-kwh", "1e306"], "--energy-kwh '1e306' is invalid"),
    (["--energy-kwh", "abc"], "--energy-kwh 'abc' is not a number"),
    (["--pue", "12"], "--pue '12' is invalid; it must be a number >= 1 and <= 10"),
    (["--scope", "rack"], "unknown scope 'rack'"),
    (["--lifetime-years", "0"], "lifetime 0.0 years is invalid"),
])
def test_carbon_bad_input_exit_2_no_traceback(capsys, args, needle):
    base = {"--energy-kwh": "1", "--duration-h": "1", "--gpu": "t4", "--region": "FR"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = ["carbon"] + [x for kv in base.items() for x in kv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_catalog_json_lists(capsys):
    for kind in ("gpus", "regions", "models", "hosts"):
        code, out, _ = run(capsys, "catalog", kind, "--json")
        assert code == 0
        items = json.loads(out)
        assert isinstance(items, list) and all("id" in i for i in items)
    code, out, _ = run(capsys, "catalog", "show", "gpu", "t4", "--json")
    assert json.loads(out)["die_area_mm2"]["value"] == 545
    code, out, _ = run(capsys, "catalog", "profiles", "--json")
    profiles = json.loads(out)
    assert {p["gpu"] for p in profiles} >= {"a100-sxm4-40gb", "h100-sxm"}
    assert all("fitted by tokenprint calibrate" in p["source"] for p in profiles)
    assert {p["stack"] for p in profiles} >= {"hf-transformers", "vllm-2024", "vllm-2025"}
    code, out, _ = run(capsys, "catalog", "show", "profile", profiles[0]["id"], "--json")
    assert code == 0 and json.loads(out)["gpu"] == profiles[0]["gpu"]
    code, _, err = run(capsys, "catalog", "show", "profile", "nope")
    assert code == 2 and "unknown profile 'nope'" in err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "tokenprint", "catalog", "show", "region",
                          "CA-QC"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "Electricity Maps" in out.stdout


def test_vendor_footprint_check_and_catalog(capsys):
    """The issue's check: a year of one H100 at card scope is NVIDIA's 164 kg per GPU."""
    code, out, _ = run_cli(capsys, "carbon", "--energy-kwh", "0", "--duration-h", "8760",
                        "--lifetime-years", "1", "--gpu", "h100-sxm", "--scope", "card",
                        "--region", "CA-QC", "--json")
    assert code == 0
    d = json.loads(out)
    assert abs(d["embodied_g"] - 164_000) / 164_000 < 0.10
    assert any("HGX H100" in str(s) for s in d["sources"].values())
    code, out, _ = run_cli(capsys, "catalog", "pcf", "--json")
    assert code == 0 and json.loads(out)[0]["id"] == "nvidia-hgx-h100"
    code, _, err = run_cli(capsys, "catalog", "show", "pcf", "nope")
    assert code == 2 and "nvidia-hgx-h100" in err and "Traceback" not in err


def test_utilization_scales_embodied_and_is_checked(capsys):
    base = ["carbon", "--energy-kwh", "1", "--duration-h", "1", "--gpu", "h100", "--region",
            "FR", "--json"]
    _, out1, _ = run_cli(capsys, *base)
    _, out2, _ = run_cli(capsys, *base, "--utilization", "0.25")
    e1, e2 = json.loads(out1)["embodied_g"], json.loads(out2)["embodied_g"]
    assert e2 == pytest.approx(4 * e1)
    assert json.loads(out1)["operational_g"] == json.loads(out2)["operational_g"]
    for bad in ("0", "1.5", "nan", "-1"):
        code, _, err = run_cli(capsys, *base, "--utilization", bad)
        assert code == 2 and "utilization" in err, bad


def test_outputs_are_written_atomically(tmp_path: Path):
    from tokenprint.files import atomic_path, write_text_atomic

    target = tmp_path / "out.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"                       # the old file stays whole
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left behind
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 != 0o600


def test_every_help_shows_what_to_type_not_python_types(capsys, monkeypatch):
    import typer

    from tokenprint.cli.main import app

    def walk(cmd, path: list[str]):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    root = typer.main.get_command(app)
    paths = list(walk(root, []))
    assert len(paths) > 15
    monkeypatch.setenv("COLUMNS", "120")
    for path in paths:
        code, out, _ = run_cli(capsys, *path, "--help")
        assert code == 0 and "Usage" in out, path
        assert "<" not in out, (path, [ln for ln in out.splitlines() if "<" in ln])


def test_an_intensity_file_of_another_zone_is_refused(tmp_path: Path, capsys):
    """carbon --region FR with California's Electricity Maps export charged France at 279 g/kWh
    with exit 0; the file's own Zone Id now has to be the region."""
    f = tmp_path / "caiso.csv"
    f.write_text("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
                 "Carbon Intensity gCO₂eq/kWh (LCA)\n" + "".join(
                     f"2023-07-01 {h:02d}:00:00,USA,CAISO,US-CAL-CISO,200,279\n"
                     for h in range(3)))
    args = ["carbon", "--energy-kwh", "1", "--duration-h", "1", "--gpu", "t4",
            "--intensity-file", str(f), "--start", "2023-07-01T00:30:00Z"]
    code, _, err = run_cli(capsys, *args, "--region", "FR")
    assert code == 2 and err.count("\n") == 1
    assert "holds zone US-CAL-CISO, not region FR" in err
    code, out, _ = run_cli(capsys, *args, "--region", "US-CAL-CISO", "--json")
    assert code == 0 and json.loads(out)["intensity_g_per_kwh"] == 279
