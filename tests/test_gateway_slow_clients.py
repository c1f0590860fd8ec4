"""Slow clients cannot take the gateway: 2,100 connections dripping a body from one address,
with and without API keys configured, while a client on another address is served."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx
import uvicorn

from conftest import free_port, scripted_upstream
from tokenprint.gateway.app import create_app
from tokenprint.gateway.config import GatewayConfig, UpstreamConfig, hash_key
from tokenprint.gateway.server import LimitedHttpToolsProtocol, set_limits

ATTACKERS = 2100


def _serve(cfg: GatewayConfig, catalog: Any) -> tuple[Any, threading.Thread, int]:
    set_limits(cfg.max_header_bytes, cfg.header_timeout_s, cfg.body_timeout_s,
               cfg.max_connections_per_client)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(cfg, catalog), host="127.0.0.1", port=port, log_level="error",
        http=LimitedHttpToolsProtocol, limit_concurrency=cfg.max_connections,
        backlog=4096))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    return server, th, port


def _attack(port: int) -> list[socket.socket]:
    """Connections from 127.0.0.2 that send a complete head and then one body byte."""
    socks = []
    for _ in range(ATTACKERS):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.setblocking(True)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                      b"application/json\r\ncontent-length: 100\r\n\r\n{")
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


@pytest.mark.parametrize("keyed", [True, False], ids=["keys", "open"])
def test_slow_bodies_from_one_address_do_not_starve_others(tmp_path: Path, catalog, keyed):
    with scripted_upstream(tokens=2) as url:
        cfg = GatewayConfig(
            upstream=[UpstreamConfig(name="u", url=url, model="tiny", gpu="l4", region="FR")],
            results=str(tmp_path / "ledger"), health_interval_s=0,
            api_keys_sha256=[hash_key("secret")] if keyed else [])
        server, th, port = _serve(cfg, catalog)
        socks: list[socket.socket] = []
        try:
            socks = _attack(port)
            time.sleep(0.5)
            headers = {"authorization": "Bearer secret"} if keyed else {}
            latencies = []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                assert http.get("/health").status_code == 200
                for _ in range(20):
                    t0 = time.monotonic()
                    r = http.post("/v1/completions", headers=headers,
                                  json={"model": "tiny", "prompt": "x"})
                    latencies.append(time.monotonic() - t0)
                    assert r.status_code == 200, r.text
            assert max(latencies) < 1.0, latencies
            # without a key each slow body got its 401 at once and lost its connection; with
            # no keys an address holds at most max_connections_per_client at once
            held = LimitedHttpToolsProtocol.per_client.get("127.0.0.2", 0)
            assert held <= cfg.max_connections_per_client
            if keyed:
                assert held < 50
        finally:
            for s in socks:
                s.close()
            server.should_exit = True
            th.join(15)
