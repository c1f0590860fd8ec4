from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
from fastapi.testclient import TestClient  # noqa: E402

from tokenprint.gateway.accounting import RequestEnergy, RequestFootprint  # noqa: E402
from tokenprint.gateway.app import create_app  # noqa: E402
from tokenprint.gateway.config import GatewayConfig, UpstreamConfig, hash_key  # noqa: E402
from tokenprint.gateway.intensity import IntensityProvider  # noqa: E402
from tokenprint.gateway.ledger import RequestOutcome  # noqa: E402

FIELDS = {"energy_j", "operational_g", "embodied_g", "total_g", "intensity_g_per_kwh", "method",
          "prefill_j", "decode_j"}


def _cfg(tmp_path: Path, upstreams: list[UpstreamConfig], **kw) -> GatewayConfig:
    return GatewayConfig(upstream=upstreams, results=str(tmp_path / "ledger"),
                         health_interval_s=0, **kw)


def _up(name: str, url: str, region: str = "FR", gpu: str = "l4") -> UpstreamConfig:
    return UpstreamConfig(name=name, url=url, model="tiny", gpu=gpu, region=region)


def _ledger_rows(tmp_path: Path) -> list[dict]:
    con = sqlite3.connect(tmp_path / "ledger" / "ledger.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM requests ORDER BY time_utc")]
    con.close()
    return rows


def test_openai_sdk_through_gateway(tmp_path: Path, catalog, hf_server):
    app = create_app(_cfg(tmp_path, [_up("a", hf_server)]), catalog)
    with TestClient(app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http)
        assert [m.id for m in client.models.list()] == ["tiny"]
        r = client.completions.create(model="tiny", prompt="hello", max_tokens=6)
        fp = r.usage.model_extra["tokenprint"]
        assert set(fp) >= FIELDS and fp["method"] == "predicted"
        assert fp["total_g"] == pytest.approx(fp["operational_g"] + fp["embodied_g"])
        assert fp["energy_j"] == pytest.approx(fp["prefill_j"] + fp["decode_j"])
        assert r.usage.completion_tokens == 6
        chunks = list(client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
            stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        last = chunks[-1].usage
        assert last.completion_tokens == 4 and set(last.model_extra["tokenprint"]) >= FIELDS
        # streaming without include_usage: no usage chunk leaks to the client
        plain = list(client.completions.create(model="tiny", prompt="x", max_tokens=3,
                                               stream=True))
        assert all(c.usage is None for c in plain)
        raw = http.post("/v1/completions", json={"model": "tiny", "prompt": "a",
                                                 "max_tokens": 2})
        assert float(raw.headers["x-tokenprint-carbon-g"]) == pytest.approx(
            raw.json()["usage"]["tokenprint"]["total_g"], rel=1e-4)
        metrics = http.get("/metrics").text
        assert 'tokenprint_requests_total{model="tiny",region="FR",status="200",upstream="a"} 4.0' \
            in metrics
        assert "tokenprint_carbon_grams_total" in metrics
    rows = _ledger_rows(tmp_path)
    assert len(rows) == 4                                  # exactly one record per request
    assert all(r["prompt_text"] is None for r in rows)     # no text unless asked for
    assert {r["method"] for r in rows} == {"predicted"}


@pytest.mark.parametrize("body,status,needle", [
    (b"{not json", 400, "could not parse the JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"model": "tiny", "prompt": "x", "bogus": 1}).encode(), 400,
     "Unrecognized request argument supplied: bogus"),
    (json.dumps({"model": "gpt-9", "prompt": "x"}).encode(), 404, "does not exist"),
    (json.dumps({"prompt": "x"}).encode(), 400, "model parameter"),
    (b'{"model": "tiny", "prompt": "' + b"x" * 2_000_000 + b'"}', 413, "exceeds the limit"),
])
def test_bad_requests_get_openai_errors(tmp_path: Path, catalog, hf_server, body, status,
                                        needle):
    app = create_app(_cfg(tmp_path, [_up("a", hf_server)]), catalog)
    with TestClient(app) as http:
        r = http.post("/v1/completions", content=body,
                      headers={"content-type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert needle in err["message"] and "type" in err
    assert "Traceback" not in r.text


def test_api_keys_hashed_and_required(tmp_path: Path, catalog, hf_server):
    cfg = _cfg(tmp_path, [_up("a", hf_server)], api_keys_sha256=[hash_key("s3cret")])
    app = create_app(cfg, catalog)
    with TestClient(app) as http:
        assert http.get("/v1/models").status_code == 401
        bad = http.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        ok = http.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_carbon_routing_prefers_clean_grid(tmp_path: Path, catalog, hf_server, hf_server2):
    ups = [_up("dirty", hf_server, region="PL"), _up("clean", hf_server2, region="SE")]
    app = create_app(_cfg(tmp_path, ups, policy="carbon"), catalog)
    with TestClient(app) as http:
        names = [http.post("/v1/completions", json={"model": "tiny", "prompt": "x",
                                                    "max_tokens": 2}
                           ).headers["x-tokenprint-upstream"] for _ in range(3)]
    assert names == ["clean"] * 3
    app = create_app(_cfg(tmp_path / "rr", ups, policy="round-robin"), catalog)
    with TestClient(app) as http:
        names = [http.post("/v1/completions", json={"model": "tiny", "prompt": "x",
                                                    "max_tokens": 2}
                           ).headers["x-tokenprint-upstream"] for _ in range(4)]
    assert set(names) == {"dirty", "clean"}


def test_failover_retries_once_and_charges_once(tmp_path: Path, catalog, hf_server):
    from conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"          # nothing listens there
    ups = [_up("dead", dead, region="SE"), _up("alive", hf_server, region="PL")]
    app = create_app(_cfg(tmp_path, ups, policy="carbon", breaker_failures=2), catalog)
    with TestClient(app) as http:
        for _ in range(3):
            r = http.post("/v1/completions", json={"model": "tiny", "prompt": "x",
                                                   "max_tokens": 2})
            assert r.status_code == 200 and r.headers["x-tokenprint-upstream"] == "alive"
        dead_state = next(s for s in app.state.upstreams if s.name == "dead")
        assert dead_state.open_until > 0                  # the breaker opened
    rows = _ledger_rows(tmp_path)
    assert len(rows) == 3 and all(r["upstream"] == "alive" for r in rows)
    assert rows[0]["attempts"] == 2


def test_live_intensity_with_cache_and_fallback(catalog, monkeypatch):
    import asyncio

    from fastapi import FastAPI, Header

    from conftest import serve_in_thread

    calls = []
    fake = FastAPI()

    @fake.get("/v3/carbon-intensity/latest")
    async def latest(zone: str, token: str | None = Header(default=None, alias="auth-token")
                     ) -> dict:
        calls.append((zone, token))
        return {"zone": zone, "carbonIntensity": 123}

    with serve_in_thread(fake) as port:
        monkeypatch.setenv("EM_TOKEN", "tok")
        prov = IntensityProvider(catalog, "electricitymaps", token_env="EM_TOKEN",
                                 base_url=f"http://127.0.0.1:{port}/v3", cache_s=60)
        v1, m1 = asyncio.run(prov.current("FR"))
        v2, m2 = asyncio.run(prov.current("FR"))
        assert (v1, v2) == (123.0, 123.0) and "live" in m1 and "cached" in m2
        assert calls == [("FR", "tok")]
        down = IntensityProvider(catalog, "electricitymaps", token_env="EM_TOKEN",
                                 base_url="http://127.0.0.1:9/v3")
        v3, m3 = asyncio.run(down.current("FR"))
        assert v3 == catalog.region("FR").intensity_g_per_kwh.value
        assert "annual" in m3 and "live unavailable" in m3
        monkeypatch.delenv("EM_TOKEN")
        _v4, m4 = asyncio.run(prov.current("DE", now_s=0))
        assert "not set" in m4


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed; .ci/run installs it")
def test_dashboard_charts_in_chromium(tmp_path: Path, catalog, hf_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    import httpx

    from conftest import serve_in_thread

    app = create_app(_cfg(tmp_path, [_up("a", hf_server)]), catalog)
    with serve_in_thread(app) as port:
        for _ in range(3):
            httpx.post(f"http://127.0.0.1:{port}/v1/completions",
                       json={"model": "tiny", "prompt": "x", "max_tokens": 3}, timeout=30)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/dashboard")
            page.wait_for_selector("div.up[data-upstream='a'] svg rect.bar", state="attached")
            charts = page.locator("div.up[data-upstream='a'] .chart")
            assert charts.count() == 4
            heights = page.eval_on_selector_all(
                "div.chart[data-kind='requests'] rect.bar",
                "els => els.map(e => parseFloat(e.getAttribute('height')))")
            assert max(heights) > 0
            assert "3" in page.inner_text("div.chart[data-kind='requests'] .total")
            browser.close()


def test_gateway_over_vllm_upstream(tmp_path: Path, catalog, vllm_server):
    """The gateway in front of vLLM's own OpenAI server, driven by the official SDK."""
    app = create_app(_cfg(tmp_path, [_up("vllm", vllm_server, region="CA-QC")]), catalog)
    with TestClient(app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http)
        r = client.completions.create(model="tiny", prompt="hello", max_tokens=8,
                                      extra_body={"ignore_eos": True})
        assert r.usage.completion_tokens == 8
        fp = r.usage.model_extra["tokenprint"]
        assert set(fp) >= FIELDS and fp["total_g"] > 0 and fp["intensity_g_per_kwh"] == 31.0
        chunks = list(client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=6,
            stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True}))
        usage = chunks[-1].usage
        assert usage.completion_tokens == 6 and usage.model_extra["tokenprint"]["energy_j"] > 0
    rows = _ledger_rows(tmp_path)
    assert len(rows) == 2 and {r["upstream"] for r in rows} == {"vllm"}
    assert rows[0]["completion_tokens"] == 8


def test_stream_with_crlf_upstream(tmp_path: Path, catalog):
    """Servers built on sse-starlette end SSE lines with CRLF; the gateway must still stream."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from conftest import serve_in_thread

    up = FastAPI()

    @up.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": "tiny", "object": "model"}]}

    @up.post("/v1/completions")
    async def comp() -> StreamingResponse:
        async def gen():
            for i in range(3):
                yield ('data: ' + json.dumps({"choices": [{"index": 0, "text": f"t{i}"}]})
                       + "\r\n\r\n")
            yield 'data: ' + json.dumps({"choices": [], "usage": {
                "prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}) + "\r\n\r\n"
            yield "data: [DONE]\r\n\r\n"
        return StreamingResponse(gen(), media_type="text/event-stream")

    with serve_in_thread(up) as port:
        app = create_app(_cfg(tmp_path, [_up("crlf", f"http://127.0.0.1:{port}/v1")]), catalog)
        with TestClient(app) as http:
            client = openai.OpenAI(base_url="http://testserver/v1", api_key="none",
                                   http_client=http)
            chunks = list(client.completions.create(model="tiny", prompt="x", max_tokens=3,
                                                    stream=True,
                                                    stream_options={"include_usage": True}))
        texts = [c.choices[0].text for c in chunks if c.choices]
        assert texts == ["t0", "t1", "t2"]
        assert chunks[-1].usage.completion_tokens == 3
        assert chunks[-1].usage.model_extra["tokenprint"]["total_g"] > 0


# ---- the hot path: SSE relay, cut streams, every request recorded ---------------------------

def test_sse_relay_counts_pieces_and_keeps_usage():
    from tokenprint.gateway.sse import SseRelay

    text = b'data: {"choices": [{"index": 0, "text": " a"}]}\n\n'
    empty = b'data: {"choices": [{"index": 0, "text": ""}]}\n\n'
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2}}\n\n'
    relay = SseRelay(want_usage=False)
    assert relay.feed(text) == (text, 1)                 # one whole event: forwarded as is
    out, n = relay.feed(text[:10])                      # split across reads: held back
    assert (out, n) == (b"", 0)
    out, n = relay.feed(text[10:] + empty.replace(b"\n", b"\r\n") + usage + b"data: [DONE]\n\n")
    assert n == 1 and out == text + empty               # CRLF normalized, usage withheld
    assert relay.done and relay.pieces == 2
    assert relay.usage == {"prompt_tokens": 2, "completion_tokens": 2}
    assert relay.feed(text) == (b"", 0)                 # nothing after [DONE]
    # usage riding on a text chunk: kept, and stripped unless the client asked for it
    both = b'data: {"choices": [{"text": "x"}], "usage": {"completion_tokens": 1}}\n\n'
    r2 = SseRelay(want_usage=False)
    out, n = r2.feed(both)
    assert n == 1 and b"usage" not in out and r2.usage == {"completion_tokens": 1}
    r3 = SseRelay(want_usage=True)
    assert b'"usage"' in r3.feed(both)[0]


def test_client_leaving_mid_stream_is_recorded_once(tmp_path: Path, catalog):
    import time

    import httpx

    from conftest import scripted_upstream, serve_in_thread

    with scripted_upstream(tokens=200, itl_s=0.02) as url:
        app = create_app(_cfg(tmp_path, [_up("slow", url)]), catalog)
        with serve_in_thread(app) as port, httpx.stream(
                "POST", f"http://127.0.0.1:{port}/v1/completions", timeout=30,
                json={"model": "tiny", "prompt": "x", "max_tokens": 200, "stream": True}) as r:
            got = 0
            for line in r.iter_lines():
                got += line.startswith("data:")
                if got == 3:
                    break                               # the client hangs up
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _ledger_rows(tmp_path):
                time.sleep(0.1)
            state = app.state.upstreams[0]
            assert state.inflight == 0 and not state.conc_start
    rows = _ledger_rows(tmp_path)
    assert len(rows) == 1 and rows[0]["status"] == 499
    assert 3 <= rows[0]["completion_tokens"] < 200      # charged for what was generated
    assert rows[0]["energy_j"] > 0


def test_upstream_cut_mid_stream_fails_visibly_and_is_recorded(tmp_path: Path, catalog):
    from conftest import scripted_upstream

    with scripted_upstream(tokens=10, cut_after=3) as url:
        app = create_app(_cfg(tmp_path, [_up("flaky", url)]), catalog)
        with TestClient(app) as http:
            client = openai.OpenAI(base_url="http://testserver/v1", api_key="none",
                                   http_client=http, max_retries=0)
            texts = []
            with pytest.raises(openai.APIError, match="cut the stream"):
                for c in client.completions.create(model="tiny", prompt="x", max_tokens=10,
                                                   stream=True):
                    texts.append(c.choices[0].text)
            assert texts == [" t0", " t1", " t2"]
    rows = _ledger_rows(tmp_path)
    assert len(rows) == 1 and rows[0]["status"] == 502 and rows[0]["completion_tokens"] == 3


def test_no_upstream_left_is_a_502_with_a_record(tmp_path: Path, catalog):
    from conftest import free_port

    ups = [_up("d1", f"http://127.0.0.1:{free_port()}/v1"),
           _up("d2", f"http://127.0.0.1:{free_port()}/v1")]
    app = create_app(_cfg(tmp_path, ups), catalog)
    with TestClient(app) as http:
        r = http.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unavailable"
        assert "ConnectorError" in r.json()["error"]["message"]
        assert http.get("/v1/completions").status_code == 405
        assert all(s.inflight == 0 for s in app.state.upstreams)
    rows = _ledger_rows(tmp_path)
    assert [(r["status"], r["attempts"], r["energy_j"]) for r in rows] == [(502, 2, None)]


def test_streamed_requests_record_the_gateways_own_time(tmp_path: Path, catalog):
    """And the intensity source each footprint used."""
    from conftest import scripted_upstream

    with scripted_upstream(tokens=5, itl_s=0.01) as url:
        app = create_app(_cfg(tmp_path, [_up("a", url)]), catalog)
        with TestClient(app) as http:
            for _ in range(3):
                r = http.post("/v1/completions", json={"model": "tiny", "prompt": "x",
                                                       "stream": True})
                assert r.text.endswith("data: [DONE]\n\n")
            metrics = http.get("/metrics").text
    rows = _ledger_rows(tmp_path)
    assert len(rows) == 3 and all(r["status"] == 200 for r in rows)
    # the gateway's own share is a small part of each request (5 tokens 10 ms apart)
    assert all(0 < r["added_s"] < r["duration_s"] for r in rows)
    fr = catalog.region("FR")
    assert {r["intensity_source"] for r in rows} == {f"annual average {fr.year} ({fr.basis})"}
    assert 'tokenprint_gateway_added_seconds_count{upstream="a"} 3.0' in metrics


def test_ledger_written_by_an_older_version_gains_new_columns(tmp_path: Path):
    from tokenprint.gateway.ledger import SCHEMA, Ledger

    d = tmp_path / "old"
    d.mkdir()
    con = sqlite3.connect(d / "tokenprint.sqlite")   # the file name ledgers had before 0.4
    con.executescript(SCHEMA.replace("    added_s REAL,\n", "").replace(
        "    intensity_source TEXT,\n", ""))
    con.execute("INSERT INTO requests (id, time_utc, upstream, model, region, endpoint, status) "
                "VALUES ('old', 1.0, 'a', 'm', 'FR', 'completions', 200)")
    con.commit()
    con.close()
    ledger = Ledger(d)
    ledger.add(RequestOutcome(id="new", time_utc=2.0, upstream="a", model="m", region="FR",
                              endpoint="completions", status=200, added_s=0.001))
    rows = ledger.since(0)
    ledger.close()
    assert [(r["id"], r["added_s"]) for r in rows] == [("old", None), ("new", 0.001)]
    assert not (d / "ledger.sqlite").exists()        # kept in place


def test_bench_results_and_the_ledger_share_a_folder_not_a_file(tmp_path: Path):
    from tokenprint.bench.store import ResultsStore
    from tokenprint.gateway.ledger import Ledger, check

    store = ResultsStore(tmp_path)                   # bench's tokenprint.sqlite, "runs" table
    store.close()
    ledger = Ledger(tmp_path)
    ledger.add(RequestOutcome(id="r", time_utc=1.0, upstream="a", model="m", region="FR",
                              endpoint="completions", status=200))
    ledger.close()
    assert (tmp_path / "ledger.sqlite").is_file()
    assert [r["answered"] for r in check(tmp_path)] == [1]
    assert ResultsStore.open_existing(tmp_path).records() == []


def test_latest_intensity_never_waits_on_the_network(catalog, monkeypatch):
    monkeypatch.delenv("EM_TOKEN", raising=False)
    prov = IntensityProvider(catalog, "electricitymaps", token_env="EM_TOKEN",
                             base_url="http://127.0.0.1:9/v3", cache_s=60)
    annual = catalog.region("FR").intensity_g_per_kwh.value
    v, how = prov.latest("FR")
    assert v == annual and "not fetched yet" in how
    import asyncio

    asyncio.run(prov.refresh(["FR"]))
    v, how = prov.latest("FR")
    assert v == annual and "EM_TOKEN not set" in how
    prov._cache["FR"] = (1000.0, 42.0)                   # a live answer fetched at t = 1000 s
    assert prov.latest("FR", now_s=1010.0) == (42.0, "live (electricitymaps, cached)")
    assert prov.latest("FR", now_s=1400.0)[1].endswith("stale, 400 s old)")
    assert prov.latest("FR", now_s=1000.0 + 7200)[0] == annual   # too old: annual again


def test_two_worker_processes_share_one_ledger_and_metrics(tmp_path: Path):
    import asyncio
    import re
    import subprocess
    import sys
    import time

    import httpx

    from conftest import free_port, scripted_upstream

    with scripted_upstream(tokens=4, itl_s=0.005) as url:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenprint", "serve", "--upstream", url, "--model", "tiny",
             "--gpu", "l4", "--region", "FR", "--workers", "2", "--port", str(port),
             "--results", str(tmp_path / "ledger")], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stdout.read().decode()
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "the gateway did not come up"
                    time.sleep(0.2)

            async def burst() -> list[int]:
                async with httpx.AsyncClient(base_url=base, timeout=30) as c:
                    rs = await asyncio.gather(*(c.post("/v1/completions", json={
                        "model": "tiny", "prompt": "x", "stream": k % 2 == 0})
                        for k in range(40)))
                    return [r.status_code for r in rs]

            assert asyncio.run(burst()) == [200] * 40
            time.sleep(0.5)  # the ledger writers commit within 50 ms
            totals = set()
            for _ in range(6):  # whichever worker answers, it reports both workers' counts
                text = httpx.get(f"{base}/metrics", timeout=5).text
                totals.add(sum(float(v) for v in re.findall(
                    r'^tokenprint_requests_total\{[^}]*status="200"[^}]*\} (\S+)$', text,
                    re.M)))
            assert totals == {40.0}
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    rows = _ledger_rows(tmp_path)
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40


def test_workers_refuse_a_metered_upstream(tmp_path: Path):
    from pydantic import ValidationError

    up = UpstreamConfig(name="a", url="http://127.0.0.1:1/v1", model="tiny", gpu="l4",
                        region="FR", meter="nvml")
    with pytest.raises(ValidationError, match="run one worker on a metered host"):
        GatewayConfig(upstream=[up], workers=2)
    assert GatewayConfig(upstream=[up]).workers == 1


class _ConstantPower:
    """A counter reading like a GPU drawing ``watts`` steadily."""

    def __init__(self, watts: float) -> None:
        import time

        self.watts = watts
        self.t0 = time.monotonic()
        self.first: float | None = None

    def read_j(self) -> float:
        import time

        j = self.watts * (time.monotonic() - self.t0)
        if self.first is None:
            self.first = j
        return j


def test_metered_gateway_conserves_energy(tmp_path: Path, catalog):
    from conftest import scripted_upstream

    meter = _ConstantPower(300.0)
    with scripted_upstream(tokens=6, itl_s=0.02) as url:
        app = create_app(_cfg(tmp_path, [_up("gpu", url)]), catalog,
                         energy_sources={"gpu": meter})
        with TestClient(app) as http:
            for prompt in ("short", "a much longer prompt " * 40):
                r = http.post("/v1/completions", json={"model": "tiny", "prompt": prompt,
                                                       "stream": True})
                assert r.status_code == 200
            att = app.state.upstreams[0].attributor
            rows = app.state.ledger.since(0)
            assert len(rows) == 2 and {r["method"] for r in rows} == {"measured"}
            # every joule the counter moved is either some request's or idle
            attributed = sum(r["energy_j"] for r in rows)
            assert attributed + att.idle_j + att._pool_j == pytest.approx(
                att._last_e - meter.first, rel=1e-9)
            # ~120 ms of streaming at 300 W each, prefill weighed by the prompt-size guess
            assert all(20 < r["energy_j"] < 200 and r["prefill_j"] > 0 for r in rows)
            assert rows[1]["prefill_j"] / rows[1]["energy_j"] > \
                rows[0]["prefill_j"] / rows[0]["energy_j"]


def test_client_leaving_during_prefill_drops_the_upstream_request(tmp_path: Path, catalog):
    """The upstream learns at once that nobody waits (it stops generating), not at its first
    token, 10 s of prefill later."""
    import time

    import httpx

    from conftest import scripted_upstream, serve_in_thread

    dropped: list[float] = []
    with scripted_upstream(tokens=3, first_delay_s=10.0, dropped=dropped) as url:
        app = create_app(_cfg(tmp_path, [_up("slow", url)]), catalog)
        with serve_in_thread(app) as port:
            with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", timeout=30,
                              json={"model": "tiny", "prompt": "x", "stream": True}) as r:
                assert r.status_code == 200
            left = time.monotonic()                     # the client hung up after the headers
            while not dropped and time.monotonic() < left + 5:
                time.sleep(0.02)
            assert dropped and dropped[0] - left < 2.0
            rows = app.state.ledger.since(0)
    assert [(r["status"], r["completion_tokens"]) for r in rows] == [(499, 0)]


def test_a_body_that_never_arrives_gets_a_408(tmp_path: Path, catalog):
    import socket

    from conftest import serve_in_thread

    app = create_app(_cfg(tmp_path, [_up("a", "http://127.0.0.1:9/v1")], body_timeout_s=0.3),
                     catalog)
    with serve_in_thread(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                     b"application/json\r\ncontent-length: 100\r\n\r\n{\"model\":")
        sock.settimeout(5)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408") and b"within 0.3 s" in reply


def test_dashboard_bins_are_summed_by_the_database(tmp_path: Path):
    import time

    from tokenprint.gateway.dashboard import dashboard_data
    from tokenprint.gateway.ledger import Ledger

    ledger = Ledger(tmp_path)
    now = time.time()
    for k, (age_s, up, tokens, g) in enumerate([(30, "a", 10, 1.0), (45, "a", 5, 0.5),
                                                 (200, "b", 7, 2.0), (7200, "a", 99, 9.0)]):
        energy = RequestEnergy(prefill_j=g * 10, decode_j=0.0, method="predicted")
        ledger.add(RequestOutcome(
            id=f"r{k}", time_utc=now - age_s, upstream=up, model="m", region="FR",
            endpoint="completions", status=200, prompt_tokens=tokens, completion_tokens=0,
            footprint=RequestFootprint(energy, operational_g=g, embodied_g=0.0,
                                       intensity_g_per_kwh=100.0)))
    # the dashboard reads committed rows only (it never drives the writer): wait for them
    assert ledger.flush()
    data = dashboard_data(ledger, ["a", "b"])
    ledger.close()
    a, b = data["series"]["a"], data["series"]["b"]
    assert data["totals"]["a"] == {"requests": 2, "tokens": 15, "energy_j": 15.0,
                                   "carbon_g": 1.5}              # the 2-hour-old row is out
    assert a["requests"][-1] == 2 and sum(a["requests"][:-1]) == 0  # both in the last minute
    assert b["requests"][-4] == 1 and data["totals"]["b"]["carbon_g"] == 2.0


def test_an_internal_error_is_a_500_for_the_client_and_a_traceback_in_the_log(
        tmp_path: Path, catalog, monkeypatch, caplog):
    from tokenprint.gateway.accounts import Accounts

    def broken(self, scope):
        raise KeyError("a bug")

    monkeypatch.setattr(Accounts, "key", broken)
    app = create_app(_cfg(tmp_path, [_up("a", "http://127.0.0.1:9/v1")]), catalog)
    with TestClient(app) as http, caplog.at_level("ERROR", logger="tokenprint.gateway"):
        r = http.post("/v1/completions", json={"model": "tiny", "prompt": "x"})
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "KeyError" in r.json()["error"]["message"] and "a bug" not in r.text
    assert any(rec.exc_info and "a bug" in str(rec.exc_info[1]) for rec in caplog.records)


@pytest.mark.parametrize(("args", "needle"), [
    (["--upstream", "ftp://x"], "--upstream: url 'ftp://x' must start with http://"),
    (["--meter", "nvmll"], "--meter: Input should be 'none' or 'nvml' (got 'nvmll')"),
    (["--workers", "0"], "--workers: Input should be greater than or equal to 1 (got 0)"),
    (["--port", "0"], "--port: Input should be greater than or equal to 1 (got 0)"),
])
def test_serve_flags_are_validated_with_their_names(capsys, args, needle):
    from conftest import run_cli

    flags = {"--upstream": "http://127.0.0.1:9/v1", "--model": "tiny", "--gpu": "l4",
             "--region": "FR"}
    flags.update(dict(zip(args[::2], args[1::2], strict=True)))
    code, _out, err = run_cli(capsys, "serve", *[x for kv in flags.items() for x in kv])
    assert code == 2 and needle in err and "Traceback" not in err


def test_unknown_config_fields_list_the_valid_ones(tmp_path: Path):
    from tokenprint.errors import TokenprintError
    from tokenprint.gateway.config import load_config

    f = tmp_path / "g.toml"
    f.write_text('worker = 2\n[[upstream]]\nname = "a"\nurl = "http://x/v1"\nmodel = "tiny"\n'
                 'gpu = "l4"\nregion = "FR"\nmetre = "nvml"\n')
    with pytest.raises(TokenprintError) as exc:
        load_config(f)
    msg = str(exc.value)
    assert "worker: unknown field; valid: host, port" in msg and "workers" in msg
    assert "upstream.0.metre: unknown field; valid: name, url" in msg and "meter" in msg


def test_watch_and_gateway_agree_over_real_vllm(tmp_path: Path, catalog, vllm_server):
    """The same requests through the gateway, and seen by ``watch`` on vLLM's own /metrics:
    the same tokens, and with the same energy counter the same operational carbon (within 1 %:
    the two read the counter a few milliseconds apart). Embodied carbon is charged differently
    by design (per request's share of its duration in the gateway, for every provisioned second
    in watch) and is not compared."""
    import time

    from tokenprint.fleet.watch import Watcher, WatchLedger, WatchMetrics

    meter = _ConstantPower(300.0)
    meter.method = "counter"  # type: ignore[attr-defined]
    metrics_url = vllm_server.removesuffix("/v1") + "/metrics"
    app = create_app(_cfg(tmp_path, [_up("vllm", vllm_server, region="FR")]), catalog,
                     energy_sources={"vllm": meter})
    watcher = Watcher(catalog, endpoints=[metrics_url], model="tiny", gpu="l4", gpus=1,
                      region="FR", energy=meter, ledger=WatchLedger(tmp_path / "watch"),
                      metrics=WatchMetrics())
    with TestClient(app) as http:
        att = app.state.upstreams[0].attributor
        att.tick()                                         # both windows start here
        idle_before = att.idle_j
        assert watcher.step() is None                      # the baseline
        time.sleep(1.0)                       # idle on both sides: ms of offset stay < 0.1 %
        for i, n in enumerate((8, 5, 12)):
            r = http.post("/v1/completions", json={"model": "tiny", "prompt": "hello " * (i + 1),
                                                   "max_tokens": n, "ignore_eos": True})
            assert r.status_code == 200
        time.sleep(1.0)
        att.tick()                                         # and end here
        row = watcher.step()
        rows = app.state.ledger.since(0)
    watcher.close()
    assert row is not None and row.status == "ok" and row.engine == "vllm"
    assert row.generation_tokens == sum(r["completion_tokens"] for r in rows) == 25
    assert row.prompt_tokens == sum(r["prompt_tokens"] for r in rows)
    idle_j = att.idle_j - idle_before
    gateway_j = sum(r["energy_j"] for r in rows) + idle_j + att._pool_j
    assert row.energy_j == pytest.approx(gateway_j, rel=0.01)
    ci = catalog.region("FR").intensity_g_per_kwh.value
    gateway_op = sum(r["operational_g"] for r in rows) + idle_j / 3.6e6 * ci
    assert row.operational_g == pytest.approx(gateway_op, rel=0.01)


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None, reason="Prometheus is not installed (.ci/run installs it)")
def test_prometheus_over_real_vllm_and_a_watcher(tmp_path: Path, catalog, vllm_server, capsys):
    """Prometheus scrapes vLLM's real /metrics and a watcher's; ``fleet report`` reads it back,
    from the deployments file and from the watcher's series: the tokens the gateway recorded
    (within Prometheus's edge extrapolation)."""
    import subprocess
    import threading
    import time

    import httpx
    from prometheus_client import start_http_server

    from conftest import free_port, run_cli
    from tokenprint.fleet.watch import PredictedEnergy, Watcher, WatchLedger, WatchMetrics

    base = vllm_server.removesuffix("/v1")
    watcher = Watcher(catalog, endpoints=[f"{base}/metrics"], model="tiny", gpu="l4", gpus=1,
                      region="FR", energy=PredictedEnergy(catalog, "tiny", "l4", 1),
                      ledger=WatchLedger(tmp_path / "watch"), metrics=WatchMetrics(),
                      deployment="tiny-vllm")
    watch_port = free_port()
    http_server, _ = start_http_server(watch_port, addr="127.0.0.1",
                                       registry=watcher.metrics.registry)
    stop = threading.Event()

    def keep_watching() -> None:
        while not stop.is_set():
            watcher.step()
            stop.wait(1.0)

    stepper = threading.Thread(target=keep_watching, daemon=True)
    stepper.start()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                   f"  - job_name: vllm\n    static_configs:\n"
                   f"      - targets: ['{base.removeprefix('http://')}']\n"
                   f"  - job_name: watch\n    static_configs:\n"
                   f"      - targets: ['127.0.0.1:{watch_port}']\n")
    prom_port = free_port()
    url = f"http://127.0.0.1:{prom_port}"
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def value(query: str) -> float:
        try:
            r = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
        except (httpx.HTTPError, ValueError):   # not up yet, or "Service Unavailable" (not JSON)
            return -1.0
        res = r.get("data", {}).get("result", [])
        return float(res[0]["value"][1]) if res else -1.0

    try:
        for _ in range(120):       # scraping starts a few seconds after Prometheus is ready
            if value("count_over_time(vllm:generation_tokens_total[1m])") >= 3 and value(
                    "count_over_time(tokenprint_watch_energy_joules_total[1m])") >= 3:
                break
            time.sleep(0.5)
        t0 = time.time()           # the window starts where both series already have samples
        time.sleep(4.0)            # and the requests come well inside it
        engine0 = value("vllm:generation_tokens_total")
        watch0 = value('sum(tokenprint_watch_tokens_total{kind="generation"})')
        app = create_app(_cfg(tmp_path, [_up("vllm", vllm_server, region="FR")]), catalog)
        with TestClient(app) as http:
            for n in (8, 6, 10, 4):
                r = http.post("/v1/completions", json={"model": "tiny", "prompt": "hi",
                                                       "max_tokens": n, "ignore_eos": True})
                assert r.status_code == 200
        sent = sum(r["completion_tokens"] for r in _ledger_rows(tmp_path))
        assert sent == 28
        for _ in range(60):        # both the engine's and the watcher's series caught up
            if value("vllm:generation_tokens_total") >= engine0 + sent and value(
                    'sum(tokenprint_watch_tokens_total{kind="generation"})') >= watch0 + sent:
                break
            time.sleep(0.5)
        time.sleep(4.0)
        iso = "%Y-%m-%dT%H:%M:%SZ"
        start_s, end_s = int(t0), int(time.time())
        window = ["--start", time.strftime(iso, time.gmtime(start_s)), "--end",
                  time.strftime(iso, time.gmtime(end_s)), "--step", f"{end_s - start_s}s"]
        deps = tmp_path / "deployments.toml"
        deps.write_text('[[deployment]]\nname = "tiny"\nmatch = { job = "vllm" }\n'
                        'model = "tiny"\ngpu = "l4"\ngpus = 1\nregion = "FR"\n')
        for extra in (["--deployments", str(deps)], []):
            code, out, err = run_cli(capsys, "fleet", "report", "--prometheus", url, *window,
                                     *extra, "--json")   # one step: the whole window
            assert code == 0, err
            totals = json.loads(out)["totals"]
            assert len(totals) == 1, (extra, totals)
            # increase() scales the sampled rise to the whole window: up to one scrape interval
            # (1 s) past the first and the last sample, never less than the rise itself
            span = end_s - start_s
            got = totals[0]["generation_tokens"]
            assert sent - 0.5 <= got <= sent * span / (span - 2.0) + 0.5, (extra, got, span)
            assert totals[0]["total_g"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        stop.set()
        stepper.join(timeout=10)
        http_server.shutdown()
        watcher.close()
