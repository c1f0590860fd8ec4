"""Every numeric option of every command, fed nan, inf, negative, zero, empty and huge values:
one clear line and exit 2 (or a valid run), never a traceback.

bench (it would run real inference for values that happen to be valid), serve (it would start a
server) and calibrate/validate (they need data files) are checked by their own tests.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BAD = ["nan", "NaN", "inf", "-inf", "-1", "0", "", "1e308", "-1e308", "99999999999999999999",
       "abc"]

COMMANDS: dict[str, tuple[list[str], list[str]]] = {
    "carbon": (["carbon", "--energy-kwh", "1", "--duration-h", "1", "--gpu", "h100", "--region",
                "FR"],
               ["--energy-kwh", "--duration-h", "--count", "--lifetime-years", "--pue",
                "--utilization"]),
    "predict": (["predict", "--model", "llama-3.2-1b", "--gpu", "h100", "--batch", "1"],
                ["--input-len", "--output-len", "--tp", "--batch"]),
    "predict-media": (["predict", "--model", "qwen3-vl-8b", "--gpu", "h100", "--batch", "1",
                       "--images", "1", "--videos", "1"],
                      ["--images", "--videos", "--video-frames", "--image-size",
                       "--frame-size"]),
    "simulate": (["simulate", "--synthetic", "40,10", "--model", "llama-3.2-1b", "--gpu", "h100",
                  "--region", "FR"],
                 ["--replicas", "--tp", "--max-batch", "--time-scale", "--slo-ttft-s",
                  "--slo-tpot-s", "--lifetime-years", "--pue", "--seed"]),
    "plan": (["plan", "--synthetic", "40,10", "--models", "llama-3.2-1b", "--gpus", "h100",
              "--regions", "FR", "--max-batch", "16", "--max-replicas", "2"],
             ["--max-replicas", "--slo-ttft-s", "--slo-tpot-s", "--deferrable", "--deadline-h",
              "--time-scale", "--lifetime-years", "--pue", "--seed", "--max-batch"]),
    "study": (["study", "--models", "llama-3.2-1b", "--gpus", "t4", "--regions", "FR",
               "--batch", "1"],
              ["--pue", "--lifetime-years", "--tpot-target-ms", "--utilization", "--batch"]),
}
CASES = [(name, opt) for name, (_, opts) in COMMANDS.items() for opt in opts]


def _run(args: list[str]) -> tuple[int, str]:
    from tokenprint.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue() + err.getvalue()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES), value=st.sampled_from(BAD))
def test_no_traceback_for_any_bad_number(tmp_path: Path, case: tuple[str, str], value: str):
    name, opt = case
    base, _ = COMMANDS[name]
    args = [*base, opt, value]
    if name in ("plan", "study"):
        args += ["--out", str(tmp_path / name)]
    if name == "study":
        args += ["--json"]
    code, text = _run(args)
    assert "Traceback" not in text, (args, text[-2000:])
    assert code in (0, 1, 2), (args, code, text[-500:])
    if code == 2:  # one clear error: ours ("error: ...", one line) or typer's usage panel
        ours = [ln for ln in text.splitlines() if ln.startswith("error:")]
        assert len(ours) == 1 or "Invalid value" in text, (args, text[-500:])
    if value in ("nan", "NaN", "inf", "-inf", "abc", ""):
        assert code == 2, (args, code, text[-500:])  # never silently accepted


@pytest.mark.parametrize("args,needle", [
    (["simulate", "--synthetic", "40,10", "--model", "llama-3.2-1b", "--gpu", "h100",
      "--region", "FR", "--pue", "0.5"], "--pue"),
    (["plan", "--synthetic", "40,10", "--models", "llama-3.2-1b", "--gpus", "h100", "--regions",
      "FR", "--pue", "nan"], "--pue"),
    (["simulate", "--synthetic", "40,10", "--model", "llama-3.2-1b", "--gpu", "h100",
      "--region", "FR", "--replicas", "99999999999999999999"], "replicas"),
])
def test_issue_checks(args: list[str], needle: str):
    code, text = _run(args)
    assert code == 2 and needle in text and len(text.strip().splitlines()) == 1
