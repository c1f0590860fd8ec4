"""Gateway chaos: every request accounted while the upstream, the disk, the clients and the
gateway fail.

A stub upstream (the load benchmark's: ``--tokens`` SSE chunks ``--itl-ms`` apart) and a malformed
one (a bad status line, answered round-robin beside it: every request it gets is retried on the
good one) sit behind ``tokenprint serve`` on loopback; ``--streams`` virtual users keep streaming
requests open for ``--seconds``. Meanwhile:

* the good upstream is killed and restarted every ``--kill-every`` seconds;
* the ledger's database is locked for 5 s twice;
* the dashboard's data is polled ``--dashboard-hz`` times a second throughout;
* ``--slow-bodies`` connections from 127.0.0.2 send a request head and then one body byte every
  2 s; ``--slow-readers`` clients on 127.0.0.3 open streams and never read them;
* the gateway is SIGKILLed once (``ledger check`` is read at once and compared with the true gap:
  requests whose clients saw a complete answer that are not yet committed), restarted, and later
  SIGTERMed and restarted once more.

Every response carries its ``x-tokenprint-request-id``; the ledger is read at the end and compared
with what clients saw. Prints requests answered, ledger rows, duplicates, lost rows, and truncated
streams reported as whole (a ``[DONE]`` after fewer than ``--tokens`` tokens, or a 200 row for a
stream the client saw cut). Targets: 0 lost, 0 duplicated, 0 truncated reported as 200, and
``ledger check``'s gap after the SIGKILL equal to the true one. Prints one JSON line at the end.

Usage: python benchmarks/gateway_chaos.py [--streams 200] [--seconds 60] [--kill-every 10]
       [--tokens 32] [--itl-ms 20] [--dashboard-hz 10] [--slow-bodies 300] [--slow-readers 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_load import STUB, free_port, wait_up
from tokenprint.gateway.ledger import check

BAD_UPSTREAM = """
import asyncio, sys
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            n = next((int(x[15:]) for x in head.split(b"\\r\\n")
                      if x[:15].lower() == b"content-length:"), 0)
            if n:
                await reader.readexactly(n)
            if head.startswith(b"GET"):
                writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\n{}")
                continue
            writer.write(b"HTZP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\n{}")
            await writer.drain()
            writer.close()
            return
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


class Seen:
    """What the clients saw, by request id."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, object]] = {}
        self.refused = 0  # no HTTP answer at all (the gateway was restarting)
        self.done_at: dict[str, float] = {}   # monotonic time each complete answer ended
        self.headers_at: dict[str, float] = {}   # monotonic time each answer's headers came


async def one(session: aiohttp.ClientSession, url: str, tokens: int, seen: Seen) -> None:
    body = {"model": "tiny", "prompt": "x", "max_tokens": tokens, "stream": True}
    try:
        async with session.post(url, json=body) as r:
            rid = r.headers.get("x-tokenprint-request-id")
            if rid is not None:
                seen.headers_at[rid] = time.monotonic()
            data = b""
            try:
                while raw := await r.content.readany():
                    data += raw
            except aiohttp.ClientError:
                pass
            if rid is None:
                seen.refused += 1
                return
            seen.by_id[rid] = {"status": r.status, "done": b"data: [DONE]" in data,
                               "error": b'{"error"' in data,
                               "tokens": data.count(b'"text": " t')}
            if b"data: [DONE]" in data:
                seen.done_at[rid] = time.monotonic()
    except (aiohttp.ClientError, TimeoutError):
        seen.refused += 1


def lock_db(path: Path, seconds: float) -> threading.Thread:
    def hold() -> None:
        con = sqlite3.connect(path, isolation_level=None, timeout=30)
        con.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        con.execute("ROLLBACK")
        con.close()

    th = threading.Thread(target=hold, daemon=True)
    th.start()
    return th


async def slow_body(port: int, stop: asyncio.Event, held: list[int]) -> None:
    """A connection from 127.0.0.2 that sends a head and then a body byte every 2 s."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=("127.0.0.2", 0))
        except OSError:
            await asyncio.sleep(0.5)
            continue
        held[0] += 1
        try:
            writer.write(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                         b"application/json\r\ncontent-length: 1000\r\n\r\n{")
            while not stop.is_set() and not reader.at_eof():
                await asyncio.sleep(2.0)
                writer.write(b" ")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            held[0] -= 1
            writer.close()


async def slow_reader(port: int, stop: asyncio.Event) -> None:
    """A client on 127.0.0.3 that opens a stream and never reads it, again and again."""
    body = json.dumps({"model": "tiny", "prompt": "x", "stream": True}).encode()
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=("127.0.0.3", 0))
            writer.write(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                         b"application/json\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
            await asyncio.wait_for(reader.read(0), timeout=1)  # never reads the stream
            await asyncio.sleep(45)
            writer.close()
        except (ConnectionError, OSError, TimeoutError):
            await asyncio.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kill-every", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--itl-ms", type=float, default=20.0)
    ap.add_argument("--dashboard-hz", type=float, default=10.0)
    ap.add_argument("--slow-bodies", type=int, default=300)
    ap.add_argument("--slow-readers", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tokenprint-chaos-"))
    stub_py = tmp / "stub.py"
    stub_py.write_text(STUB)
    bad_py = tmp / "bad.py"
    bad_py.write_text(BAD_UPSTREAM)
    up_port, gw_port, bad_port = free_port(), free_port(), free_port()
    results = tmp / "ledger"
    config = tmp / "gateway.toml"
    config.write_text(
        f'policy = "round-robin"\nresults = "{results}"\nport = {gw_port}\n'
        f'client_send_timeout_s = 5.0\nbody_timeout_s = 10.0\n'
        f'[[upstream]]\nname = "good"\nurl = "http://127.0.0.1:{up_port}/v1"\n'
        f'model = "tiny"\ngpu = "l4"\nregion = "FR"\n'
        f'[[upstream]]\nname = "malformed"\nurl = "http://127.0.0.1:{bad_port}/v1"\n'
        f'model = "tiny"\ngpu = "l4"\nregion = "FR"\n')
    bad = subprocess.Popen([sys.executable, str(bad_py), str(bad_port)])

    def start_stub() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(stub_py), str(up_port), str(args.tokens),
                                 str(args.itl_ms / 1e3)])

    def start_gateway() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "tokenprint", "serve", "--config",
                                 str(config)], stdout=subprocess.DEVNULL)
        wait_up(f"http://127.0.0.1:{gw_port}/v1/models", proc)
        return proc

    stub = start_stub()
    time.sleep(0.5)
    gateway = start_gateway()
    seen = Seen()
    events: list[str] = []
    url = f"http://127.0.0.1:{gw_port}/v1/completions"
    kill_check: dict[str, object] = {}
    polls = [0, 0]   # dashboard polls, answered
    held = [0]       # slow-body connections open

    async def run() -> None:
        nonlocal stub, gateway
        t0 = time.monotonic()
        end = t0 + args.seconds
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn,
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            async def user(k: int) -> None:
                await asyncio.sleep(k * 0.005)
                while time.monotonic() < end:
                    before = len(seen.by_id), seen.refused
                    await one(session, url, args.tokens, seen)
                    if seen.refused > before[1] or (
                            len(seen.by_id) > before[0]
                            and not list(seen.by_id.values())[-1]["done"]):
                        await asyncio.sleep(0.1)  # a client backs off after a failure

            async def dashboard() -> None:
                while time.monotonic() < end:
                    polls[0] += 1
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(f"http://127.0.0.1:{gw_port}/dashboard/data",
                                               timeout=aiohttp.ClientTimeout(total=5)) as r:
                            await r.read()
                            polls[1] += r.status == 200
                    await asyncio.sleep(1.0 / args.dashboard_hz)

            def sigkill() -> None:
                """SIGKILL the gateway, then compare ledger check with the true gap."""
                gateway.kill()
                gateway.wait()
                t_kill = time.monotonic()
                con = sqlite3.connect(results / "ledger.sqlite")
                committed = {r[0] for r in con.execute("SELECT id FROM requests")}
                killed_run = con.execute("SELECT run_id FROM runs WHERE stopped_utc IS NULL "
                                         "ORDER BY started_utc DESC LIMIT 1").fetchone()
                con.close()
                complete = {rid for rid, t in seen.done_at.items() if t <= t_kill}
                run = next((r for r in check(results) if killed_run
                            and r["run_id"] == killed_run[0]), None)
                kill_check.update({"t_kill": t_kill, "committed": committed,
                                   "true_gap_complete": len(complete - committed),
                                   "check_missing": run["missing"] if run else None,
                                   "check_in_journal": run["recoverable"] if run else None})

            async def chaos() -> None:
                nonlocal stub, gateway
                plan = sorted([(t, "kill-upstream") for t in
                               [args.kill_every * i for i in range(1, int(args.seconds //
                                                                          args.kill_every))]]
                              + [(args.seconds * 0.25, "lock-db"), (args.seconds * 0.6,
                                                                    "lock-db"),
                                 (args.seconds * 0.45, "sigkill-gateway"),
                                 (args.seconds * 0.75, "sigterm-gateway")])
                for at, what in plan:
                    await asyncio.sleep(max(t0 + at - time.monotonic(), 0))
                    events.append(f"{time.monotonic() - t0:.1f} s {what}")
                    if what == "kill-upstream":
                        stub.kill()
                        stub.wait()
                        await asyncio.sleep(1.0)
                        stub = start_stub()
                    elif what == "lock-db":
                        lock_db(results / "ledger.sqlite", 5.0)
                    elif what == "sigkill-gateway":
                        await asyncio.to_thread(sigkill)
                        gateway = await asyncio.to_thread(start_gateway)
                    else:
                        gateway.send_signal(signal.SIGTERM)
                        await asyncio.to_thread(gateway.wait, 30)
                        gateway = await asyncio.to_thread(start_gateway)

            stop = asyncio.Event()
            attackers = [asyncio.ensure_future(slow_body(gw_port, stop, held))
                         for _ in range(args.slow_bodies)]
            attackers += [asyncio.ensure_future(slow_reader(gw_port, stop))
                          for _ in range(args.slow_readers)]
            await asyncio.gather(chaos(), dashboard(), *(user(k) for k in range(args.streams)))
            stop.set()
            for a in attackers:
                a.cancel()
            await asyncio.gather(*attackers, return_exceptions=True)

    asyncio.run(run())
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(timeout=30)
    stub.kill()
    bad.kill()
    con = sqlite3.connect(results / "ledger.sqlite")
    rows = con.execute("SELECT id, status, completion_tokens FROM requests").fetchall()
    runs = con.execute("SELECT answered, dropped, stopped_utc FROM runs").fetchall()
    con.close()
    ids = [r[0] for r in rows]
    by_row = {r[0]: r for r in rows}
    if "t_kill" in kill_check:
        # the true gap at the kill: every answer whose headers had reached its client (complete
        # or cut by the kill) and whose row was not committed
        t_kill, committed = kill_check.pop("t_kill"), kill_check.pop("committed")
        started = {rid for rid, t in seen.headers_at.items() if t <= t_kill}  # type: ignore[operator]
        kill_check["true_gap"] = len(started - committed)  # type: ignore[operator]
    answered = set(seen.by_id)
    lost = sorted(answered - set(ids))
    truncated_as_whole = [
        rid for rid, s in seen.by_id.items()
        if (s["done"] and int(s["tokens"]) < args.tokens)  # type: ignore[call-overload]
        or (rid in by_row and by_row[rid][1] == 200 and not s["done"])]
    outcome = {
        "streams": args.streams, "seconds": args.seconds, "events": events,
        "answered": len(answered), "no_answer_during_restart": seen.refused,
        "complete": sum(1 for s in seen.by_id.values() if s["done"]),
        "failed_visibly": sum(1 for s in seen.by_id.values() if s["error"] or s["status"] != 200),
        "ledger_rows": len(rows), "duplicates": len(ids) - len(set(ids)), "lost": len(lost),
        "truncated_reported_as_200": len(truncated_as_whole),
        "runs_stopped_cleanly": sum(1 for r in runs if r[2] is not None), "runs": len(runs),
        "dropped": sum(int(r[1] or 0) for r in runs),
        "dashboard_polls": polls[0], "dashboard_answered": polls[1],
        "slow_bodies": args.slow_bodies, "slow_readers": args.slow_readers,
        "after_sigkill": kill_check,
    }
    print(f"{args.streams} streams for {args.seconds:g} s; chaos: " + "; ".join(events))
    print(f"answered {outcome['answered']} requests ({outcome['complete']} complete, "
          f"{outcome['failed_visibly']} failed visibly); {seen.refused} got no answer while the "
          f"gateway restarted")
    print(f"ledger: {len(rows)} rows, {outcome['duplicates']} duplicated, {len(lost)} lost, "
          f"{outcome['dropped']} dropped; truncated streams reported as 200: "
          f"{len(truncated_as_whole)}; runs stopped cleanly {outcome['runs_stopped_cleanly']}"
          f"/{len(runs)}")
    print(f"dashboard polled {polls[0]} times ({polls[1]} answered); {args.slow_bodies} slow "
          f"bodies and {args.slow_readers} slow readers throughout; after the SIGKILL ledger "
          f"check said {kill_check.get('check_missing')} missing "
          f"({kill_check.get('check_in_journal')} in the journal), true gap "
          f"{kill_check.get('true_gap')}")
    print(json.dumps(outcome))
    with contextlib.suppress(OSError):
        import shutil

        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
