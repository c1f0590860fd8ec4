"""Upstreams and clients that break the rules (issue: nothing lost, nothing stuck, nothing
poisoned): every request still ends with one ledger row, a bounded footprint and a freed slot."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("aiohttp")

from fastapi.testclient import TestClient

from conftest import raw_upstream
from test_gateway_faults import DONE, SSE_HEAD, USAGE, _cfg, _rows, _settled, _stream, chunk, text
from tokenprint.gateway.app import create_app


def _unary(http: TestClient) -> Any:
    return http.post("/v1/completions", json={"model": "tiny", "prompt": "a b c"})


@pytest.mark.parametrize("reply", [
    b"HTZP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",                      # bad status line
    b"\x00\x01\x02 not http at all\r\n\r\n",                                # non-HTTP bytes
    b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 100_000 + b"\r\ncontent-length: 2\r\n\r\n{}",
    b"HTTP/1.1 302 Found\r\nlocation: /v1/completions\r\ncontent-length: 0\r\n\r\n",
], ids=["status-line", "not-http", "huge-header", "redirect"])
def test_malformed_upstream_http_is_a_502_row_never_a_500(tmp_path: Path, catalog, reply):
    with raw_upstream(lambda b: [("write", reply), ("close",)]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = _unary(http)
            assert r.status_code == 502, r.text
            assert r.headers.get("connection") == "close"
            _settled(app)
    (row,) = _rows(tmp_path)
    assert row["status"] == 502


def test_a_bad_chunk_size_mid_stream_ends_the_request_at_once(tmp_path: Path, catalog):
    with raw_upstream(lambda b: [("write", SSE_HEAD + text(0)), ("sleep", 0.3),
                                 ("write", b"zz\r\nnonsense\r\n"), ("sleep", 30)]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            t0 = time.monotonic()
            r = _stream(http)
            assert time.monotonic() - t0 < 10
            assert "upstream_cut" in r.text and "data: [DONE]" not in r.text
            _settled(app)
    (row,) = _rows(tmp_path)
    assert row["status"] == 502


def test_usage_above_what_the_stream_carried_is_refused(tmp_path: Path, catalog):
    lie = chunk(b"data: " + json.dumps({"choices": [], "usage": {
        "prompt_tokens": 3, "completion_tokens": 10**12, "total_tokens": 10**12 + 3}}).encode()
        + b"\n\n")
    body = SSE_HEAD + b"".join(text(i) for i in range(8)) + lie + DONE
    with raw_upstream(lambda b: [("write", body)]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = _stream(http)
            assert r.status_code == 200 and "data: [DONE]" in r.text
            metrics = http.get("/metrics").text
    (row,) = _rows(tmp_path)
    assert row["completion_tokens"] == 8 and row["usage_source"] == "gateway"
    assert row["total_g"] < 1.0
    assert "e+11" not in metrics and "e+12" not in metrics


def test_unary_usage_above_the_body_is_refused(tmp_path: Path, catalog):
    body = json.dumps({"choices": [{"text": "hi"}], "usage": {
        "prompt_tokens": 3, "completion_tokens": 10**9, "total_tokens": 10**9 + 3}}).encode()
    reply = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
             % len(body)) + body
    with raw_upstream(lambda b: [("write", reply)]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            assert _unary(http).status_code == 200
    (row,) = _rows(tmp_path)
    assert row["usage_source"] == "gateway" and row["completion_tokens"] < 10


def test_sse_fields_comments_and_multiline_data_are_relayed(tmp_path: Path, catalog):
    ev = (b": keep-alive\n\n"
          b"event: message\nid: 1\ndata: " + json.dumps({"choices": [{"text": " a"}]}).encode()
          + b"\n\n"
          b"retry: 1000\n\n"
          b'data: {"choices": [{"text":\ndata:  " b"}]}\n\n'
          b"id: 3\ndata: [DONE]\n\n")
    with raw_upstream(lambda b: [("write", SSE_HEAD + chunk(ev) + b"0\r\n\r\n")]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = _stream(http)
            assert r.status_code == 200 and "data: [DONE]" in r.text
            assert "upstream_cut" not in r.text
            assert '" a"' in r.text and '" b"' in r.text
    (row,) = _rows(tmp_path)
    assert row["status"] == 200 and row["completion_tokens"] == 2


def test_an_html_200_is_a_502_row(tmp_path: Path, catalog):
    page = b"<html><body>Service temporarily unavailable</body></html>"
    reply = (b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n"
             % len(page)) + page
    with raw_upstream(lambda b: [("write", reply)]) as url:
        app = create_app(_cfg(tmp_path, url), catalog)
        with TestClient(app) as http:
            r = _unary(http)
            assert r.status_code == 502 and "not JSON" in r.text
            _settled(app)
    (row,) = _rows(tmp_path)
    assert row["status"] == 502


def test_an_upstream_body_past_the_limit_is_a_502(tmp_path: Path, catalog):
    big = b'{"choices": [{"text": "' + b"x" * 3_000_000 + b'"}]}'
    reply = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
             % len(big)) + big
    with raw_upstream(lambda b: [("write", reply)]) as url:
        app = create_app(_cfg(tmp_path, url, max_upstream_body_bytes=1_000_000), catalog)
        with TestClient(app) as http:
            r = _unary(http)
            assert r.status_code == 502 and "limit" in r.text
            _settled(app)
    assert [r["status"] for r in _rows(tmp_path)] == [502]


def test_a_client_that_stops_reading_frees_its_stream(tmp_path: Path, catalog):
    """A real socket that sends a streaming request and never reads: the gateway gives up on it
    after client_send_timeout_s, records 499 and frees the upstream and the slot."""
    import uvicorn

    big = b"".join(text(i) for i in range(2000))   # 200 writes of ~120 kB: past any buffer
    payload = [("write", SSE_HEAD)] + [("write", big)] * 200 + [("write", DONE)]
    with raw_upstream(lambda b: payload) as url:
        cfg = _cfg(tmp_path, url, client_send_timeout_s=1.0)
        app = create_app(cfg, catalog)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        while not server.started:
            time.sleep(0.05)
        c = socket.create_connection(("127.0.0.1", port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        req = json.dumps({"model": "tiny", "prompt": "x", "stream": True}).encode()
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
                  b"\r\ncontent-length: %d\r\n\r\n%s" % (len(req), req))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _rows_safe(tmp_path):
            time.sleep(0.2)
        c.close()
        assert all(s.inflight == 0 for s in app.state.upstreams)
        server.should_exit = True
        th.join(10)
    (row,) = _rows(tmp_path)
    assert row["status"] == 499 and "stopped reading" in (row["note"] or "")


def _rows_safe(tmp_path: Path) -> list[dict[str, Any]]:
    try:
        return _rows(tmp_path)
    except Exception:
        return []


__all__ = ["USAGE"]


def test_a_stream_longer_than_the_shutdown_grace_is_a_503_row_without_traceback(tmp_path: Path):
    """SIGTERM gives streams uvicorn's 10 s grace; one still running then ends with an error
    event and a 503 row naming the shutdown (it was a 499 with a traceback in the log)."""
    import signal

    import httpx

    from conftest import free_port
    from test_gateway_faults import _serve_proc

    results = tmp_path / "ledger"
    slow = [("write", SSE_HEAD)] + [("write", text(i)) if i % 2 == 0 else ("sleep", 1.0)
                                    for i in range(60)] + [("write", DONE)]
    with raw_upstream(lambda b: slow) as url:
        port = free_port()
        proc = _serve_proc(url, results, port)
        got: list[bytes] = []

        def client() -> None:
            with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", timeout=60,
                              json={"model": "tiny", "prompt": "x", "stream": True}) as r:
                for part in r.iter_bytes():
                    got.append(part)

        th = threading.Thread(target=client)
        th.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) in (0, -signal.SIGTERM)
        th.join(20)
        log = proc.stdout.read().decode() if proc.stdout else ""
    assert "Traceback" not in log, log[-2000:]
    assert b"shutting_down" in b"".join(got)
    rows = _rows_at(results)
    assert [r["status"] for r in rows] == [503] and "shutdown" in rows[0]["note"]


def _rows_at(results: Path) -> list[dict[str, Any]]:
    import sqlite3

    con = sqlite3.connect(results / "ledger.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM requests")]
    con.close()
    return rows
