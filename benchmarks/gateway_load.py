"""Gateway load: 200+ concurrent streaming requests, added latency, ledger integrity, fail-over.

Starts two fast OpenAI-compatible stub upstreams (16 streamed tokens, no model: the point is the
gateway's own cost) and the gateway, all on loopback, then:

1. drives N concurrent streaming requests directly to an upstream and through the gateway, and
   prints p50/p99 of the latency the gateway adds (end to end and to the first token);
2. checks that every request got exactly one ledger record;
3. fault run: kills one upstream mid-run and shows that later requests fail over, and that the
   ledger holds each request once at most (none lost without an error, none counted twice).

Usage: python benchmarks/gateway_load.py [N=200]
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np

STUB = textwrap.dedent('''
    import json, sys, time
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    import uvicorn
    app = FastAPI()
    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "tiny", "object": "model"}]}
    @app.post("/v1/completions")
    async def comp(request: Request):
        body = await request.json()
        n = int(body.get("max_tokens", 16))
        async def gen():
            for i in range(n):
                yield "data: " + json.dumps({"id": "x", "object": "text_completion",
                    "choices": [{"index": 0, "text": f" t{i}", "finish_reason": None}]}) + "\\n\\n"
            yield "data: " + json.dumps({"id": "x", "choices": [], "usage": {
                "prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}}) + "\\n\\n"
            yield "data: [DONE]\\n\\n"
        return StreamingResponse(gen(), media_type="text/event-stream")
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def one(client: httpx.AsyncClient, url: str) -> tuple[float, float, bool]:
    t0 = time.perf_counter()
    first = None
    try:
        async with client.stream("POST", url, json={"model": "tiny", "prompt": "x",
                                                    "max_tokens": 16, "stream": True}) as r:
            if r.status_code != 200:
                await r.aread()
                return float("nan"), float("nan"), False
            async for line in r.aiter_lines():
                if line.startswith("data:") and first is None and '"text"' in line:
                    first = time.perf_counter() - t0
    except httpx.HTTPError:
        return float("nan"), float("nan"), False
    return (first or float("nan")), time.perf_counter() - t0, True


async def burst(url: str, n: int) -> list[tuple[float, float, bool]]:
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(one(client, url) for _ in range(n)))


def ledger_rows(results: Path) -> list[tuple[str, int, int, str]]:
    con = sqlite3.connect(results / "tokenprint.sqlite")
    rows = con.execute("SELECT id, status, attempts, upstream FROM requests ORDER BY rowid"
                       ).fetchall()
    con.close()
    return rows


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    tmp = Path(tempfile.mkdtemp(prefix="tokenprint-load-"))
    stub = tmp / "stub.py"
    stub.write_text(STUB)
    ports = [free_port(), free_port()]
    ups = [subprocess.Popen([sys.executable, str(stub), str(p)]) for p in ports]
    gw_port = free_port()
    results = tmp / "ledger"
    (tmp / "gw.toml").write_text(f'''
port = {gw_port}
policy = "round-robin"
results = "{results}"
health_interval_s = 0
breaker_failures = 1
[[upstream]]
name = "a"
url = "http://127.0.0.1:{ports[0]}/v1"
model = "tiny"
gpu = "l4"
region = "FR"
capacity = 10000
[[upstream]]
name = "b"
url = "http://127.0.0.1:{ports[1]}/v1"
model = "tiny"
gpu = "l4"
region = "SE"
capacity = 10000
''')
    gw = subprocess.Popen([sys.executable, "-m", "tokenprint", "serve", "--config",
                           str(tmp / "gw.toml")], stdout=subprocess.DEVNULL)
    try:
        for p in ports:
            wait_up(f"http://127.0.0.1:{p}/v1/models")
        wait_up(f"http://127.0.0.1:{gw_port}/health")
        direct_url = f"http://127.0.0.1:{ports[0]}/v1/completions"
        gw_url = f"http://127.0.0.1:{gw_port}/v1/completions"
        asyncio.run(burst(direct_url, 20))
        asyncio.run(burst(gw_url, 20))
        seq_direct = [asyncio.run(burst(direct_url, 1))[0][1] for _ in range(30)]
        seq_gw = [asyncio.run(burst(gw_url, 1))[0][1] for _ in range(30)]
        print(f"one request at a time (30): end-to-end p50 direct "
              f"{np.median(seq_direct) * 1e3:.2f} ms, via gateway {np.median(seq_gw) * 1e3:.2f} "
              f"ms → added {(np.median(seq_gw) - np.median(seq_direct)) * 1e3:.2f} ms")
        time.sleep(0.5)  # let the ledger writer commit the warm-up rows
        before = len(ledger_rows(results))
        direct = asyncio.run(burst(direct_url, n))
        via = asyncio.run(burst(gw_url, n))
        d = np.array([x[1] for x in direct])
        g = np.array([x[1] for x in via])
        df = np.array([x[0] for x in direct])
        gf = np.array([x[0] for x in via])
        ok = sum(x[2] for x in via)
        print(f"{n} concurrent streaming requests, 16 tokens each")
        print(f"end-to-end p50: direct {np.nanpercentile(d, 50) * 1e3:.1f} ms, via gateway "
              f"{np.nanpercentile(g, 50) * 1e3:.1f} ms → added "
              f"{(np.nanpercentile(g, 50) - np.nanpercentile(d, 50)) * 1e3:.2f} ms p50, "
              f"{(np.nanpercentile(g, 99) - np.nanpercentile(d, 99)) * 1e3:.2f} ms p99")
        print(f"first token p50: direct {np.nanpercentile(df, 50) * 1e3:.1f} ms, via gateway "
              f"{np.nanpercentile(gf, 50) * 1e3:.1f} ms (target: under 2 ms added p50)")
        time.sleep(0.5)
        rows = ledger_rows(results)
        new = len(rows) - before
        print(f"ledger: {ok} successful requests, {new} new records, "
              f"{len({r[0] for r in rows})} unique ids of {len(rows)} "
              f"({'exactly one record per request' if new == ok else 'MISMATCH'})")

        async def fault() -> list[tuple[float, float, bool]]:
            task = asyncio.create_task(burst(gw_url, n))
            await asyncio.sleep(0.05)
            ups[1].kill()
            first = await task
            second = await burst(gw_url, n)
            return first + second

        before = len(ledger_rows(results))
        res = asyncio.run(fault())
        time.sleep(0.5)
        rows = ledger_rows(results)
        new = rows[before:]
        succeeded = sum(x[2] for x in res)
        print(f"fault run: upstream b killed 50 ms into a burst of {n}, then {n} more: "
              f"{succeeded} of {len(res)} requests succeeded, {len(res) - succeeded} failed "
              f"visibly (streams cut on b); {len(new)} ledger records, "
              f"{len({r[0] for r in new})} unique ids; "
              f"{sum(1 for r in new if r[2] == 2)} failed over to a (attempts = 2); "
              f"{sum(1 for r in new if r[1] == 499)} recorded as cut (status 499); "
              f"records on b after the kill: {sum(1 for r in new[n:] if r[3] == 'b')}")
        print("second half after the kill: " + json.dumps(
            {"ok": sum(x[2] for x in res[n:]), "of": n}))
    finally:
        gw.terminate()
        for u in ups:
            u.kill()


if __name__ == "__main__":
    main()
