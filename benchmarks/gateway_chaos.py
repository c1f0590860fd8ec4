"""Gateway chaos: every request accounted while the upstream, the disk and the gateway fail.

A stub upstream (the load benchmark's: ``--tokens`` SSE chunks ``--itl-ms`` apart) and
``tokenprint serve`` run on loopback; ``--streams`` virtual users keep streaming requests open for
``--seconds``. Meanwhile the upstream is killed and restarted every ``--kill-every`` seconds, the
ledger's database is locked for 5 s twice, and the gateway is SIGTERMed and restarted once.

Every response the gateway gives carries its ``x-tokenprint-request-id``; the ledger is read at
the end and compared with what clients saw. Prints requests answered, ledger rows, duplicates,
lost rows, and truncated streams reported as whole (a ``[DONE]`` after fewer than ``--tokens``
tokens, or a 200 row for a stream the client saw cut). Targets: 0 lost, 0 duplicated, 0
truncated reported as 200. Prints one JSON line at the end.

Usage: python benchmarks/gateway_chaos.py [--streams 200] [--seconds 60] [--kill-every 10]
       [--tokens 32] [--itl-ms 20]
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


class Seen:
    """What the clients saw, by request id."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, object]] = {}
        self.refused = 0  # no HTTP answer at all (the gateway was restarting)


async def one(session: aiohttp.ClientSession, url: str, tokens: int, seen: Seen) -> None:
    body = {"model": "tiny", "prompt": "x", "max_tokens": tokens, "stream": True}
    try:
        async with session.post(url, json=body) as r:
            rid = r.headers.get("x-tokenprint-request-id")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kill-every", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--itl-ms", type=float, default=20.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tokenprint-chaos-"))
    stub_py = tmp / "stub.py"
    stub_py.write_text(STUB)
    up_port, gw_port = free_port(), free_port()
    results = tmp / "ledger"

    def start_stub() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(stub_py), str(up_port), str(args.tokens),
                                 str(args.itl_ms / 1e3)])

    def start_gateway() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "tokenprint", "serve", "--upstream",
                                 f"http://127.0.0.1:{up_port}/v1", "--model", "tiny", "--gpu",
                                 "l4", "--region", "FR", "--port", str(gw_port), "--results",
                                 str(results)], stdout=subprocess.DEVNULL)
        wait_up(f"http://127.0.0.1:{gw_port}/v1/models", proc)
        return proc

    stub = start_stub()
    time.sleep(0.5)
    gateway = start_gateway()
    seen = Seen()
    events: list[str] = []
    url = f"http://127.0.0.1:{gw_port}/v1/completions"

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

            async def chaos() -> None:
                nonlocal stub, gateway
                plan = sorted([(t, "kill-upstream") for t in
                               [args.kill_every * i for i in range(1, int(args.seconds //
                                                                          args.kill_every))]]
                              + [(args.seconds * 0.25, "lock-db"), (args.seconds * 0.6,
                                                                    "lock-db"),
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
                    else:
                        gateway.send_signal(signal.SIGTERM)
                        await asyncio.to_thread(gateway.wait, 30)
                        gateway = await asyncio.to_thread(start_gateway)

            await asyncio.gather(chaos(), *(user(k) for k in range(args.streams)))

    asyncio.run(run())
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(timeout=30)
    stub.kill()
    con = sqlite3.connect(results / "ledger.sqlite")
    rows = con.execute("SELECT id, status, completion_tokens FROM requests").fetchall()
    runs = con.execute("SELECT answered, dropped, stopped_utc FROM runs").fetchall()
    con.close()
    ids = [r[0] for r in rows]
    by_row = {r[0]: r for r in rows}
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
    }
    print(f"{args.streams} streams for {args.seconds:g} s; chaos: " + "; ".join(events))
    print(f"answered {outcome['answered']} requests ({outcome['complete']} complete, "
          f"{outcome['failed_visibly']} failed visibly); {seen.refused} got no answer while the "
          f"gateway restarted")
    print(f"ledger: {len(rows)} rows, {outcome['duplicates']} duplicated, {len(lost)} lost, "
          f"{outcome['dropped']} dropped; truncated streams reported as 200: "
          f"{len(truncated_as_whole)}; runs stopped cleanly {outcome['runs_stopped_cleanly']}"
          f"/{len(runs)}")
    print(json.dumps(outcome))
    with contextlib.suppress(OSError):
        import shutil

        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
