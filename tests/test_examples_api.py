"""The Python API examples `tokenprint examples` ships run as written and print what they say;
the example deployments and sweep files load with the same checks the commands use."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

EXAMPLES = Path(str(files("tokenprint") / "examples"))


@pytest.mark.parametrize("name,needle", [
    ("api_predict.py", "J per output token"),
    ("api_simulate.py", "of requests meet the targets"),
    ("api_study.py", "Carbon of serving llama-3.2-1b on t4 and l4 in FR and PL"),
])
def test_api_example_runs(tmp_path: Path, name: str, needle: str):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert needle in proc.stdout


def test_example_deployments_and_sweep_load(catalog):
    from tokenprint.cli.bench_cmd import _read_sweep
    from tokenprint.fleet.report import load_deployments

    deps = load_deployments(EXAMPLES / "deployments.toml")
    assert [d.name for d in deps] == ["chat", "search"]
    for d in deps:
        catalog.model(d.model), catalog.gpu(d.gpu), catalog.region(d.region)
    assert {d.energy for d in deps} == {"dcgm", "predicted"}
    sweep = _read_sweep(EXAMPLES / "sweep.toml")
    assert sweep["models"] == ["tiny"] and sweep["device"] == "cpu"
