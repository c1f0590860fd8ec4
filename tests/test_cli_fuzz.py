"""A sample of the CLI fuzz (tests/cli_fuzz.py) in every test run: hostile values in one to three
options of every command give exit 0 or one line with status 2 — never a traceback, never a
runaway. ``scripts/fuzz_cli.py`` runs 1,200 cases (figures in README)."""

from __future__ import annotations

from pathlib import Path

import cli_fuzz


def test_hostile_options_never_give_a_traceback_or_a_runaway(tmp_path: Path):
    repo = Path(__file__).resolve().parent.parent
    before = sorted(p.name for p in repo.iterdir())
    out = cli_fuzz.run(150, tmp_path, seed=2026, limit_s=60.0)
    # an empty path option writes to the current folder: the fuzz runs in its own, so the
    # repository gets nothing (it once picked up the sample data this way)
    assert sorted(p.name for p in repo.iterdir()) == before
    assert out.cases == 150
    assert out.tracebacks == [] and out.runaways == []
    assert set(out.by_exit) <= {0, 1, 2}
    assert out.by_exit.get(2, 0) > 50      # most hostile values are refused, as they should be


def test_every_command_is_fuzzed_but_the_server():
    cmds = set(cli_fuzz.commands())
    assert ("serve",) in cmds and cmds - cli_fuzz.SKIP
    assert {("carbon",), ("study",), ("simulate",), ("plan",), ("watch",), ("fleet", "report"),
            ("ledger", "check"), ("calibrate",), ("catalog", "show")} <= cmds
