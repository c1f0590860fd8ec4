"""Who sent it, and the accounts an organisation reports from the ledger: named keys with teams,
salted user digests, tags, and `ledger report` per team with location- and market-based Scope 2
and SCI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import run_cli, scripted_upstream
from tokenprint.gateway.app import create_app
from tokenprint.gateway.config import ApiKeyConfig, GatewayConfig, UpstreamConfig, hash_key

KEYS = {"search-key": ("search-bot", "search", "ranking"),
        "support-key": ("support-bot", "support", "helpdesk")}


def _gateway(tmp_path: Path, url: str) -> GatewayConfig:
    return GatewayConfig(
        upstream=[UpstreamConfig(name="a", url=url, model="tiny", gpu="l4", region="FR")],
        results=str(tmp_path / "ledger"), health_interval_s=0,
        api_key=[ApiKeyConfig(name=n, sha256=hash_key(k), team=t, project=p)
                 for k, (n, t, p) in KEYS.items()])


def test_teams_keys_users_and_tags_reach_the_ledger_and_the_report(tmp_path: Path, catalog,
                                                                      capsys, monkeypatch):
    monkeypatch.delenv("TOKENPRINT_USER_SALT", raising=False)
    sent = {"search": 5, "support": 3}
    with scripted_upstream(4) as url:
        app = create_app(_gateway(tmp_path, url), catalog)
        with TestClient(app) as http:
            for team, n in sent.items():
                key = "search-key" if team == "search" else "support-key"
                for i in range(n):
                    r = http.post("/v1/completions",
                                  json={"model": "tiny", "prompt": "a b c", "max_tokens": 4,
                                        "user": f"alice-{i % 2}"},
                                  headers={"authorization": f"Bearer {key}",
                                           "x-tokenprint-tags": f"env=prod,feature=f{i}"})
                    assert r.status_code == 200, r.text
            bad = http.post("/v1/completions", json={"model": "tiny", "prompt": "x"},
                            headers={"authorization": "Bearer search-key",
                                     "x-tokenprint-tags": "Env=prod"})
            assert bad.status_code == 400 and "x-tokenprint-tags" in bad.json()["error"]["message"]
            nokey = http.post("/v1/completions", json={"model": "tiny", "prompt": "x"})
            assert nokey.status_code == 401
            metrics = http.get("/metrics", headers={"authorization": "Bearer search-key"}).text
            assert 'tokenprint_team_requests_total{team="search"} 5.0' in metrics
            assert 'tokenprint_team_requests_total{team="support"} 3.0' in metrics
            assert 'tokenprint_team_carbon_grams_total{kind="operational",team="search"}' \
                in metrics
    con = sqlite3.connect(tmp_path / "ledger" / "ledger.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM requests")]
    con.close()
    assert len(rows) == 8
    assert {(r["key_name"], r["team"], r["project"]) for r in rows} == set(KEYS.values())
    assert all(json.loads(r["tags"])["env"] == "prod" for r in rows)
    digests = {r["user_digest"] for r in rows}
    assert len(digests) == 2 and all(len(d) == 32 for d in digests)
    assert not any("alice" in json.dumps(r) for r in rows)        # never in clear
    # the report: each team's requests exactly as sent; totals the sum of the rows
    code, out, err = run_cli(capsys, "ledger", "report", "--by", "team", "--period", "day",
                             "--results", str(tmp_path / "ledger"), "--json")
    assert code == 0, err
    rep = {r["team"]: r for r in json.loads(out)}
    assert {t: rep[t]["requests"] for t in sent} == sent
    assert sum(r["total_g"] for r in rep.values()) == pytest.approx(
        sum(r["total_g"] for r in rows))
    for r in rep.values():
        assert r["total_g"] == pytest.approx(r["location_g"] + r["embodied_g"])
        assert r["market_g"] == pytest.approx(r["location_g"])     # no contracts declared
        # SCI per 1,000 output tokens = (E x I + M) / R, by hand from the report's own row
        assert r["sci_g_per_1k_tokens"] == pytest.approx(
            (r["location_g"] + r["embodied_g"]) / (r["completion_tokens"] / 1000))
        # and per request (R = one request)
        assert r["sci_g_per_request"] == pytest.approx(
            (r["location_g"] + r["embodied_g"]) / r["requests"])
    # market-based with a certificate covering every kWh at 0 g: only embodied remains
    deals = tmp_path / "contracts.toml"
    deals.write_text('matching = "annual"\n[residual_mix]\nFR = 80.0\n[[contract]]\n'
                     'kind = "certificate"\nregion = "FR"\nstart = "2000-01-01T00:00:00Z"\n'
                     'end = "2100-01-01T00:00:00Z"\nmwh = 1000000.0\ng_per_kwh = 0.0\n')
    code, out, err = run_cli(capsys, "ledger", "report", "--by", "team,project",
                             "--results", str(tmp_path / "ledger"), "--contracts", str(deals),
                             "--csv")
    assert code == 0, err
    assert out.splitlines()[0].startswith("team,project,period,requests")
    import io

    import pandas as pd

    table = pd.read_csv(io.StringIO(out))
    assert (table["market_g"] < 1e-6 * table["location_g"].max()).all()   # covered: ~0 g
    assert table["requests"].sum() == 8
    code, _, err = run_cli(capsys, "ledger", "report", "--by", "team", "--results",
                           str(tmp_path / "ledger"), "--out", str(tmp_path / "acc"))
    assert code == 0, err
    page = (tmp_path / "acc" / "report.html").read_text()
    assert "search" in page and "support" in page and "data:image/png;base64," in page
    assert "SCI = (E × I + M) / R" in page and "location-based" in page
    assert {p.name for p in (tmp_path / "acc").iterdir()} == {
        "report.csv", "report.json", "report.png", "report.html"}
    code, _, err = run_cli(capsys, "ledger", "report", "--by", "colour",
                           "--results", str(tmp_path / "ledger"))
    assert code == 2 and "--by 'colour' is invalid" in err


def test_team_labels_on_metrics_are_bounded():
    from tokenprint.gateway.metrics import Metrics

    m = Metrics.create(max_teams=2)
    for team in ("a", "b", "c", "d", "a", None):
        m.charge_team(team, 1.0, 0.5)
    text = __import__("prometheus_client").generate_latest(m.registry).decode()
    for team, n in (("a", 2.0), ("b", 1.0), ("other", 3.0)):
        assert f'tokenprint_team_requests_total{{team="{team}"}} {n}' in text
    assert 'team="c"' not in text and 'team="none"' not in text   # past the bound: other
