"""Human output at a narrow terminal: no id or number cut, a table where it fits."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tokenprint.cli import common

HEADER = ("gpu", "stack", "points", "eff compute", "eff memory", "fit rms (log)",
          "energy/tok range", "on a bound")
ROWS = [("a100-sxm4-80gb", "splitwise-2023", "285", "0.56", "0.95", "0.325", "×0.81–×1.27",
         "eff_memory, overhead_s")]


@pytest.mark.parametrize("width", [60, 80, 200])
def test_print_records_keeps_every_cell_whole(monkeypatch, width):
    out = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=out, width=width, color_system=None))
    common.print_records("Profiles", HEADER, ROWS)
    text = out.getvalue()
    assert "…" not in text
    for cell in ROWS[0]:
        assert cell in text
    assert ("┏" in text) == (width == 200)
    assert max(len(line) for line in text.splitlines()) <= width
