"""One ledger on PostgreSQL for many gateways: the same rows and sums as SQLite, schema
changes under concurrent starts, a dropped connection survived, two gateway processes with two
teams' keys counted exactly, and a SIGKILLed gateway losing nothing the journal holds. Skips
where PostgreSQL is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port, run_cli, scripted_upstream
from tokenprint.database import Database, redact
from tokenprint.gateway.ledger import Ledger, RequestOutcome, check

KEYS = {"search-key": ("search-bot", "search", "web"),
        "support-key": ("support-bot", "support", "helpdesk")}


def _outcome(k: int, team: str = "search") -> RequestOutcome:
    return RequestOutcome(id=f"r{k}", time_utc=1.7e9 + 37.5 * k, upstream=f"u{k % 3}",
                          model="m", region="FR", endpoint="chat/completions",
                          status=200 if k % 7 else 502, prompt_tokens=k, completion_tokens=2 * k,
                          team=team)


def test_postgres_and_sqlite_ledgers_hold_the_same_rows_and_sums(tmp_path: Path, pg_url: str):
    ledgers = {"sqlite": Ledger(tmp_path / "a"), "postgres": Ledger(tmp_path / "b", url=pg_url)}
    for led in ledgers.values():
        for k in range(1, 60):
            led.add(_outcome(k, "search" if k % 2 else "support"))
        led.add(_outcome(5))   # the same id again: never recorded twice
    got = {name: (led.count(), led.summary(0), sorted(led.binned(1.7e9, 300.0)),
                  [r["id"] for r in led.since(1.7e9 + 1000)])
           for name, led in ledgers.items()}
    for led in ledgers.values():
        led.close()
    assert got["sqlite"] == got["postgres"]
    count, summary, binned, since = got["postgres"]
    assert count == 59 and sum(r["requests"] for r in summary) == 59
    assert sum(r["errors"] for r in summary) == len([k for k in range(1, 60) if k % 7 == 0])
    # 300-s bins of rows 37.5 s apart: bin b holds k with floor(37.5 k / 300) = b (floored,
    # never rounded: PostgreSQL's CAST would round)
    assert {b for _, b, *_ in binned} == {int(37.5 * k // 300) for k in range(1, 60)}
    assert since == [f"r{k}" for k in range(27, 60)]   # 37.5 k ≥ 1000 from k = 27


def test_an_older_postgres_ledger_gains_the_new_columns(pg_url: str, tmp_path: Path):
    from tokenprint.gateway.ledger_schema import NEWER_COLUMNS, NEWER_RUN_COLUMNS, SCHEMA

    head, runs = SCHEMA.split("CREATE TABLE IF NOT EXISTS runs")
    old = "\n".join(
        [line for line in head.splitlines() if line.strip().split(" ")[0] not in NEWER_COLUMNS]
        + ["CREATE TABLE IF NOT EXISTS runs" + runs.splitlines()[0]]
        + [line for line in runs.splitlines()[1:]
           if line.strip().split(" ")[0] not in NEWER_RUN_COLUMNS])
    old = old.replace("    completion_text TEXT,\n);", "    completion_text TEXT\n);")
    old = old.replace("    stopped_utc REAL,\n);", "    stopped_utc REAL\n);")
    db = Database(pg_url)
    db.ensure_schema(old, {})
    assert "team" not in db.columns("requests") and "host" not in db.columns("runs")
    db.run("INSERT INTO requests (id, time_utc, upstream, model, region, endpoint, status) "
           "VALUES ('old', 1.6e9, 'u', 'm', 'FR', 'x', 200)")
    db.close()
    # gateways starting at once: the schema change is taken one at a time
    opened: list[Ledger] = []
    threads = [threading.Thread(target=lambda i=i: opened.append(
        Ledger(tmp_path / str(i), url=pg_url))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(opened) == 4
    opened[0].add(_outcome(1))
    assert opened[0].count() == 2
    for led in opened:
        led.close()
    db = Database(pg_url, read_only=True)
    assert {"team", "key_name", "user_digest", "tags"} <= db.columns("requests")
    assert "host" in db.columns("runs")
    assert db.rows("SELECT COUNT(*) FROM runs") == [(4,)]
    db.close()


def test_the_writer_reconnects_after_the_server_drops_it(tmp_path: Path, pg_url: str):
    led = Ledger(tmp_path, url=pg_url, flush_s=0.01)
    led.add(_outcome(1))
    assert led.flush()
    admin = Database(pg_url)
    killed = admin.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        "application_name = 'tokenprint-ledger' AND pid <> pg_backend_pid()")
    assert killed and all(r[0] for r in killed)
    for k in range(2, 12):
        led.add(_outcome(k))
    assert led.flush(timeout_s=10.0), led.status()
    assert led.count() == 11 and led.status()["ok"]
    led.close()
    (run,) = check(tmp_path, pg_url)
    assert run["ok"] and run["recorded"] == 11 and run["host"]
    admin.close()


def test_a_password_never_reaches_a_message():
    assert redact("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("postgresql://u@db/x") == "postgresql://u@db/x"


def _gateway_toml(tmp_path: Path, upstream: str, url: str) -> Path:
    from tokenprint.gateway.config import hash_key

    keys = "".join(f'[[api_key]]\nname = "{n}"\nsha256 = "{hash_key(k)}"\nteam = "{t}"\n'
                   f'project = "{p}"\n\n' for k, (n, t, p) in KEYS.items())
    path = tmp_path / "gateway.toml"
    path.write_text(f'ledger_url = "{url}"\nhealth_interval_s = 0\n\n{keys}'
                    f'[[upstream]]\nname = "a"\nurl = "{upstream}"\nmodel = "tiny"\n'
                    'gpu = "l4"\nregion = "FR"\ncapacity = 256\n')
    return path


def _start(config: Path, results: Path) -> tuple[subprocess.Popen[bytes], int]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tokenprint", "serve", "--config",
                             str(config), "--port", str(port), "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 40
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("gateway did not start: " + (proc.stdout.read().decode() if proc.stdout else ""))


def _send(port: int, key: str, n: int, answered: list[str], stream: bool = False) -> None:
    """``n`` requests with ``key``; each fully answered one appends its team's key."""
    import httpx

    with httpx.Client(timeout=30) as http:
        for _ in range(n):
            try:
                r = http.post(f"http://127.0.0.1:{port}/v1/completions",
                              json={"model": "tiny", "prompt": "a b c", "max_tokens": 4,
                                    "stream": stream},
                              headers={"authorization": f"Bearer {key}"})
                body = r.read()
            except httpx.HTTPError:
                return   # the gateway was killed
            if r.status_code == 200 and (not stream or b"[DONE]" in body):
                answered.append(key)


def test_two_gateway_processes_share_one_ledger_and_a_kill_loses_nothing(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]):
    sent = {"search-key": 23, "support-key": 17}
    with scripted_upstream(4) as upstream:
        config = _gateway_toml(tmp_path, upstream, pg_url)
        gateways = [_start(config, tmp_path / f"pod{i}") for i in range(2)]
        answered: list[str] = []
        threads = [threading.Thread(target=_send, args=(port, key, n, answered))
                   for (_, port) in gateways for key, n in sent.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for proc, _ in gateways:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert len(answered) == 2 * sum(sent.values())
    code, out, _ = run_cli(capsys, "ledger", "report", "--by", "team", "--json",
                           "--ledger", pg_url, "--results", str(tmp_path / "pod0"))
    assert code == 0
    rows = json.loads(out)
    assert {r["team"]: r["requests"] for r in rows} == {"search": 46, "support": 34}
    db = Database(pg_url, read_only=True)
    total_g, n_rows = db.one("SELECT SUM(total_g), COUNT(*) FROM requests") or (0, 0)
    runs = db.rows("SELECT run_id, host, stopped_utc FROM runs")
    db.close()
    assert n_rows == 80 and sum(r["total_g"] for r in rows) == pytest.approx(total_g, rel=1e-9)
    assert len(runs) == 2 and all(stopped is not None for _, _, stopped in runs)
    assert all(r["ok"] and r["answered"] == 40 for r in check(tmp_path / "pod0", pg_url))

    # a pod killed mid-load: every stream its clients got whole has its row once its journal
    # is replayed (a restart in the same pod, or `ledger check --recover`)
    with scripted_upstream(6, itl_s=0.01) as upstream:
        config = _gateway_toml(tmp_path, upstream, pg_url)
        proc, port = _start(config, tmp_path / "pod2")
        got: list[str] = []
        threads = [threading.Thread(target=_send, args=(port, "search-key", 400, got, True))
                   for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for t in threads:
            t.join()
    assert got, "no stream finished before the kill"
    code, out, _ = run_cli(capsys, "ledger", "check", "--recover", "--json", "--ledger", pg_url,
                           "--results", str(tmp_path / "pod2"))
    killed: dict[str, Any] = next(r for r in json.loads(out) if not r["stopped_cleanly"])
    assert killed["missing"] == 0 and killed["recorded"] >= len(got)
    db = Database(pg_url, read_only=True)
    ids = db.rows("SELECT id FROM requests WHERE run_id = ?", (killed["run_id"],))
    db.close()
    assert len(ids) == len({i for (i,) in ids}) == killed["recorded"]   # none twice
