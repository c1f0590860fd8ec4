"""Watchers on several hosts, one ledger: ``watch --ledger URL --team T`` writes intervals with
their team and project, and ``fleet report --ledger URL`` (or ``--results DIR``) sums them per
deployment and step, with the SCI and its boundary — no Prometheus needed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from conftest import run_cli, serve_in_thread
from test_fleet import _Exporters, vllm
from tokenprint.fleet.watch import (
    PredictedEnergy,
    Watcher,
    WatchInterval,
    WatchLedger,
    WatchMetrics,
)

T0 = 1_800_000_000.0   # an hour boundary (divisible by 3600)


def _watch(catalog, tmp_path: Path, port: int, url: str | None, name: str, team: str,
           gpus: int) -> Watcher:
    return Watcher(catalog, endpoints=[f"http://127.0.0.1:{port}/engine"],
                   model="llama-3.1-8b", gpu="h100-sxm", gpus=gpus, region="FR",
                   energy=PredictedEnergy(catalog, "llama-3.1-8b", "h100-sxm", gpus),
                   ledger=WatchLedger(tmp_path / name, url=url), metrics=WatchMetrics(),
                   deployment=name, team=team, project="assist")


def _drive(catalog, tmp_path: Path, url: str | None) -> list[WatchInterval]:
    """Two deployments (two teams, as two hosts' watchers) for two hours of 15-min intervals;
    the chat host misses one scrape. Returns every interval written."""
    ex = _Exporters()
    with serve_in_thread(ex.app) as port:
        chat = _watch(catalog, tmp_path, port, url, "chat", "search", 2)
        bot = _watch(catalog, tmp_path, port, url, "bot", "support", 1)
        if url is None:   # one folder for both, as one host's watchers would share
            bot.ledger.close()
            bot.ledger = chat.ledger
        for k in range(9):
            t = T0 + 900.0 * k
            ex.engine = vllm(4000 * k, 1000 * k, 4)
            ex.fail = k == 5
            chat.step(now=t)
            ex.fail = False   # the bot's host scraped fine
            bot.step(now=t)
        rows = chat.ledger.rows()
        for w in (chat, bot):
            w.close()
        chat.ledger.close()
        if url is not None:
            bot.ledger.close()
    return rows


@pytest.mark.parametrize("shared", [True, False], ids=["postgresql", "sqlite"])
def test_fleet_report_sums_the_watch_ledger_per_team(catalog, tmp_path: Path, capsys,
                                                     request, shared: bool):
    url = request.getfixturevalue("pg_url") if shared else None
    rows = _drive(catalog, tmp_path, url)
    assert {r.team for r in rows} == {"search", "support"} and {r.project for r in rows} == \
        {"assist"}
    assert sum(r.status == "gap" for r in rows) == 1
    source = ["--ledger", url] if url else ["--results", str(tmp_path / "chat")]
    code, out, err = run_cli(capsys, "fleet", "report", *source, "--start",
                             "2027-01-15T08:00:00Z", "--end", "2027-01-15T10:00:00Z",
                             "--step", "1h", "--json")
    assert code == 0, err
    doc = json.loads(out)
    totals = {t["deployment"]: t for t in doc["totals"]}
    assert set(totals) == {"chat", "bot"}
    assert totals["chat"]["team"] == "search" and totals["bot"]["team"] == "support"
    for name, t in totals.items():
        mine = [r for r in rows if r.deployment == name and r.status == "ok"]
        assert t["generation_tokens"] == pytest.approx(sum(r.generation_tokens or 0
                                                           for r in mine))
        assert t["operational_g"] == pytest.approx(sum(r.operational_g or 0 for r in mine))
        assert t["embodied_g"] == pytest.approx(sum(r.embodied_g or 0 for r in mine))
        # SCI by hand: (E × I + M) / R with R = 1,000 output tokens
        sci = (t["operational_g"] + t["embodied_g"]) / (t["generation_tokens"] / 1000)
        assert t["sci_g_per_1k_tokens"] == pytest.approx(sci)
    assert "location-based" in doc["sci_boundary"] and "1,000" in doc["sci_boundary"]
    steps = [s for s in doc["steps"] if s["deployment"] == "chat"]
    assert [s["end_utc"][11:16] for s in steps] == ["09:00", "10:00"]
    for t in totals.values():   # no contracts: market-based equals location-based
        assert t["market_g"] == pytest.approx(t["location_g"]) == pytest.approx(
            t["operational_g"])
    # a certificate of 0.1 kWh in the first hour at 0 g, the rest at a 100 g/kWh residual mix
    deals = tmp_path / "contracts.toml"
    deals.write_text('[residual_mix]\nFR = 100.0\n[[contract]]\nkind = "certificate"\n'
                     'region = "FR"\nstart = "2027-01-15T08:00:00Z"\n'
                     'end = "2027-01-15T09:00:00Z"\nmwh = 0.0001\ng_per_kwh = 0.0\n')
    code, out, err = run_cli(capsys, "fleet", "report", *source, "--start",
                             "2027-01-15T08:00:00Z", "--end", "2027-01-15T10:00:00Z",
                             "--contracts", str(deals), "--json")
    assert code == 0, err
    kwh = sum(s["energy_j"] for s in json.loads(out)["steps"]) / 3.6e6
    market = sum(t["market_g"] for t in json.loads(out)["totals"])
    assert kwh > 0.1 and market == pytest.approx((kwh - 0.1) * 100.0)
    code, out, _ = run_cli(capsys, "fleet", "report", *source, "--start",
                           "2027-01-15T08:00:00Z", "--end", "2027-01-15T10:00:00Z")
    assert code == 0 and "chat (search)" in out and "SCI" in out
    assert "market-based" in out


def test_an_older_watch_ledger_gains_team_and_project(tmp_path: Path):
    con = sqlite3.connect(tmp_path / "watch.sqlite")
    con.execute("CREATE TABLE intervals (deployment TEXT, model TEXT, gpu TEXT, gpus INTEGER, "
                "region TEXT, start_utc REAL, end_utc REAL, status TEXT, engine TEXT, "
                "prompt_tokens REAL, generation_tokens REAL, running REAL, energy_j REAL, "
                "energy_method TEXT, intensity_g_per_kwh REAL, intensity_source TEXT, "
                "operational_g REAL, embodied_g REAL, total_g REAL, g_per_1k_tokens REAL, "
                "note TEXT)")
    con.execute("INSERT INTO intervals (deployment, model, gpu, gpus, region, start_utc, "
                "end_utc, status, note) VALUES ('d', 'm', 'g', 1, 'FR', 0, 60, 'gap', 'x')")
    con.commit()
    con.close()
    led = WatchLedger(tmp_path)
    led.add(WatchInterval("d", "m", "g", 1, "FR", 60, 120, "gap", note="y", team="t"))
    got = led.rows()
    led.close()
    assert [(r.end_utc, r.team) for r in got] == [(60, None), (120, "t")]


def test_fleet_report_needs_exactly_one_source(capsys, tmp_path: Path):
    code, _, err = run_cli(capsys, "fleet", "report")
    assert code == 2 and "give one source" in err
    code, _, err = run_cli(capsys, "fleet", "report", "--prometheus", "http://x:9090",
                           "--results", str(tmp_path))
    assert code == 2 and "--prometheus, --results" in err
    code, _, err = run_cli(capsys, "fleet", "report", "--results", str(tmp_path))
    assert code == 2 and "no watch ledger" in err
    code, _, err = run_cli(capsys, "fleet", "report", "--ledger", "sqlite:///x")
    assert code == 2 and "postgresql://" in err
    code, _, err = run_cli(capsys, "watch", "--metrics", "http://127.0.0.1:9/metrics",
                           "--model", "llama-3.1-8b", "--gpu", "l4", "--region", "FR",
                           "--team", "x" * 65)
    assert code == 2 and "--team" in err
