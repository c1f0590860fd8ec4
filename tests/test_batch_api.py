"""The OpenAI Batch API on the gateway, driven by the official ``openai`` SDK against a
stand-in upstream: upload, create, poll, fetch the output, list, cancel; bad lines in the error
file with their line numbers; a batch deferred to the cleanest forecast hour; a gateway
restarted mid-batch finishing it with every custom_id answered exactly once."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from conftest import scripted_upstream, serve_in_thread  # noqa: E402
from tokenprint.gateway.app import create_app  # noqa: E402
from tokenprint.gateway.batch_runner import choose_start  # noqa: E402
from tokenprint.gateway.config import GatewayConfig, UpstreamConfig  # noqa: E402

H = 3600.0


def _lines(n: int, url: str = "/v1/completions") -> list[dict]:
    return [{"custom_id": f"q{i}", "method": "POST", "url": url,
             "body": {"model": "tiny", "prompt": f"word {i} here", "max_tokens": 4}}
            for i in range(n)]


def _jsonl(rows: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def _cfg(tmp_path: Path, url: str, **kw) -> GatewayConfig:
    up = {k: kw.pop(k) for k in ("intensity_file",) if k in kw}
    return GatewayConfig(upstream=[UpstreamConfig(name="a", url=url, model="tiny", gpu="l4",
                                                  region="FR", capacity=8, **up)],
                         results=str(tmp_path / "res"), health_interval_s=0, **kw)


def _wait(client, bid: str, statuses: set[str], timeout_s: float = 40.0):
    end = time.time() + timeout_s
    while time.time() < end:
        b = client.batches.retrieve(bid)
        if b.status in statuses:
            return b
        time.sleep(0.2)
    pytest.fail(f"batch {bid} still {b.status}")


def test_choose_start_by_hand():
    now = 10 * H + 600.0                      # 10 minutes into an hour
    f = np.array([300.0, 200.0, 50.0, 80.0, 40.0])
    # the 40 g hour (4) ends too late for a 2-hour job due at hour 15: the 50 g hour (2) wins
    assert choose_start(now, 15 * H, 2 * H, f) == 12 * H
    assert choose_start(now, 20 * H, 2 * H, f) == 14 * H
    assert choose_start(now, 20 * H, 1.0, np.full(5, 7.0)) == now      # all equal: at once
    assert choose_start(now, 20 * H, 1.0, None) == now


def test_the_openai_sdk_drives_the_whole_batch_api(tmp_path: Path, catalog, capsys):
    with scripted_upstream(3) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with serve_in_thread(app) as port:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
            bad = ["not json", json.dumps({"custom_id": "q1", "method": "POST",
                                           "url": "/v1/completions", "body": {"model": "tiny"}}),
                   json.dumps({"custom_id": "z", "method": "GET", "url": "/v1/completions",
                               "body": {"model": "tiny"}})]
            data = _jsonl([*_lines(10), *bad])
            f = client.files.create(file=("in.jsonl", data), purpose="batch")
            assert f.bytes == len(data) and f.purpose == "batch"
            assert client.files.content(f.id).content == data
            b = client.batches.create(input_file_id=f.id, endpoint="/v1/completions",
                                      completion_window="24h", metadata={"job": "eval"})
            assert b.status == "in_progress" and b.request_counts.total == 13
            done = _wait(client, b.id, {"completed"})
            assert (done.request_counts.completed, done.request_counts.failed) == (10, 3)
            out = [json.loads(x) for x in client.files.content(done.output_file_id).text
                   .splitlines()]
            assert sorted(r["custom_id"] for r in out) == sorted(f"q{i}" for i in range(10))
            assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in out)
            errs = [json.loads(x) for x in client.files.content(done.error_file_id).text
                    .splitlines()]
            assert sorted(e["error"]["line"] for e in errs) == [11, 12, 13]
            assert any("repeated" in e["error"]["message"] for e in errs)
            tp = done.model_extra["tokenprint"]
            assert tp["deferred_s"] == 0 and tp["forecast"].startswith("none (annual")
            assert tp["carbon_g"] > 0 and tp["saving_g"] == pytest.approx(0.0, abs=1e-12)
            listed = client.batches.list(limit=5)
            assert [x.id for x in listed.data] == [b.id]
            with pytest.raises(openai.APIStatusError):
                client.batches.cancel(b.id)                 # already completed: 409
            worse = ["{", json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                                      "body": {"model": "tiny"}}), bad[2]]
            only_bad = client.files.create(file=("bad.jsonl", _jsonl(worse)), purpose="batch")
            failed = client.batches.create(input_file_id=only_bad.id,
                                           endpoint="/v1/completions", completion_window="24h")
            assert failed.status == "failed" and failed.errors is not None
            assert [e.line for e in failed.errors.data] == [1, 2, 3]
            with pytest.raises(openai.BadRequestError, match="completion_window"):
                client.batches.create(input_file_id=f.id, endpoint="/v1/completions",
                                      completion_window="1000h")
    con = sqlite3.connect(tmp_path / "res" / "ledger.sqlite")
    rows = con.execute("SELECT batch_id, deferred_s, status FROM requests").fetchall()
    con.close()
    assert len(rows) == 10 and {r[0] for r in rows} == {b.id} and {r[1] for r in rows} == {0.0}
    from conftest import run_cli

    code, out, err = run_cli(capsys, "ledger", "report", "--by", "batch", "--json",
                             "--results", str(tmp_path / "res"))
    assert code == 0, err
    assert {r["batch"]: r["requests"] for r in json.loads(out)} == {b.id: 10}


def _forecast_csv(path: Path, clean_hour: int) -> None:
    """FR at 500 g/kWh for three days around now, 20 g/kWh in the hour ``clean_hour`` ahead."""
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    for k in range(-30, 48):
        h = now + dt.timedelta(hours=k)
        v = 20.0 if k == clean_hour else 500.0
        rows.append(f"{h:%Y-%m-%d %H:%M:%S},France,France,FR,{v},{v}\n")
    path.write_text("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh "
                    "(direct),Carbon Intensity gCO₂eq/kWh (LCA)\n" + "".join(rows))


def test_a_deferred_batch_waits_for_the_clean_hour_resumes_and_cancels(tmp_path: Path,
                                                                       catalog):
    csv = tmp_path / "fr.csv"
    _forecast_csv(csv, clean_hour=3)
    with scripted_upstream(3) as url:
        cfg = _cfg(tmp_path, url, intensity_file=str(csv), routing_intensity="file")
        app = create_app(cfg, catalog)
        with serve_in_thread(app) as port:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
            f = client.files.create(file=("in.jsonl", _jsonl(_lines(6))), purpose="batch")
            b = client.batches.create(input_file_id=f.id, endpoint="/v1/completions",
                                      completion_window="24h")
            tp = b.model_extra["tokenprint"]
            start = tp["scheduled_start"]
            assert tp["forecast"] == "hourly file, FR"
            assert start % H == 0 and 2 * H < start - b.created_at <= 3 * H
            assert tp["forecast_g_per_kwh_at_start"] == 20.0
            assert tp["forecast_g_per_kwh_at_submission"] == 500.0
            time.sleep(1.5)
            assert client.batches.retrieve(b.id).request_counts.completed == 0   # waiting
            other = client.batches.create(input_file_id=f.id, endpoint="/v1/completions",
                                          completion_window="24h")
            client.batches.cancel(other.id)
            gone = _wait(client, other.id, {"cancelled"})
            errs = client.files.content(gone.error_file_id).text.splitlines()
            assert len(errs) == 6 and all("batch_cancelled" in e for e in errs)
        # the gateway stops; a new one over the same results folder runs the first batch when
        # its hour comes (the runner's clock is moved there), each line exactly once
        app2 = create_app(cfg, catalog)
        runner = app2.state.batches
        runner.batch_share = 0.25              # 2 lines at a time on a capacity of 8
        seen: list[int] = []
        real = runner.call

        async def counted(endpoint, body, who, request_id):
            seen.append(sum(runner.inflight.values()))
            return await real(endpoint, body, who, request_id)

        runner.call = counted
        runner.clock = lambda: start + 1       # the clean hour has come
        with serve_in_thread(app2) as port:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
            done = _wait(client, b.id, {"completed"})
            assert done.request_counts.completed == 6 and max(seen) <= 2
            out = client.files.content(done.output_file_id).text.splitlines()
            ids = [json.loads(x)["custom_id"] for x in out]
            assert sorted(ids) == sorted(f"q{i}" for i in range(6))   # once each
            saving = done.model_extra["tokenprint"]
            assert saving["carbon_at_submission_g"] > saving["carbon_g"]
    con = sqlite3.connect(tmp_path / "res" / "ledger.sqlite")
    rows = con.execute("SELECT deferred_s FROM requests WHERE batch_id = ?", (b.id,)).fetchall()
    con.close()
    assert len(rows) == 6 and all(r[0] == pytest.approx(start - b.created_at, abs=1.0)
                                  for r in rows)


def test_the_batch_cli_submits_watches_and_fetches(tmp_path: Path, catalog, capsys):
    from conftest import run_cli

    src = tmp_path / "jobs.jsonl"
    src.write_bytes(_jsonl([{**r, "body": {"model": "tiny", "max_tokens": 4, "messages": [
        {"role": "user", "content": "hi there"}]}} for r in _lines(4, "/v1/chat/completions")]))
    with scripted_upstream(3) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with serve_in_thread(app) as port:
            gw = f"http://127.0.0.1:{port}"
            code, out, err = run_cli(capsys, "batch", "submit", str(src), "--gateway", gw,
                                     "--json")
            assert code == 0, err
            bid = json.loads(out)["id"]
            code, out, err = run_cli(capsys, "batch", "watch", bid, "--gateway", gw,
                                     "--every", "0.2")
            assert code == 0, err
            assert "completed: 4 answered, 0 failed" in out
            code, out, err = run_cli(capsys, "batch", "fetch", bid, "--gateway", gw,
                                     "--out", str(tmp_path / "got"))
            assert code == 0, err
            got = (tmp_path / "got" / "output.jsonl").read_text().splitlines()
            assert sorted(json.loads(x)["custom_id"] for x in got) == ["q0", "q1", "q2", "q3"]
            code, out, _ = run_cli(capsys, "batch", "list", "--gateway", gw)
            assert code == 0 and bid in out
            code, _, err = run_cli(capsys, "batch", "watch", "batch_nope", "--gateway", gw)
            assert code == 2 and "HTTP 404" in err and "No such Batch" in err
    code, _, err = run_cli(capsys, "batch", "submit", str(tmp_path / "none.jsonl"))
    assert code == 2 and "is not a file" in err


def test_a_gateway_killed_mid_batch_finishes_it_with_each_line_once(tmp_path: Path):
    import os
    import signal

    import httpx

    from test_postgres_ledger import _start

    results = tmp_path / "res"
    with scripted_upstream(4, itl_s=0.1) as url:      # 0.4 s a line, 6 at a time
        config = tmp_path / "gateway.toml"
        config.write_text(f'health_interval_s = 0\n[[upstream]]\nname = "a"\nurl = "{url}"\n'
                          'model = "tiny"\ngpu = "l4"\nregion = "FR"\ncapacity = 8\n')
        proc, port = _start(config, results)
        gw = f"http://127.0.0.1:{port}/v1"
        with httpx.Client(timeout=30) as http:
            f = http.post(f"{gw}/files", data={"purpose": "batch"},
                          files={"file": ("in.jsonl", _jsonl(_lines(40)))}).json()
            bid = http.post(f"{gw}/batches", json={"input_file_id": f["id"],
                                                   "endpoint": "/v1/completions",
                                                   "completion_window": "24h"}).json()["id"]
            end = time.time() + 30
            while http.get(f"{gw}/batches/{bid}").json()["request_counts"]["completed"] < 6:
                assert time.time() < end
                time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)              # lines in flight die with it
        proc.wait(timeout=10)
        proc, port = _start(config, results)           # the same pod, restarted
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
            done = _wait(client, bid, {"completed"}, timeout_s=60)
            out = client.files.content(done.output_file_id).text.splitlines()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    ids = [json.loads(x)["custom_id"] for x in out]
    assert done.request_counts.completed == 40 and sorted(ids) == sorted(f"q{i}" for i in
                                                                        range(40))
    con = sqlite3.connect(results / "ledger.sqlite")
    rows = con.execute("SELECT id, status FROM requests WHERE batch_id = ?", (bid,)).fetchall()
    con.close()
    # one row per line: a line sent again after the kill keeps its ledger id
    assert len(rows) == 40 and len({r[0] for r in rows}) == 40
    assert {r[1] for r in rows} == {200}


def test_live_forecasts_schedule_a_batch(catalog, monkeypatch):
    import asyncio

    from fastapi import FastAPI, Header, HTTPException

    from tokenprint.carbon.intensity import parse_time
    from tokenprint.carbon.resolver import IntensityResolver
    from tokenprint.gateway.batch_runner import BatchRunner
    from tokenprint.gateway.routing import UpstreamState

    now = parse_time("2026-12-06T10:20:00Z")
    em = FastAPI()

    @em.get("/carbon-intensity/forecast")
    def forecast(zone: str, auth_token: str = Header(default="", alias="auth-token")) -> dict:
        if auth_token != "t0ken":
            raise HTTPException(401)
        base = parse_time("2026-12-06T10:00:00Z")
        return {"zone": zone, "forecast": [
            {"carbonIntensity": 40 if k == 5 else 300,
             "datetime": dt.datetime.fromtimestamp(base + k * H, dt.UTC).strftime(
                 "%Y-%m-%dT%H:%M:%S.000Z")} for k in range(24)]}

    states = [UpstreamState(cfg=UpstreamConfig(name="a", url="http://127.0.0.1:1/v1",
                                               model="tiny", gpu="l4", region="FR"),
                            model=None)]  # type: ignore[arg-type]
    doc = {"created_at": now, "expires_at": now + 24 * H}
    with serve_in_thread(em) as port:
        res = IntensityResolver(catalog, "electricitymaps", base_url=f"http://127.0.0.1:{port}")
        runner = BatchRunner(None, states, res, None)  # type: ignore[arg-type]
        monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", "t0ken")
        plan = asyncio.run(runner.plan(doc, "tiny", 10))
        assert plan["forecast"] == "electricitymaps forecast, FR"
        assert plan["scheduled_start"] == parse_time("2026-12-06T15:00:00Z")
        assert plan["forecast_g_per_kwh_at_start"] == 40.0
        assert plan["forecast_g_per_kwh_at_submission"] == 300.0
        assert plan["deferred_s"] == pytest.approx(4 * H + 40 * 60)
        monkeypatch.delenv("ELECTRICITYMAPS_TOKEN")
        plan = asyncio.run(runner.plan(doc, "tiny", 10))
        assert plan["scheduled_start"] == now and "ELECTRICITYMAPS_TOKEN not set" in \
            plan["forecast"]


def test_without_a_live_forecast_yesterdays_readings_are_the_forecast(catalog):
    import asyncio

    from tokenprint.carbon.intensity import parse_time
    from tokenprint.carbon.resolver import IntensityResolver
    from tokenprint.gateway.batch_runner import BatchRunner
    from tokenprint.gateway.routing import UpstreamState

    now = parse_time("2026-12-06T10:20:00Z")
    h0 = int(now // H)
    res = IntensityResolver(catalog, "electricitymaps", base_url="http://127.0.0.1:9")
    # the last day's readings (the gateway keeps them as it refreshes): 400 g/kWh, 30 g/kWh
    # six hours after this one yesterday; this hour reads 350 now
    res.source.history["FR"] = {**{h0 - 24 + k: 30.0 if k == 6 else 400.0 for k in range(24)},
                                h0: 350.0}
    states = [UpstreamState(cfg=UpstreamConfig(name="a", url="http://127.0.0.1:1/v1",
                                               model="tiny", gpu="l4", region="FR"),
                            model=None)]  # type: ignore[arg-type]
    runner = BatchRunner(None, states, res, None)  # type: ignore[arg-type]
    plan = asyncio.run(runner.plan({"created_at": now, "expires_at": now + 24 * H}, "tiny", 4))
    assert plan["forecast"].startswith("persistence (the same hour a day earlier")
    assert plan["scheduled_start"] == (h0 + 6) * H
    assert (plan["forecast_g_per_kwh_at_submission"], plan["forecast_g_per_kwh_at_start"]) == \
        (350.0, 30.0)
    assert plan["forecast_saving_pct"] == pytest.approx((1 - 30 / 350) * 100)
