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


@pytest.mark.parametrize("columns", ["80", "200"])
def test_ledger_summary_never_cuts_an_upstream(tmp_path, columns):
    import os
    import subprocess
    import sys

    from tokenprint.gateway.ledger import Ledger, RequestOutcome

    led = Ledger(tmp_path)
    led.add(RequestOutcome(id="r1", time_utc=1.7e9, upstream="support-bot-eu-west-primary-h100",
                           model="llama-3.1-70b-instruct", region="US-CAL-CISO",
                           endpoint="chat/completions", status=200, prompt_tokens=1234,
                           completion_tokens=567))
    led.close()
    proc = subprocess.run([sys.executable, "-m", "tokenprint", "ledger", "summary", "--results",
                           str(tmp_path), "--since", "2020-01-01"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": columns})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    for cell in ("support-bot-eu-west-primary-h100", "llama-3.1-70b-instruct", "US-CAL-CISO",
                 "1234", "567"):
        assert cell in proc.stdout


def _commands():
    import typer

    from tokenprint.cli.main import app

    root = typer.main.get_command(app)
    stack = [((), root)]
    while stack:
        path, cmd = stack.pop()
        subs = getattr(cmd, "commands", None)
        if subs:
            stack += [((*path, name), sub) for name, sub in subs.items()]
        else:
            yield path, cmd


def test_help_keeps_bracketed_text(monkeypatch):
    """Rich markup must not eat text in brackets: ``[[deployment]]``, ``[low, high]``."""
    import re

    from typer.testing import CliRunner

    from tokenprint.cli.main import app

    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    checked = 0
    for path, cmd in _commands():
        texts = [p.help or "" for p in cmd.params] + [cmd.help or ""]
        wanted = [m.replace("\\", "") for t in texts for m in re.findall(r"\\?\[[^\s\]]*\]+", t)]
        if not wanted:
            continue
        out = runner.invoke(app, [*path, "--help"], terminal_width=200).output
        for token in wanted:
            assert token in out, (path, token)
            checked += 1
    assert checked >= 2          # [[deployment]] and N,RATE[,IN,OUT] at least


@pytest.mark.parametrize("width", [80, 200])
def test_catalog_listings_cut_nothing(monkeypatch, width):
    """Every catalog listing keeps ids and numbers whole (models had 88 '…' at 80 columns, and
    profiles took 920 lines for 13 entries)."""
    from tokenprint.cli.catalog_cmd import _COLUMNS
    from tokenprint.cli.main import main

    for kind in _COLUMNS:
        out = io.StringIO()
        monkeypatch.setattr(common, "console", Console(file=out, width=width, color_system=None))
        monkeypatch.setattr("tokenprint.cli.catalog_cmd.console", common.console)
        with pytest.raises(SystemExit) as exc:
            main(["catalog", kind])
        assert exc.value.code in (0, None), kind
        text = out.getvalue()
        assert "…" not in text, (kind, width)
        assert max(len(line) for line in text.splitlines()) <= width, kind
        if kind == "profiles":
            assert len(text.splitlines()) < 80
        if kind == "models":
            assert "qwen3-vl-235b-a22b" in text and "moe+vision" in text
