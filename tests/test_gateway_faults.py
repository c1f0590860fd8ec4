"""Fault injection: every request accounted, whatever the upstream, the client or the disk does.

Each test scripts an upstream byte by byte (``conftest.raw_upstream``) or breaks the ledger's
database, then checks what the client saw, the ledger row, the metrics and that the in-flight
count is back to 0.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("aiohttp")

from fastapi.testclient import TestClient

from conftest import raw_upstream
from tokenprint.errors import TokenprintError
from tokenprint.gateway.app import create_app
from tokenprint.gateway.config import GatewayConfig, UpstreamConfig, parse_config

SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")


def chunk(b: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(b), b)


def event(obj: Any) -> bytes:
    return chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")


def text(i: int) -> bytes:
    return event({"choices": [{"index": 0, "text": f" t{i}"}]})


DONE = chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
USAGE = event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4,
                                        "total_tokens": 7}})


def _cfg(tmp_path: Path, url: str, **kw: Any) -> GatewayConfig:
    return GatewayConfig(upstream=[UpstreamConfig(name="u", url=url, model="tiny", gpu="l4",
                                                  region="FR")],
                         results=str(tmp_path / "ledger"), health_interval_s=0, **kw)


def _rows(tmp_path: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(tmp_path / "ledger" / "ledger.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM requests ORDER BY time_utc")]
    con.close()
    return rows


def _stream(http: TestClient, prompt: str = "a b c") -> Any:
    return http.post("/v1/completions", json={"model": "tiny", "prompt": prompt,
                                               "stream": True,
                                               "stream_options": {"include_usage": True}})


@contextlib.contextmanager
def _locked(tmp_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the ledger's database (another process would do the same)."""
    blocker = sqlite3.connect(tmp_path / "ledger" / "ledger.sqlite", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def _settled(app: Any) -> None:
    assert all(s.inflight == 0 for s in app.state.upstreams)


def test_stream_ending_without_done_is_a_502_never_a_whole_answer(tmp_path: Path, catalog):
    # a clean end of the chunked body after 3 tokens, with no [DONE]
    with raw_upstream(lambda b: [("write", SSE_HEAD + text(0) + text(1) + text(2)
                                  + b"0\r\n\r\n")]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = _stream(http)
            assert r.status_code == 200  # the headers had gone out; the failure is in-band
            assert "data: [DONE]" not in r.text
            last = r.text.strip().split("\n\n")[-1]
            err = json.loads(last.removeprefix("data: "))["error"]
            assert err["code"] == "upstream_cut" and "without [DONE]" in err["message"]
            _settled(app)
    (row,) = _rows(tmp_path)
    assert row["status"] == 502 and row["completion_tokens"] == 3
    assert row["usage_source"] == "gateway" and row["energy_j"] > 0


def test_non_sse_body_on_a_stream_is_a_502(tmp_path: Path, catalog):
    body = b'{"choices": [{"text": "hello"}]}'
    with raw_upstream(lambda b: [("write", b"HTTP/1.1 200 OK\r\ncontent-type: "
                                  b"application/json\r\ncontent-length: %d\r\n\r\n%s"
                                  % (len(body), body))]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = _stream(http)
            assert "upstream_cut" in r.text and "data: [DONE]" not in r.text
            _settled(app)
    assert [r["status"] for r in _rows(tmp_path)] == [502]


@pytest.mark.parametrize("usage", [None, "many", [1, 2], {"prompt_tokens": -5,
                                                        "completion_tokens": 2},
                                   {"prompt_tokens": 2.5, "completion_tokens": 2},
                                   {"prompt_tokens": "3", "completion_tokens": 4}])
def test_malformed_usage_is_counted_by_the_gateway(tmp_path: Path, catalog, usage: Any):
    bad = event({"choices": [], "usage": usage})
    with raw_upstream(lambda b: [("write", SSE_HEAD + text(0) + text(1) + bad + DONE)]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = _stream(http)
            assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
            final = json.loads(r.text.strip().split("\n\n")[-2].removeprefix("data: "))
            assert final["usage"]["completion_tokens"] == 2
            assert final["usage"]["tokenprint"]["usage_source"] == "gateway"
            _settled(app)
    (row,) = _rows(tmp_path)
    assert row["status"] == 200 and row["completion_tokens"] == 2
    assert row["usage_source"] == "gateway"


def test_after_faults_an_identical_request_is_charged_the_same(tmp_path: Path, catalog):
    """In-flight returns to 0 after every fault, so the concurrency (and the charge) of the
    next request is not inflated."""
    calls = {"n": 0}

    def script(body: dict[str, Any]) -> list[Any]:
        calls["n"] += 1
        if calls["n"] <= 5:  # five broken answers of different kinds
            return [("write", SSE_HEAD + text(0) + event({"usage": "x", "choices": []})),
                    ("abort",)] if calls["n"] % 2 else [("write", SSE_HEAD + text(0)),
                                                        ("close",)]
        return [("write", SSE_HEAD + text(0) + text(1) + text(2) + text(3) + USAGE + DONE)]

    with raw_upstream(script) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            for _ in range(5):
                _stream(http)
            _settled(app)
            a = _stream(http)
            b = _stream(http)
    rows = _rows(tmp_path)
    assert [r["status"] for r in rows] == [502] * 5 + [200, 200]
    assert rows[-1]["energy_j"] == pytest.approx(rows[-2]["energy_j"])
    assert a.status_code == b.status_code == 200


def test_unary_body_cut_or_stalled_after_headers(tmp_path: Path, catalog):
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n"
            b'{"choices": [')
    mode = {"stall": False}

    def script(body: dict[str, Any]) -> list[Any]:
        return [("write", head), ("sleep", 3.0)] if mode["stall"] else [("write", head),
                                                                        ("abort",)]

    with raw_upstream(script) as url:
        app = create_app(_cfg(tmp_path, url, request_timeout_s=0.5), catalog)
        with TestClient(app) as http:
            r = http.post("/v1/completions", json={"model": "tiny", "prompt": "x"})
            assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_cut"
            mode["stall"] = True
            r = http.post("/v1/completions", json={"model": "tiny", "prompt": "x"})
            assert r.status_code == 504 and "stalled" in r.json()["error"]["message"]
            _settled(app)
    assert [r["status"] for r in _rows(tmp_path)] == [502, 504]


def test_unary_with_malformed_usage(tmp_path: Path, catalog):
    body = json.dumps({"choices": [{"text": "four words of text"}],
                       "usage": {"prompt_tokens": None, "completion_tokens": "x"}}).encode()
    with raw_upstream(lambda b: [("write", b"HTTP/1.1 200 OK\r\ncontent-type: "
                                  b"application/json\r\ncontent-length: %d\r\n\r\n%s"
                                  % (len(body), body))]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = http.post("/v1/completions", json={"model": "tiny", "prompt": "x"})
            assert r.status_code == 200
            u = r.json()["usage"]
            assert u["tokenprint"]["usage_source"] == "gateway" and u["completion_tokens"] >= 1
            _settled(app)
    (row,) = _rows(tmp_path)
    assert row["usage_source"] == "gateway" and row["status"] == 200


def test_unterminated_sse_event_is_bounded(tmp_path: Path, catalog):
    big = b"data: " + b"x" * 4000  # never terminated, in several reads

    with raw_upstream(lambda b: [("write", SSE_HEAD + text(0))]
                      + [("write", chunk(big))] * 5 + [("sleep", 1.0)]) as url:
        app = create_app(_cfg(tmp_path, url, max_event_bytes=8192), catalog)
        with TestClient(app) as http:
            r = _stream(http)
            assert "upstream_cut" in r.text and "unterminated" in r.text
            _settled(app)
    (row,) = _rows(tmp_path)
    assert row["status"] == 502 and row["completion_tokens"] == 1


@pytest.mark.parametrize("payload,needle", [
    (b'{"model": "tiny", "prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}", "digits"),
    (b'{"model": "tiny", "prompt": "x", "temperature": NaN}', "NaN"),
    (b'{"model": "tiny", "prompt": "x", "temperature": Infinity}', "Infinity"),
    (b'{"model": "tiny", "prompt": "x", "temperature": 1e999}', "out of range"),
    (b'{"model": "tiny", "prompt": "x", "metadata": ' + b"[" * 100_000 + b"]" * 100_000
     + b"}", "nests deeper"),
    (b'{"model": "tiny", "messages": 5}', "messages"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", '
     b'"text": 5}]}]}', "string"),
    (b'{"model": "tiny", "prompt": {"a": 1}}', "prompt"),
    (b"\xff\xfe", "parse"),
])
def test_bad_client_input_is_a_400(tmp_path: Path, catalog, payload: bytes, needle: str):
    calls = {"n": 0}

    def script(body: dict[str, Any]) -> list[Any]:
        calls["n"] += 1
        return [("write", SSE_HEAD + DONE)]

    path = "/v1/chat/completions" if b"messages" in payload else "/v1/completions"
    with raw_upstream(script) as url:
        app = create_app(_cfg(tmp_path, url, max_body_bytes=2_000_000), catalog)
        with TestClient(app) as http:
            r = http.post(path, content=payload, headers={"content-type": "application/json"})
            assert r.status_code == 400, r.text
            assert needle in r.json()["error"]["message"]
            _settled(app)
    assert calls["n"] == 0  # nothing reached the upstream


def test_404_and_405_have_the_openai_error_shape(tmp_path: Path, catalog):
    with raw_upstream(lambda b: []) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = http.get("/v1/nothing")
            assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
            r = http.delete("/health")
            assert r.status_code == 405 and "error" in r.json()


def test_open_endpoints_can_require_the_key(tmp_path: Path, catalog):
    from tokenprint.gateway.config import hash_key

    with raw_upstream(lambda b: []) as url:
        app = create_app(_cfg(tmp_path, url, api_keys_sha256=[hash_key("k")],
                              open_endpoints="key"), catalog)
        with TestClient(app) as http:
            for path in ("/metrics", "/health", "/dashboard", "/dashboard/data"):
                assert http.get(path).status_code == 401, path
                assert http.get(path, headers={"authorization": "Bearer k"}).status_code == 200
            assert http.get("/openapi.json").status_code == 404
        app2 = create_app(_cfg(tmp_path, url, api_keys_sha256=[hash_key("k")]), catalog)
        with TestClient(app2) as http:  # the default: public, stated in README
            assert http.get("/metrics").status_code == 200


def test_live_intensity_outside_the_plausible_range_falls_back(catalog):
    import asyncio

    from tokenprint.gateway.intensity import IntensityProvider

    for bad in (-5.0, float("nan"), float("inf"), 5000.0, True, "300", None):
        prov = IntensityProvider(catalog, "electricitymaps")

        class Fake:
            status_code = 200
            value = bad

            def raise_for_status(self) -> None:
                pass

            def json(self) -> dict[str, Any]:
                return {"carbonIntensity": self.value}

        class Client:
            def __init__(self, **kw: Any) -> None:
                pass

            async def __aenter__(self) -> Client:
                return self

            async def __aexit__(self, *a: Any) -> None:
                pass

            async def get(self, *a: Any, **kw: Any) -> Fake:
                return Fake()

        import os

        import httpx

        old = httpx.AsyncClient
        httpx.AsyncClient = Client  # type: ignore[misc]
        os.environ["ELECTRICITYMAPS_TOKEN"] = "t"
        try:
            v, src = asyncio.run(prov.current("FR"))
        finally:
            httpx.AsyncClient = old  # type: ignore[misc]
            del os.environ["ELECTRICITYMAPS_TOKEN"]
        assert v == catalog.region("FR").intensity_g_per_kwh.value
        if isinstance(bad, float):
            assert "rejected" in src and "outside" in src
        else:   # true is not 1 g/kWh, nor a string a number
            assert "unavailable: TypeError" in src


def test_locked_database_delays_rows_but_loses_none(tmp_path: Path, catalog):
    with raw_upstream(lambda b: [("write", SSE_HEAD + text(0) + USAGE + DONE)]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            _stream(http)
            time.sleep(0.2)
            with _locked(tmp_path):
                for _ in range(20):
                    assert _stream(http).status_code == 200
                time.sleep(BEHIND_WAIT)
                h = http.get("/health")
                assert h.status_code == 503 and h.json()["status"] == "degraded"
                assert h.json()["ledger"]["pending"] == 20
            deadline = time.time() + 10
            while http.get("/health").status_code != 200 and time.time() < deadline:
                time.sleep(0.1)
            assert http.get("/health").json()["ledger"] == {
                "pending": 0, "oldest_wait_s": 0.0, "dropped": 0, "error": None, "ok": True}
            _settled(app)
    assert len(_rows(tmp_path)) == 21


BEHIND_WAIT = 5.5  # past ledger.BEHIND_S


def test_queue_overflow_is_counted_and_reported(tmp_path: Path, catalog):
    from tokenprint.gateway.ledger import check

    with raw_upstream(lambda b: [("write", SSE_HEAD + text(0) + USAGE + DONE)]) as url:
        app = create_app(_cfg(tmp_path, url, ledger_max_pending=100), catalog)
        with TestClient(app) as http:
            _stream(http)
            time.sleep(0.2)
            with _locked(tmp_path):
                for _ in range(130):
                    _stream(http)
                h = http.get("/health").json()
                assert h["ledger"]["dropped"] == 30 and h["status"] == "degraded"
                assert "tokenprint_ledger_dropped_total 30.0" in http.get("/metrics").text
    assert len(_rows(tmp_path)) == 101
    (run,) = check(tmp_path / "ledger")
    assert run["answered"] == 131 and run["recorded"] == 101 and run["dropped"] == 30
    assert run["stopped_cleanly"] and not run["ok"]


def test_config_that_cannot_work_is_refused():
    base = {"upstream": [{"name": "a", "url": "http://127.0.0.1:1/v1", "model": "tiny",
                          "gpu": "l4", "region": "FR"}]}
    with pytest.raises(TokenprintError, match="names no host"):
        parse_config({"upstream": [{**base["upstream"][0], "url": "http://"}]}, "t")
    with pytest.raises(TokenprintError, match="repeated: a"):
        parse_config({"upstream": base["upstream"] * 2}, "t")


def test_text_ledger_is_private_and_keeps_streamed_text(tmp_path: Path, catalog):
    with raw_upstream(lambda b: [("write", SSE_HEAD + text(0) + text(1) + USAGE + DONE)]) as url:
        app = create_app(_cfg(tmp_path, url, store_text=True), catalog)
        with TestClient(app) as http:
            assert _stream(http, "hello there").status_code == 200
    mode = (tmp_path / "ledger" / "ledger.sqlite").stat().st_mode & 0o777
    assert mode == 0o600
    (row,) = _rows(tmp_path)
    assert row["completion_text"] == " t0 t1" and "hello there" in row["prompt_text"]


def _serve_limited(max_header: int, timeout_s: float) -> Any:
    import asyncio

    import uvicorn

    from conftest import free_port
    from tokenprint.gateway.server import LimitedHttpToolsProtocol, set_limits

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    set_limits(max_header, timeout_s)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           http=LimitedHttpToolsProtocol))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    del asyncio
    return server, th, port


def test_request_head_is_bounded_in_size_and_time():
    server, th, port = _serve_limited(4096, 0.5)
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:  # a normal request
            s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", port)) as s:  # a body never counts
            body = b"y" * 100_000
            s.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body)
                      + body)
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", port)) as s:  # headers past the limit
            s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
            s.sendall(b"x-big: " + b"z" * 10_000 + b"\r\n")
            assert b"431" in s.recv(200)
        with socket.create_connection(("127.0.0.1", port)) as s:  # a byte at a time
            t0 = time.monotonic()
            s.settimeout(5)
            closed = False
            for b in b"GET / HTTP/1.1\r\nhost: x\r\n" * 10:
                try:
                    s.send(bytes([b]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.05)
                if time.monotonic() - t0 > 1.5:
                    break
            if not closed:
                closed = s.recv(10) == b""
            assert closed and time.monotonic() - t0 < 2.0
        with socket.create_connection(("127.0.0.1", port)) as s:  # connects, says nothing
            s.settimeout(3)
            t0 = time.monotonic()
            assert s.recv(10) == b"" and time.monotonic() - t0 < 1.5
    finally:
        server.should_exit = True
        th.join(timeout=10)


def _serve_proc(url: str, results: Path, port: int) -> Any:
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "tokenprint", "serve", "--upstream", url,
                             "--model", "tiny", "--gpu", "l4", "--region", "FR", "--port",
                             str(port), "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("gateway did not start: " + (proc.stdout.read().decode() if proc.stdout else ""))


def test_sigterm_flushes_every_row_and_sigkill_is_reported(tmp_path: Path):
    import signal

    import httpx

    from conftest import free_port
    from tokenprint.gateway.ledger import check

    results = tmp_path / "ledger"
    with raw_upstream(lambda b: [("write", SSE_HEAD + text(0) + USAGE + DONE)]) as url:
        port = free_port()
        proc = _serve_proc(url, results, port)
        for _ in range(30):
            httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=10,
                       json={"model": "tiny", "prompt": "x", "stream": True})
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        (run,) = check(results)
        assert run == {**run, "answered": 30, "recorded": 30, "missing": 0, "ok": True,
                       "stopped_cleanly": True}
        port = free_port()
        proc = _serve_proc(url, results, port)
        for _ in range(10):
            httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=10,
                       json={"model": "tiny", "prompt": "x", "stream": True})
        time.sleep(0.5)
        proc.kill()
        proc.wait(timeout=10)
    runs = check(results)
    assert len(runs) == 2 and not runs[1]["stopped_cleanly"] and not runs[1]["ok"]
    assert runs[1]["recorded"] == 10  # committed before the kill
