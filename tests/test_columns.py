"""Every command's output and help, read at 80 and at 200 columns: no id or number cut with "…",
no traceback (issue: tables cut numbers and ids at 80 columns)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

OUTPUTS = [
    ["predict", "--model", "llama-3.1-8b", "--gpu", "h100,l4", "--batch", "1,8"],
    ["predict", "--model", "qwen3-vl-8b", "--gpu", "h100", "--batch", "1", "--images", "1"],
    ["simulate", "--synthetic", "300,4", "--model", "llama-3.2-1b", "--gpu", "l4", "--region",
     "FR"],
    ["simulate", "--synthetic", "300,40", "--model", "llama-3.2-1b", "--gpu", "l4,h100",
     "--replicas", "1,2", "--region", "FR"],
    ["plan", "--synthetic", "200,4", "--models", "llama-3.2-1b", "--gpus", "l4,h100",
     "--regions", "FR,PL", "--max-batch", "16", "--out", "{tmp}/plan"],
    ["study", "--models", "llama-3.2-1b", "--gpus", "t4,l4", "--regions", "FR,PL",
     "--batch", "1,8", "--out", "{tmp}/study"],
    ["carbon", "--energy-kwh", "1.5", "--duration-h", "2", "--gpu", "h100-sxm", "--region",
     "US-CAL-CISO"],
    ["carbon", "--energy-kwh", "1.5", "--duration-h", "2", "--gpu", "l4", "--region", "FR",
     "--explain"],
    ["catalog", "gpus"], ["catalog", "models"], ["catalog", "profiles"], ["catalog", "regions"],
    ["catalog", "show", "gpu", "l4", "--embodied"], ["catalog", "show", "model", "qwen3-vl-8b"],
    ["catalog", "show", "region", "US-MIDW-MISO"],
]


def _run(args: list[str], width: int, tmp: Path) -> str:
    env = {**os.environ, "COLUMNS": str(width), "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "tokenprint", *(a.format(tmp=tmp) for a in args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), (args, width, text[-800:])
    assert "Traceback" not in text, (args, text[-800:])
    return text


def _cut(text: str) -> list[str]:
    return [line for line in text.splitlines() if "…" in line]


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("args", OUTPUTS, ids=lambda a: " ".join(a[:3]))
def test_output_is_whole(tmp_path: Path, args: list[str], width: int):
    text = _run(args, width, tmp_path)
    assert not _cut(text), (args, width, _cut(text))
    if width == 80:
        assert max(len(line) for line in text.splitlines()) <= 80, args


def test_validate_is_whole(tmp_path: Path):
    f = SHARED / "calibration" / "mlenergy_v3_h100" / "mlenergy_v3_h100_configs.csv"
    if not f.exists():
        pytest.skip(f"shared data {f} is absent")
    for width in (80, 200):
        text = _run(["validate", "--data", str(f), "--format", "mlenergy-v3", "--no-refit"],
                    width, tmp_path)
        assert not _cut(text), _cut(text)


def test_every_help_is_whole_at_80_columns(tmp_path: Path):
    from test_cli_layout import _commands

    paths = [list(path) for path, _ in _commands()]
    assert len(paths) > 15
    for path in paths:
        text = _run([*path, "--help"], 80, tmp_path)
        assert not _cut(text), (path, _cut(text))


def test_bench_and_runs_list_are_whole_at_80_columns(tmp_path: Path):
    pytest.importorskip("torch")
    bench = _run(["bench", "--model", "tiny", "--batch", "1,2", "--input-len", "16",
                  "--output-len", "4", "--repeat", "1", "--warmup", "0", "--results",
                  "{tmp}/rr"], 80, tmp_path)
    listed = _run(["runs", "list", "--results", "{tmp}/rr"], 80, tmp_path)
    for text in (bench, listed):
        assert not _cut(text), _cut(text)
        assert max(len(line) for line in text.splitlines()) <= 80
    assert "in/out 16/4" in listed


def test_wide_prints_ranges_and_tables_whole_at_80_columns(tmp_path: Path):
    narrow = _run(["predict", "--model", "llama-3.1-8b", "--gpu", "h100", "--batch", "1,8"],
                  80, tmp_path)
    wide = _run(["--wide", "predict", "--model", "llama-3.1-8b", "--gpu", "h100", "--batch",
                 "1,8"], 80, tmp_path)
    assert "ranges (low–high) left out" in narrow and "left out" not in wide
    assert "┏" in wide and not _cut(wide)
    assert max(len(line) for line in wide.splitlines()) > 80     # laid out for 240 columns
