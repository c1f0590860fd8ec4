"""Inputs that disagree are refused naming both sides, or noted; never a quiet wrong answer."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

PROFILE = """[[profile]]
id = "h100-mine"
gpu = "h100-sxm"
stack = "vllm-2024"
source = "my measurements"
eff_compute = 0.5
eff_memory = 0.7
step_overhead_s = 0.005
seq_overhead_s = 0.0001
base_frac = 0.2
mem_frac = 0.5
peak_frac = 0.5
power_exponent = 0.5
"""


def test_a_profile_for_another_stack_is_refused_not_ignored(tmp_path: Path, capsys):
    f = tmp_path / "mine.toml"
    f.write_text(PROFILE)
    base = ["predict", "--model", "llama-3.1-8b", "--gpu", "h100", "--batch", "1",
            "--catalog", str(f)]
    code, out, err = run_cli(capsys, *base)
    assert code == 2
    line = (out + err).strip()
    assert "vllm-2024" in line and "vllm-2025" in line and str(f) in line
    assert len(line.splitlines()) == 1
    code, out, _ = run_cli(capsys, *base, "--stack", "vllm-2024", "--json")
    assert code == 0 and '"profile": "h100-mine"' in out
    # another GPU has no profile of the user's: nothing to disagree with
    code, _, _ = run_cli(capsys, "predict", "--model", "llama-3.1-8b", "--gpu", "l4",
                         "--batch", "1", "--catalog", str(f))
    assert code == 0


def test_a_start_without_a_time_zone_gets_a_note(capsys):
    args = ["simulate", "--synthetic", "50,4", "--model", "llama-3.2-1b", "--gpu", "l4",
            "--region", "FR", "--json", "--start"]
    code, _, err = run_cli(capsys, *args, "2023-07-01T12:00")
    assert code == 0 and "no time zone; read as UTC" in err
    code, _, err = run_cli(capsys, *args, "2023-07-01T12:00+02:00")
    assert code == 0 and "time zone" not in err
