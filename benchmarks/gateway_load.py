"""Gateway load: 200 concurrent streams, the latency the gateway adds, ledger integrity, fail-over.

Two fast stub upstreams (plain asyncio, no model: each request streams ``--tokens`` SSE chunks,
one every ``--itl-ms``, like an inference server's decode) and the gateway run on loopback. A
closed-loop client keeps ``--streams`` streaming requests open at all times (each virtual user
sends its next request when its stream ends) for ``--seconds``, first straight to the upstreams,
then through the gateway, then straight again. It prints:

1. added latency seen by the client: p50/p99 of time to first token and of end-to-end time,
   through the gateway minus straight (the mean of the two straight runs);
2. added latency the gateway measured itself (ledger ``added_s``: its time on each request's
   critical path outside the upstream call) and its CPU time per request;
3. that every request got exactly one ledger record;
4. a fault run: upstream b is killed halfway through a gateway run; requests fail over, streams
   cut on b fail visibly, and the ledger holds each request once, none lost, none twice.

Where the machine has two or more CPUs the gateway gets its own (the last one) and the client
and stubs share the rest, as in a deployment where load and upstreams live elsewhere; ``--no-pin``
lets everything share. Prints one JSON line at the end with every figure.

The default pace, a token every 40 ms on each of 200 streams (5,000 tokens/s), is faster than
any one GPU server gives that many streams (``tokenprint predict``: an H100 serving
Llama-3.1-8B at batch 200 decodes a token every ~85 ms per stream); ``--itl-ms 20`` doubles it.

Usage: python benchmarks/gateway_load.py [--streams 200] [--tokens 64] [--itl-ms 40]
       [--seconds 10] [--no-pin] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
import numpy as np

from tokenprint.database import Database, is_url

STUB = textwrap.dedent('''
    import asyncio, json, sys
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    PORT, N, ITL = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

    def chunk(b):
        return b"%x\\r\\n%s\\r\\n" % (len(b), b)

    EVENTS = [chunk(("data: " + json.dumps({"id": "x", "object": "text_completion", "choices": [
        {"index": 0, "text": f" t{i}", "finish_reason": None}]}) + "\\n\\n").encode())
        for i in range(N)]
    TAIL = chunk(("data: " + json.dumps({"id": "x", "choices": [], "usage": {
        "prompt_tokens": 8, "completion_tokens": N, "total_tokens": 8 + N}})
        + "\\n\\ndata: [DONE]\\n\\n").encode()) + b"0\\r\\n\\r\\n"
    MODELS = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model"}]}).encode()

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                lines = head.split(b"\\r\\n")
                length = 0
                for line in lines[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if lines[0].startswith(b"GET"):
                    writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\n"
                                 b"content-length: %d\\r\\n\\r\\n%s" % (len(MODELS), MODELS))
                    continue
                writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-type: text/event-stream\\r\\n"
                             b"transfer-encoding: chunked\\r\\n\\r\\n")
                loop = asyncio.get_running_loop()
                start = loop.time()
                for i, e in enumerate(EVENTS, start=1):  # a fixed cadence: lag never adds up
                    await asyncio.sleep(max(start + i * ITL - loop.time(), 0))
                    writer.write(e)
                writer.write(TAIL)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, RuntimeError):
            pass   # RuntimeError: uvloop's write after the gateway closed the connection
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
''')

BODY = {"model": "tiny", "prompt": "x", "max_tokens": 16, "stream": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (worker processes) so far."""
    total = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    """Descendant process ids (the gateway's workers)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            for k in kids:
                out += [int(k), *children(int(k))]
    return out


class Result:
    """One request as the client saw it."""

    __slots__ = ("e2e", "ok", "ttft")

    def __init__(self, ttft: float, e2e: float, ok: bool) -> None:
        self.ttft, self.e2e, self.ok = ttft, e2e, ok


async def one(session: aiohttp.ClientSession, url: str) -> Result:
    t0 = time.perf_counter()
    first = float("nan")
    try:
        async with session.post(url, json=BODY) as r:
            if r.status != 200:
                await r.read()
                return Result(first, time.perf_counter() - t0, False)
            ok = False
            tail = b""
            while raw := await r.content.readany():  # reads, not lines: a light client
                if first != first and b'"text"' in raw:
                    first = time.perf_counter() - t0
                if b'{"error"' in raw:
                    break
                tail = (tail + raw)[-64:]
            else:
                ok = tail.endswith(b"data: [DONE]\n\n")
    except (TimeoutError, aiohttp.ClientError):
        return Result(first, time.perf_counter() - t0, False)
    return Result(first, time.perf_counter() - t0, ok)


async def closed_loop(urls: list[str], streams: int, seconds: float, ramp_s: float,
                      at_half: subprocess.Popen[bytes] | None = None
                      ) -> tuple[list[Result], list[Result]]:
    """``streams`` virtual users, each sending its next request when its stream ends.

    Users start evenly spread over ``ramp_s`` (one request's duration) so arrivals and tokens
    are not synchronized waves. Returns (requests sent after the ramp, all requests)."""
    out: list[Result] = []
    everything: list[Result] = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        t0 = time.perf_counter()
        end = t0 + ramp_s + seconds

        async def user(k: int) -> None:
            await asyncio.sleep(ramp_s * k / streams)
            i = k
            while time.perf_counter() < end:
                sent = time.perf_counter()
                r = await one(session, urls[i % len(urls)])
                everything.append(r)
                if sent - t0 >= ramp_s:
                    out.append(r)
                i += 1

        async def killer() -> None:
            if at_half is not None:
                await asyncio.sleep(ramp_s + seconds / 2)
                at_half.kill()

        await asyncio.gather(killer(), *(user(k) for k in range(streams)))
    return out, everything


def pct(xs: list[float], q: float) -> float:
    a = np.array([x for x in xs if x == x])
    return float(np.percentile(a, q)) if a.size else float("nan")


def ledger(where: str | Path, since: float) -> list[tuple[str, int, int, str, float | None]]:
    """Ledger rows of requests that arrived from epoch second ``since`` on (SQLite file or
    PostgreSQL URL)."""
    db = Database(str(where) if is_url(str(where)) else Path(where) / "ledger.sqlite",
                  read_only=True, timeout_s=5.0)
    try:
        return db.rows("SELECT id, status, attempts, upstream, added_s FROM requests "
                       "WHERE time_utc >= ? ORDER BY time_utc", (since,))
    finally:
        db.close()


def settle(where: str | Path, since: float, timeout_s: float = 10.0) -> list:
    """Ledger rows once the writer thread has committed everything (no change for 0.5 s)."""
    end = time.monotonic() + timeout_s
    rows = ledger(where, since)
    while time.monotonic() < end:
        time.sleep(0.5)
        again = ledger(where, since)
        if len(again) == len(rows):
            break
        rows = again
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--itl-ms", type=float, default=40.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    ap.add_argument("--keep", action="store_true", help="keep the ledger and stubs' folder")
    ap.add_argument("--ledger-url", help="a PostgreSQL ledger (an empty database) instead of "
                    "SQLite")
    ap.add_argument("--compare", action="store_true", help="with --ledger-url: run SQLite, "
                    "then PostgreSQL, in the same run, and print both")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the children too
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and not args.no_pin
    gw_cpus, rest = ({cpus[-1]}, set(cpus[:-1])) if pin else (set(cpus), set(cpus))
    if pin:
        os.sched_setaffinity(0, rest)
    tmp = Path(tempfile.mkdtemp(prefix="tokenprint-load-"))
    (tmp / "stub.py").write_text(STUB)
    ports = [free_port(), free_port()]
    ups = [subprocess.Popen([sys.executable, str(tmp / "stub.py"), str(p), str(args.tokens),
                             str(args.itl_ms / 1e3)]) for p in ports]
    try:
        for p, u in zip(ports, ups, strict=True):
            wait_up(f"http://127.0.0.1:{p}/v1/models", u)
        ledgers: list[str | None] = ([None] if args.ledger_url is None else [args.ledger_url]
                                     if not args.compare else [None, args.ledger_url])
        reports = [measure(args, tmp, ports, ups, gw_cpus, rest, pin, url) for url in ledgers]
        if len(reports) == 2:
            a_, b_ = reports
            print(f"PostgreSQL vs SQLite ledger, same run: added first token p50 "
                  f"{b_['added_ttft_p50_ms']:.2f} vs {a_['added_ttft_p50_ms']:.2f} ms, "
                  f"self-measured p50 {b_['self_added_p50_ms']:.3f} vs "
                  f"{a_['self_added_p50_ms']:.3f} ms, {b_['gateway_req_per_s']:.0f} vs "
                  f"{a_['gateway_req_per_s']:.0f} requests/s, CPU "
                  f"{b_['gateway_cpu_us_per_request']:.0f} vs "
                  f"{a_['gateway_cpu_us_per_request']:.0f} µs/request; ledgers exact: "
                  f"{b_['ledger_exact'] and b_['fault']['exact']} / "
                  f"{a_['ledger_exact'] and a_['fault']['exact']}")
        print(json.dumps(reports[0] if len(reports) == 1 else
                         {"sqlite": reports[0], "postgresql": reports[1]}))
    finally:
        for u in ups:
            u.kill()
        if args.keep:
            print(f"ledger and stubs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, tmp: Path, ports: list[int],
            ups: list[subprocess.Popen[bytes]], gw_cpus: set[int], rest: set[int], pin: bool,
            ledger_url: str | None) -> dict[str, object]:
    """One gateway (SQLite ledger, or PostgreSQL at ``ledger_url``): straight, through it,
    straight again, then the fault run (which kills upstream b; it is restarted after)."""
    gw_port = free_port()
    results = tmp / ("ledger-pg" if ledger_url else "ledger")
    where: str | Path = ledger_url or results
    url_line = f'ledger_url = "{ledger_url}"' if ledger_url else ""
    (tmp / "gw.toml").write_text(textwrap.dedent(f'''
        port = {gw_port}
        policy = "round-robin"
        results = "{results}"
        {url_line}
        health_interval_s = 0
        breaker_failures = 1
        breaker_open_s = 60
        [[upstream]]
        name = "a"
        url = "http://127.0.0.1:{ports[0]}/v1"
        model = "tiny"
        gpu = "l4"
        region = "FR"
        capacity = 100000
        [[upstream]]
        name = "b"
        url = "http://127.0.0.1:{ports[1]}/v1"
        model = "tiny"
        gpu = "l4"
        region = "SE"
        capacity = 100000
    '''))
    gw = subprocess.Popen([sys.executable, "-m", "tokenprint", "serve", "--config",
                           str(tmp / "gw.toml"), "--workers", str(args.workers)],
                          stdout=subprocess.DEVNULL,
                          preexec_fn=lambda: os.sched_setaffinity(0, gw_cpus))
    report: dict[str, object] = {"streams": args.streams, "tokens": args.tokens,
                                 "itl_ms": args.itl_ms, "seconds": args.seconds,
                                 "gateway_cpus": sorted(gw_cpus), "pinned": pin,
                                 "workers": args.workers,
                                 "ledger": "postgresql" if ledger_url else "sqlite"}
    try:
        wait_up(f"http://127.0.0.1:{gw_port}/health", gw)
        direct = [f"http://127.0.0.1:{p}/v1/completions" for p in ports]
        via = [f"http://127.0.0.1:{gw_port}/v1/completions"]
        print(f"[{report['ledger']} ledger] gateway on CPU {sorted(gw_cpus)}, client and "
              f"stubs on {sorted(rest)}; "
              f"{args.streams} streams held open, {args.tokens} tokens every "
              f"{args.itl_ms:g} ms, {args.seconds:g} s per run")
        ramp = args.tokens * args.itl_ms / 1e3
        asyncio.run(closed_loop(direct, 20, 1.0, 0.0))
        asyncio.run(closed_loop(via, 20, 1.0, 0.0))
        settle(where, 0.0)

        d1, _ = asyncio.run(closed_loop(direct, args.streams, args.seconds, ramp))
        t_via = time.time()
        c0, w0 = cpu_s(gw.pid), time.perf_counter()
        g, g_all = asyncio.run(closed_loop(via, args.streams, args.seconds, ramp))
        cpu, wall = cpu_s(gw.pid) - c0, time.perf_counter() - w0
        d2, _ = asyncio.run(closed_loop(direct, args.streams, args.seconds, ramp))
        d = d1 + d2
        ok = [r for r in g if r.ok]
        add = {}
        for key in ("ttft", "e2e"):
            for q in (50, 99):
                add[f"added_{key}_p{q}_ms"] = (pct([getattr(r, key) for r in ok], q)
                                               - pct([getattr(r, key) for r in d], q)) * 1e3
        print(f"straight: {len(d)} requests, ttft p50 {pct([r.ttft for r in d], 50) * 1e3:.2f} "
              f"ms, e2e p50 {pct([r.e2e for r in d], 50) * 1e3:.1f} ms; via gateway: {len(g)} "
              f"requests ({len(g) / args.seconds:.0f}/s), ttft p50 "
              f"{pct([r.ttft for r in ok], 50) * 1e3:.2f} ms, e2e p50 "
              f"{pct([r.e2e for r in ok], 50) * 1e3:.1f} ms")
        print(f"added latency seen by the client: first token p50 {add['added_ttft_p50_ms']:.2f}"
              f" ms, p99 {add['added_ttft_p99_ms']:.2f} ms; end to end p50 "
              f"{add['added_e2e_p50_ms']:.2f} ms, p99 {add['added_e2e_p99_ms']:.2f} ms "
              "(target: under 2 ms p50)")
        rows = settle(where, t_via)
        own = [r[4] for r in rows if r[4] is not None]
        print(f"added latency measured by the gateway (ledger added_s, {len(own)} requests): "
              f"p50 {pct(own, 50) * 1e3:.3f} ms, p99 {pct(own, 99) * 1e3:.3f} ms; gateway CPU "
              f"{cpu / max(len(g_all), 1) * 1e6:.0f} µs per request "
              f"({cpu / wall * 100:.0f} % of one core)")
        ids = [r[0] for r in rows]
        ok_all = sum(r.ok for r in g_all)
        exact = len(rows) == len(g_all) and len(set(ids)) == len(ids) and \
            sum(r[1] == 200 for r in rows) == ok_all
        print(f"ledger: {len(g_all)} requests ({ok_all} succeeded), {len(rows)} new records, "
              f"{len(set(ids))} unique ids → "
              f"{'exactly one record per request' if exact else 'MISMATCH'}")
        report |= add | {"straight_requests": len(d), "gateway_requests": len(g),
                         "gateway_ok": len(ok), "gateway_req_per_s": len(g) / args.seconds,
                         "self_added_p50_ms": pct(own, 50) * 1e3,
                         "self_added_p99_ms": pct(own, 99) * 1e3,
                         "gateway_cpu_us_per_request": cpu / max(len(g_all), 1) * 1e6,
                         "gateway_cpu_share": cpu / wall,
                         "ledger_exact": exact}

        settle(where, t_via)
        t_fault = time.time()
        _, f = asyncio.run(closed_loop(via, args.streams, args.seconds, ramp,
                                       at_half=ups[1]))
        rows = settle(where, t_fault)
        ids = [r[0] for r in rows]
        good = sum(r.ok for r in f)
        fault = {"requests": len(f), "succeeded": good, "failed": len(f) - good,
                 "records": len(rows), "unique_ids": len(set(ids)),
                 "failed_over": sum(1 for r in rows if r[2] == 2 and r[1] == 200),
                 "cut_on_b": sum(1 for r in rows if r[1] == 502 and r[3] == "b"),
                 "records_ok": sum(1 for r in rows if r[1] == 200)}
        fault["exact"] = (fault["records"] == fault["requests"] == fault["unique_ids"]
                          and fault["records_ok"] == good)
        print(f"fault run: upstream b killed {args.seconds / 2:g} s into {args.seconds:g} s: "
              f"{good} of {len(f)} requests succeeded, {len(f) - good} failed visibly "
              f"({fault['cut_on_b']} streams cut on b); {fault['failed_over']} failed over to a "
              f"(attempts = 2); {len(rows)} ledger records, {len(set(ids))} unique ids → "
              f"{'none lost, none twice' if fault['exact'] else 'MISMATCH'}")
        report["fault"] = fault
        return report
    finally:
        gw.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            gw.wait(timeout=10)
        # upstream b was killed by the fault run: start it again for the next measurement
        ups[1] = subprocess.Popen([sys.executable, str(tmp / "stub.py"), str(ports[1]),
                                   str(args.tokens), str(args.itl_ms / 1e3)])
        wait_up(f"http://127.0.0.1:{ports[1]}/v1/models", ups[1])


if __name__ == "__main__":
    main()
